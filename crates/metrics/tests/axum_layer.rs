//! The axum layer: method, Host header and matched route template become the request context.

mod common;

use std::net::IpAddr;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use notify_db_metrics::{MetricsHandle, RequestContextLayer, current_context, names};
use notify_db_pool::{Bind, ConnInfo, PoolObserver};
use tower::ServiceExt;

use common::parse;

async fn echo() -> String {
    match current_context() {
        Some(c) => format!("{}|{}|{}", c.method(), c.host(), c.path()),
        None => "none".to_owned(),
    }
}

async fn call(app: &Router, method: &str, uri: &str, host: &str) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", host)
        .body(Body::empty())
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .expect("body");
    (status, String::from_utf8(bytes.to_vec()).expect("utf8"))
}

#[tokio::test]
async fn route_template_not_raw_path_and_no_endpoint_for_fallback() {
    let app = Router::new()
        .route("/v2/notifications/{id}", get(echo))
        .route("/service/{service_id}/job", post(echo))
        .fallback(echo)
        .layer(RequestContextLayer::new());
    assert_eq!(
        call(
            &app,
            "GET",
            "/v2/notifications/6f2c1c0e-1b1a-4a53-9d5e-000000000001",
            "api.notify.test"
        )
        .await,
        (
            StatusCode::OK,
            "GET|api.notify.test|/v2/notifications/{id}".to_owned()
        )
    );
    assert_eq!(
        call(&app, "POST", "/service/abc/job?x=1", "admin.notify.test").await,
        (
            StatusCode::OK,
            "POST|admin.notify.test|/service/{service_id}/job".to_owned()
        )
    );
    assert_eq!(
        call(&app, "GET", "/no/such/route/123", "api.notify.test").await,
        (StatusCode::OK, "GET|api.notify.test|No endpoint".to_owned())
    );
}

#[tokio::test]
async fn checkouts_inside_a_handler_carry_the_request_labels() {
    let handle = MetricsHandle::new();
    let obs = handle.observer();
    let conn = ConnInfo {
        id: 1,
        bind: Bind::Default,
        host: "db".to_owned(),
        port: 5432,
        server_addr: Some(IpAddr::from([10, 0, 0, 5])),
        in_recovery: false,
        backend_pid: 42,
    };
    let handler_obs = obs.clone();
    let handler_conn = conn.clone();
    let app = Router::new()
        .route(
            "/v2/notifications/{id}",
            get(move || async move {
                let token = handler_obs.checked_out(&handler_conn, std::time::Duration::ZERO);
                handler_obs.returned(&handler_conn, std::time::Duration::from_millis(7), token);
                "ok"
            }),
        )
        .layer(RequestContextLayer::new());
    for id in ["a", "b", "c"] {
        let (status, _) = call(
            &app,
            "GET",
            &format!("/v2/notifications/{id}"),
            "api.notify.test",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    let p = parse(&handle.render());
    let labels = [
        ("method", "GET"),
        ("host", "api.notify.test"),
        ("path", "/v2/notifications/{id}"),
        ("bind", "default"),
        ("inet_server_addr", "10.0.0.5"),
    ];
    assert_eq!(
        p.label_sets(names::OPEN_DURATION).len(),
        1,
        "one label set for three raw paths"
    );
    assert_eq!(p.hist_count(names::OPEN_DURATION, &labels), Some(3.0));
}
