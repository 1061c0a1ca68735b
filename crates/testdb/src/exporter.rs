//! A scrape target for a [`crate::Prometheus`] of the harness: a loopback listener that answers
//! every request with a text exposition computed at that moment.

use std::future::Future;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Answers every HTTP request on `listener`, one at a time, with the Prometheus text exposition
/// `body()` returns for it; until the listener fails.
pub async fn serve_exposition<F, Fut>(listener: TcpListener, mut body: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Vec<u8>>,
{
    while let Ok((mut sock, _)) = listener.accept().await {
        // The request itself does not matter: every path is the exposition.
        let mut request = [0u8; 2048];
        let _ = sock.read(&mut request).await;
        let body = body().await;
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            body.len()
        );
        let _ = sock.write_all(head.as_bytes()).await;
        let _ = sock.write_all(&body).await;
    }
}
