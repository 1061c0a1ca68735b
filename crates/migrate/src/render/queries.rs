//! The statements the engine reads the server with and takes, checks and releases the advisory
//! lock with. They are never part of a migration script, but they live beside it so that every
//! SQL text the engine sends is in one module.

use postgres_protocol::escape::escape_identifier;

use super::{JOURNAL_TABLE, VERSION_TABLE, lit};

/// Alembic's advisory lock id: `b"alembic\0"` read as a big-endian i64.
pub const ADVISORY_LOCK_ID: i64 = i64::from_be_bytes(*b"alembic\0");

/// `pg_locks` splits the 64-bit advisory lock id into two 32-bit halves.
fn lock_halves() -> (u32, u32) {
    (
        (ADVISORY_LOCK_ID >> 32) as u32,
        (ADVISORY_LOCK_ID & 0xffff_ffff) as u32,
    )
}

/// Whether `alembic_version` and the journal exist, as columns `has_version`, `has_journal`.
pub(crate) fn tables_exist() -> String {
    format!(
        "SELECT to_regclass('{VERSION_TABLE}') IS NOT NULL AS has_version, \
         to_regclass('{JOURNAL_TABLE}') IS NOT NULL AS has_journal"
    )
}

/// One round trip after connecting: server version (number, text), backend pid, a first try at
/// the advisory lock, and whether the two tables exist.
pub(crate) fn lock_probe() -> String {
    format!(
        "SELECT current_setting('server_version_num')::int AS v, current_setting('server_version') AS sv, \
         pg_backend_pid() AS pid, pg_try_advisory_lock({ADVISORY_LOCK_ID}) AS locked, \
         to_regclass('{VERSION_TABLE}') IS NOT NULL AS hv, \
         to_regclass('{JOURNAL_TABLE}') IS NOT NULL AS hj"
    )
}

/// A run's first read, before any lock: server version (columns `v`, `sv`), the revision and
/// the journal. Fails with 42P01 (undefined table) until both tables exist.
pub(crate) fn unlocked_state() -> String {
    format!(
        "SELECT current_setting('server_version_num')::int AS v, current_setting('server_version') AS sv;\n{};\n{}",
        read_version(),
        read_journal(false)
    )
}

/// One more try at the advisory lock.
pub(crate) fn try_lock() -> String {
    format!("SELECT pg_try_advisory_lock({ADVISORY_LOCK_ID})")
}

/// The revision `alembic_version` holds, as column `current_version`.
pub(crate) fn read_version() -> String {
    format!("SELECT version_num AS current_version FROM {VERSION_TABLE}")
}

/// Every row of `alembic_version` (Alembic allows several heads), sorted.
pub(crate) fn read_versions() -> String {
    format!("SELECT version_num FROM {VERSION_TABLE} ORDER BY 1")
}

/// The journal's upgrade/downgrade/stamp rows in order, first column `j_version`. A run needs no
/// `applied_at` (only `history` shows it): without it the server formats no timestamp per
/// applied migration, a measurable part of a no-op over a long history.
pub(crate) fn read_journal(with_times: bool) -> String {
    let applied_at = if with_times {
        "applied_at::text"
    } else {
        "NULL::text"
    };
    format!(
        "SELECT version_num AS j_version, operation, checksum, {applied_at} AS applied_at \
         FROM {JOURNAL_TABLE} WHERE operation <> 'step' ORDER BY id"
    )
}

/// How many statements of non-transactional migration `id` completed since its last
/// upgrade/downgrade row.
pub(crate) fn completed_steps(id: &str) -> String {
    format!(
        "SELECT coalesce(max(step) + 1, 0) FROM {JOURNAL_TABLE} WHERE version_num = {v} AND operation = 'step' \
         AND id > coalesce((SELECT max(id) FROM {JOURNAL_TABLE} WHERE version_num = {v} AND operation <> 'step'), 0)",
        v = lit(id)
    )
}

/// A runner that dies mid-statement must not leave its statement running for long.
pub(crate) const CONNECTION_CHECK: &str = "SET client_connection_check_interval = '1s'";

/// The sessions blocking server process `pid`: pid, state, query start, start of the query.
pub(crate) fn blockers_of(pid: i32) -> String {
    format!(
        "SELECT pid, state, query_start, left(query, 200) FROM pg_stat_activity \
         WHERE pid = ANY(pg_blocking_pids({pid}))"
    )
}

/// Every INVALID index in user schemas: schema, name.
pub(crate) const INVALID_INDEXES: &str = "SELECT n.nspname, c.relname FROM pg_index i \
    JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
    WHERE NOT i.indisvalid AND n.nspname NOT IN ('pg_catalog', 'information_schema')";

/// Drops INVALID index `schema.name` (left by a failed `CREATE INDEX CONCURRENTLY`).
pub(crate) fn drop_invalid_index(schema: &str, name: &str) -> String {
    format!(
        "DROP INDEX CONCURRENTLY IF EXISTS {}.{}",
        escape_identifier(schema),
        escape_identifier(name)
    )
}

/// Ends a failed transaction before the connection is used again.
pub(crate) const ROLLBACK: &str = "ROLLBACK";

/// The holders of the migration advisory lock in the current database: pid, application_name,
/// state, state_change and backend_start (ISO 8601 UTC), the start of the query.
pub(crate) fn lock_holders() -> String {
    let (classid, objid) = lock_halves();
    format!(
        "SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.state, ''), \
         coalesce(to_char(a.state_change AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''), \
         coalesce(to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''), \
         left(coalesce(a.query, ''), 200) \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.classid = {classid} \
         AND l.objid = {objid} AND l.objsubid = 1 \
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         ORDER BY a.pid"
    )
}

/// This session's backend pid, and whether it holds the lock (`release`: releases it instead,
/// true when it was held).
pub(crate) fn own_lock_state(release: bool) -> String {
    if release {
        return format!("SELECT pg_backend_pid(), pg_advisory_unlock({ADVISORY_LOCK_ID})");
    }
    let (classid, objid) = lock_halves();
    format!(
        "SELECT pg_backend_pid(), EXISTS (SELECT 1 FROM pg_locks WHERE locktype = \
         'advisory' AND granted AND pid = pg_backend_pid() AND classid = {classid} \
         AND objid = {objid} AND objsubid = 1)"
    )
}

/// This session's application_name.
pub(crate) const APPLICATION_NAME: &str = "SELECT current_setting('application_name')";

/// Ends orphaned lock holder `pid`; when the statement lands on that very process (through a
/// pooler), unlocks there instead.
pub(crate) fn end_orphan(pid: i32) -> String {
    format!(
        "SELECT CASE WHEN pg_backend_pid() = {pid} THEN pg_advisory_unlock({ADVISORY_LOCK_ID}) \
         ELSE pg_terminate_backend({pid}) END"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_id_matches_alembic() {
        assert_eq!(ADVISORY_LOCK_ID, 7020097439640675072);
    }

    #[test]
    fn holders_query_matches_alembics_lock_in_pg_locks_halves() {
        let sql = lock_holders();
        // 7020097439640675072 = 0x616c656d_62696300
        assert!(sql.contains("l.classid = 1634493805"), "{sql}");
        assert!(sql.contains("l.objid = 1651073792"), "{sql}");
        assert!(sql.contains("l.objsubid = 1"), "{sql}");
        assert!(sql.contains("datname = current_database()"), "{sql}");
    }
}
