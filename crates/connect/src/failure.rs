//! What kind of connect failure an error is, and its text.

use tokio_postgres::error::SqlState;

/// Why opening a connection failed, for error counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectFailure {
    /// Refused, unreachable, or reset before the server answered.
    Refused,
    /// The connect timeout (TCP, TLS, auth and session setup together) ran out.
    Timeout,
    /// The server rejected the login (password, pg_hba).
    Auth,
    /// A connection limit refused us: the server's `max_connections` (SQLSTATE 53300), a
    /// role's or database's CONNECTION LIMIT, or a pooler's `max_client_conn`.
    Limit,
    /// TLS negotiation or certificate check failed.
    Tls,
    /// The server is older than PostgreSQL 15.
    TooOld,
    /// Session setup failed, or the server has the wrong role for this bind.
    Setup,
    /// Anything else.
    Other,
}

impl ConnectFailure {
    /// The label value, e.g. `refused`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectFailure::Refused => "refused",
            ConnectFailure::Timeout => "timeout",
            ConnectFailure::Auth => "auth",
            ConnectFailure::Limit => "limit",
            ConnectFailure::Tls => "tls",
            ConnectFailure::TooOld => "too_old",
            ConnectFailure::Setup => "setup",
            ConnectFailure::Other => "other",
        }
    }
}

/// The kind of a failed connect attempt (connection limits are told apart by the caller, which
/// also needs the limit's text).
pub fn classify(e: &tokio_postgres::Error) -> ConnectFailure {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        return if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            ConnectFailure::Auth
        } else {
            ConnectFailure::Other
        };
    }
    let text = e.to_string();
    if text.starts_with("error performing TLS handshake") {
        ConnectFailure::Tls
    } else if text.starts_with("timeout waiting for server") {
        ConnectFailure::Timeout
    } else if text.starts_with("error connecting to server")
        || text.starts_with("error communicating with the server")
        || text.starts_with("connection closed")
    {
        ConnectFailure::Refused
    } else if text.starts_with("authentication error") {
        ConnectFailure::Auth
    } else {
        ConnectFailure::Other
    }
}

/// The error with its source chain (tokio-postgres hides the cause in `source()`).
pub fn error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}
