//! What a new physical connection is told at startup and in its one-round-trip session setup.

use std::time::Duration;

use crate::ConnectUri;
use notify_db_config::{DatabaseUri, HostPort, Settings};
use tokio_postgres::config::TargetSessionAttrs;

use crate::observer::Bind;

/// The `tokio_postgres::Config` for one host of `uri`, with the pool's transport settings.
pub(crate) fn host_config(
    uri: &DatabaseUri,
    hp: &HostPort,
    settings: &Settings,
    timeout: Duration,
    through_pooler: bool,
) -> tokio_postgres::Config {
    let pool = &settings.pool;
    let mut config = uri.with_hosts(vec![hp.clone()]).to_pg_config();
    config.connect_timeout(timeout);
    if !hp.host.starts_with('/') {
        config.tcp_user_timeout(pool.tcp_user_timeout);
        if uri.param("keepalives").is_none() {
            config.keepalives(true);
        }
        // tcp_user_timeout only bounds data the peer has not acknowledged. A connection that
        // waits for a reply sends nothing, so without probes a black-holed server goes unnoticed
        // for the kernel's 2 h keepalive idle. Probe after half the user timeout: then a dead
        // peer is noticed within about 1.5 x tcp_user_timeout, also mid-query.
        if uri.param("keepalives_idle").is_none() {
            let idle =
                (pool.tcp_user_timeout / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
            config.keepalives_idle(idle);
        }
        config.keepalives_interval(Duration::from_secs(1));
    }
    // Roles are checked by the setup query itself: no extra `SHOW transaction_read_only`.
    config.target_session_attrs(TargetSessionAttrs::Any);
    if config.get_application_name().is_none() && !pool.application_name.is_empty() {
        config.application_name(pool.application_name.as_str());
    }
    // A transaction pooler refuses startup `options` (PgBouncer: 08P01) or drops them.
    if through_pooler {
        return config;
    }
    let startup = format!(
        "-c statement_timeout={}",
        pool.startup_statement_timeout.as_millis()
    );
    let options = match config.get_options() {
        // The URI's own options come last, so they win.
        Some(own) if !own.trim().is_empty() => format!("{startup} {own}"),
        _ => startup,
    };
    config.options(options.as_str());
    config
}

/// The one-round-trip session setup: reads the role, address and version, and sets the session
/// settings for that role in the same statement.
pub(crate) fn setup_sql(settings: &Settings, bind: Bind) -> String {
    let s = &settings.session;
    let millis = |in_recovery: bool| s.statement_timeout_for(in_recovery).as_millis();
    let mut sql = format!(
        "SELECT pg_is_in_recovery(), host(inet_server_addr()), \
         current_setting('server_version_num'), current_setting('server_version'), \
         pg_backend_pid(), \
         current_setting('transaction_read_only') = 'on' \
         OR current_setting('default_transaction_read_only') = 'on', \
         set_config('statement_timeout', CASE WHEN pg_is_in_recovery() THEN '{}' ELSE '{}' END, false)",
        millis(true),
        millis(false)
    );
    let workers = |in_recovery: bool| match s.parallel_workers_for(in_recovery) {
        Some(n) => format!("'{n}'"),
        None => "current_setting('max_parallel_workers_per_gather')".to_owned(),
    };
    if s.parallel_workers_for(true).is_some() || s.parallel_workers_for(false).is_some() {
        sql.push_str(&format!(
            ", set_config('max_parallel_workers_per_gather', CASE WHEN pg_is_in_recovery() \
             THEN {} ELSE {} END, false)",
            workers(true),
            workers(false)
        ));
    }
    if bind == Bind::Bulk {
        sql.push_str(", set_config('default_transaction_read_only', 'on', false)");
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Settings {
        let get = |k: &str| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        };
        Settings::load(None, &get).expect("settings")
    }

    #[test]
    fn setup_sql_sets_the_role_specific_timeouts_in_one_select() {
        let s = settings(&[
            ("DATABASE_STATEMENT_TIMEOUT_MS", "1000"),
            ("DATABASE_STATEMENT_TIMEOUT_REPLICA_MS", "2000"),
        ]);
        let sql = setup_sql(&s, Bind::Default);
        assert!(sql.starts_with("SELECT "), "{sql}");
        assert!(!sql.contains(';'), "one statement: {sql}");
        assert!(
            sql.contains("CASE WHEN pg_is_in_recovery() THEN '2000' ELSE '1000' END"),
            "{sql}"
        );
        assert!(!sql.contains("max_parallel_workers_per_gather"), "{sql}");
        assert!(
            !sql.contains("set_config('default_transaction_read_only'"),
            "{sql}"
        );
        let bulk = setup_sql(&s, Bind::Bulk);
        assert!(
            bulk.contains("set_config('default_transaction_read_only', 'on', false)"),
            "{bulk}"
        );
    }

    #[test]
    fn setup_sql_sets_parallel_workers_only_when_configured() {
        let s = settings(&[("DATABASE_MAX_PARALLEL_WORKERS_REPLICA", "4")]);
        let sql = setup_sql(&s, Bind::Bulk);
        assert!(
            sql.contains(
                "CASE WHEN pg_is_in_recovery() THEN '4' ELSE \
                 current_setting('max_parallel_workers_per_gather') END"
            ),
            "{sql}"
        );
        let s = settings(&[("DATABASE_DEFAULT_DISABLE_PARALLEL_QUERY", "true")]);
        let sql = setup_sql(&s, Bind::Default);
        assert!(
            sql.contains("CASE WHEN pg_is_in_recovery() THEN '0' ELSE '0' END"),
            "{sql}"
        );
    }

    #[test]
    fn through_a_transaction_pooler_no_startup_options_are_sent() {
        let uri = DatabaseUri::parse("postgresql://u:p@bouncer:6432/x", "TEST").expect("uri");
        let s = settings(&[("DATABASE_URI_TRANSACTION_POOLER", "true")]);
        let c = host_config(&uri, &uri.hosts()[0], &s, Duration::from_secs(5), true);
        assert_eq!(c.get_options(), None);
        assert_eq!(
            c.get_application_name(),
            Some(s.pool.application_name.as_str())
        );
    }

    #[test]
    fn host_config_adds_startup_options_and_keeps_the_uri_ones_last() {
        let uri = DatabaseUri::parse(
            "postgresql://u:p@db1:5433,db2/x?options=-c%20work_mem%3D64MB",
            "TEST",
        )
        .expect("uri");
        let s = settings(&[]);
        let c = host_config(&uri, &uri.hosts()[1], &s, Duration::from_secs(5), false);
        assert_eq!(
            c.get_options(),
            Some("-c statement_timeout=1200000 -c work_mem=64MB")
        );
        assert_eq!(c.get_hosts().len(), 1);
        assert_eq!(c.get_ports(), &[5432]);
        assert_eq!(
            c.get_application_name(),
            Some(s.pool.application_name.as_str())
        );
        assert_eq!(c.get_tcp_user_timeout(), Some(&Duration::from_millis(5000)));
        assert!(c.get_keepalives());
        assert_eq!(c.get_keepalives_idle(), Duration::from_millis(2500));
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(5)));
    }
}
