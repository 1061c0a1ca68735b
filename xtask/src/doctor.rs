//! `cargo xtask doctor`: checks the configured primary and every bulk host the way the pools
//! would use them, the settings in force and the migration state; one line per check (✓/✗), a
//! suggested fix (from docs/operations.md) under every ✗, exit status 1 when anything failed.
//! Never prints a password: hosts are shown as host:port, URIs through their redacting Display.

use std::fmt::Display;

use anyhow::Result;
use notify_db_config::{DatabaseUri, HostPort, Settings};
use notify_db_migrate::{Error as MigrateError, MigrationSet, Migrator, Options};
use notify_db_pool::{Bind, ConnectFailure, PoolError, REPLICA_LAG_SQL, connect_one};
use tokio_postgres::Client;

use crate::util;

/// Arguments of `cargo xtask doctor`.
#[derive(clap::Args)]
pub struct DoctorArgs {
    /// Replica lag (seconds) above which the lag check fails.
    #[arg(long, default_value_t = 30.0)]
    max_lag_seconds: f64,
}

const DOC: &str = "docs/operations.md";

/// The checks' outcome so far.
#[derive(Default)]
struct Report {
    failed: usize,
}

impl Report {
    fn ok(&mut self, check: &str, detail: impl Display) {
        println!("✓ {check}: {detail}");
    }

    fn fail(&mut self, check: &str, detail: impl Display, fix: impl Display) {
        println!("✗ {check}: {detail}");
        println!("    fix: {fix}");
        self.failed += 1;
    }
}

/// Runs `cargo xtask doctor`.
pub fn run(args: DoctorArgs) -> Result<()> {
    let mut report = Report::default();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            report.fail(
                "settings",
                e,
                format!(
                    "set SQLALCHEMY_DATABASE_URI (and SQLALCHEMY_DATABASE_URI_BULK for replicas) as in {DOC}#settings-you-will-touch"
                ),
            );
            anyhow::bail!("doctor found 1 problem");
        }
    };
    util::runtime()?.block_on(check_all(&settings, &args, &mut report));
    if report.failed > 0 {
        anyhow::bail!("doctor found {} problem(s)", report.failed);
    }
    println!("all checks passed");
    Ok(())
}

async fn check_all(settings: &Settings, args: &DoctorArgs, r: &mut Report) {
    let bulk_note = if settings.bulk_is_fallback {
        " (SQLALCHEMY_DATABASE_URI_BULK unset: bulk falls back to the primary)"
    } else {
        ""
    };
    r.ok(
        "settings",
        format!(
            "environment {}; default {}; bulk {}{bulk_note}",
            settings.environment, settings.primary, settings.bulk
        ),
    );
    let p = &settings.pool;
    r.ok(
        "pool settings",
        format!(
            "size {} per bind, wait {:?}, max lifetime {:?}, connect timeout {:?}, tcp_user_timeout {:?}, host back-off {:?}, idle ping after {:?}, application_name {}",
            p.size,
            p.wait_timeout,
            p.max_lifetime,
            p.connect_timeout,
            p.tcp_user_timeout,
            p.host_backoff,
            p.ping_idle_after,
            p.application_name
        ),
    );

    let mut primary_ok = false;
    for hp in settings.primary.hosts() {
        let ok = check_host(settings, args, r, Bind::Default, &settings.primary, hp).await;
        primary_ok |= ok;
    }
    for hp in settings.bulk.hosts() {
        check_host(settings, args, r, Bind::Bulk, &settings.bulk, hp).await;
    }
    check_migrations(settings, r, primary_ok).await;
    if primary_ok {
        check_migration_lock(settings, r).await;
    }
}

/// The migration advisory lock: free, held by a running migration, or left held by an idle
/// session (e.g. a pooled server connection after a run through a transaction pooler), which
/// would make every later run (ours or Alembic's) wait forever.
async fn check_migration_lock(settings: &Settings, r: &mut Report) {
    let check = "migration lock";
    let holders = match connect_one(&settings.primary, settings, Bind::Default).await {
        Ok((client, _)) => notify_db_migrate::lock_holders(&client).await,
        Err(e) => {
            r.fail(
                check,
                format!("not checked: {e}"),
                "fix the primary first (see above)",
            );
            return;
        }
    };
    let holders = match holders {
        Ok(h) => h,
        Err(e) => {
            r.fail(
                check,
                format!("cannot read pg_locks / pg_stat_activity: {e}"),
                "grant the role pg_read_all_stats to see other sessions",
            );
            return;
        }
    };
    let id = notify_db_migrate::ADVISORY_LOCK_ID;
    if holders.is_empty() {
        r.ok(check, format!("advisory lock {id} is free"));
    }
    for h in holders {
        let who = format!(
            "advisory lock {id} held by pid {} (application_name {:?}), {} since {} (connected {})",
            h.pid, h.application_name, h.state, h.since, h.backend_start
        );
        if h.state == "active" {
            r.ok(check, format!("{who}: a migration is running"));
            continue;
        }
        r.fail(
            check,
            format!("{who}: no statement running, so every later migration run (ours or Alembic's) waits for it"),
            format!(
                "if no migration is running from it, end it: `SELECT pg_terminate_backend({})` as a superuser or its role \
                 (through PgBouncer, RECONNECT the database in its admin console also works). An idle holder is typically \
                 a pooled server connection left by a run through a transaction pooler: set DATABASE_MIGRATION_URI to the \
                 primary itself ({DOC}#behind-pgbouncer)",
                h.pid
            ),
        );
    }
}

/// Checks one host of one bind; true when it could be used.
async fn check_host(
    settings: &Settings,
    args: &DoctorArgs,
    r: &mut Report,
    bind: Bind,
    uri: &DatabaseUri,
    hp: &HostPort,
) -> bool {
    let var = match bind {
        Bind::Default => "SQLALCHEMY_DATABASE_URI",
        Bind::Bulk if settings.bulk_is_fallback => "SQLALCHEMY_DATABASE_URI",
        Bind::Bulk => "SQLALCHEMY_DATABASE_URI_BULK",
    };
    let label = format!("{bind} {}:{}", hp.host, hp.port);
    let check = format!("{label} reachable");
    let timeout = settings.pool.connect_timeout;

    // Network first, as pg_isready would see it: DNS, then TCP.
    if !hp.host.starts_with('/') {
        let addrs = match tokio::time::timeout(
            timeout,
            tokio::net::lookup_host((hp.host.as_str(), hp.port)),
        )
        .await
        {
            Ok(Ok(a)) => a.collect::<Vec<_>>(),
            Ok(Err(e)) => {
                r.fail(
                    &check,
                    format!("DNS: cannot resolve {}: {e}", hp.host),
                    format!("check the host name in {var}, and the DNS/service discovery of this machine"),
                );
                return false;
            }
            Err(_) => {
                r.fail(
                    &check,
                    format!("DNS: resolving {} took longer than {timeout:?}", hp.host),
                    "check this machine's DNS resolver (/etc/resolv.conf)",
                );
                return false;
            }
        };
        let mut last = None;
        let mut connected = false;
        for addr in &addrs {
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(_)) => {
                    connected = true;
                    break;
                }
                Ok(Err(e)) => {
                    last = Some((
                        e.kind() == std::io::ErrorKind::ConnectionRefused,
                        e.to_string(),
                    ))
                }
                Err(_) => {
                    last = Some((
                        false,
                        format!("no answer within the connect timeout of {timeout:?}"),
                    ))
                }
            }
        }
        if !connected {
            match last {
                Some((true, e)) => r.fail(
                    &check,
                    format!("refused: {e}"),
                    format!(
                        "nothing listens on {}:{}: start the server, or correct host/port in {var}; check `pg_isready -h {} -p {}`, listen_addresses and port on the server ({DOC}#connection-refused)",
                        hp.host, hp.port, hp.host, hp.port
                    ),
                ),
                Some((false, e)) => r.fail(
                    &check,
                    format!("timeout: {e}"),
                    format!(
                        "the host does not answer: check that it is up, and firewalls/security groups between here and {}:{} ({DOC}#connection-refused)",
                        hp.host, hp.port
                    ),
                ),
                None => r.fail(
                    &check,
                    format!("DNS: {} resolves to no address", hp.host),
                    format!("check the host name in {var}"),
                ),
            }
            return false;
        }
    }

    // Then a real connection with our session setup, as the pool opens them.
    let one = uri.with_hosts(vec![hp.clone()]);
    let (client, info) = match tokio::time::timeout(timeout * 2, connect_one(&one, settings, bind))
        .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            let (what, fix) = explain(&e, var, hp);
            r.fail(&check, what, fix);
            return false;
        }
        Err(_) => {
            r.fail(
                &check,
                format!("timeout: no working session within {:?}", timeout * 2),
                "the server accepts TCP but does not complete the login: check its load, max_connections and the TLS settings (sslmode)",
            );
            return false;
        }
    };
    r.ok(
        &check,
        format!(
            "accepts connections; login and session setup ok (server address {})",
            info.server_addr
                .map_or_else(|| "unix socket".to_owned(), |a| a.to_string())
        ),
    );

    let facts = match read_facts(&client).await {
        Ok(f) => f,
        Err(e) => {
            r.fail(
                &format!("{label} settings"),
                format!("cannot read the server's settings: {e}"),
                "check the role's privileges (it must be able to read pg_settings)",
            );
            return false;
        }
    };
    // connect_one refuses servers older than 15, so this line only reports.
    r.ok(
        &format!("{label} version"),
        format!("PostgreSQL {} (≥ 15)", facts.version),
    );

    let role = if info.in_recovery {
        "replica (in recovery, read-only)"
    } else {
        "primary (read-write)"
    };
    match (bind, info.in_recovery) {
        (Bind::Default, true) => r.fail(
            &format!("{label} role"),
            role,
            "the default bind needs the primary: point SQLALCHEMY_DATABASE_URI at it (or list the hosts with target_session_attrs=read-write)",
        ),
        (Bind::Bulk, false) if !settings.bulk_is_fallback => r.ok(
            &format!("{label} role"),
            format!("{role}; bulk reads run on the primary (read-only sessions)"),
        ),
        _ => r.ok(&format!("{label} role"), role),
    }

    if info.in_recovery {
        match (facts.lag_seconds, facts.receiver_status.as_deref()) {
            (_, s) if s != Some("streaming") => r.fail(
                &format!("{label} replica lag"),
                format!("not streaming from the primary (WAL receiver: {})", s.unwrap_or("none")),
                format!("check primary_conninfo on the replica, its log, and pg_stat_replication on the primary ({DOC}#replica-lag)"),
            ),
            (Some(lag), _) if lag > args.max_lag_seconds => r.fail(
                &format!("{label} replica lag"),
                format!("{lag:.1}s behind the primary (limit {:.0}s)", args.max_lag_seconds),
                format!("look for big writes on the primary and long queries on the replica; watch db_replica_lag_seconds ({DOC}#replica-lag)"),
            ),
            (lag, _) => r.ok(&format!("{label} replica lag"), format!("{:.1}s, streaming", lag.unwrap_or(0.0))),
        }
    }

    // The session as our setup leaves it.
    let s = &settings.session;
    let want_timeout = s.statement_timeout_for(info.in_recovery).as_millis();
    let timeout_var = if info.in_recovery {
        "DATABASE_STATEMENT_TIMEOUT_REPLICA_MS"
    } else {
        "DATABASE_STATEMENT_TIMEOUT_MS"
    };
    let want_workers = s.parallel_workers_for(info.in_recovery);
    let mut wrong = Vec::new();
    if facts.statement_timeout_ms != want_timeout {
        wrong.push(format!(
            "statement_timeout {} ms, expected {want_timeout} ms ({timeout_var})",
            facts.statement_timeout_ms
        ));
    }
    if let Some(w) = want_workers
        && facts.parallel_workers != w
    {
        wrong.push(format!(
            "max_parallel_workers_per_gather {}, expected {w}",
            facts.parallel_workers
        ));
    }
    if bind == Bind::Bulk && !facts.read_only {
        wrong.push("default_transaction_read_only off, expected on".to_owned());
    }
    let workers = match want_workers {
        Some(w) => format!("max_parallel_workers_per_gather {w}"),
        None => format!(
            "max_parallel_workers_per_gather {} (server default)",
            facts.parallel_workers
        ),
    };
    let session = format!("{label} session");
    if wrong.is_empty() {
        r.ok(
            &session,
            format!(
                "statement_timeout {} ms ({timeout_var}), {workers}{}",
                facts.statement_timeout_ms,
                if bind == Bind::Bulk {
                    ", read-only"
                } else {
                    ""
                }
            ),
        );
    } else {
        r.fail(
            &session,
            wrong.join("; "),
            "something between us and the server resets session settings (a pooler in transaction mode, ALTER ROLE ... SET): connect directly, or set them on the role/database",
        );
    }

    // Room for this process's pool on the server.
    let binds_here = if settings.bulk_is_fallback && bind == Bind::Default {
        2
    } else {
        1
    };
    let wanted = settings.pool.size * binds_here;
    let free = facts
        .max_connections
        .saturating_sub(facts.reserved)
        .saturating_sub(facts.in_use);
    let capacity = format!("{label} connections");
    if wanted > free {
        r.fail(
            &capacity,
            format!(
                "max_connections {}, {} reserved, {} in use: {free} free, and one process of this service opens up to {wanted}",
                facts.max_connections, facts.reserved, facts.in_use
            ),
            format!("lower SQLALCHEMY_POOL_SIZE or the number of processes, or raise max_connections ({DOC}#pool-exhausted)"),
        );
    } else {
        r.ok(
            &capacity,
            format!(
                "max_connections {}, {} in use; one process opens up to {wanted}",
                facts.max_connections, facts.in_use
            ),
        );
    }
    true
}

/// What a failed connect means and what to do, in the words of docs/operations.md.
fn explain(e: &PoolError, var: &str, hp: &HostPort) -> (String, String) {
    match e {
        PoolError::Connect { failure, cause, .. } => match failure {
            ConnectFailure::Auth if cause.contains("28000") || cause.contains("pg_hba") => (
                format!("pg_hba rejected: {cause}"),
                "the server's pg_hba.conf has no line for this client, user and database: add one (host ... scram-sha-256), or use the right user/database".to_owned(),
            ),
            ConnectFailure::Auth => (
                format!("auth failed: {cause}"),
                format!("check the user name and password in {var} (percent-encode special characters in the password)"),
            ),
            ConnectFailure::Tls => (format!("TLS: {cause}"), format!("check sslmode and sslrootcert in {var}")),
            ConnectFailure::Refused => (
                format!("refused: {cause}"),
                format!("start the server or correct host/port in {var}; check `pg_isready -h {} -p {}` ({DOC}#connection-refused)", hp.host, hp.port),
            ),
            ConnectFailure::Timeout => (
                format!("timeout: {cause}"),
                format!("the server is slow to accept logins or the network drops packets ({DOC}#connection-refused)"),
            ),
            _ => (format!("{}: {cause}", failure.as_str()), format!("see the server's log and {DOC}#troubleshooting")),
        },
        PoolError::ServerTooOld { version, .. } => (
            format!("PostgreSQL {version} is too old"),
            "notify-db needs PostgreSQL 15 or later: upgrade the server or point the URI at a newer one".to_owned(),
        ),
        PoolError::Setup { cause, .. } => (
            format!("session setup failed: {cause}"),
            "check DATABASE_STATEMENT_TIMEOUT_MS, DATABASE_MAX_PARALLEL_WORKERS... and the server's role (primary or replica)".to_owned(),
        ),
        PoolError::Tls { .. } => (e.to_string(), format!("check sslmode and sslrootcert in {var}")),
        other => (other.to_string(), format!("see {DOC}#troubleshooting")),
    }
}

/// What the doctor reads from a server on a connection set up by our session setup.
struct Facts {
    version: String,
    statement_timeout_ms: u128,
    parallel_workers: u32,
    read_only: bool,
    lag_seconds: Option<f64>,
    receiver_status: Option<String>,
    max_connections: usize,
    reserved: usize,
    in_use: usize,
}

/// One unnamed statement (`query_typed`), so it also works through a transaction pooler.
async fn read_facts(c: &Client) -> Result<Facts> {
    let rows = c
        .query_typed(
            // The lag is the pools' own definition (the lag-aware routing and the metric).
            &format!(
                "SELECT current_setting('server_version'),
                    extract(epoch FROM current_setting('statement_timeout')::interval)::float8,
                    current_setting('max_parallel_workers_per_gather')::int,
                    current_setting('default_transaction_read_only')::bool,
                    ({REPLICA_LAG_SQL}),
                    (SELECT status FROM pg_stat_wal_receiver LIMIT 1),
                    current_setting('max_connections')::int,
                    current_setting('superuser_reserved_connections')::int,
                    (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int"
            ),
            &[],
        )
        .await?;
    let row = rows
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("the settings query returned no row"))?;
    let timeout_secs: f64 = row.get(1);
    Ok(Facts {
        version: row.get(0),
        statement_timeout_ms: (timeout_secs * 1000.0).round() as u128,
        parallel_workers: row.get::<_, i32>(2).max(0) as u32,
        read_only: row.get(3),
        lag_seconds: row.get(4),
        receiver_status: row.get(5),
        max_connections: row.get::<_, i32>(6).max(0) as usize,
        reserved: row.get::<_, i32>(7).max(0) as usize,
        in_use: row.get::<_, i32>(8).max(0) as usize,
    })
}

/// The timeouts a migration run applies: the runner's (from the settings) and each migration's own.
fn migration_timeouts(settings: &Settings, set: &MigrationSet) -> String {
    let options = Options::from_settings(&settings.migrations);
    let own: Vec<String> = set
        .migrations()
        .iter()
        .filter_map(|m| {
            let mut v = Vec::new();
            if let Some(t) = m.own_lock_timeout() {
                v.push(format!("lock_timeout {}ms", t.as_millis()));
            }
            if let Some(t) = m.own_statement_timeout() {
                v.push(format!("statement_timeout {}ms", t.as_millis()));
            }
            (!v.is_empty()).then(|| format!("{} {}", m.id(), v.join(", ")))
        })
        .collect();
    format!(
        "{}{}",
        options.describe_timeouts(),
        if own.is_empty() {
            "; no migration sets its own".to_owned()
        } else {
            format!("; own: {}", own.join("; "))
        }
    )
}

async fn check_migrations(settings: &Settings, r: &mut Report, primary_ok: bool) {
    let check = "migrations";
    if !primary_ok {
        r.fail(
            check,
            "not checked: the primary cannot be used",
            "fix the primary first (see above)",
        );
        return;
    }
    let set = match notify_db_migrations::set() {
        Ok(s) => s,
        Err(e) => {
            r.fail(
                check,
                format!("the migration set of this build is invalid: {e}"),
                "fix migrations/ (cargo xtask migrate check-head)",
            );
            return;
        }
    };
    let head = set.head().unwrap_or("base").to_owned();
    let total = set.migrations().len();
    r.ok("migration timeouts", migration_timeouts(settings, &set));
    let migrator = match Migrator::new(set, &settings.primary) {
        Ok(migrator) => migrator,
        Err(e) => {
            r.fail(
                check,
                format!("not checked: {e}"),
                "fix sslmode / sslrootcert in SQLALCHEMY_DATABASE_URI",
            );
            return;
        }
    };
    match migrator.status().await {
        Ok(status) => {
            let current = status.current.clone().unwrap_or_else(|| "base (not migrated)".to_owned());
            let pending = status.pending();
            if pending.is_empty() {
                r.ok(check, format!("at head {head} ({total} migrations applied)"));
            } else {
                r.fail(
                    check,
                    format!(
                        "at {current}, head is {head}: {} pending ({})",
                        pending.len(),
                        pending.join(", ")
                    ),
                    format!("run `cargo xtask migrate upgrade` before deploying code that needs them ({DOC}#deployment-order)"),
                );
            }
        }
        Err(e @ MigrateError::UnknownRevision { .. }) => r.fail(
            check,
            e,
            format!("deploy the code that has this migration, or downgrade with it ({DOC}#deployment-order)"),
        ),
        Err(e) => r.fail(check, format!("cannot read the migration state: {e}"), format!("check that the role can read alembic_version ({DOC}#troubleshooting)")),
    }
}
