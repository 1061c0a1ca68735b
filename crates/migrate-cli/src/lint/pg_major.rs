//! The PostgreSQL major squawk's rules are applied for: given, the server's, or the oldest
//! supported.

use super::error::LintError;

/// The oldest supported major: the linter's PostgreSQL version when none is set and no server
/// is asked (rules that hold there hold on every supported server).
pub const DEFAULT_PG_MAJOR: u32 = (notify_db_config::MIN_SERVER_VERSION_NUM / 10_000) as u32;

/// The PostgreSQL major squawk's rules are applied for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgMajor(pub u32);

impl Default for PgMajor {
    fn default() -> Self {
        PgMajor(DEFAULT_PG_MAJOR)
    }
}

/// The major of the server `uri` points at (`server_version_num / 10000`), for the linter.
pub async fn server_major(uri: &notify_db_config::DatabaseUri) -> Result<PgMajor, LintError> {
    use notify_db_connect::ConnectUri;
    let what = || uri.to_string();
    let tls = uri.tls().map_err(|e| LintError::ServerVersion {
        server: what(),
        why: e.to_string(),
    })?;
    let ask = async {
        let client = tls.connect(&uri.to_pg_config()).await?;
        let row = client
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await?;
        Ok::<i32, tokio_postgres::Error>(row.get(0))
    };
    match tokio::time::timeout(std::time::Duration::from_secs(10), ask).await {
        Ok(Ok(num)) => Ok(PgMajor(num.max(0) as u32 / 10_000)),
        Ok(Err(e)) => Err(LintError::ServerVersion {
            server: what(),
            why: e.to_string(),
        }),
        Err(_) => Err(LintError::ServerVersion {
            server: what(),
            why: "no answer within 10 s".into(),
        }),
    }
}
