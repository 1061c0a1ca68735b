//! The sockets under a pooled connection, opened here rather than by tokio-postgres so that the
//! plaintext can be tapped (`tap.rs`) and a CancelRequest can go to the same address with the
//! same TLS. The socket options are tokio-postgres's own for a `Config` (nodelay,
//! tcp_user_timeout, keepalives, a connect timeout per address).

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::task::JoinHandle;
use tokio_postgres::config::Host;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{CancelToken, Client, NoTls};

use crate::tap::{ConnState, Tap, TapTls};
use crate::tls::{Driver, Tls};

/// A TCP or Unix-domain socket to a server.
#[derive(Debug)]
pub enum Socket {
    /// TCP.
    Tcp(TcpStream),
    /// A Unix-domain socket (`host=/run/postgresql`).
    Unix(UnixStream),
}

/// Where a connection's socket went: the CancelRequest goes to the same place.
#[derive(Clone, Debug)]
enum Peer {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// The socket options of one host's `Config`.
#[derive(Clone, Debug)]
struct SocketOptions {
    connect_timeout: Option<Duration>,
    tcp_user_timeout: Option<Duration>,
    keepalive: Option<TcpKeepalive>,
}

impl SocketOptions {
    fn of(config: &tokio_postgres::Config) -> SocketOptions {
        let keepalive = config.get_keepalives().then(|| {
            let mut k = TcpKeepalive::new().with_time(config.get_keepalives_idle());
            if let Some(interval) = config.get_keepalives_interval() {
                k = k.with_interval(interval);
            }
            if let Some(retries) = config.get_keepalives_retries() {
                k = k.with_retries(retries);
            }
            k
        });
        SocketOptions {
            connect_timeout: config.get_connect_timeout().copied(),
            tcp_user_timeout: config.get_tcp_user_timeout().copied(),
            keepalive,
        }
    }

    async fn open(&self, peer: &Peer) -> io::Result<Socket> {
        match peer {
            Peer::Tcp(addr) => {
                let stream = with_timeout(self.connect_timeout, TcpStream::connect(addr)).await?;
                stream.set_nodelay(true)?;
                let sock = SockRef::from(&stream);
                if let Some(t) = self.tcp_user_timeout {
                    sock.set_tcp_user_timeout(Some(t))?;
                }
                if let Some(k) = &self.keepalive {
                    sock.set_tcp_keepalive(k)?;
                }
                Ok(Socket::Tcp(stream))
            }
            Peer::Unix(path) => Ok(Socket::Unix(
                with_timeout(self.connect_timeout, UnixStream::connect(path)).await?,
            )),
        }
    }
}

async fn with_timeout<T>(
    limit: Option<Duration>,
    connect: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, connect)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connection timed out"))?,
        None => connect.await,
    }
}

/// Why a tapped connect failed: the socket, or the driver after it.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// No address of the host accepted a connection.
    Socket(io::Error),
    /// Startup (TLS, authentication) failed.
    Driver(tokio_postgres::Error),
}

/// Sends the PostgreSQL CancelRequest for one connection: to the address its socket went to,
/// with its TLS.
#[derive(Clone)]
pub struct Canceller {
    token: CancelToken,
    peer: Peer,
    options: SocketOptions,
    tls: Tls,
    host: String,
}

impl std::fmt::Debug for Canceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Canceller")
            .field("peer", &self.peer)
            .finish()
    }
}

impl Canceller {
    /// Sends the CancelRequest and waits until the other end closes the cancel connection,
    /// which it does once it has handled the request (as libpq's `PQcancel` waits). The server
    /// does not say whether anything was cancelled.
    pub async fn cancel(&self) -> Result<(), String> {
        let socket = self
            .options
            .open(&self.peer)
            .await
            .map_err(|e| format!("cannot open the cancel connection: {e}"))?;
        let socket = UntilClosed(socket);
        let sent = match &self.tls {
            Tls::Off => self.token.cancel_query_raw(socket, NoTls).await,
            Tls::Rustls(make) => {
                let Ok(connect) =
                    MakeTlsConnect::<UntilClosed>::make_tls_connect(&mut make.clone(), &self.host);
                self.token.cancel_query_raw(socket, connect).await
            }
        };
        sent.map_err(|e| crate::error_text(&e))
    }
}

/// The cancel connection's socket. tokio-postgres shuts the write side down right after the
/// CancelRequest; PgBouncer (1.18 at least) reads that end of stream as the client going away
/// before its request was forwarded and drops the request, so a cancel through PgBouncer never
/// reached the server. Here shutting down means waiting for the other end to close instead:
/// PostgreSQL and PgBouncer both close the connection once the request is handled.
#[derive(Debug)]
struct UntilClosed(Socket);

impl AsyncRead for UntilClosed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for UntilClosed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    /// Reads (and drops) whatever comes until the other end closes the connection.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut scratch = [0u8; 64];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.0).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => continue,
                // A reset is the other end closing too.
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// A connection opened with [`connect_tapped`].
pub(crate) struct Tapped {
    pub(crate) client: Client,
    pub(crate) task: JoinHandle<()>,
    pub(crate) state: Arc<ConnState>,
    pub(crate) canceller: Canceller,
}

/// Opens the one host of `config` (its addresses in order), runs startup over a tapped stream
/// with `tls`, hands the connection to `driver` and arms the tap.
pub(crate) async fn connect_tapped<D: Driver>(
    config: &tokio_postgres::Config,
    tls: &Tls,
    driver: D,
) -> Result<Tapped, ConnectError> {
    let options = SocketOptions::of(config);
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let (peers, host) = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => {
            let addrs = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(ConnectError::Socket)?;
            (addrs.map(Peer::Tcp).collect::<Vec<_>>(), host.clone())
        }
        Some(Host::Unix(dir)) => (
            vec![Peer::Unix(dir.join(format!(".s.PGSQL.{port}")))],
            String::new(),
        ),
        None => {
            return Err(ConnectError::Socket(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no host",
            )));
        }
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host name resolved to nothing");
    for peer in peers {
        let socket = match options.open(&peer).await {
            Ok(s) => s,
            Err(e) => {
                last = e;
                continue;
            }
        };
        let state = Arc::new(ConnState::default());
        let stream = Tap::new(socket, Some(Arc::clone(&state)));
        let (client, task) = match tls {
            Tls::Off => {
                let (client, conn) = config
                    .connect_raw(stream, NoTls)
                    .await
                    .map_err(ConnectError::Driver)?;
                (client, driver.drive(conn))
            }
            Tls::Rustls(make) => {
                let Ok(connect) =
                    MakeTlsConnect::<Tap<Socket>>::make_tls_connect(&mut make.clone(), &host);
                let (client, conn) = config
                    .connect_raw(stream, TapTls(connect))
                    .await
                    .map_err(ConnectError::Driver)?;
                (client, driver.drive(conn))
            }
        };
        // Startup ended with ReadyForQuery and nothing has been sent since: both directions
        // are at a message boundary.
        state.arm();
        let canceller = Canceller {
            token: client.cancel_token(),
            peer,
            options,
            tls: tls.clone(),
            host,
        };
        return Ok(Tapped {
            client,
            task,
            state,
            canceller,
        });
    }
    Err(ConnectError::Socket(last))
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
