//! Create the jobs table.

use barrel::types;
use notify_db_migrate::Migration;

use crate::{created_at, id_key, pg, reference, timestamp};

/// Jobs: a CSV file of recipients sent with one template.
pub(crate) fn define(m: Migration) -> Migration {
    let mut up = barrel::Migration::new();
    up.create_table("jobs", |t| {
        t.add_column("id", id_key());
        t.add_column("original_file_name", types::text().nullable(false));
        t.add_column(
            "service_id",
            reference("bigint REFERENCES services (id)", false),
        );
        t.add_column(
            "template_id",
            reference("bigint REFERENCES templates (id)", false),
        );
        t.add_column("notification_count", types::custom("bigint").nullable(false));
        t.add_column(
            "notifications_sent",
            types::custom("bigint").nullable(false).default(0),
        );
        t.add_column(
            "job_status",
            types::text().nullable(false).default("pending"),
        );
        t.add_column("scheduled_for", timestamp());
        t.add_column("processing_started", timestamp());
        t.add_column("created_at", created_at());
        t.add_column("updated_at", timestamp());
        t.add_index("ix_jobs_service_id", types::index(["service_id"]));
    });
    let mut down = barrel::Migration::new();
    down.drop_table("jobs");
    m.up(pg(&up)).down(pg(&down))
}
