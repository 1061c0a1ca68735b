//! Create the api_keys table.

use barrel::types;
use notify_db_migrate::Migration;

use crate::{created_at, id_key, pg, reference, timestamp};

/// API keys: a service authenticates its API calls with one of these.
pub(crate) fn define(m: Migration) -> Migration {
    let mut up = barrel::Migration::new();
    up.create_table("api_keys", |t| {
        t.add_column("id", id_key());
        t.add_column("name", types::text().nullable(false));
        t.add_column("secret", types::text().nullable(false).unique(true));
        t.add_column(
            "service_id",
            reference("bigint REFERENCES services (id)", false),
        );
        t.add_column("key_type", types::text().nullable(false));
        t.add_column("expiry_date", timestamp());
        t.add_column(
            "created_by_id",
            reference("bigint REFERENCES users (id)", false),
        );
        t.add_column("created_at", created_at());
        t.add_column("updated_at", timestamp());
        t.add_index("ix_api_keys_service_id", types::index(["service_id"]));
    });
    let mut down = barrel::Migration::new();
    down.drop_table("api_keys");
    m.up(pg(&up)).down(pg(&down))
}
