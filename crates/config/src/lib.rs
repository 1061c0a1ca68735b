//! Settings for notify-db: GOV.UK Notify's environment variables layered over `config/*.toml`.
//!
//! Files: `config/default.toml`, then `config/{NOTIFY_ENVIRONMENT}.toml` (`development` by
//! default). Environment variables (`SQLALCHEMY_DATABASE_URI`, `DATABASE_STATEMENT_TIMEOUT_MS`,
//! ...) win over files. An empty environment variable counts as unset. Durations in files are
//! human readable (`"30s"`, `"5m"`). Passwords never appear in `Debug`, `Display` or errors.

#![deny(missing_docs)]

mod error;
mod file;
mod migrations;
mod redact;
mod uri;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::ConfigError;
pub use migrations::MigrationSettings;
pub use uri::{DatabaseUri, HostPort, SslMode};

use file::{FileValue, Layer};

/// Environment variable: primary (read/write) database URI.
const VAR_URI: &str = "SQLALCHEMY_DATABASE_URI";
/// Environment variable: bulk / replica database URI.
const VAR_URI_BULK: &str = "SQLALCHEMY_DATABASE_URI_BULK";
/// Oldest supported server, as `server_version_num` (PostgreSQL 15): pools and migrations refuse
/// an older one.
pub const MIN_SERVER_VERSION_NUM: i64 = 150_000;
/// Environment variable: `SQLALCHEMY_DATABASE_URI` goes through a transaction pooler.
pub const VAR_URI_POOLER: &str = "DATABASE_URI_TRANSACTION_POOLER";
/// Environment variable: `SQLALCHEMY_DATABASE_URI_BULK` goes through a transaction pooler.
pub const VAR_URI_BULK_POOLER: &str = "DATABASE_URI_BULK_TRANSACTION_POOLER";
/// Environment variable: a direct (not pooled) primary URI for migrations.
pub const VAR_MIGRATION_URI: &str = "DATABASE_MIGRATION_URI";
/// Environment variable: a file holding the primary's password, read for every new connection.
pub const VAR_PASSWORD_FILE: &str = "DATABASE_PASSWORD_FILE";
/// Environment variable: a file holding the bulk bind's password (else [`VAR_PASSWORD_FILE`]).
pub const VAR_PASSWORD_FILE_BULK: &str = "DATABASE_PASSWORD_FILE_BULK";
/// Environment variable: warn about a checkout held longer than this (ms; `0`: never).
pub const VAR_LONG_HOLD_WARNING: &str = "DATABASE_LONG_HOLD_WARNING_MS";
/// URI used in development and test when none is configured.
const DEV_DEFAULT_URI: &str = "postgresql://postgres@127.0.0.1:5432/notification_api";
/// 20 minutes: Notify's statement timeout default (1200000 ms).
const TWENTY_MINUTES: Duration = Duration::from_millis(1_200_000);

/// All settings of the database layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `development`, `test` or `production` (from `NOTIFY_ENVIRONMENT`).
    pub environment: String,
    /// Primary, read/write database (`SQLALCHEMY_DATABASE_URI`).
    pub primary: DatabaseUri,
    /// Bulk / read-replica database (`SQLALCHEMY_DATABASE_URI_BULK`, else the primary).
    pub bulk: DatabaseUri,
    /// True when `bulk` fell back to the primary URI.
    pub bulk_is_fallback: bool,
    /// Which URIs go through a transaction pooler (PgBouncer `pool_mode = transaction`).
    pub pooler: PoolerSettings,
    /// A direct primary URI for migrations (`DATABASE_MIGRATION_URI`); see
    /// [`Settings::migration_uri`].
    pub migration_uri: Option<DatabaseUri>,
    /// Files the password is read from for every new connection, instead of the URI's.
    pub password_files: PasswordFiles,
    /// Per-connection session settings.
    pub session: SessionSettings,
    /// Connection pool settings (per bind, per process).
    pub pool: PoolSettings,
    /// Migration runner settings.
    pub migrations: MigrationSettings,
}

/// Which URIs reach PostgreSQL through a transaction pooler. Through one, a pool sends no startup
/// `options` and no session `SET`s (they would land on a server connection other clients get
/// next); it checks instead that the server enforces the session settings itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolerSettings {
    /// `SQLALCHEMY_DATABASE_URI` goes through one (`DATABASE_URI_TRANSACTION_POOLER`).
    pub default: bool,
    /// `SQLALCHEMY_DATABASE_URI_BULK` goes through one (`DATABASE_URI_BULK_TRANSACTION_POOLER`;
    /// when bulk falls back to the primary URI, the primary's flag).
    pub bulk: bool,
}

/// Where each bind reads its password from for every new connection (a Kubernetes or Docker
/// secret that is rotated in place). `None`: the URI's password.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswordFiles {
    /// The primary's (`DATABASE_PASSWORD_FILE`, `database.password_file`).
    pub default: Option<PasswordFile>,
    /// The bulk bind's (`DATABASE_PASSWORD_FILE_BULK`, `database.bulk_password_file`; unset or
    /// empty: the primary's, as the bulk URI falls back to the primary's).
    pub bulk: Option<PasswordFile>,
}

/// A password file and the setting that named it (for errors: the variable or file key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordFile {
    /// The file; its content, less one trailing newline, is the password.
    pub path: PathBuf,
    /// Where it was configured: `DATABASE_PASSWORD_FILE`, or `` `database.password_file` in <file> ``.
    pub setting: String,
}

/// Session settings applied on every new physical connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// `statement_timeout` on a primary (`DATABASE_STATEMENT_TIMEOUT_MS`, default 1200000 ms).
    pub statement_timeout_primary: Duration,
    /// `statement_timeout` on a replica (`DATABASE_STATEMENT_TIMEOUT_REPLICA_MS`, default 1200000 ms).
    pub statement_timeout_replica: Duration,
    /// `max_parallel_workers_per_gather` on a primary (`DATABASE_MAX_PARALLEL_WORKERS`).
    pub max_parallel_workers_primary: Option<u32>,
    /// `max_parallel_workers_per_gather` on a replica (`DATABASE_MAX_PARALLEL_WORKERS_REPLICA`).
    pub max_parallel_workers_replica: Option<u32>,
    /// Parallel workers default to 0 where not set (`DATABASE_DEFAULT_DISABLE_PARALLEL_QUERY`).
    pub default_disable_parallel_query: bool,
}

impl SessionSettings {
    /// Effective value for a role: configured value, else Some(0) when default_disable_parallel_query, else None.
    pub fn parallel_workers_for(&self, in_recovery: bool) -> Option<u32> {
        let configured = if in_recovery {
            self.max_parallel_workers_replica
        } else {
            self.max_parallel_workers_primary
        };
        configured.or(self.default_disable_parallel_query.then_some(0))
    }

    /// The `statement_timeout` for a replica (`in_recovery`) or a primary.
    pub fn statement_timeout_for(&self, in_recovery: bool) -> Duration {
        if in_recovery {
            self.statement_timeout_replica
        } else {
            self.statement_timeout_primary
        }
    }
}

/// Connection pool settings, per bind and per process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Connections per bind (`SQLALCHEMY_POOL_SIZE`, default 5).
    pub size: usize,
    /// How long to wait for a free connection before "pool exhausted" (30 s).
    pub wait_timeout: Duration,
    /// Maximum connection lifetime before it is recycled (300 s).
    pub max_lifetime: Duration,
    /// TCP connect timeout per host (5 s).
    pub connect_timeout: Duration,
    /// TCP user timeout (5000 ms).
    pub tcp_user_timeout: Duration,
    /// Sent as startup option `-c statement_timeout=...` (1200000 ms).
    pub startup_statement_timeout: Duration,
    /// `application_name` when the URI sets none (default `notify-db`).
    pub application_name: String,
    /// How long a failed bulk host is skipped (10 s).
    pub host_backoff: Duration,
    /// An idle connection not checked out for this long is pinged (an empty query, waiting at
    /// most `connect_timeout`) before it is handed out, and replaced if the server does not
    /// answer (30 s; `0s`: at every checkout).
    pub ping_idle_after: Duration,
    /// A bulk replica whose replay lag is over this gets no new connections; when all are,
    /// bulk falls back to the primary (30 s; `0s` turns lag-aware routing off). Only when the
    /// bulk URI is set and lists several hosts.
    pub max_replica_lag: Duration,
    /// How often each bulk host's lag is sampled for that routing (1 s).
    pub replica_lag_interval: Duration,
    /// A checkout held longer than this is logged once as a warning, with its request or job
    /// (`DATABASE_LONG_HOLD_WARNING_MS`, `pool.long_hold_warning`; 30 s; `0s`: never).
    pub long_hold_warning: Duration,
}

impl Settings {
    /// Loads from the process environment and the `config` directory (`NOTIFY_CONFIG_DIR`, else
    /// the nearest `config/default.toml` found walking up from the current directory).
    pub fn from_env() -> Result<Settings, ConfigError> {
        let env = |name: &str| std::env::var(name).ok();
        let dir = match env("NOTIFY_CONFIG_DIR").filter(|d| !d.trim().is_empty()) {
            Some(dir) => Some(PathBuf::from(dir)),
            None => find_config_dir(),
        };
        Settings::load(dir.as_deref(), &env)
    }

    /// Loads from the files in `config_dir` (built-in defaults only when `None`) and the
    /// environment given by `env` (a variable lookup, so tests need not touch the process env).
    pub fn load(
        config_dir: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let src = Sources::new(config_dir, env)?;
        let environment = src.environment.clone();

        let primary = match src.uri(VAR_URI, "database.uri")? {
            Some(uri) => uri,
            None if environment == "production" => {
                return Err(ConfigError::Missing {
                    variable: VAR_URI.to_owned(),
                    environment,
                });
            }
            None => DatabaseUri::parse(DEV_DEFAULT_URI, "the built-in development URI")?,
        };
        let (bulk, bulk_is_fallback) = match src.uri(VAR_URI_BULK, "database.bulk_uri")? {
            Some(uri) => (uri, false),
            None => (primary.clone(), true),
        };

        let default_pooled = src
            .boolean(VAR_URI_POOLER, "database.uri_transaction_pooler")?
            .unwrap_or(false);
        // Read (and checked) also when bulk falls back to the primary URI, which then decides.
        let bulk_pooled = src
            .boolean(VAR_URI_BULK_POOLER, "database.bulk_uri_transaction_pooler")?
            .unwrap_or(false);
        let pooler = PoolerSettings {
            default: default_pooled,
            bulk: if bulk_is_fallback {
                default_pooled
            } else {
                bulk_pooled
            },
        };
        let migration_uri = src.uri(VAR_MIGRATION_URI, "database.migration_uri")?;
        let default_password_file = src.path(VAR_PASSWORD_FILE, "database.password_file");
        let password_files = PasswordFiles {
            bulk: src
                .path(VAR_PASSWORD_FILE_BULK, "database.bulk_password_file")
                .or_else(|| default_password_file.clone()),
            default: default_password_file,
        };

        let statement_timeout_primary = src
            .duration(
                Some("DATABASE_STATEMENT_TIMEOUT_MS"),
                "session.statement_timeout_primary",
            )?
            .unwrap_or(TWENTY_MINUTES);
        let session = SessionSettings {
            statement_timeout_primary,
            statement_timeout_replica: src
                .duration(
                    Some("DATABASE_STATEMENT_TIMEOUT_REPLICA_MS"),
                    "session.statement_timeout_replica",
                )?
                .unwrap_or(TWENTY_MINUTES),
            max_parallel_workers_primary: src.count(
                Some("DATABASE_MAX_PARALLEL_WORKERS"),
                "session.max_parallel_workers_primary",
                0,
            )?,
            max_parallel_workers_replica: src.count(
                Some("DATABASE_MAX_PARALLEL_WORKERS_REPLICA"),
                "session.max_parallel_workers_replica",
                0,
            )?,
            default_disable_parallel_query: src
                .boolean(
                    "DATABASE_DEFAULT_DISABLE_PARALLEL_QUERY",
                    "session.default_disable_parallel_query",
                )?
                .unwrap_or(false),
        };

        let pool = PoolSettings {
            size: src
                .count(Some("SQLALCHEMY_POOL_SIZE"), "pool.size", 1)?
                .map_or(5, |n| n as usize),
            wait_timeout: src.file_duration("pool.wait_timeout", Duration::from_secs(30)),
            max_lifetime: src.file_duration("pool.max_lifetime", Duration::from_secs(300)),
            connect_timeout: src.file_duration("pool.connect_timeout", Duration::from_secs(5)),
            tcp_user_timeout: src
                .file_duration("pool.tcp_user_timeout", Duration::from_millis(5000)),
            startup_statement_timeout: src
                .file_duration("pool.startup_statement_timeout", TWENTY_MINUTES),
            application_name: src
                .file_string("pool.application_name")
                .unwrap_or_else(|| "notify-db".to_owned()),
            host_backoff: src.file_duration("pool.host_backoff", Duration::from_secs(10)),
            ping_idle_after: src.file_duration("pool.ping_idle_after", Duration::from_secs(30)),
            max_replica_lag: src.file_duration("pool.max_replica_lag", Duration::from_secs(30)),
            replica_lag_interval: src
                .file_duration("pool.replica_lag_interval", Duration::from_secs(1)),
            long_hold_warning: src
                .duration(Some(VAR_LONG_HOLD_WARNING), "pool.long_hold_warning")?
                .unwrap_or(Duration::from_secs(30)),
        };

        // The built-in defaults, each overridden by the files when they set it.
        let mut migrations = MigrationSettings::default();
        if let Some(v) = src.duration(None, "migrations.lock_timeout")? {
            migrations.lock_timeout = v;
        }
        if let Some(v) = src.duration(None, "migrations.statement_timeout")? {
            migrations.statement_timeout = Some(v).filter(|d| !d.is_zero());
        }
        if let Some(v) = src.count(None, "migrations.max_attempts", 1)? {
            migrations.max_attempts = v;
        }
        if let Some(v) = src.duration(None, "migrations.retry_delay")? {
            migrations.retry_delay = v;
        }
        if let Some(v) = src.duration(None, "migrations.advisory_lock_wait")? {
            migrations.advisory_lock_wait = Some(v);
        }

        Ok(Settings {
            environment,
            primary,
            bulk,
            bulk_is_fallback,
            pooler,
            migration_uri,
            password_files,
            session,
            pool,
            migrations,
        })
    }
}

impl Settings {
    /// The URI migrations connect to: `DATABASE_MIGRATION_URI` when set, else the primary URI,
    /// unless that goes through a transaction pooler: then an error naming the variable to set.
    pub fn migration_uri(&self) -> Result<&DatabaseUri, ConfigError> {
        match &self.migration_uri {
            Some(uri) => Ok(uri),
            None if self.pooler.default => Err(ConfigError::MigrationThroughPooler {
                variable: VAR_URI.to_owned(),
                flag: VAR_URI_POOLER.to_owned(),
                migration_variable: VAR_MIGRATION_URI.to_owned(),
            }),
            None => Ok(&self.primary),
        }
    }
}

impl fmt::Display for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let workers = |w: Option<u32>| w.map_or("server default".to_owned(), |n| n.to_string());
        let s = &self.session;
        let p = &self.pool;
        let m = &self.migrations;
        writeln!(f, "environment: {}", self.environment)?;
        let pooled = |yes: bool| {
            if yes {
                " (through a transaction pooler)"
            } else {
                ""
            }
        };
        writeln!(
            f,
            "primary: {}{}",
            self.primary,
            pooled(self.pooler.default)
        )?;
        if self.bulk_is_fallback {
            writeln!(
                f,
                "bulk: {} (fallback to primary){}",
                self.bulk,
                pooled(self.pooler.bulk)
            )?;
        } else {
            writeln!(f, "bulk: {}{}", self.bulk, pooled(self.pooler.bulk))?;
        }
        if let Some(m) = &self.migration_uri {
            writeln!(f, "migration uri: {m}")?;
        }
        let files = [
            ("primary", &self.password_files.default),
            ("bulk", &self.password_files.bulk),
        ];
        for (bind, file) in files {
            if let Some(file) = file {
                writeln!(f, "{bind} password file: {}", file.path.display())?;
            }
        }
        writeln!(
            f,
            "session: statement_timeout primary={} replica={}, parallel workers primary={} replica={}",
            human(s.statement_timeout_primary),
            human(s.statement_timeout_replica),
            workers(s.parallel_workers_for(false)),
            workers(s.parallel_workers_for(true)),
        )?;
        writeln!(
            f,
            "pool: size={} wait_timeout={} max_lifetime={} connect_timeout={} tcp_user_timeout={} \
             startup_statement_timeout={} application_name={} host_backoff={} ping_idle_after={} \
             max_replica_lag={} replica_lag_interval={} long_hold_warning={}",
            p.size,
            human(p.wait_timeout),
            human(p.max_lifetime),
            human(p.connect_timeout),
            human(p.tcp_user_timeout),
            human(p.startup_statement_timeout),
            p.application_name,
            human(p.host_backoff),
            human(p.ping_idle_after),
            human(p.max_replica_lag),
            human(p.replica_lag_interval),
            human(p.long_hold_warning),
        )?;
        write!(
            f,
            "migrations: lock_timeout={} statement_timeout={} max_attempts={} retry_delay={} advisory_lock_wait={}",
            human(m.lock_timeout),
            m.statement_timeout.map_or("none".to_owned(), human),
            m.max_attempts,
            human(m.retry_delay),
            m.advisory_lock_wait.map_or("forever".to_owned(), human),
        )
    }
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Parses true/false/1/0/yes/no, case-insensitively.
pub(crate) fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

fn find_config_dir() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .map(|dir| dir.join("config"))
        .find(|dir| dir.join("default.toml").is_file())
}

/// The environment lookup and the file layer, with typed getters (environment first).
struct Sources<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    layer: Layer,
    environment: String,
}

impl<'a> Sources<'a> {
    fn new(
        config_dir: Option<&Path>,
        env: &'a dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut src = Sources {
            env,
            layer: Layer::default(),
            environment: String::new(),
        };
        src.environment = match src.var("NOTIFY_ENVIRONMENT") {
            None => "development".to_owned(),
            Some(value) => match value.to_ascii_lowercase().as_str() {
                e @ ("development" | "test" | "production") => e.to_owned(),
                _ => return Err(ConfigError::UnknownEnvironment { value }),
            },
        };
        if let Some(dir) = config_dir {
            if !dir.is_dir() {
                return Err(ConfigError::ConfigDir {
                    dir: dir.to_owned(),
                    problem: "does not exist or is not a directory".to_owned(),
                });
            }
            src.layer.read_file(&dir.join("default.toml"))?;
            src.layer
                .read_file(&dir.join(format!("{}.toml", src.environment)))?;
        }
        Ok(src)
    }

    /// A trimmed, non-empty environment variable.
    fn var(&self, name: &str) -> Option<String> {
        (self.env)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn uri(&self, var: &str, key: &str) -> Result<Option<DatabaseUri>, ConfigError> {
        if let Some(value) = self.var(var) {
            return DatabaseUri::parse(&value, var).map(Some);
        }
        match self.layer.get(key) {
            Some((FileValue::Str(s), file)) if !s.trim().is_empty() => {
                DatabaseUri::parse(s, &format!("`{key}` in {}", file.display())).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Environment variable `var` (whole milliseconds), else the file key, else `None`.
    fn duration(&self, var: Option<&str>, key: &str) -> Result<Option<Duration>, ConfigError> {
        if let Some((var, value)) = var.and_then(|v| self.var(v).map(|x| (v, x))) {
            return value
                .parse::<u64>()
                .map(|ms| Some(Duration::from_millis(ms)))
                .map_err(|_| ConfigError::InvalidEnv {
                    variable: var.to_owned(),
                    problem: format!("`{value}` is not a whole number of milliseconds"),
                });
        }
        Ok(match self.layer.get(key) {
            Some((FileValue::Duration(d), _)) => Some(*d),
            _ => None,
        })
    }

    fn file_duration(&self, key: &str, default: Duration) -> Duration {
        match self.layer.get(key) {
            Some((FileValue::Duration(d), _)) => *d,
            _ => default,
        }
    }

    /// A file path from environment variable `var`, else the file key; with where it was set.
    fn path(&self, var: &str, key: &str) -> Option<PasswordFile> {
        if let Some(value) = self.var(var) {
            return Some(PasswordFile {
                path: PathBuf::from(value),
                setting: var.to_owned(),
            });
        }
        match self.layer.get(key) {
            Some((FileValue::Str(s), file)) if !s.trim().is_empty() => Some(PasswordFile {
                path: PathBuf::from(s.trim()),
                setting: format!("`{key}` in {}", file.display()),
            }),
            _ => None,
        }
    }

    fn file_string(&self, key: &str) -> Option<String> {
        match self.layer.get(key) {
            Some((FileValue::Str(s), _)) => Some(s.clone()),
            _ => None,
        }
    }

    /// A whole number >= `min` (and fitting in u32) from `var`, else the file key.
    fn count(&self, var: Option<&str>, key: &str, min: u32) -> Result<Option<u32>, ConfigError> {
        let problem = |shown: &str| {
            if min == 0 {
                format!("`{shown}` is not a whole number (0 to {})", u32::MAX)
            } else {
                format!("`{shown}` is not a whole number from {min} to {}", u32::MAX)
            }
        };
        if let Some((var, value)) = var.and_then(|v| self.var(v).map(|x| (v, x))) {
            return match value.parse::<u32>() {
                Ok(n) if n >= min => Ok(Some(n)),
                _ => Err(ConfigError::InvalidEnv {
                    variable: var.to_owned(),
                    problem: problem(&value),
                }),
            };
        }
        match self.layer.get(key) {
            Some((FileValue::Int(n), file)) => match u32::try_from(*n) {
                Ok(n) if n >= min => Ok(Some(n)),
                _ => Err(ConfigError::InvalidFileValue {
                    file: file.to_owned(),
                    key: key.to_owned(),
                    problem: problem(&n.to_string()),
                }),
            },
            _ => Ok(None),
        }
    }

    fn boolean(&self, var: &str, key: &str) -> Result<Option<bool>, ConfigError> {
        if let Some(value) = self.var(var) {
            return parse_bool(&value)
                .map(Some)
                .ok_or_else(|| ConfigError::InvalidEnv {
                    variable: var.to_owned(),
                    problem: format!("`{value}` is not a boolean (true/false/1/0/yes/no)"),
                });
        }
        Ok(match self.layer.get(key) {
            Some((FileValue::Bool(b), _)) => Some(*b),
            _ => None,
        })
    }
}
