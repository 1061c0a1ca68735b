//! Rotating credentials: where a bind's password comes from for each new connection (the URI,
//! a password file re-read for every connect, or a [`PasswordProvider`] hook), and the
//! `tokio_postgres::Config` of one connect attempt with it.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use notify_db_config::{PasswordFile, Settings};

use crate::observer::Bind;

/// The future a [`PasswordProvider`] returns.
pub type PasswordFuture<'a> =
    Pin<Box<dyn Future<Output = Result<String, PasswordProviderError>> + Send + 'a>>;

/// The error a [`PasswordProvider`] may fail with (its own type, boxed; chained as the source).
/// It must not hold the password.
pub type PasswordProviderError = Box<dyn StdError + Send + Sync>;

/// Gives the password for each new connection of a bind: short-lived tokens (e.g. AWS RDS IAM
/// tokens, valid 15 minutes) that must be fetched or signed anew. Called once per connect
/// attempt, never on checkout; it may cache. A closure `Fn(Bind) -> impl Future<Output =
/// Result<String, PasswordProviderError>>` is one.
pub trait PasswordProvider: Send + Sync + 'static {
    /// The password to log in with now, for `bind`.
    fn password(&self, bind: Bind) -> PasswordFuture<'_>;
}

impl<F, Fut> PasswordProvider for F
where
    F: Fn(Bind) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, PasswordProviderError>> + Send + 'static,
{
    fn password(&self, bind: Bind) -> PasswordFuture<'_> {
        Box::pin(self(bind))
    }
}

/// Why the password for a new connection could not be had. Never holds the password.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// The password file could not be read.
    #[error(
        "{bind} pool: cannot read the password file {} (set by {setting}): {source}; check \
         that the secret is mounted there and readable by this process",
        path.display()
    )]
    File {
        /// The pool.
        bind: Bind,
        /// The variable or file key that named the file.
        setting: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The password file is empty (or only a newline).
    #[error(
        "{bind} pool: the password file {} (set by {setting}) is empty; check that the secret \
         has been written",
        path.display()
    )]
    EmptyFile {
        /// The pool.
        bind: Bind,
        /// The variable or file key that named the file.
        setting: String,
        /// The file.
        path: PathBuf,
    },
    /// The password provider given to the pool builder failed.
    #[error("{bind} pool: the password provider failed: {source}")]
    Provider {
        /// The pool.
        bind: Bind,
        /// The provider's error.
        #[source]
        source: Arc<dyn StdError + Send + Sync>,
    },
}

impl PasswordError {
    /// The bind whose password could not be had.
    pub fn bind(&self) -> Bind {
        match self {
            PasswordError::File { bind, .. }
            | PasswordError::EmptyFile { bind, .. }
            | PasswordError::Provider { bind, .. } => *bind,
        }
    }
}

/// Where a bind's password comes from.
#[derive(Clone, Default)]
pub(crate) enum PasswordSource {
    /// The URI's own password (already in the per-host configs).
    #[default]
    Uri,
    /// A file, read for every new connection.
    File(PasswordFile),
    /// The pool builder's hook.
    Provider(Arc<dyn PasswordProvider>),
}

impl fmt::Debug for PasswordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordSource::Uri => f.write_str("Uri"),
            PasswordSource::File(file) => f.debug_tuple("File").field(&file.path).finish(),
            PasswordSource::Provider(_) => f.write_str("Provider"),
        }
    }
}

impl PasswordSource {
    /// The password file configured for `bind`, else the URI's password.
    pub(crate) fn for_bind(settings: &Settings, bind: Bind) -> PasswordSource {
        let file = match bind {
            Bind::Default => &settings.password_files.default,
            Bind::Bulk => &settings.password_files.bulk,
        };
        file.clone()
            .map_or(PasswordSource::Uri, PasswordSource::File)
    }

    /// `config` with the current password, for one connect attempt: borrowed when the URI's
    /// password is used (no copy on that path).
    ///
    /// The file is read on every call, not cached on its mtime: reading a few bytes costs
    /// microseconds next to a connect (TCP, SCRAM's key derivation, setup), and a secret rewritten
    /// within the file system's timestamp granularity with the same size would keep a stale key.
    pub(crate) async fn config<'a>(
        &self,
        config: &'a tokio_postgres::Config,
        bind: Bind,
    ) -> Result<Cow<'a, tokio_postgres::Config>, PasswordError> {
        let password = match self {
            PasswordSource::Uri => return Ok(Cow::Borrowed(config)),
            PasswordSource::File(file) => read_file(file, bind)?,
            PasswordSource::Provider(p) => {
                p.password(bind)
                    .await
                    .map_err(|source| PasswordError::Provider {
                        bind,
                        source: Arc::from(source),
                    })?
            }
        };
        let mut config = config.clone();
        config.password(password);
        Ok(Cow::Owned(config))
    }
}

/// The file's content less one trailing newline (`\n` or `\r\n`), as written by
/// `echo`, `kubectl create secret --from-file` or an editor.
fn read_file(file: &PasswordFile, bind: Bind) -> Result<String, PasswordError> {
    let mut text = std::fs::read_to_string(&file.path).map_err(|e| PasswordError::File {
        bind,
        setting: file.setting.clone(),
        path: file.path.clone(),
        source: Arc::new(e),
    })?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err(PasswordError::EmptyFile {
            bind,
            setting: file.setting.clone(),
            path: file.path.clone(),
        });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: PathBuf) -> PasswordFile {
        PasswordFile {
            path,
            setting: "DATABASE_PASSWORD_FILE".into(),
        }
    }

    #[test]
    fn one_trailing_newline_is_stripped_and_the_rest_kept() {
        let dir = std::env::temp_dir().join(format!("notify-db-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("pw");
        for (written, read) in [
            ("s3cret\n", "s3cret"),
            ("s3cret\r\n", "s3cret"),
            ("s3cret", "s3cret"),
            (" s3 cret \n\n", " s3 cret \n"),
        ] {
            std::fs::write(&path, written).expect("writing the file");
            let got = read_file(&file(path.clone()), Bind::Default).expect("reading it");
            assert_eq!(got, read, "from {written:?}");
        }
        std::fs::write(&path, "\n").expect("writing the file");
        let empty = read_file(&file(path.clone()), Bind::Bulk).expect_err("empty");
        assert!(matches!(empty, PasswordError::EmptyFile { .. }), "{empty}");
        std::fs::remove_dir_all(&dir).expect("removing the temp dir");
    }

    #[test]
    fn a_missing_file_names_the_variable_and_the_path() {
        let path = PathBuf::from("/nonexistent/notify-db/db-password");
        let err = read_file(&file(path), Bind::Bulk).expect_err("missing file");
        let text = err.to_string();
        assert!(
            text.contains("DATABASE_PASSWORD_FILE")
                && text.contains("/nonexistent/notify-db/db-password")
                && text.contains("bulk pool"),
            "{text}"
        );
        assert!(StdError::source(&err).is_some(), "the I/O error is chained");
    }
}
