//! Create the notification_status enum and the notifications table.

use barrel::types;
use notify_db_migrate::Migration;

use crate::{created_at, id_key, pg, reference, timestamp};

/// Notifications: one row per message, with its delivery status (an enum: barrel has no
/// `CREATE TYPE`, so that part is raw SQL).
pub(crate) fn define(m: Migration) -> Migration {
    let mut up = barrel::Migration::new();
    up.create_table("notifications", |t| {
        t.add_column("id", id_key());
        t.add_column("to", types::text().nullable(false));
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
            types::custom("notification_status")
                .nullable(false)
                .default("created"),
        );
        t.add_column("reference", types::text().nullable(true));
        t.add_column("client_reference", types::text().nullable(true));
        t.add_column("sent_at", timestamp());
        t.add_column("created_at", created_at());
        t.add_column("updated_at", timestamp());
        t.add_index(
            "ix_notifications_service_id_created_at",
            types::index(["service_id", "created_at"]),
        );
    });
    let mut down = barrel::Migration::new();
    down.drop_table("notifications");
    m.up(
        "CREATE TYPE notification_status AS ENUM ('created', 'sending', 'sent', 'delivered', \
         'pending', 'failed', 'technical-failure', 'temporary-failure', 'permanent-failure')",
    )
    .up(pg(&up))
    .down(pg(&down))
    .down("DROP TYPE notification_status")
}
