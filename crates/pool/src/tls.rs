//! The pool's TLS connector: notify-db-connect's, with the bind named in errors.

use notify_db_config::DatabaseUri;
pub(crate) use notify_db_connect::Tls;

use crate::error::PoolError;
use crate::observer::Bind;

/// Builds the connector for `uri`'s `sslmode` and `sslrootcert`.
pub(crate) fn for_uri(uri: &DatabaseUri, bind: Bind) -> Result<Tls, PoolError> {
    Tls::for_uri(uri).map_err(|e| PoolError::Tls {
        bind,
        path: e.path,
        cause: e.cause,
    })
}
