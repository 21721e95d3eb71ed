//! A loopback TCP proxy that holds every byte for a fixed time in each direction.
//!
//! `slim-conformance run --delay-ms N` puts it between the runner and the target. Every chunk
//! read from one side is written to the other side `N` ms after it was read, in order, while
//! reading goes on: a link with `N` ms of one-way latency and undiminished throughput. It serves
//! two purposes: judging a node as its clients see it across a network, and proving that the
//! runner's verdicts come from events and not from how fast the target happens to answer (a run
//! with and without the delay must give the same verdicts).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// Chunks in flight per direction before reading pauses (backpressure, bounded memory).
const IN_FLIGHT: usize = 1024;

/// A running delay proxy; stopped (with every connection it carries) when dropped.
pub struct DelayProxy {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl DelayProxy {
    /// Listens on an ephemeral loopback port and forwards each accepted connection to `target`,
    /// delaying both directions by `delay`.
    pub async fn start(target: SocketAddr, delay: Duration) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            // Owned here so that stopping the proxy aborts every connection too.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((client, _)) => {
                            connections.spawn(carry(client, target, delay));
                        }
                        Err(_) => break,
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok(Self { addr, task })
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, for a runner target.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The proxy's URL with the scheme of `target` (`https://` stays TLS end to end: the proxy
    /// only moves bytes).
    pub fn url_like(&self, target: &str) -> String {
        let scheme = if target.starts_with("https://") {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Carries one connection until both directions have ended.
async fn carry(client: TcpStream, target: SocketAddr, delay: Duration) {
    let Ok(server) = TcpStream::connect(target).await else {
        return; // the client sees its connection closed, as with an unreachable target
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_rd, client_wr) = client.into_split();
    let (server_rd, server_wr) = server.into_split();
    tokio::join!(
        direction(client_rd, server_wr, delay),
        direction(server_rd, client_wr, delay),
    );
}

/// Reads `from` and writes each chunk to `to` once `delay` has passed since it was read.
async fn direction(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break, // dropping `tx` ends the writer after the last chunk
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_arrive_in_order_and_no_earlier_than_the_delay() {
        let echo = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let echo_addr = echo.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.expect("accept");
            let mut buf = [0u8; 1024];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let delay = Duration::from_millis(50);
        let proxy = DelayProxy::start(echo_addr, delay).await.expect("proxy");
        let mut c = TcpStream::connect(proxy.addr()).await.expect("connect");
        let started = Instant::now();
        let message: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        c.write_all(&message).await.expect("write");
        let mut back = vec![0u8; message.len()];
        c.read_exact(&mut back).await.expect("read back");
        // Through the proxy and back: two delays at least.
        assert!(started.elapsed() >= 2 * delay, "{:?}", started.elapsed());
        assert_eq!(back, message);
        // Closing our side ends the echo's, through the proxy.
        c.shutdown().await.expect("shutdown");
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest))
            .await
            .expect("the proxy passes the end of the stream")
            .expect("read");
        assert_eq!(n, 0);
    }

    #[tokio::test]
    async fn an_unreachable_target_closes_the_client_connection() {
        let closed = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let addr = closed.local_addr().expect("addr");
        drop(closed);
        let proxy = DelayProxy::start(addr, Duration::from_millis(1))
            .await
            .expect("proxy");
        let mut c = TcpStream::connect(proxy.addr()).await.expect("connect");
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest))
            .await
            .expect("closed promptly")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
}
