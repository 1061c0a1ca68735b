//! Why autogenerate failed ([`AutogenError`]).

/// Why autogenerate failed.
#[derive(Debug, thiserror::Error)]
pub enum AutogenError {
    /// A catalog query or a scratch database statement failed.
    #[error("{what}: {}", server_message(source))]
    Sql {
        /// What was being done, naming the database.
        what: String,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },
}

/// The server's message (`SQLSTATE: message`), or the client error when there is none.
fn server_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}
