//! A `tokio_postgres::Config` from a [`DatabaseUri`].

use std::time::Duration;

use notify_db_config::{DatabaseUri, SslMode};

/// Every host and port, credentials and the URI parameters the driver honours; see
/// [`crate::ConnectUri::to_pg_config`].
pub(crate) fn for_uri(uri: &DatabaseUri) -> tokio_postgres::Config {
    use tokio_postgres::config::{LoadBalanceHosts, SslMode as PgSslMode, TargetSessionAttrs};

    let mut config = tokio_postgres::Config::new();
    for hp in uri.hosts() {
        config.host(hp.host.as_str());
        config.port(hp.port);
    }
    if let Some(user) = uri.user() {
        config.user(user);
    }
    if let Some(password) = uri.password() {
        config.password(password);
    }
    config.dbname(uri.dbname());
    config.ssl_mode(match uri.ssl_mode() {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
    });
    if let Some(name) = uri.param("application_name") {
        config.application_name(name);
    }
    if let Some(secs) = uri
        .param("connect_timeout")
        .and_then(|v| v.parse::<u64>().ok())
        && secs > 0
    {
        config.connect_timeout(Duration::from_secs(secs));
    }
    match uri.param("target_session_attrs") {
        Some("read-write") => {
            config.target_session_attrs(TargetSessionAttrs::ReadWrite);
        }
        Some("read-only") => {
            config.target_session_attrs(TargetSessionAttrs::ReadOnly);
        }
        _ => {}
    }
    if let Some(options) = uri.param("options") {
        config.options(options);
    }
    if uri.param("load_balance_hosts") == Some("random") {
        config.load_balance_hosts(LoadBalanceHosts::Random);
    }
    if let Some(keepalives) = uri.param("keepalives") {
        config.keepalives(keepalives == "1");
    }
    if let Some(secs) = uri
        .param("keepalives_idle")
        .and_then(|v| v.parse::<u64>().ok())
    {
        config.keepalives_idle(Duration::from_secs(secs));
    }
    config
}
