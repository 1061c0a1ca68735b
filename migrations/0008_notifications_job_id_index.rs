//! Index notifications by job, built CONCURRENTLY (outside a transaction).

use notify_db_migrate::Migration;

/// `notifications` is large and busy by the time this runs: build the index without blocking
/// writes. Barrel cannot say CONCURRENTLY, so this is raw SQL; `IF NOT EXISTS` makes a rerun safe
/// (an INVALID index left by a killed run is dropped by the engine before the retry).
pub(crate) fn define(m: Migration) -> Migration {
    m.no_transaction()
        .up("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_notifications_job_id ON notifications (job_id)")
        .down("DROP INDEX CONCURRENTLY IF EXISTS ix_notifications_job_id")
}
