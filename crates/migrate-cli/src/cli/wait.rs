//! `--wait-for-db DURATION`: before a command that connects, wait until the database accepts
//! connections. In compose or Kubernetes the migration job often starts before the server does
//! (dbmate's `--wait`). Only the failures of a server that is not up yet are waited out: the
//! connection refused, `the database system is starting up` (SQLSTATE 57P03), a connection
//! closed or reset before it was set up (a server stopping for a restart) and a host name that
//! does not resolve yet. Anything else (authentication, TLS, a server too old) is left to the
//! command, which fails at once with its usual error.

use std::time::{Duration, Instant};

use notify_db_config::DatabaseUri;
use notify_db_connect::{ConnectUri, error_text};
use tokio_postgres::error::SqlState;

use super::error::CliError;

/// Pause between two attempts.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Why an attempt failed: worth waiting out, or not.
enum Attempt {
    /// The server is not up yet: the cause, to show.
    NotReady(String),
    /// Up, or failing in a way waiting does not fix: the command goes on (and reports it).
    Done,
}

/// Waits until `uri` accepts a connection, at most `within`, with one `tracing` line (stderr in
/// the binaries) per failed attempt. Fails naming the hosts and the last cause, never the
/// password (the URI's `Display` redacts it; the driver's errors do not carry it).
pub(super) async fn wait_for_db(uri: &DatabaseUri, within: Duration) -> Result<(), CliError> {
    let started = Instant::now();
    let deadline = started + within;
    let hosts = hosts(uri);
    let tls = uri.tls()?;
    let config = uri.to_pg_config();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = match tokio::time::timeout(left, tls.connect(&config)).await {
            Ok(Ok(_client)) => Attempt::Done,
            Ok(Err(e)) => classify(&e),
            Err(_) => Attempt::NotReady("no answer before the deadline".to_owned()),
        };
        let cause = match attempt {
            Attempt::Done => {
                if attempts > 1 {
                    tracing::info!(
                        "the database at {hosts} answered after {attempts} attempts ({:.1}s)",
                        started.elapsed().as_secs_f64()
                    );
                }
                return Ok(());
            }
            Attempt::NotReady(cause) => cause,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CliError::DatabaseNotReady {
                hosts,
                waited: within,
                attempts,
                cause,
            });
        }
        tracing::warn!(
            "waiting for the database at {hosts} (attempt {attempts}, {:.0}s left): {cause}",
            left.as_secs_f64()
        );
        tokio::time::sleep(RETRY_EVERY.min(left)).await;
    }
}

/// `host:port` of every host of the URI, comma separated.
fn hosts(uri: &DatabaseUri) -> String {
    uri.hosts()
        .iter()
        .map(|h| format!("{}:{}", h.host, h.port))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether a failed connect is a server that is not up yet.
fn classify(e: &tokio_postgres::Error) -> Attempt {
    if let Some(db) = e.as_db_error() {
        return if *db.code() == SqlState::CANNOT_CONNECT_NOW
            || *db.code() == SqlState::ADMIN_SHUTDOWN
        {
            Attempt::NotReady(error_text(e))
        } else {
            Attempt::Done
        };
    }
    if e.is_closed() {
        return Attempt::NotReady(error_text(e));
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && (is_not_up_yet(io.kind()) || is_dns_failure(io))
        {
            return Attempt::NotReady(error_text(e));
        }
        source = s.source();
    }
    Attempt::Done
}

/// An I/O failure of a server that is not listening yet, or that is going down for a restart
/// (the connection reset or closed in the middle of the startup exchange).
fn is_not_up_yet(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::{
        ConnectionAborted, ConnectionRefused, ConnectionReset, NotConnected, UnexpectedEof,
    };
    matches!(
        kind,
        ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected | UnexpectedEof
    )
}

/// A host name that does not resolve (yet): the resolver's own words, as the standard library
/// and tokio report a failed `getaddrinfo` as an error of kind `Other` / `Uncategorized`.
fn is_dns_failure(e: &std::io::Error) -> bool {
    let text = e.to_string();
    [
        "failed to lookup address information",
        "Name or service not known",
        "Temporary failure in name resolution",
        "No address associated with hostname",
        "nodename nor servname provided",
    ]
    .iter()
    .any(|words| text.contains(words))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolver_failures_are_recognised() {
        let dns = std::io::Error::other(
            "failed to lookup address information: Name or service not known",
        );
        assert!(is_dns_failure(&dns));
        assert!(!is_dns_failure(&std::io::Error::other("permission denied")));
    }

    #[test]
    fn a_server_going_down_is_waited_for_and_a_refused_login_is_not() {
        use std::io::ErrorKind;
        assert!(is_not_up_yet(ErrorKind::ConnectionRefused));
        assert!(is_not_up_yet(ErrorKind::ConnectionReset));
        assert!(is_not_up_yet(ErrorKind::UnexpectedEof));
        assert!(!is_not_up_yet(ErrorKind::PermissionDenied));
        assert!(!is_not_up_yet(ErrorKind::InvalidData));
    }
}
