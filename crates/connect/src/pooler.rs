//! Pools behind a transaction pooler (PgBouncer `pool_mode = transaction`, or a managed proxy
//! that behaves like it).
//!
//! Each transaction may run on another server connection, and session state stays with the
//! server connection, not with us. So through a pooler a pool:
//! - sends no startup `options` (PgBouncer refuses them: `unsupported startup parameter`);
//! - sets nothing with `SET`/`set_config` (it would land on one server connection and leak to
//!   whichever client gets it next);
//! - instead checks, once per new client connection, that the server enforces the session
//!   settings itself (`ALTER ROLE ... SET` or PgBouncer's `connect_query`), and refuses to start
//!   when it does not;
//! - uses only unnamed statements of its own (`query_typed`: Parse, Bind, Execute, Sync in one
//!   round trip), so no named statement has to outlive a transaction; and refuses
//!   the pool's `PooledConnection::prepare_cached`.

use notify_db_config::{DatabaseUri, HostPort, Settings};
use tokio_postgres::Client;

use crate::error::{ConnectError, pooler_variable};
use crate::host::ServerFacts;
use crate::observer::Bind;

/// The check a pool runs on each new client connection through a pooler: the same facts as the
/// direct setup query, plus the session settings the server applies by itself. Built-in types
/// only: a custom type would make tokio-postgres prepare a named type-lookup statement.
const CHECK_SQL: &str = "SELECT pg_is_in_recovery(), host(inet_server_addr()), \
     current_setting('server_version_num')::int8, current_setting('server_version'), \
     pg_backend_pid(), current_user::text, \
     (SELECT setting FROM pg_settings WHERE name = 'statement_timeout'), \
     current_setting('default_transaction_read_only'), \
     current_setting('max_parallel_workers_per_gather')";

/// Whether `bind`'s URI goes through a transaction pooler.
pub fn is_pooled(settings: &Settings, bind: Bind) -> bool {
    match bind {
        Bind::Default => settings.pooler.default,
        Bind::Bulk => settings.pooler.bulk,
    }
}

/// A session setting the server does not enforce, found by the check.
#[derive(Debug)]
pub(crate) struct Missing {
    setting: &'static str,
    expected: String,
    actual: String,
    role: String,
}

/// Why the check failed.
pub(crate) enum CheckError {
    /// The query itself failed.
    Query(tokio_postgres::Error),
    /// The server runs without a setting the bind needs.
    NotEnforced(Missing),
}

/// The session settings a bind needs, per server role.
pub(crate) struct Expected {
    timeout_ms: [u128; 2],
    workers: [Option<u32>; 2],
    read_only: bool,
}

impl Expected {
    /// What `bind` needs under `settings` (index 0: primary, 1: replica).
    pub(crate) fn new(settings: &Settings, bind: Bind) -> Expected {
        let s = &settings.session;
        Expected {
            timeout_ms: [false, true].map(|r| s.statement_timeout_for(r).as_millis()),
            workers: [false, true].map(|r| s.parallel_workers_for(r)),
            read_only: bind == Bind::Bulk,
        }
    }

    /// Runs the check in one round trip (an unnamed statement) and compares.
    pub(crate) async fn check(&self, client: &Client) -> Result<ServerFacts, CheckError> {
        let rows = client
            .query_typed(CHECK_SQL, &[])
            .await
            .map_err(CheckError::Query)?;
        let row = rows.first().ok_or_else(|| {
            CheckError::NotEnforced(Missing {
                setting: "(check query)",
                expected: "one row".into(),
                actual: "none".into(),
                role: String::new(),
            })
        })?;
        let get = |i: usize| -> Result<Option<String>, CheckError> {
            row.try_get::<_, Option<String>>(i)
                .map_err(CheckError::Query)
        };
        let in_recovery: bool = row.try_get(0).map_err(CheckError::Query)?;
        let role = get(5)?.unwrap_or_default();
        let idx = usize::from(in_recovery);
        let missing = |setting: &'static str, expected: String, actual: Option<String>| {
            CheckError::NotEnforced(Missing {
                setting,
                expected,
                actual: actual.unwrap_or_default(),
                role: role.clone(),
            })
        };
        let timeout = get(6)?;
        let want = self.timeout_ms[idx].to_string();
        if timeout.as_deref() != Some(want.as_str()) {
            return Err(missing("statement_timeout", want, timeout));
        }
        if self.read_only {
            let ro = get(7)?;
            if ro.as_deref() != Some("on") {
                return Err(missing("default_transaction_read_only", "on".into(), ro));
            }
        }
        if let Some(n) = self.workers[idx] {
            let workers = get(8)?;
            if workers.as_deref() != Some(n.to_string().as_str()) {
                return Err(missing(
                    "max_parallel_workers_per_gather",
                    n.to_string(),
                    workers,
                ));
            }
        }
        Ok(ServerFacts {
            in_recovery,
            server_addr: get(1)?.and_then(|a| a.parse().ok()),
            version_num: row.try_get(2).map_err(CheckError::Query)?,
            version: get(3)?.unwrap_or_else(|| "unknown".into()),
            backend_pid: row.try_get(4).map_err(CheckError::Query)?,
            // Through a pooler the server behind it may change per transaction: not judged here.
            read_only: false,
        })
    }
}

/// The error for a setting the server behind the pooler does not enforce.
pub(crate) fn not_enforced(bind: Bind, hp: &HostPort, m: Missing) -> ConnectError {
    ConnectError::PoolerSettingNotEnforced {
        bind,
        host: hp.host.clone(),
        port: hp.port,
        setting: m.setting,
        expected: m.expected,
        actual: m.actual,
        role: if m.role.is_empty() {
            "<role>".into()
        } else {
            m.role
        },
    }
}

/// The error for a pooled URI that carries startup `options`.
pub(crate) fn options_refused(uri: &DatabaseUri, bind: Bind) -> ConnectError {
    let (host, port) = uri
        .hosts()
        .first()
        .map_or((String::new(), 0), |hp| (hp.host.clone(), hp.port));
    ConnectError::Setup {
        bind,
        host,
        port,
        cause: format!(
            "the URI sets `options` (startup parameters), but it goes through a transaction \
             pooler ({}=true): PgBouncer refuses startup options (`unsupported startup \
             parameter: options`) and a session SET would leak to other clients; remove \
             `options` from the URI and set those settings on the server (ALTER ROLE ... SET, \
             or PgBouncer's connect_query)",
            pooler_variable(bind)
        ),
    }
}
