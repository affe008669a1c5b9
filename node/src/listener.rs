//! The TCP sockets the node serves outside libp2p (the HTTP admin port, the Kafka
//! listener): bound before the node opens its store, so a taken port fails the start
//! before anything is written. Owns binding only: what is served, and each listener's
//! error type, stay with its module.

use std::net::SocketAddr;
use tokio::net::TcpListener;

/// A bound TCP socket and the address it got.
#[derive(Debug)]
pub struct BoundTcp {
    listener: TcpListener,
    addr: SocketAddr,
}

impl BoundTcp {
    /// Bind `addr` and learn the actual address (the port chosen when 0 was asked for).
    pub async fn bind(addr: SocketAddr) -> std::io::Result<BoundTcp> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        Ok(BoundTcp { listener, addr })
    }

    /// The address bound (the actual port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The socket to accept on, and its address.
    pub fn into_parts(self) -> (TcpListener, SocketAddr) {
        (self.listener, self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn port_zero_reports_the_port_chosen_and_a_taken_port_fails() {
        let bound = BoundTcp::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = bound.local_addr();
        assert_ne!(addr.port(), 0);
        let err = BoundTcp::bind(addr).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        let (listener, same) = bound.into_parts();
        assert_eq!(listener.local_addr().unwrap(), same);
    }
}
