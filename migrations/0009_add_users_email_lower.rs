//! Add users.email_address_lower (nullable) with a NOT VALID check.

use barrel::types;
use notify_db_migrate::Migration;

use crate::pg;

/// Step one of adding a derived column without downtime: a nullable column, and a check that
/// new and updated rows keep it right, added NOT VALID so it does not scan the table under lock.
/// 0010 backfills it and validates the check.
pub(crate) fn define(m: Migration) -> Migration {
    let mut up = barrel::Migration::new();
    up.change_table("users", |t| {
        t.add_column("email_address_lower", types::text().nullable(true));
    });
    let mut down = barrel::Migration::new();
    down.change_table("users", |t| {
        t.drop_column("email_address_lower");
    });
    m.up(pg(&up))
        .up(
            "ALTER TABLE users ADD CONSTRAINT ck_users_email_address_lower \
             CHECK (email_address_lower IS NULL OR email_address_lower = lower(email_address)) NOT VALID",
        )
        .down("ALTER TABLE users DROP CONSTRAINT IF EXISTS ck_users_email_address_lower")
        .down(pg(&down))
}
