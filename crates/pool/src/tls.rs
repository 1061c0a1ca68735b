//! The pool's TLS connector: notify-db-config's, with the bind named in errors.

use notify_db_config::DatabaseUri;
pub(crate) use notify_db_config::Tls;

use crate::error::PoolError;
use crate::observer::Bind;

/// Builds the connector for `uri`'s `sslmode` and `sslrootcert`.
pub(crate) fn for_uri(uri: &DatabaseUri, bind: Bind) -> Result<Tls, PoolError> {
    uri.tls().map_err(|e| PoolError::Tls {
        bind,
        path: e.path,
        cause: e.cause,
    })
}
