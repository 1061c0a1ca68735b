//! Reading `config/*.toml` through the `config` crate into a checked layer of values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{FileFormat, ValueKind};

use crate::error::ConfigError;
use crate::redact::redact_urls;

/// The type a file key must have.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Duration,
    Int,
    Bool,
}

/// Every key a file may set.
const KEYS: &[(&str, Kind)] = &[
    ("database.uri", Kind::Str),
    ("database.bulk_uri", Kind::Str),
    ("database.uri_transaction_pooler", Kind::Bool),
    ("database.bulk_uri_transaction_pooler", Kind::Bool),
    ("database.migration_uri", Kind::Str),
    ("database.password_file", Kind::Str),
    ("database.bulk_password_file", Kind::Str),
    ("session.statement_timeout_primary", Kind::Duration),
    ("session.statement_timeout_replica", Kind::Duration),
    ("session.max_parallel_workers_primary", Kind::Int),
    ("session.max_parallel_workers_replica", Kind::Int),
    ("session.default_disable_parallel_query", Kind::Bool),
    ("pool.size", Kind::Int),
    ("pool.wait_timeout", Kind::Duration),
    ("pool.max_lifetime", Kind::Duration),
    ("pool.connect_timeout", Kind::Duration),
    ("pool.tcp_user_timeout", Kind::Duration),
    ("pool.startup_statement_timeout", Kind::Duration),
    ("pool.application_name", Kind::Str),
    ("pool.host_backoff", Kind::Duration),
    ("pool.ping_idle_after", Kind::Duration),
    ("pool.max_replica_lag", Kind::Duration),
    ("pool.replica_lag_interval", Kind::Duration),
    ("pool.long_hold_warning", Kind::Duration),
    ("migrations.lock_timeout", Kind::Duration),
    ("migrations.statement_timeout", Kind::Duration),
    ("migrations.max_attempts", Kind::Int),
    ("migrations.retry_delay", Kind::Duration),
    ("migrations.advisory_lock_wait", Kind::Duration),
];

/// Keys that were renamed, with what to write instead.
const RENAMED: &[(&str, &str)] = &[(
    "migrations.retries",
    "renamed to `max_attempts`, which counts attempts in all (retries + 1; default 10)",
)];

/// A checked value from a file.
#[derive(Debug, Clone)]
pub(crate) enum FileValue {
    Str(String),
    Duration(Duration),
    Int(u64),
    Bool(bool),
}

/// Values from the files read so far; a later file overrides an earlier one key by key.
#[derive(Debug, Default)]
pub(crate) struct Layer {
    values: BTreeMap<&'static str, (FileValue, PathBuf)>,
}

impl Layer {
    /// Reads `path` (a missing file is skipped) and lays its values over the current ones.
    pub(crate) fn read_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(ConfigError::FileParse {
                    file: path.to_owned(),
                    problem: format!("cannot read: {e}"),
                });
            }
        };
        let parse_error = |e: config::ConfigError| ConfigError::FileParse {
            file: path.to_owned(),
            problem: clean_parser_message(&e.to_string()),
        };
        let root = config::Config::builder()
            .add_source(config::File::from_str(&text, FileFormat::Toml))
            .build()
            .map_err(parse_error)?
            .try_deserialize::<config::Map<String, config::Value>>()
            .map_err(parse_error)?;

        for (section, value) in root {
            let known_section = KEYS
                .iter()
                .any(|(k, _)| k.split_once('.').is_some_and(|(s, _)| s == section));
            let ValueKind::Table(table) = value.kind else {
                return Err(unknown(path, &section));
            };
            if !known_section {
                return Err(unknown(path, &section));
            }
            for (name, value) in table {
                let dotted = format!("{section}.{name}");
                if let Some((_, help)) = RENAMED.iter().find(|(k, _)| *k == dotted) {
                    return Err(ConfigError::InvalidFileValue {
                        file: path.to_owned(),
                        key: dotted,
                        problem: (*help).to_owned(),
                    });
                }
                let Some(&(key, kind)) = KEYS.iter().find(|(k, _)| *k == dotted) else {
                    return Err(unknown(path, &dotted));
                };
                let checked =
                    convert(value.kind, kind).map_err(|problem| ConfigError::InvalidFileValue {
                        file: path.to_owned(),
                        key: dotted.clone(),
                        problem: redact_urls(&problem),
                    })?;
                self.values.insert(key, (checked, path.to_owned()));
            }
        }
        Ok(())
    }

    /// The value of `key` and the file it came from.
    pub(crate) fn get(&self, key: &str) -> Option<(&FileValue, &Path)> {
        self.values.get(key).map(|(v, p)| (v, p.as_path()))
    }
}

fn unknown(path: &Path, key: &str) -> ConfigError {
    ConfigError::UnknownKey {
        file: path.to_owned(),
        key: key.to_owned(),
    }
}

fn convert(value: ValueKind, kind: Kind) -> Result<FileValue, String> {
    let found = describe(&value);
    match (kind, value) {
        (Kind::Str, ValueKind::String(s)) => Ok(FileValue::Str(s)),
        (Kind::Duration, ValueKind::String(s)) => humantime::parse_duration(s.trim())
            .map(FileValue::Duration)
            .map_err(|e| {
                format!("`{s}` is not a duration ({e}); write e.g. \"30s\", \"5m\", \"1200ms\"")
            }),
        (Kind::Int, ValueKind::I64(i)) => u64::try_from(i)
            .map(FileValue::Int)
            .map_err(|_| format!("{i} is negative; expected a whole number >= 0")),
        (Kind::Int, ValueKind::U64(u)) => Ok(FileValue::Int(u)),
        (Kind::Bool, ValueKind::Boolean(b)) => Ok(FileValue::Bool(b)),
        (Kind::Bool, ValueKind::String(s)) => crate::parse_bool(&s)
            .map(FileValue::Bool)
            .ok_or_else(|| format!("`{s}` is not a boolean (expected true or false)")),
        (kind, _) => Err(format!(
            "expected {}, found {found}",
            match kind {
                Kind::Str => "a string",
                Kind::Duration => "a duration string such as \"30s\"",
                Kind::Int => "a whole number",
                Kind::Bool => "true or false",
            }
        )),
    }
}

fn describe(value: &ValueKind) -> &'static str {
    match value {
        ValueKind::Nil => "nothing",
        ValueKind::Boolean(_) => "a boolean",
        ValueKind::I64(_) | ValueKind::I128(_) | ValueKind::U64(_) | ValueKind::U128(_) => {
            "a number"
        }
        ValueKind::Float(_) => "a decimal number",
        ValueKind::String(_) => "a string",
        ValueKind::Table(_) => "a table",
        ValueKind::Array(_) => "an array",
    }
}

/// Keeps the position and message of a TOML parser error, drops its quoted source lines
/// (which may hold a password), and redacts any URI left in it.
fn clean_parser_message(message: &str) -> String {
    let kept: Vec<&str> = message
        .lines()
        .filter(|line| {
            let t = line.trim_start();
            let digits = t.trim_start_matches(|c: char| c.is_ascii_digit());
            !(digits.trim_start().starts_with('|'))
        })
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    redact_urls(&kept.join(": "))
}
