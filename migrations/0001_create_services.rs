//! Create the services table.

use barrel::types;
use notify_db_migrate::Migration;

use crate::{created_at, id_key, pg, timestamp};

/// Services: the tenants that send notifications.
pub(crate) fn define(m: Migration) -> Migration {
    let mut up = barrel::Migration::new();
    up.create_table("services", |t| {
        t.add_column("id", id_key());
        t.add_column("name", types::text().nullable(false).unique(true));
        t.add_column("active", types::boolean().nullable(false).default(true));
        t.add_column("message_limit", types::custom("bigint").nullable(false));
        t.add_column(
            "restricted",
            types::boolean().nullable(false).default(false),
        );
        t.add_column("email_from", types::text().nullable(false));
        t.add_column("created_at", created_at());
        t.add_column("updated_at", timestamp());
    });
    let mut down = barrel::Migration::new();
    down.drop_table("services");
    m.up(pg(&up)).down(pg(&down))
}
