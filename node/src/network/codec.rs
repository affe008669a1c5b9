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
    max_request_bytes: usize,
    max_response_bytes: usize,
    _types: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> FrameCodec<Req, Resp> {
    /// A codec refusing frames over `max_frame_bytes` either way.
    pub fn new(max_frame_bytes: usize) -> Self {
        FrameCodec::with_limits(max_frame_bytes, max_frame_bytes)
    }

    /// A codec with its own limit for requests (what a server reads from anyone who
    /// connects) and for responses (what it reads back from whom it asked).
    pub fn with_limits(max_request_bytes: usize, max_response_bytes: usize) -> Self {
        FrameCodec { max_request_bytes, max_response_bytes, _types: PhantomData }
    }
}

impl<Req, Resp> Clone for FrameCodec<Req, Resp> {
    fn clone(&self) -> Self {
        FrameCodec::with_limits(self.max_request_bytes, self.max_response_bytes)
    }
}

/// A node-wide budget of bytes held by inbound client requests, from the moment a
/// request's length prefix is read until its answer is sent: a client (or many) can make
/// a node hold at most this much request data, however many streams they open.
#[derive(Clone)]
pub struct ByteBudget {
    used: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    max: usize,
}

/// Bytes taken from a [`ByteBudget`], given back on drop.
#[derive(Debug)]
pub struct Held {
    used: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    bytes: usize,
}

impl ByteBudget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Self {
        ByteBudget { used: Default::default(), max }
    }

    /// Take `bytes`, or None if that would pass the budget.
    pub fn try_take(&self, bytes: usize) -> Option<Held> {
        use std::sync::atomic::Ordering::AcqRel;
        let ok = self.used.fetch_update(AcqRel, std::sync::atomic::Ordering::Acquire, |u| {
            u.checked_add(bytes).filter(|n| *n <= self.max)
        });
        ok.ok().map(|_| Held { used: self.used.clone(), bytes })
    }

    /// Bytes held now.
    #[cfg(test)]
    pub fn used(&self) -> usize {
        self.used.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.used.fetch_sub(self.bytes, std::sync::atomic::Ordering::AcqRel);
    }
}

/// An inbound request with the budget its bytes hold (none on the sending side).
#[derive(Debug)]
pub struct Metered<T> {
    /// The request.
    pub value: T,
    /// The bytes it holds until its answer is sent.
    pub held: Option<Held>,
}

impl<T> Metered<T> {
    /// A request to send (it holds nothing of ours).
    pub fn outbound(value: T) -> Self {
        Metered { value, held: None }
    }
}

/// The client-API codec: requests are read within the node's [`ByteBudget`] (a request
/// that does not fit is refused at once, a retriable failure for the client) and carry
/// their share of it until answered.
#[derive(Clone)]
pub struct MeteredCodec<Req, Resp> {
    inner: FrameCodec<Req, Resp>,
    budget: Option<ByteBudget>,
}

impl<Req, Resp> MeteredCodec<Req, Resp> {
    /// `inner`'s limits, with inbound requests charged to `budget` (None: uncharged, for
    /// a process that serves no requests).
    pub fn new(inner: FrameCodec<Req, Resp>, budget: Option<ByteBudget>) -> Self {
        MeteredCodec { inner, budget }
    }
}

impl<Req, Resp> request_response::Codec for MeteredCodec<Req, Resp>
where
    Req: Serialize + DeserializeOwned + Send + Sync + 'static,
    Resp: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Protocol = StreamProtocol;
    type Request = Metered<Req>;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Metered<Req>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let len = read_len(io, self.inner.max_request_bytes).await?;
        let held = match &self.budget {
            Some(b) => Some(b.try_take(len).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    "node is holding its client-request budget; retry later",
                )
            })?),
            None => None,
        };
        let value = read_body(io, len).await?;
        Ok(Metered { value, held })
    }

    async fn read_response<T>(&mut self, p: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.inner.read_response(p, io).await
    }

    async fn write_request<T>(&mut self, p: &StreamProtocol, io: &mut T, req: Metered<Req>) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.inner.write_request(p, io, req.value).await
    }

    async fn write_response<T>(&mut self, p: &StreamProtocol, io: &mut T, res: Resp) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.inner.write_response(p, io, res).await
    }
}

/// The most a frame's body buffer reserves before its bytes arrive: a peer that claims
/// a large frame and sends little costs this, not the claimed length.
const READ_RESERVE_BYTES: usize = 64 << 10;

pub(super) async fn read_msg<T, M>(io: &mut T, max: usize) -> io::Result<M>
where
    T: AsyncRead + Unpin + Send,
    M: DeserializeOwned,
{
    let len = read_len(io, max).await?;
    read_body(io, len).await
}

/// Read a frame's length prefix and check it against `max` before anything is allocated.
async fn read_len<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<usize> {
    let mut prefix = [0u8; 4];
    io.read_exact(&mut prefix).await?;
    frame::body_len(prefix, max).map_err(invalid)
}

/// Read a `len`-byte frame body and decode it.
async fn read_body<T, M>(io: &mut T, len: usize) -> io::Result<M>
where
    T: AsyncRead + Unpin + Send,
    M: DeserializeOwned,
{
    // Grow with what arrives instead of allocating the claimed length up front.
    let mut contents = Vec::with_capacity(len.min(READ_RESERVE_BYTES));
    let got = io.take(len as u64).read_to_end(&mut contents).await?;
    if got < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("frame ended after {got} of {len} bytes"),
        ));
    }
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
        read_msg(io, self.max_request_bytes).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_msg(io, self.max_response_bytes).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Req) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_msg(io, &req, self.max_request_bytes).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, res: Resp) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_msg(io, &res, self.max_response_bytes).await
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

    #[tokio::test]
    async fn metered_requests_hold_the_budget_until_dropped_and_are_refused_past_it() {
        let mut frame = Cursor::new(Vec::new());
        Client::new(1 << 20).write_request(&P, &mut frame, ClientRequest::ListTopics).await.unwrap();
        let bytes = frame.into_inner();
        let body = bytes.len() - 4;
        let budget = ByteBudget::new(body * 2);
        let mut codec = MeteredCodec::new(Client::new(1 << 20), Some(budget.clone()));
        let a = codec.read_request(&P, &mut Cursor::new(bytes.clone())).await.unwrap();
        let b = codec.read_request(&P, &mut Cursor::new(bytes.clone())).await.unwrap();
        assert_eq!(budget.used(), body * 2);
        let e = codec.read_request(&P, &mut Cursor::new(bytes.clone())).await.err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::OutOfMemory);
        drop(a);
        assert_eq!(budget.used(), body);
        assert!(codec.read_request(&P, &mut Cursor::new(bytes)).await.is_ok());
        drop(b);
    }

    #[tokio::test]
    async fn requests_and_responses_have_their_own_limits() {
        let codec = Client::with_limits(64, 1 << 20);
        let mut buf = Cursor::new(Vec::new());
        let big = ClientRequest::DescribeTopic { name: "x".repeat(100) };
        assert!(codec.clone().write_request(&P, &mut buf, big.clone()).await.is_err());
        let mut ok = Cursor::new(Vec::new());
        Client::new(1 << 20).write_request(&P, &mut ok, big).await.unwrap();
        let e = codec.clone().read_request(&P, &mut Cursor::new(ok.into_inner())).await.unwrap_err();
        assert!(e.to_string().contains("exceeds the limit"), "{e}");
    }

    #[tokio::test]
    async fn a_claimed_length_is_not_allocated_before_its_bytes_arrive() {
        // 16 MiB claimed, 3 bytes sent: a clear end-of-input error (the buffer grew
        // with the 3 bytes; the hostile-client test measures the node's memory).
        let mut claim = (16u32 << 20).to_be_bytes().to_vec();
        claim.extend_from_slice(&[frame::WIRE_VERSION, 0, 0]);
        let e = Client::new(32 << 20).read_request(&P, &mut Cursor::new(claim)).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
    }
}
