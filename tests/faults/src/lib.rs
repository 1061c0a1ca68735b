//! What the fault suite's runner binary, its tests and `cargo xtask test` share: the crash
//! matrix's migration set and the results table of the durable scenarios.

#![deny(missing_docs)]

pub mod results;

use notify_db_migrate::{Migration, MigrationSet, SetError};

/// Id of the extra non-transactional migration of [`crash_matrix_set`].
pub const EXTRA_ID: &str = "0011_notifications_more_indexes";

/// The starter set plus a multi-statement non-transactional migration (5 statements), which
/// `faults-migrate-runner` applies and the crash matrix kills at random moments.
pub fn crash_matrix_set() -> Result<MigrationSet, SetError> {
    let mut all: Vec<Migration> = notify_db_migrations::set()?.migrations().to_vec();
    all.push(
        Migration::new(EXTRA_ID)
            .no_transaction()
            .up("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_notifications_status ON notifications (status)")
            .up("SELECT pg_sleep(0.05)")
            .up("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_notifications_created_at ON notifications (created_at)")
            .up("SELECT pg_sleep(0.05)")
            .up("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_notifications_reference ON notifications (reference)")
            .down("DROP INDEX CONCURRENTLY IF EXISTS ix_notifications_reference")
            .down("DROP INDEX CONCURRENTLY IF EXISTS ix_notifications_created_at")
            .down("DROP INDEX CONCURRENTLY IF EXISTS ix_notifications_status"),
    );
    MigrationSet::new(all)
}
