//! Backfill users.email_address_lower in batches, then validate its check.

use notify_db_migrate::Migration;

/// A batched backfill: 1000 rows per transaction (the `DO` block commits after each batch, which
/// PostgreSQL allows only outside a transaction block, hence `no_transaction`), so no long
/// transaction holds row locks or delays vacuum. It is idempotent: a rerun continues with the
/// rows still NULL. The check added NOT VALID by 0009 is validated afterwards
/// (SHARE UPDATE EXCLUSIVE: reads and writes continue).
// lint-allow: prefer-robust-stmts: both statements are safe to rerun (the backfill only touches rows still NULL, VALIDATE CONSTRAINT on a valid check is a no-op) and the engine resumes after the last completed one
pub(crate) fn define(m: Migration) -> Migration {
    m.no_transaction()
        .up("DO $backfill$
DECLARE
    n bigint;
BEGIN
    LOOP
        UPDATE users SET email_address_lower = lower(email_address)
        WHERE id IN (
            SELECT id FROM users WHERE email_address_lower IS NULL ORDER BY id LIMIT 1000
        );
        GET DIAGNOSTICS n = ROW_COUNT;
        COMMIT;
        EXIT WHEN n = 0;
    END LOOP;
END
$backfill$")
        .up("ALTER TABLE users VALIDATE CONSTRAINT ck_users_email_address_lower")
        .down("-- Nothing to undo: 0009's down drops the column.")
}
