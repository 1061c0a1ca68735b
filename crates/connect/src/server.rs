//! Facts every connect path checks or reads on the server.

use notify_db_config::MIN_SERVER_VERSION_NUM;

/// The replay lag of one server in seconds, in one unnamed statement: 0 on a primary, 0 on a
/// replica that has replayed all it received (caught up, even when idle for hours), else the
/// age of the last replayed transaction (`now() - pg_last_xact_replay_timestamp()`), or the
/// time since the server started when it has replayed no transaction since.
pub const REPLICA_LAG_SQL: &str = "SELECT CASE \
    WHEN NOT pg_is_in_recovery() THEN 0 \
    WHEN pg_last_wal_receive_lsn() IS NOT NULL AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
    ELSE GREATEST(0, EXTRACT(EPOCH FROM now() - COALESCE(pg_last_xact_replay_timestamp(), pg_postmaster_start_time()))) \
    END::float8";

/// A server older than notify-db supports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the server runs PostgreSQL {version}; notify-db needs 15 or later")]
pub struct ServerTooOld {
    /// Its `server_version`.
    pub version: String,
}

/// Refuses a server whose `server_version_num` is below
/// [`MIN_SERVER_VERSION_NUM`]; `version` is its `server_version`, for the error.
pub fn check_server_version(version_num: i64, version: &str) -> Result<(), ServerTooOld> {
    if version_num < MIN_SERVER_VERSION_NUM {
        return Err(ServerTooOld {
            version: version.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifteen_is_the_oldest_server_accepted() {
        assert!(check_server_version(150_000, "15.0").is_ok());
        assert!(check_server_version(170_002, "17.2").is_ok());
        let err = check_server_version(140_011, "14.11").expect_err("14 is too old");
        assert_eq!(err.version, "14.11");
        assert!(err.to_string().contains("14.11"), "{err}");
    }
}
