//! Create the templates table.

use barrel::types;
use notify_db_migrate::Migration;

use crate::{created_at, id_key, pg, reference, timestamp};

/// Message templates (email, sms, letter) of a service.
pub(crate) fn define(m: Migration) -> Migration {
    let mut up = barrel::Migration::new();
    up.create_table("templates", |t| {
        t.add_column("id", id_key());
        t.add_column("name", types::text().nullable(false));
        t.add_column("template_type", types::text().nullable(false));
        t.add_column("subject", types::text().nullable(true));
        t.add_column("content", types::text().nullable(false));
        t.add_column(
            "service_id",
            reference("bigint REFERENCES services (id)", false),
        );
        t.add_column("version", types::custom("bigint").nullable(false).default(1));
        t.add_column("archived", types::boolean().nullable(false).default(false));
        t.add_column("created_at", created_at());
        t.add_column("updated_at", timestamp());
        t.add_index("ix_templates_service_id", types::index(["service_id"]));
    });
    let mut down = barrel::Migration::new();
    down.drop_table("templates");
    m.up(pg(&up)).down(pg(&down))
}
