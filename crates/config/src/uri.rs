//! Hand-written parser for Notify's PostgreSQL URIs (`SQLALCHEMY_DATABASE_URI` and friends).

use std::fmt;
use std::net::Ipv6Addr;
use std::path::Path;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::error::ConfigError;
use crate::redact::{MASK, redact_urls, scrub};

/// Port used for a host listed without one.
const DEFAULT_PORT: u16 = 5432;

/// Characters left unencoded when writing a URI component (RFC 3986 "unreserved").
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Query parameters we honour; every other one is rejected.
const SUPPORTED_PARAMS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "application_name",
    "connect_timeout",
    "target_session_attrs",
    "options",
    "load_balance_hosts",
    "keepalives",
    "keepalives_idle",
];

/// One host of a (possibly multi-host) URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// Host name, IP address (IPv6 without brackets) or Unix socket directory (starting with `/`).
    pub host: String,
    /// TCP port (5432 when the URI gives none).
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The `sslmode` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SslMode {
    /// Never use TLS.
    Disable,
    /// Use TLS when the server offers it (the default).
    #[default]
    Prefer,
    /// Require TLS, without certificate checks.
    Require,
    /// Require TLS and a certificate signed by a trusted CA.
    VerifyCa,
    /// Require TLS, a trusted certificate, and a matching host name.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<SslMode> {
        Some(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// A parsed PostgreSQL URI. `Debug` and `Display` show the password as `****`.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUri {
    scheme: String,
    user: Option<String>,
    password: Option<String>,
    hosts: Vec<HostPort>,
    dbname: String,
    params: Vec<(String, String)>,
}

impl DatabaseUri {
    /// Parses `uri`; `variable` (e.g. `SQLALCHEMY_DATABASE_URI_BULK`) is named in every error.
    ///
    /// ```
    /// use notify_db_config::DatabaseUri;
    /// let uri = DatabaseUri::parse(
    ///     "postgresql+psycopg2://user:password@host:5432/notification_api",
    ///     "SQLALCHEMY_DATABASE_URI",
    /// )?;
    /// assert_eq!(uri.to_string(), "postgresql+psycopg2://user:****@host:5432/notification_api");
    /// assert_eq!(uri.password(), Some("password"));
    /// let err = DatabaseUri::parse("postgresql://h/db?foo=1", "SQLALCHEMY_DATABASE_URI").unwrap_err();
    /// assert_eq!(err.to_string(), "unsupported query parameter `foo` in SQLALCHEMY_DATABASE_URI");
    /// # Ok::<(), notify_db_config::ConfigError>(())
    /// ```
    pub fn parse(uri: &str, variable: &str) -> Result<DatabaseUri, ConfigError> {
        parse_inner(uri.trim()).map_err(|problem| {
            let secrets = candidate_secrets(uri);
            let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
            ConfigError::InvalidUri {
                variable: variable.to_owned(),
                problem: scrub(&redact_urls(&problem), &refs),
            }
        })
    }

    /// The hosts, in the order they are tried.
    pub fn hosts(&self) -> &[HostPort] {
        &self.hosts
    }

    /// The user name, percent-decoded.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The password, percent-decoded: the only way to see it.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The database name, percent-decoded.
    pub fn dbname(&self) -> &str {
        &self.dbname
    }

    /// A copy pointing at database `name` (e.g. a per-worker test database).
    pub fn with_dbname(&self, name: &str) -> DatabaseUri {
        DatabaseUri {
            dbname: name.to_owned(),
            ..self.clone()
        }
    }

    /// A copy with `hosts` in place of this URI's hosts (e.g. to skip a failed host).
    pub fn with_hosts(&self, hosts: Vec<HostPort>) -> DatabaseUri {
        DatabaseUri {
            hosts,
            ..self.clone()
        }
    }

    /// The value of a (supported, validated) query parameter, percent-decoded.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The `sslmode` parameter (default `prefer`).
    pub fn ssl_mode(&self) -> SslMode {
        self.param("sslmode")
            .and_then(SslMode::parse)
            .unwrap_or_default()
    }

    /// The `sslrootcert` parameter: CA certificates for `verify-ca` / `verify-full`.
    pub fn ssl_root_cert(&self) -> Option<&Path> {
        self.param("sslrootcert").map(Path::new)
    }

    /// The real URI, password included, for handing to a child process.
    ///
    /// It contains the password: never log it, print it or put it in an error or metric.
    pub fn to_url_string(&self) -> String {
        self.render(false)
    }

    fn render(&self, redact: bool) -> String {
        let mut out = format!("{}://", self.scheme);
        if self.user.is_some() || self.password.is_some() {
            if let Some(user) = &self.user {
                out.extend(utf8_percent_encode(user, COMPONENT));
            }
            if let Some(password) = &self.password {
                out.push(':');
                if redact {
                    out.push_str(MASK);
                } else {
                    out.extend(utf8_percent_encode(password, COMPONENT));
                }
            }
            out.push('@');
        }
        for (i, hp) in self.hosts.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if hp.host.contains(':') {
                out.push('[');
                out.push_str(&hp.host);
                out.push(']');
            } else {
                out.extend(utf8_percent_encode(&hp.host, COMPONENT));
            }
            out.push(':');
            out.push_str(&hp.port.to_string());
        }
        out.push('/');
        out.extend(utf8_percent_encode(&self.dbname, COMPONENT));
        for (i, (k, v)) in self.params.iter().enumerate() {
            out.push(if i == 0 { '?' } else { '&' });
            out.extend(utf8_percent_encode(k, COMPONENT));
            out.push('=');
            out.extend(utf8_percent_encode(v, COMPONENT));
        }
        out
    }
}

impl fmt::Display for DatabaseUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(true))
    }
}

impl fmt::Debug for DatabaseUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUri")
            .field(&format_args!("{}", self.render(true)))
            .finish()
    }
}

/// Strings that might be the password of a (possibly malformed) URI, to scrub from errors.
fn candidate_secrets(uri: &str) -> Vec<String> {
    let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let Some(at) = rest.rfind('@') else {
        return Vec::new();
    };
    let Some((_, raw)) = rest[..at].split_once(':') else {
        return Vec::new();
    };
    let decoded = percent_decode_str(raw).decode_utf8_lossy().into_owned();
    // Very short candidates would mangle the message; the parser never echoes them anyway.
    [raw.to_owned(), decoded]
        .into_iter()
        .filter(|s| s.chars().count() >= 3)
        .collect()
}

fn decode(text: &str, what: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || (bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return Err(format!(
            "{what} has a malformed percent-encoding (`%` must start `%XX`)"
        ));
    }
    percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| format!("{what} is not valid percent-encoded UTF-8"))
}

fn parse_inner(uri: &str) -> Result<DatabaseUri, String> {
    if uri.is_empty() {
        return Err("empty URI".to_owned());
    }
    let (scheme, rest) = uri.split_once("://").ok_or_else(|| {
        "missing scheme (expected a URI like `postgresql://user:password@host:5432/dbname`)"
            .to_owned()
    })?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return Err("invalid scheme (expected postgresql, postgres or postgresql+DRIVER)".into());
    }
    let base = scheme.split('+').next().unwrap_or_default();
    if !base.eq_ignore_ascii_case("postgresql") && !base.eq_ignore_ascii_case("postgres") {
        return Err(format!(
            "unsupported scheme `{scheme}` (expected postgresql, postgres or postgresql+DRIVER)"
        ));
    }

    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(authority_end);
    if after.contains('@') {
        return Err(
            "unexpected `@` after the host list (percent-encode `@`, `/`, `?`, `:` and \
                    `,` in user names, passwords and parameter values)"
                .to_owned(),
        );
    }
    let (path, query) = match after.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (after, None),
    };

    let (userinfo, hostlist) = match authority.rsplit_once('@') {
        Some((userinfo, hostlist)) => (Some(userinfo), hostlist),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(info) => {
            let (user, password) = match info.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (info, None),
            };
            let user = decode(user, "the user name")?;
            let password = password.map(|p| decode(p, "the password")).transpose()?;
            (
                Some(user).filter(|u| !u.is_empty()),
                password.filter(|p| !p.is_empty()),
            )
        }
    };

    if hostlist.is_empty() {
        return Err("missing host (expected `host[:port]` after `://`)".to_owned());
    }
    let hosts = hostlist
        .split(',')
        .map(parse_host)
        .collect::<Result<Vec<_>, _>>()?;

    let dbname = match path.strip_prefix('/') {
        None | Some("") => {
            return Err("missing database name (expected `/dbname` after the host list)".into());
        }
        Some(name) if name.contains('/') => {
            return Err("invalid database name: it contains `/`".into());
        }
        Some(name) => decode(name, "the database name")?,
    };

    let mut params: Vec<(String, String)> = Vec::new();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| "query parameter without `=value`".to_owned())?;
        let key = decode(key, "a query parameter name")?;
        if !SUPPORTED_PARAMS.contains(&key.as_str()) {
            let shown: String = key.chars().take(40).collect();
            return Err(format!("unsupported query parameter `{shown}`"));
        }
        let value = decode(value, &format!("the value of query parameter `{key}`"))?;
        if params.iter().any(|(k, _)| *k == key) {
            return Err(format!("duplicate query parameter `{key}`"));
        }
        validate_param(&key, &value)?;
        params.push((key, value));
    }

    Ok(DatabaseUri {
        scheme: scheme.to_owned(),
        user,
        password,
        hosts,
        dbname,
        params,
    })
}

fn parse_port(port: &str, host: &str) -> Result<u16, String> {
    if port.is_empty() {
        return Err(format!("missing port after `{host}:`"));
    }
    if !port.chars().all(|c| c.is_ascii_digit()) {
        // The text is not echoed: in a malformed URI it may be part of a password.
        return Err(format!(
            "invalid port for host `{host}`: not a number (expected 1-65535)"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!(
            "port `{port}` of host `{host}` is out of range (expected 1-65535)"
        )),
    }
}

fn parse_host(spec: &str) -> Result<HostPort, String> {
    if spec.is_empty() {
        return Err("empty host in the host list".to_owned());
    }
    if let Some(inner) = spec.strip_prefix('[') {
        let (addr, tail) = inner
            .split_once(']')
            .ok_or_else(|| "unterminated `[` in an IPv6 host".to_owned())?;
        if addr.parse::<Ipv6Addr>().is_err() {
            return Err(format!("invalid IPv6 address `[{addr}]`"));
        }
        let port = match tail {
            "" => DEFAULT_PORT,
            _ => match tail.strip_prefix(':') {
                Some(port) => parse_port(port, &format!("[{addr}]"))?,
                None => return Err(format!("unexpected text after `[{addr}]`")),
            },
        };
        return Ok(HostPort {
            host: addr.to_owned(),
            port,
        });
    }
    if spec.matches(':').count() > 1 {
        return Err("an IPv6 address must be written in brackets, e.g. `[::1]:5432`".into());
    }
    let (host, port) = match spec.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (spec, None),
    };
    if host.is_empty() {
        return Err("empty host in the host list".to_owned());
    }
    let host = decode(host, "a host name")?;
    let valid = if host.starts_with('/') {
        !host.chars().any(char::is_control)
    } else {
        host.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    };
    if !valid {
        return Err(
            "invalid host name (expected letters, digits, `-`, `.` and `_`, \
                    an IPv4 address, `[IPv6]`, or a percent-encoded socket directory)"
                .to_owned(),
        );
    }
    let port = match port {
        Some(port) => parse_port(port, &host)?,
        None => DEFAULT_PORT,
    };
    Ok(HostPort { host, port })
}

fn validate_param(key: &str, value: &str) -> Result<(), String> {
    let ok = match key {
        "sslmode" => SslMode::parse(value).is_some(),
        "target_session_attrs" => matches!(value, "any" | "read-write" | "read-only"),
        "load_balance_hosts" => matches!(value, "disable" | "random"),
        "keepalives" => matches!(value, "0" | "1"),
        "connect_timeout" => value.parse::<u32>().is_ok(),
        "keepalives_idle" => value.parse::<u32>().is_ok_and(|v| v > 0),
        "sslrootcert" => !value.is_empty(),
        _ => true,
    };
    if ok {
        return Ok(());
    }
    let expected = match key {
        "sslmode" => "disable, prefer, require, verify-ca or verify-full",
        "target_session_attrs" => "any, read-write or read-only",
        "load_balance_hosts" => "disable or random",
        "keepalives" => "0 or 1",
        "connect_timeout" => "whole seconds, 0 for no limit",
        "keepalives_idle" => "whole seconds, at least 1",
        _ => "a file path",
    };
    let shown: String = value.chars().take(40).collect();
    Err(format!(
        "invalid value `{shown}` for query parameter `{key}` (expected {expected})"
    ))
}
