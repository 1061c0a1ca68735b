//! Create the users table.

use barrel::types;
use notify_db_migrate::Migration;

use crate::{created_at, id_key, pg, reference, timestamp};

/// Users of the admin app, and who belongs to which service.
pub(crate) fn define(m: Migration) -> Migration {
    let mut up = barrel::Migration::new();
    up.create_table("users", |t| {
        t.add_column("id", id_key());
        t.add_column("name", types::text().nullable(false));
        t.add_column(
            "email_address",
            types::text().nullable(false).unique(true),
        );
        t.add_column("mobile_number", types::text().nullable(true));
        t.add_column(
            "state",
            types::text().nullable(false).default("pending"),
        );
        t.add_column("password_changed_at", timestamp());
        t.add_column("created_at", created_at());
        t.add_column("updated_at", timestamp());
    });
    up.create_table("user_to_service", |t| {
        t.add_column("user_id", reference("bigint REFERENCES users (id)", false));
        t.add_column(
            "service_id",
            reference("bigint REFERENCES services (id)", false),
        );
        t.set_primary_key(&["user_id", "service_id"]);
    });
    let mut down = barrel::Migration::new();
    down.drop_table("user_to_service");
    down.drop_table("users");
    m.up(pg(&up)).down(pg(&down))
}
