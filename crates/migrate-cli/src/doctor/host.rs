//! One host of one bind: DNS, TCP, a connection set up as the pool sets them up, the server's
//! version, role, replica lag, session settings and room for this process's pool.

use notify_db_config::{DatabaseUri, HostPort, Settings};
use notify_db_connect::{
    Bind, ConnectError, ConnectFailure, MISSING_DATABASE_ADVICE, REPLICA_LAG_SQL, connect_one,
    is_missing_database,
};
use tokio_postgres::Client;

use super::report::{DOC, DoctorOptions, Report};

/// The oldest supported major, for the messages.
const MIN_MAJOR: i64 = notify_db_config::MIN_SERVER_VERSION_NUM / 10_000;

/// Checks one host of one bind; true when it could be used.
pub(super) async fn check_host(
    settings: &Settings,
    options: &DoctorOptions,
    r: &mut Report<'_>,
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
    // connect_one refuses servers older than MIN_MAJOR, so this line only reports.
    r.ok(
        &format!("{label} version"),
        format!("PostgreSQL {} (≥ {MIN_MAJOR})", facts.version),
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
            (Some(lag), _) if lag > options.max_lag_seconds => r.fail(
                &format!("{label} replica lag"),
                format!("{lag:.1}s behind the primary (limit {:.0}s)", options.max_lag_seconds),
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
fn explain(e: &ConnectError, var: &str, hp: &HostPort) -> (String, String) {
    match e {
        ConnectError::Connect { failure, cause, .. } => match failure {
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
            _ if is_missing_database(cause) => (
                format!("no such database: {cause}"),
                format!("in {var}: {MISSING_DATABASE_ADVICE}"),
            ),
            _ => (format!("{}: {cause}", failure.as_str()), format!("see the server's log and {DOC}#troubleshooting")),
        },
        ConnectError::ServerTooOld { version, .. } => (
            format!("PostgreSQL {version} is too old"),
            format!("notify-db needs PostgreSQL {MIN_MAJOR} or later: upgrade the server or point the URI at a newer one"),
        ),
        ConnectError::Setup { cause, .. } => (
            format!("session setup failed: {cause}"),
            "check DATABASE_STATEMENT_TIMEOUT_MS, DATABASE_MAX_PARALLEL_WORKERS... and the server's role (primary or replica)".to_owned(),
        ),
        ConnectError::Tls { .. } => (e.to_string(), format!("check sslmode and sslrootcert in {var}")),
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
async fn read_facts(c: &Client) -> Result<Facts, String> {
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
        .await
        .map_err(|e| e.to_string())?;
    let row = rows
        .into_iter()
        .next()
        .ok_or_else(|| "the settings query returned no row".to_owned())?;
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
