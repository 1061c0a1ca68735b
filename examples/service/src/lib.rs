//! A small notification-service API built only from notify-db's public crates, as a team
//! would write it: settings from the environment, both pools, the metrics layer, optional
//! migrate-on-start, a health check like the reference's `/_status`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use notify_db_config::Settings;
use notify_db_metrics::{MetricsHandle, RequestContextLayer};
use notify_db_migrate::{Migrator, Options, Target};
use notify_db_pool::{Bind, Databases};
use serde_json::json;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The two pools.
    pub db: Databases,
    /// The metrics handle, rendered on `/metrics`.
    pub metrics: Arc<MetricsHandle>,
}

/// Migrates the primary to head (what `MIGRATE_ON_START=1` does before serving).
pub async fn migrate_on_start(settings: &Settings) -> anyhow::Result<()> {
    let set = notify_db_migrations::set()?;
    let migrator = Migrator::new(set, settings.migration_uri()?)?
        .with_options(Options::from_settings(&settings.migrations));
    migrator.upgrade(&Target::Head).await?;
    Ok(())
}

/// The router: `/_status`, `/metrics`, a write on `default` and a read on `bulk`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/_status", get(status))
        .route("/metrics", get(metrics))
        .route("/services", post(create_service))
        .route("/services/{id}", get(get_service))
        .layer(RequestContextLayer::new())
        .with_state(state)
}

/// An error answered as 500 with the message (which never holds a password: the crates redact).
struct AppError(anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for AppError {
    fn from(e: E) -> Self {
        AppError(e.into())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = match self
            .0
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(|e| e.code())
        {
            Some(c) if *c == tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION => {
                StatusCode::CONFLICT
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (
            status,
            Json(json!({ "result": "error", "message": format!("{:#}", self.0) })),
        )
            .into_response()
    }
}

/// Hands a query's result on, after reporting its error to the metrics (a statement timeout is
/// counted in `db_statement_timeouts_total`: the pool does not see query results).
fn observed<T>(
    s: &AppState,
    bind: Bind,
    result: Result<T, tokio_postgres::Error>,
) -> Result<T, tokio_postgres::Error> {
    if let Err(e) = &result {
        s.metrics.observer().statement_error(bind, e);
    }
    result
}

async fn version(s: &AppState, bind: Bind) -> Result<Option<String>, AppError> {
    let pool = match bind {
        Bind::Default => s.db.default(),
        Bind::Bulk => s.db.bulk(),
    };
    let conn = pool.get().await?;
    let row = conn
        .query_opt("SELECT version_num FROM alembic_version", &[])
        .await;
    Ok(observed(s, bind, row)?.map(|r| r.get(0)))
}

async fn status(State(s): State<AppState>) -> Result<Json<serde_json::Value>, AppError> {
    let db_version = version(&s, Bind::Default).await?;
    let db_bulk_version = version(&s, Bind::Bulk).await?;
    Ok(Json(
        json!({ "status": "ok", "db_version": db_version, "db_bulk_version": db_bulk_version }),
    ))
}

async fn metrics(State(s): State<AppState>) -> String {
    s.metrics.render()
}

async fn create_service(
    State(s): State<AppState>,
    Json(body): Json<serde_json::Value>,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
    let name = body
        .get("name")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        return Ok((
            StatusCode::BAD_REQUEST,
            Json(json!({ "result": "error", "message": "name is required" })),
        ));
    }
    let conn = s.db.default().get().await?;
    let row = conn
        .query_one(
            "INSERT INTO services (name, message_limit, email_from) VALUES ($1::text, 1000, $1::text) RETURNING id",
            &[&name],
        )
        .await;
    let id: i64 = observed(&s, Bind::Default, row)?.get(0);
    Ok((StatusCode::CREATED, Json(json!({ "id": id, "name": name }))))
}

async fn get_service(State(s): State<AppState>, Path(id): Path<i64>) -> Result<Response, AppError> {
    let conn = s.db.bulk().get().await?;
    let row = conn
        .query_opt("SELECT name, active FROM services WHERE id = $1", &[&id])
        .await;
    Ok(match observed(&s, Bind::Bulk, row)? {
        Some(r) => {
            let (name, active): (String, bool) = (r.get(0), r.get(1));
            Json(json!({ "id": id, "name": name, "active": active })).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "result": "error", "message": "no such service" })),
        )
            .into_response(),
    })
}
