//! Table-driven tests of `DatabaseUri::parse` (its driver config: notify-db-connect's tests).

use std::path::Path;

use notify_db_config::{ConfigError, DatabaseUri, HostPort, SslMode};

const VAR: &str = "SQLALCHEMY_DATABASE_URI";

fn hp(host: &str, port: u16) -> HostPort {
    HostPort {
        host: host.to_owned(),
        port,
    }
}

fn parse(uri: &str) -> DatabaseUri {
    match DatabaseUri::parse(uri, VAR) {
        Ok(u) => u,
        Err(e) => panic!("{uri}: {e}"),
    }
}

#[test]
fn valid_uris() {
    // (uri, hosts, user, password, dbname)
    type Case<'a> = (
        &'a str,
        Vec<HostPort>,
        Option<&'a str>,
        Option<&'a str>,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "postgresql+psycopg2://user:password@host:5432/notification_api",
            vec![hp("host", 5432)],
            Some("user"),
            Some("password"),
            "notification_api",
        ),
        (
            "postgresql://replica1:5432,replica2:5432/notification_api",
            vec![hp("replica1", 5432), hp("replica2", 5432)],
            None,
            None,
            "notification_api",
        ),
        (
            "postgresql://localhost/notification_api",
            vec![hp("localhost", 5432)],
            None,
            None,
            "notification_api",
        ),
        (
            "postgres://u@db1,db2:6432,db3/notify",
            vec![hp("db1", 5432), hp("db2", 6432), hp("db3", 5432)],
            Some("u"),
            None,
            "notify",
        ),
        (
            "postgresql://u:p@[::1]:5433/notification_api",
            vec![hp("::1", 5433)],
            Some("u"),
            Some("p"),
            "notification_api",
        ),
        (
            "postgresql://[2001:db8::1],[::1]:6000/x",
            vec![hp("2001:db8::1", 5432), hp("::1", 6000)],
            None,
            None,
            "x",
        ),
        (
            "postgresql://us%40er:p%40ss%3Aw%2Fo%3Frd%25@10.0.0.1:5432/notification_api",
            vec![hp("10.0.0.1", 5432)],
            Some("us@er"),
            Some("p@ss:w/o?rd%"),
            "notification_api",
        ),
        (
            "postgresql+asyncpg://u:@h:1/d",
            vec![hp("h", 1)],
            Some("u"),
            None,
            "d",
        ),
        (
            "POSTGRESQL://h:65535/d",
            vec![hp("h", 65535)],
            None,
            None,
            "d",
        ),
        (
            "postgresql://%2Fvar%2Frun%2Fpostgresql/notify%20db",
            vec![hp("/var/run/postgresql", 5432)],
            None,
            None,
            "notify db",
        ),
    ];
    for (uri, hosts, user, password, dbname) in cases {
        let u = parse(uri);
        assert_eq!(u.hosts(), hosts.as_slice(), "{uri}");
        assert_eq!(u.user(), user, "{uri}");
        assert_eq!(u.password(), password, "{uri}");
        assert_eq!(u.dbname(), dbname, "{uri}");
        // The real URI round-trips.
        assert_eq!(parse(&u.to_url_string()), u, "{uri}");
    }
}

#[test]
fn query_parameters() {
    let u = parse(
        "postgresql://h/d?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=api\
         &connect_timeout=3&target_session_attrs=read-write&options=-c%20search_path%3Dx\
         &load_balance_hosts=random&keepalives=1&keepalives_idle=30",
    );
    assert_eq!(u.ssl_mode(), SslMode::VerifyFull);
    assert_eq!(u.ssl_root_cert(), Some(Path::new("/etc/ca.pem")));
    assert_eq!(u.param("application_name"), Some("api"));
    assert_eq!(u.param("options"), Some("-c search_path=x"));
    assert_eq!(u.param("nope"), None);
    assert_eq!(parse(&u.to_url_string()), u);

    let cases = [
        ("disable", SslMode::Disable),
        ("prefer", SslMode::Prefer),
        ("require", SslMode::Require),
        ("verify-ca", SslMode::VerifyCa),
        ("verify-full", SslMode::VerifyFull),
    ];
    for (text, mode) in cases {
        assert_eq!(
            parse(&format!("postgresql://h/d?sslmode={text}")).ssl_mode(),
            mode
        );
    }
    assert_eq!(parse("postgresql://h/d").ssl_mode(), SslMode::Prefer);
}

#[test]
fn redacted_output_and_accessors() {
    let u = parse("postgresql+psycopg2://user:hunter2secret@host:5432/notification_api");
    for shown in [format!("{u}"), format!("{u:?}"), format!("{u:#?}")] {
        assert!(!shown.contains("hunter2secret"), "{shown}");
        assert!(
            shown.contains("user:****@host:5432/notification_api"),
            "{shown}"
        );
    }
    assert!(u.to_url_string().contains("hunter2secret"));
    assert!(
        u.to_url_string()
            .starts_with("postgresql+psycopg2://user:hunter2secret@host:5432/")
    );

    let t = u.with_dbname("test_notification_api_gw0");
    assert_eq!(t.dbname(), "test_notification_api_gw0");
    assert_eq!(t.hosts(), u.hosts());
    let t = u.with_hosts(vec![hp("other", 1)]);
    assert_eq!(t.hosts(), [hp("other", 1)]);
    assert_eq!(t.password(), Some("hunter2secret"));

    assert_eq!(hp("::1", 5432).to_string(), "[::1]:5432");
    assert_eq!(hp("db", 5432).to_string(), "db:5432");
}

#[test]
fn errors_name_variable_and_problem() {
    // (uri, fragment of the problem)
    let cases = [
        ("", "empty URI"),
        ("notification_api", "missing scheme"),
        ("mysql://h/d", "unsupported scheme `mysql`"),
        ("http+postgresql://h/d", "unsupported scheme"),
        ("postgresql:///notification_api", "missing host"),
        ("postgresql://u:p@/d", "missing host"),
        ("postgresql://h1,,h2/d", "empty host"),
        ("postgresql://:5432/d", "empty host"),
        ("postgresql://h:abc/d", "invalid port for host `h`"),
        ("postgresql://h:0/d", "port `0` of host `h` is out of range"),
        (
            "postgresql://h:65536/d",
            "port `65536` of host `h` is out of range",
        ),
        ("postgresql://h:/d", "missing port"),
        ("postgresql://h", "missing database name"),
        ("postgresql://h/", "missing database name"),
        ("postgresql://h/a/b", "invalid database name"),
        ("postgresql://::1/d", "brackets"),
        ("postgresql://[::1/d", "unterminated"),
        ("postgresql://[zz]/d", "invalid IPv6 address"),
        ("postgresql://[::1]x/d", "unexpected text"),
        ("postgresql://h!x/d", "invalid host name"),
        (
            "postgresql://h/d?foo=1",
            "unsupported query parameter `foo` in SQLALCHEMY_DATABASE_URI",
        ),
        (
            "postgresql://h/d?password=x",
            "unsupported query parameter `password`",
        ),
        ("postgresql://h/d?sslmode", "without `=value`"),
        (
            "postgresql://h/d?sslmode=allow",
            "invalid value `allow` for query parameter `sslmode`",
        ),
        (
            "postgresql://h/d?sslmode=require&sslmode=disable",
            "duplicate query parameter",
        ),
        ("postgresql://h/d?connect_timeout=-1", "`connect_timeout`"),
        (
            "postgresql://h/d?target_session_attrs=primary",
            "`target_session_attrs`",
        ),
        (
            "postgresql://h/d?load_balance_hosts=yes",
            "`load_balance_hosts`",
        ),
        ("postgresql://h/d?keepalives=2", "`keepalives`"),
        ("postgresql://h/d?keepalives_idle=0", "`keepalives_idle`"),
        ("postgresql://h/d?sslrootcert=", "`sslrootcert`"),
        (
            "postgresql://u:p%ZZ@h/d",
            "the password has a malformed percent-encoding",
        ),
        ("postgresql://u:p%FF@h/d", "password is not valid"),
    ];
    for (uri, fragment) in cases {
        for var in [VAR, "SQLALCHEMY_DATABASE_URI_BULK"] {
            let err = DatabaseUri::parse(uri, var).expect_err(uri);
            let text = err.to_string();
            assert!(text.contains(fragment), "{uri}: {text}");
            assert!(text.ends_with(&format!(" in {var}")), "{uri}: {text}");
            assert!(
                matches!(&err, ConfigError::InvalidUri { variable, .. } if variable == var),
                "{err:?}"
            );
        }
    }
}

#[test]
fn errors_never_show_the_password() {
    let cases = [
        "postgresql://user:Sup3rSecret@host:abc/d",
        "postgresql://user:Sup3rSecret@host:99999/d",
        "postgresql://user:Sup3rSecret@/d",
        "postgresql://user:Sup3rSecret@host",
        "postgresql://user:Sup3rSecret@host/d?bad=1",
        "mysql://user:Sup3rSecret@host/d",
        // Unencoded reserved characters in the password.
        "postgresql://user:Sup3r/Secret@host/d",
        "postgresql://user:Sup3r?Secret@host/d",
        "postgresql://user:Sup3rSecret/d",
        "postgresql://user:Sup3rSecret:x@host/d?sslmode=x",
        "postgresql://user:Sup3r@Secret@host:x/d",
        "user:Sup3rSecret@host/d",
    ];
    for uri in cases {
        if let Err(err) = DatabaseUri::parse(uri, VAR) {
            for shown in [err.to_string(), format!("{err:?}")] {
                assert!(!shown.contains("Secret"), "{uri}: {shown}");
                assert!(!shown.contains("Sup3r"), "{uri}: {shown}");
            }
        }
    }
}
