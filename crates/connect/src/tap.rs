//! A tap on a connection's plaintext byte stream that follows the protocol's message framing
//! (type byte + 4-byte length) to know the connection's state without a round trip, as libpq's
//! `PQtransactionStatus` does: requests in flight, the transaction status of the last
//! ReadyForQuery, and the SQLSTATEs that mean the server is failing over.
//!
//! A request made only of Close, Flush and Sync messages (what tokio-postgres sends when a
//! statement prepared from a `&str` is dropped) runs nothing: the tap tells it apart from one
//! that does (Parse, Bind, Execute, Query, COPY), so that a connection returned with only such a
//! request in flight still counts as clean. tokio-postgres pipelines requests on one connection
//! and hands each answer to its own request in order, so the next holder's first request just
//! queues behind that CloseComplete + ReadyForQuery.
//!
//! tokio-postgres keeps all of this private. The tap is armed after startup, so that both
//! directions start at a message boundary (the startup packet has no type byte, and the answer
//! to an SSLRequest is one bare byte). Its cost per message is a few byte compares and, for a
//! request or ReadyForQuery, one atomic add; it never allocates.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio_postgres::tls::{ChannelBinding, TlsConnect, TlsStream};

/// The server answered with 25006 (read-only SQL transaction).
const SAW_READ_ONLY: u8 = 1;
/// The server is shutting down or cannot take connections now (57P01, 57P02, 57P03).
const SAW_SHUTDOWN: u8 = 2;
/// The byte stream failed (read or write error, or the server closed it).
const SAW_IO_ERROR: u8 = 4;
/// A statement was cancelled (57014) since the flag was last cleared.
const SAW_CANCELED: u8 = 8;

/// What the tap knows of one connection, shared by the connection task (which writes it) and
/// the pool (which reads it when a connection comes back).
#[derive(Debug, Default)]
pub struct ConnState {
    armed: AtomicBool,
    /// Requests written (Query, Sync) minus ReadyForQuery messages received.
    pending: AtomicI64,
    /// Requests written since the connection was opened (never decreases).
    written: AtomicU64,
    /// Requests answered by a ReadyForQuery since the connection was opened.
    answered: AtomicU64,
    /// The `written` count of the last request that runs something (not only Close/Flush/Sync).
    busy_upto: AtomicU64,
    /// The status byte of the last ReadyForQuery: `I`, `T` or `E` (0 before the first one).
    status: AtomicU8,
    /// `SAW_*` flags.
    saw: AtomicU8,
    /// Set while someone waits on `ready` (so the reader notifies only then).
    watched: AtomicBool,
    ready: Notify,
}

/// The transaction status of the last ReadyForQuery, as `PQtransactionStatus` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxStatus {
    /// Idle, outside a transaction (`I`).
    Idle,
    /// Inside a transaction block (`T`).
    InTransaction,
    /// Inside a failed transaction block (`E`): only ROLLBACK works.
    Failed,
    /// No ReadyForQuery seen since the tap was armed.
    Unknown,
}

impl ConnState {
    /// Starts following the framing: call after startup, before the first request.
    pub fn arm(&self) {
        self.status.store(b'I', Ordering::Relaxed);
        self.armed.store(true, Ordering::Release);
    }

    /// Requests written and not yet answered by a ReadyForQuery (negative: the count is lost,
    /// the connection's state is unknown).
    pub fn pending(&self) -> i64 {
        self.pending.load(Ordering::Acquire)
    }

    /// Requests written since the connection was opened.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// The transaction status of the last ReadyForQuery.
    pub fn tx_status(&self) -> TxStatus {
        match self.status.load(Ordering::Acquire) {
            b'I' => TxStatus::Idle,
            b'T' => TxStatus::InTransaction,
            b'E' => TxStatus::Failed,
            _ => TxStatus::Unknown,
        }
    }

    /// Nothing in flight runs anything: no request at all, or only requests made of Close,
    /// Flush and Sync messages (a dropped statement's Close + Sync) after the last one that did.
    pub fn nothing_running(&self) -> bool {
        match self.pending() {
            0 => true,
            // Requests are answered in order: once the last one that runs something is
            // answered, what remains only closes statements.
            n if n > 0 => {
                let busy_upto = self.busy_upto.load(Ordering::Acquire);
                self.answered.load(Ordering::Acquire) >= busy_upto
            }
            _ => false,
        }
    }

    /// Idle, outside a transaction, nothing running: the one state a connection may be handed
    /// to someone else in (a Close + Sync still in flight is answered before anything the next
    /// holder sends). Two atomic loads in the common case.
    pub fn is_clean(&self) -> bool {
        self.status.load(Ordering::Acquire) == b'I' && self.nothing_running()
    }

    /// The server answered 25006 (read-only SQL transaction) on this connection.
    pub fn saw_read_only(&self) -> bool {
        self.saw.load(Ordering::Acquire) & SAW_READ_ONLY != 0
    }

    /// The server said it is shutting down or refuses connections (57P01, 57P02, 57P03).
    pub fn saw_shutdown(&self) -> bool {
        self.saw.load(Ordering::Acquire) & SAW_SHUTDOWN != 0
    }

    /// The byte stream failed or was closed by the server.
    pub fn saw_io_error(&self) -> bool {
        self.saw.load(Ordering::Acquire) & SAW_IO_ERROR != 0
    }

    /// A statement was cancelled (57014) since [`ConnState::clear_canceled`].
    pub fn saw_canceled(&self) -> bool {
        self.saw.load(Ordering::Acquire) & SAW_CANCELED != 0
    }

    /// Forgets earlier cancellations (before sending a CancelRequest).
    pub fn clear_canceled(&self) {
        self.saw.fetch_and(!SAW_CANCELED, Ordering::AcqRel);
    }

    /// Marks the connection broken (e.g. a request failed with an I/O error).
    pub fn mark_broken(&self) {
        self.saw.fetch_or(SAW_IO_ERROR, Ordering::AcqRel);
    }

    /// Waits up to `limit` for every request in flight to be answered; true when none is.
    pub async fn wait_answered(&self, limit: Duration) -> bool {
        self.watched.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + limit;
        let answered = loop {
            if self.pending.load(Ordering::SeqCst) <= 0 || self.saw_io_error() {
                break self.pending() == 0;
            }
            if tokio::time::timeout_at(deadline, self.ready.notified())
                .await
                .is_err()
            {
                break self.pending() == 0;
            }
        };
        self.watched.store(false, Ordering::SeqCst);
        answered
    }

    /// One frontend message; `busy` says whether the request it belongs to (up to its Sync)
    /// has a message that runs something so far.
    fn on_frontend(&self, kind: u8, busy: &mut bool) {
        match kind {
            b'Q' | b'S' => {
                let n = self.written.fetch_add(1, Ordering::AcqRel) + 1;
                if std::mem::take(busy) || kind == b'Q' {
                    self.busy_upto.store(n, Ordering::Release);
                }
                self.pending.fetch_add(1, Ordering::AcqRel);
            }
            // Close (a statement or portal) and Flush run nothing.
            b'C' | b'H' => {}
            _ => *busy = true,
        }
    }

    fn on_backend(&self, kind: u8, body: &[u8], copy_in: &mut bool) {
        match kind {
            b'Z' => {
                // During copy-in the server ignores Sync: tokio-postgres's copy_in sends one with
                // its Execute (Bind, Execute, Sync ... CopyDone/CopyFail, Sync), so the request
                // that entered copy-in mode counts two Syncs for one ReadyForQuery.
                let answered = if std::mem::take(copy_in) { 2 } else { 1 };
                if let Some(&status) = body.first() {
                    self.status.store(status, Ordering::Release);
                }
                self.answered.fetch_add(answered as u64, Ordering::AcqRel);
                self.pending.fetch_sub(answered, Ordering::SeqCst);
                if self.watched.load(Ordering::SeqCst) {
                    self.ready.notify_one();
                }
            }
            b'G' => *copy_in = true,
            b'E' => {
                let flag = match sqlstate(body) {
                    Some(b"25006") => SAW_READ_ONLY,
                    Some(b"57P01" | b"57P02" | b"57P03") => SAW_SHUTDOWN,
                    Some(b"57014") => SAW_CANCELED,
                    _ => 0,
                };
                if flag != 0 {
                    self.saw.fetch_or(flag, Ordering::AcqRel);
                }
            }
            _ => {}
        }
    }

    fn on_io_error(&self) {
        self.saw.fetch_or(SAW_IO_ERROR, Ordering::AcqRel);
        if self.watched.load(Ordering::SeqCst) {
            self.ready.notify_one();
        }
    }
}

/// The `C` (SQLSTATE) field of an ErrorResponse body (fields: a type byte, then a C string).
fn sqlstate(body: &[u8]) -> Option<&[u8]> {
    let mut rest = body;
    while let Some((&field, tail)) = rest.split_first() {
        if field == 0 {
            return None;
        }
        let end = tail.iter().position(|&b| b == 0)?;
        if field == b'C' {
            return Some(&tail[..end]);
        }
        rest = &tail[end + 1..];
    }
    None
}

/// How many leading body bytes of a message are kept: enough for a ReadyForQuery status and
/// for the severity and SQLSTATE fields that open an ErrorResponse.
const KEPT: usize = 64;

/// Follows the framing of one direction across reads or writes of any size.
#[derive(Debug)]
struct Framer {
    header: [u8; 5],
    header_len: usize,
    left: usize,
    kept: [u8; KEPT],
    kept_len: usize,
}

impl Default for Framer {
    fn default() -> Self {
        Framer {
            header: [0; 5],
            header_len: 0,
            left: 0,
            kept: [0; KEPT],
            kept_len: 0,
        }
    }
}

impl Framer {
    /// Feeds bytes; calls `done(kind, first body bytes)` for every message completed.
    fn feed(&mut self, mut data: &[u8], mut done: impl FnMut(u8, &[u8])) {
        while !data.is_empty() {
            if self.header_len < 5 {
                let n = (5 - self.header_len).min(data.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&data[..n]);
                self.header_len += n;
                data = &data[n..];
                if self.header_len < 5 {
                    return;
                }
                let len = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]);
                self.left = (len as usize).saturating_sub(4);
                self.kept_len = 0;
            } else {
                let n = self.left.min(data.len());
                let keep = n.min(KEPT - self.kept_len);
                self.kept[self.kept_len..self.kept_len + keep].copy_from_slice(&data[..keep]);
                self.kept_len += keep;
                self.left -= n;
                data = &data[n..];
            }
            if self.left == 0 {
                done(self.header[0], &self.kept[..self.kept_len]);
                self.header_len = 0;
            }
        }
    }
}

/// A byte stream whose plaintext is followed by a [`ConnState`] (or passed through untouched
/// when it has none: the socket under a TLS session).
#[derive(Debug)]
pub struct Tap<S> {
    inner: S,
    state: Option<Arc<ConnState>>,
    reads: Framer,
    writes: Framer,
    copy_in: bool,
    /// The request being written has a message that runs something.
    request_busy: bool,
}

impl<S> Tap<S> {
    /// Wraps `inner`; with `state`, its traffic is followed once the state is armed.
    pub fn new(inner: S, state: Option<Arc<ConnState>>) -> Tap<S> {
        Tap {
            inner,
            state,
            reads: Framer::default(),
            writes: Framer::default(),
            copy_in: false,
            request_busy: false,
        }
    }
}

/// The state, once armed.
fn armed(state: &Option<Arc<ConnState>>) -> Option<&ConnState> {
    state.as_deref().filter(|s| s.armed.load(Ordering::Acquire))
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let Tap {
            inner,
            state,
            reads,
            copy_in,
            ..
        } = &mut *self;
        let result = Pin::new(inner).poll_read(cx, buf);
        if let Some(state) = armed(state) {
            match &result {
                Poll::Ready(Ok(())) if buf.filled().len() == before => state.on_io_error(),
                Poll::Ready(Ok(())) => reads.feed(&buf.filled()[before..], |kind, body| {
                    state.on_backend(kind, body, copy_in)
                }),
                Poll::Ready(Err(_)) => state.on_io_error(),
                Poll::Pending => {}
            }
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let Tap {
            inner,
            state,
            writes,
            request_busy,
            ..
        } = &mut *self;
        let result = Pin::new(inner).poll_write(cx, buf);
        if let Some(state) = armed(state) {
            match &result {
                Poll::Ready(Ok(n)) => {
                    writes.feed(&buf[..*n], |kind, _| state.on_frontend(kind, request_busy))
                }
                Poll::Ready(Err(_)) => state.on_io_error(),
                Poll::Pending => {}
            }
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: TlsStream + Unpin> TlsStream for Tap<S> {
    fn channel_binding(&self) -> ChannelBinding {
        self.inner.channel_binding()
    }
}

/// A TLS connector that moves the tap from the socket (ciphertext) to the TLS session
/// (plaintext) when the server accepts TLS.
pub struct TapTls<T>(pub T);

impl<S, T> TlsConnect<Tap<S>> for TapTls<T>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: TlsConnect<Tap<S>> + Send + 'static,
    T::Future: Send,
{
    type Stream = Tap<T::Stream>;
    type Error = T::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Tap<T::Stream>, T::Error>> + Send>>;

    fn connect(self, mut stream: Tap<S>) -> Self::Future {
        let state = stream.state.take();
        let connecting = self.0.connect(stream);
        Box::pin(async move { Ok(Tap::new(connecting.await?, state)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn backend(state: &ConnState, bytes: &[u8], chunk: usize) {
        let mut framer = Framer::default();
        let mut copy_in = false;
        for part in bytes.chunks(chunk) {
            framer.feed(part, |k, b| state.on_backend(k, b, &mut copy_in));
        }
    }

    fn frontend(state: &ConnState, bytes: &[u8], chunk: usize) {
        let mut framer = Framer::default();
        let mut busy = false;
        for part in bytes.chunks(chunk) {
            framer.feed(part, |k, _| state.on_frontend(k, &mut busy));
        }
    }

    #[test]
    fn a_close_and_sync_in_flight_runs_nothing_but_what_follows_it_does() {
        for chunk in [1, 3, 4096] {
            let state = ConnState::default();
            state.arm();
            // A query from a `&str`: Parse + Describe + Sync, then Bind + Execute + Sync.
            let mut sent = message(b'P', b"s1\0SELECT 1\0\0\0");
            sent.extend(message(b'D', b"Ss1\0"));
            sent.extend(message(b'S', b""));
            sent.extend(message(b'B', b"\0s1\0\0\0\0\0\0\0"));
            sent.extend(message(b'E', b"\0\0\0\0\0"));
            sent.extend(message(b'S', b""));
            frontend(&state, &sent, chunk);
            assert!(!state.is_clean(), "chunk {chunk}: running");
            backend(&state, &message(b'Z', b"I"), chunk);
            assert!(
                !state.is_clean(),
                "chunk {chunk}: the Execute is still running"
            );
            backend(&state, &message(b'Z', b"I"), chunk);
            assert!(state.is_clean());
            // The dropped statement: Close + Sync, and a Flush for good measure.
            let mut close = message(b'C', b"Ss1\0");
            close.extend(message(b'H', b""));
            close.extend(message(b'S', b""));
            frontend(&state, &close, chunk);
            assert_eq!(state.pending(), 1);
            assert!(state.nothing_running() && state.is_clean(), "chunk {chunk}");
            // Something that runs, queued behind the close.
            frontend(&state, &message(b'Q', b"SELECT 1\0"), chunk);
            assert!(
                !state.is_clean(),
                "chunk {chunk}: a query queued behind the close"
            );
            backend(&state, &message(b'Z', b"I"), chunk);
            assert!(
                !state.is_clean(),
                "chunk {chunk}: only the close was answered"
            );
            backend(&state, &message(b'Z', b"I"), chunk);
            assert!(state.is_clean() && state.pending() == 0);
            // A close inside a transaction leaves it dirty: the transaction is open.
            frontend(&state, &message(b'Q', b"BEGIN\0"), chunk);
            backend(&state, &message(b'Z', b"T"), chunk);
            frontend(&state, &close, chunk);
            assert!(state.nothing_running() && !state.is_clean());
        }
    }

    #[test]
    fn counts_requests_and_ready_for_query_across_any_split() {
        for chunk in [1, 2, 3, 7, 4096] {
            let state = ConnState::default();
            state.arm();
            let mut sent = message(b'Q', b"BEGIN\0");
            sent.extend(message(b'P', b"\0SELECT 1\0\0\0"));
            sent.extend(message(b'S', b""));
            frontend(&state, &sent, chunk);
            assert_eq!(state.pending(), 2, "chunk {chunk}");
            let mut got = message(b'C', b"BEGIN\0");
            got.extend(message(b'Z', b"T"));
            backend(&state, &got, chunk);
            assert_eq!(state.pending(), 1);
            assert_eq!(state.tx_status(), TxStatus::InTransaction);
            let mut err = message(b'E', b"SERROR\0VERROR\0C25P02\0Mcurrent transaction\0\0");
            err.extend(message(b'Z', b"E"));
            backend(&state, &err, chunk);
            assert_eq!(state.pending(), 0);
            assert_eq!(state.tx_status(), TxStatus::Failed);
            assert!(!state.is_clean());
            assert!(!state.saw_read_only());
        }
    }

    #[test]
    fn a_copy_in_counts_its_ignored_sync() {
        let state = ConnState::default();
        state.arm();
        let mut sent = message(b'B', b"\0\0\0\0\0\0\0");
        sent.extend(message(b'E', b"\0\0\0\0\0"));
        sent.extend(message(b'S', b""));
        frontend(&state, &sent, 5);
        let mut framer = Framer::default();
        let mut copy_in = false;
        let mut read = |bytes: Vec<u8>| {
            framer.feed(&bytes, |k, b| state.on_backend(k, b, &mut copy_in));
        };
        read(message(b'2', b""));
        read(message(b'G', b"\0\0\0"));
        assert_eq!(state.pending(), 1, "copy-in is a request in flight");
        let mut rest = message(b'd', b"1\n");
        rest.extend(message(b'c', b""));
        rest.extend(message(b'S', b""));
        frontend(&state, &rest, 3);
        read(message(b'C', b"COPY 1\0"));
        read(message(b'Z', b"I"));
        assert_eq!(state.pending(), 0);
        assert!(state.is_clean());
    }

    #[test]
    fn failover_and_cancel_codes_are_flagged() {
        let state = ConnState::default();
        state.arm();
        backend(&state, &message(b'E', b"SERROR\0C25006\0\0"), 4);
        assert!(state.saw_read_only() && !state.saw_shutdown());
        backend(&state, &message(b'E', b"SFATAL\0VFATAL\0C57P01\0\0"), 64);
        assert!(state.saw_shutdown());
        backend(&state, &message(b'E', b"SERROR\0C57014\0\0"), 1);
        assert!(state.saw_canceled());
        state.clear_canceled();
        assert!(!state.saw_canceled() && state.saw_read_only());
        assert_eq!(sqlstate(b"Mno code\0\0"), None);
    }
}
