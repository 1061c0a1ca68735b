//! Why linting failed ([`LintError`]).

/// Why linting failed (findings are [`LintError::Findings`]).
#[derive(Debug, thiserror::Error)]
pub enum LintError {
    /// The linter found something (the findings were written out).
    #[error(
        "{findings} finding{} in {linted} migration{} linted",
        if *findings == 1 { "" } else { "s" },
        if *linted == 1 { "" } else { "s" }
    )]
    Findings {
        /// How many findings.
        findings: usize,
        /// How many migrations were linted.
        linted: usize,
    },
    /// A migration file could not be read.
    #[error(
        "{path}: cannot read the migration file (the linter reads it for line numbers and \
         lint-allow exceptions): {source}"
    )]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The engine could not render a migration's SQL.
    #[error("rendering the SQL of {id} ({direction}): {source}")]
    Render {
        /// The migration.
        id: String,
        /// `upgrade` or `downgrade`.
        direction: &'static str,
        /// The engine's error.
        #[source]
        source: Box<notify_db_migrate::Error>,
    },
    /// Squawk refused the PostgreSQL version it is told to lint for.
    #[error("PostgreSQL version for squawk: {0}")]
    SquawkVersion(String),
    /// `--since`: the changed migrations could not be found.
    #[error(transparent)]
    Changed(#[from] crate::changed::GitError),
    /// The server whose version the linter should use could not be asked.
    #[error(
        "reading the server version of {server}: {why} (or give it: --pg-version / NOTIFY_DB_LINT_PG_VERSION)"
    )]
    ServerVersion {
        /// The server (hosts and ports; never a password).
        server: String,
        /// What went wrong.
        why: String,
    },
    /// The findings could not be written out.
    #[error("writing the lint output: {0}")]
    Output(#[source] std::io::Error),
}
