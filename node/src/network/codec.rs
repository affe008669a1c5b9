//! The request-response codec: one [`meshlog_protocol::frame`] per message.
//!
//! The length prefix is checked against the limit before the body is allocated, so a
//! hostile peer cannot make this node reserve more than `max_frame_bytes` per stream.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{request_response, StreamProtocol};
use meshlog_protocol::frame;
use serde::{de::DeserializeOwned, Serialize};
use std::io;
use std::marker::PhantomData;

/// Frames typed requests and responses on a libp2p stream.
pub struct FrameCodec<Req, Resp> {
    max_frame_bytes: usize,
    _types: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> FrameCodec<Req, Resp> {
    /// A codec refusing frames over `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> Self {
        FrameCodec { max_frame_bytes, _types: PhantomData }
    }
}

impl<Req, Resp> Clone for FrameCodec<Req, Resp> {
    fn clone(&self) -> Self {
        FrameCodec::new(self.max_frame_bytes)
    }
}

pub(super) async fn read_msg<T, M>(io: &mut T, max: usize) -> io::Result<M>
where
    T: AsyncRead + Unpin + Send,
    M: DeserializeOwned,
{
    let mut prefix = [0u8; 4];
    io.read_exact(&mut prefix).await?;
    let len = frame::body_len(prefix, max).map_err(invalid)?;
    let mut contents = vec![0u8; len];
    io.read_exact(&mut contents).await?;
    frame::decode_body(&contents).map_err(invalid)
}

async fn write_msg<T, M>(io: &mut T, msg: &M, max: usize) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
    M: Serialize,
{
    let bytes = frame::encode_frame(msg, max).map_err(invalid)?;
    io.write_all(&bytes).await?;
    io.flush().await
}

fn invalid(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<Req, Resp> request_response::Codec for FrameCodec<Req, Resp>
where
    Req: Serialize + DeserializeOwned + Send + Sync + 'static,
    Resp: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Req>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_msg(io, self.max_frame_bytes).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_msg(io, self.max_frame_bytes).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Req) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_msg(io, &req, self.max_frame_bytes).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, res: Resp) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_msg(io, &res, self.max_frame_bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use meshlog_protocol::messages::{ClientRequest, ClientResult};
    use request_response::Codec;

    type Client = FrameCodec<ClientRequest, ClientResult>;
    const P: StreamProtocol = StreamProtocol::new("/meshlog/client/1");

    async fn read(bytes: Vec<u8>) -> io::Result<ClientRequest> {
        Client::new(1 << 20).read_request(&P, &mut Cursor::new(bytes)).await
    }

    #[tokio::test]
    async fn a_request_round_trips() {
        let mut buf = Cursor::new(Vec::new());
        Client::new(1 << 20).write_request(&P, &mut buf, ClientRequest::ListTopics).await.unwrap();
        assert_eq!(read(buf.into_inner()).await.unwrap(), ClientRequest::ListTopics);
    }

    #[tokio::test]
    async fn oversized_garbage_and_foreign_frames_are_errors() {
        // A 4 GiB length prefix is refused from its four bytes.
        let e = read(u32::MAX.to_be_bytes().to_vec()).await.unwrap_err();
        assert!(e.to_string().contains("exceeds the limit"), "{e}");
        // A well-framed body that is not a request.
        let mut garbage = 6u32.to_be_bytes().to_vec();
        garbage.extend_from_slice(&[frame::WIRE_VERSION, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(read(garbage).await.unwrap_err().kind(), io::ErrorKind::InvalidData);
        // A frame from another wire version.
        let mut foreign = 2u32.to_be_bytes().to_vec();
        foreign.extend_from_slice(&[99, 0]);
        let e = read(foreign).await.unwrap_err();
        assert!(e.to_string().contains("unsupported wire version 99"), "{e}");
        // A truncated frame.
        let mut short = 100u32.to_be_bytes().to_vec();
        short.extend_from_slice(&[1, 2, 3]);
        assert!(read(short).await.is_err());
    }
}
