//! Create the notification_history table.

use barrel::types;
use notify_db_migrate::Migration;

use crate::{pg, reference, timestamp};

/// Notification history: notifications without the recipient, kept after the retention period.
/// Its id is the notification's id (copied, not generated).
pub(crate) fn define(m: Migration) -> Migration {
    let mut up = barrel::Migration::new();
    up.create_table("notification_history", |t| {
        t.add_column("id", types::custom("bigint PRIMARY KEY"));
        t.add_column("job_id", reference("bigint REFERENCES jobs (id)", true));
        t.add_column("job_row_number", types::custom("bigint").nullable(true));
        t.add_column(
            "service_id",
            reference("bigint REFERENCES services (id)", false),
        );
        t.add_column(
            "template_id",
            reference("bigint REFERENCES templates (id)", false),
        );
        t.add_column("template_version", types::custom("bigint").nullable(false));
        t.add_column(
            "api_key_id",
            reference("bigint REFERENCES api_keys (id)", true),
        );
        t.add_column("key_type", types::text().nullable(false));
        t.add_column("notification_type", types::text().nullable(false));
        t.add_column(
            "status",
            types::custom("notification_status").nullable(false),
        );
        t.add_column("reference", types::text().nullable(true));
        t.add_column("client_reference", types::text().nullable(true));
        t.add_column("sent_at", timestamp());
        t.add_column("created_at", types::custom("timestamptz").nullable(false));
        t.add_column("updated_at", timestamp());
        t.add_index(
            "ix_notification_history_service_id_created_at",
            types::index(["service_id", "created_at"]),
        );
    });
    let mut down = barrel::Migration::new();
    down.drop_table("notification_history");
    m.up(pg(&up)).down(pg(&down))
}
