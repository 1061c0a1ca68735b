//! `ConnectUri::to_pg_config`: every host and port, credentials and the honoured parameters.

use std::time::Duration;

use notify_db_config::DatabaseUri;
use notify_db_connect::ConnectUri;
use proptest::prelude::*;
use tokio_postgres::config::{Host, TargetSessionAttrs};

const VAR: &str = "SQLALCHEMY_DATABASE_URI";

fn parse(uri: &str) -> DatabaseUri {
    match DatabaseUri::parse(uri, VAR) {
        Ok(u) => u,
        Err(e) => panic!("{uri}: {e}"),
    }
}

#[test]
fn query_parameters_reach_the_driver_config() {
    let u = parse(
        "postgresql://h/d?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=api\
         &connect_timeout=3&target_session_attrs=read-write&options=-c%20search_path%3Dx\
         &load_balance_hosts=random&keepalives=1&keepalives_idle=30",
    );
    let c = u.to_pg_config();
    assert_eq!(c.get_application_name(), Some("api"));
    assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(3)));
    assert_eq!(c.get_target_session_attrs(), TargetSessionAttrs::ReadWrite);
    assert_eq!(c.get_options(), Some("-c search_path=x"));
    assert_eq!(
        c.get_load_balance_hosts(),
        tokio_postgres::config::LoadBalanceHosts::Random
    );
    assert!(c.get_keepalives());
    assert_eq!(c.get_keepalives_idle(), Duration::from_secs(30));
    assert_eq!(c.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
}

#[test]
fn to_pg_config_keeps_all_hosts_and_ports() {
    let u = parse(
        "postgresql://reader:secretpw@replica1:5432,replica2:6543,[::1]/notification_api\
         ?target_session_attrs=read-only",
    );
    let c = u.to_pg_config();
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(s) => s.clone(),
            #[allow(unreachable_patterns)]
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(hosts, ["replica1", "replica2", "::1"]);
    assert_eq!(c.get_ports(), [5432, 6543, 5432]);
    assert_eq!(c.get_target_session_attrs(), TargetSessionAttrs::ReadOnly);
    assert_eq!(c.get_user(), Some("reader"));
    assert_eq!(c.get_password(), Some(&b"secretpw"[..]));
    assert_eq!(c.get_dbname(), Some("notification_api"));
    assert_eq!(c.get_ssl_mode(), tokio_postgres::config::SslMode::Prefer);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_parsed_uri_gives_a_driver_config(
        s in "(postgres(ql)?(\\+[a-z0-9]+)?://)?[a-zA-Z0-9:@/?&=,%\\[\\]._\\-]{0,60}"
    ) {
        if let Ok(u) = DatabaseUri::parse(&s, VAR) {
            let c = u.to_pg_config();
            prop_assert_eq!(c.get_hosts().len(), u.hosts().len());
            prop_assert_eq!(c.get_dbname(), Some(u.dbname()));
        }
    }
}
