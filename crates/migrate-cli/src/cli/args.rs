//! The command line's arguments: the global options ([`MigrateCli`]) and the commands
//! ([`Command`]).

use std::path::PathBuf;
use std::time::Duration;

use super::lint::LintArgs;

/// Arguments of the migration commands.
#[derive(Debug, clap::Parser)]
#[command(
    name = "migrate",
    about = "Run or inspect notify-db migrations (Alembic-compatible)"
)]
pub struct MigrateCli {
    /// Database URI (default: DATABASE_MIGRATION_URI, else SQLALCHEMY_DATABASE_URI).
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// Print the SQL an upgrade or downgrade would run, without connecting.
    #[arg(long, global = true)]
    pub sql: bool,
    /// With --sql: the revision to start from (default: base for upgrade, head for downgrade).
    #[arg(long, global = true)]
    pub from: Option<String>,
    /// lock_timeout for migrations (e.g. 1s, 500ms; default from the settings).
    #[arg(long, global = true, value_parser = humantime::parse_duration)]
    pub lock_timeout: Option<Duration>,
    /// statement_timeout for migrations that set none of their own (e.g. 2h; 0: none, the
    /// default from the settings).
    #[arg(long, global = true, value_parser = humantime::parse_duration)]
    pub statement_timeout: Option<Duration>,
    /// Attempts in all at a migration that hits lock timeouts (default from the settings,
    /// `[migrations] max_attempts`).
    #[arg(long, global = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: Option<u32>,
    /// Delay between attempts (default from the settings, `[migrations] retry_delay`).
    #[arg(long, global = true, value_parser = humantime::parse_duration)]
    pub retry_delay: Option<Duration>,
    /// Give up waiting for another runner's advisory lock after this long (default: wait).
    #[arg(long, global = true, value_parser = humantime::parse_duration)]
    pub advisory_lock_wait: Option<Duration>,
    /// Run even if an applied migration's SQL changed since it was applied.
    #[arg(long, global = true)]
    pub allow_changed_checksums: bool,
    /// Before a command that connects, wait up to this long (e.g. 60s) for the database to
    /// accept connections (refused, starting up, host not resolving yet).
    #[arg(long, global = true, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub wait_for_db: Option<Duration>,
    /// The command (default: upgrade to head).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// One migration command.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Upgrade to head, or to TARGET (a revision id, a unique prefix like 0004, or +N).
    Upgrade {
        /// Target revision (default: head).
        target: Option<String>,
    },
    /// Downgrade one step, to TARGET (a revision id or `base`), or -N steps.
    Downgrade {
        /// Target revision, `base` or -N (default: -1).
        #[arg(allow_hyphen_values = true)]
        target: Option<String>,
    },
    /// Print the revision the database is at.
    Current,
    /// List the migrations with applied/pending marks and timestamps.
    History,
    /// Write the next numbered migration file from a template, or with --autogenerate from the
    /// difference between the migrations' head and a desired schema.
    Revision {
        /// What the migration does (becomes the file name's slug; with --baseline, only the
        /// file's comment).
        #[arg(short = 'm', long, required_unless_present = "baseline")]
        message: Option<String>,
        /// Write the migration(s) from a schema difference (needs --from-db or --from-sql).
        #[arg(long, requires = "desired")]
        autogenerate: bool,
        /// The desired schema: a development database (URI); with --baseline, the database at
        /// the revision the set continues from.
        #[arg(long, group = "desired")]
        from_db: Option<String>,
        /// The desired schema: an SQL file, applied to a scratch database.
        #[arg(
            long,
            group = "desired",
            requires = "autogenerate",
            value_name = "FILE"
        )]
        from_sql: Option<PathBuf>,
        /// Write the set's baseline from --from-db: id = its revision, SQL = its schema
        /// (pg_dump, without alembic_version, the journal and pg_dump's session preamble).
        #[arg(long, requires = "from_db", conflicts_with = "autogenerate")]
        baseline: bool,
        /// With --baseline: also the rows of these (reference) tables, as INSERTs.
        #[arg(long, value_name = "TABLE", num_args = 1.., requires = "baseline")]
        data: Vec<String>,
    },
    /// Print `yes` when migrations are pending, `no` otherwise.
    Check {
        /// Exit with status 1 when migrations are pending (0 otherwise).
        #[arg(long)]
        exit_code: bool,
    },
    /// Fail when the head file does not match the set's head (two branches added the same number).
    CheckHead,
    /// Stairway test on an EMPTY database: each migration upgraded, downgraded (the schema must
    /// be as before) and upgraded again (as after the first upgrade). Leaves it at head.
    TestDowngrade {
        /// The reference's shape instead: upgrade to head, downgrade to REV, upgrade to head.
        #[arg(long, value_name = "REV", conflicts_with = "since")]
        to: Option<String>,
        /// Only the migrations changed since this git ref (and the ones after them).
        #[arg(long, value_name = "GIT_REF")]
        since: Option<String>,
    },
    /// Check the configured servers, settings and migration state the way the service would
    /// use them (one line per check, a suggested fix under every failure).
    Doctor {
        /// Replica lag (seconds) above which the lag check fails.
        #[arg(long, default_value_t = 30.0)]
        max_lag_seconds: f64,
        /// Print the outcome, the migration lock and the journal as Prometheus metrics instead
        /// of the report (for a textfile collector).
        #[arg(long)]
        metrics: bool,
    },
    /// Write REV into alembic_version without running anything (as Alembic's stamp).
    Stamp {
        /// A revision of the set (or a unique prefix), `head` or `base`.
        revision: String,
        /// Stamp a revision this set does not know (e.g. to hand the database back to Alembic).
        #[arg(long)]
        force: bool,
    },
    /// Compare the database's schema with the one the migrations produce at its revision
    /// (rebuilt in a scratch database). Read-only on the database. Exit status: 0 equal, 1
    /// drift, 2 cannot tell.
    Drift {
        /// Output: text (grouped by object), json, or github (workflow annotations).
        #[arg(long, value_enum, default_value_t = crate::drift::Format::Text)]
        format: crate::drift::Format,
        /// Server for the scratch database (default: the database's own server; the role needs
        /// CREATEDB there).
        #[arg(long, value_name = "URL")]
        scratch_url: Option<String>,
    },
    /// Lint the migrations' SQL, up and down (squawk's rules and ours; see --help).
    #[command(after_long_help = crate::lint::HELP)]
    Lint(LintArgs),
    /// Write one linked migration (`ID.up.sql`, or `ID.rs` in a compiled set) per revision of
    /// Alembic's offline SQL (`alembic upgrade --sql A:B`, `flask db upgrade --sql`); A must be
    /// the set's head (or base).
    ImportAlembicSql {
        /// The offline SQL file.
        file: PathBuf,
    },
}
