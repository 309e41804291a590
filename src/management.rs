//! The management port (`XSROUTER_MANAGEMENT_PORT`): liveness, readiness and Prometheus metrics,
//! on a listener of its own so that no xs-app.json route can reach them.
//!
//! - `GET /health/live`: 200 while the process serves;
//! - `GET /health/ready`: 200, or 503 with the reason while a bound client certificate has expired;
//! - `GET /metrics`: the Prometheus text format.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};

use crate::pipeline::AppState;

pub fn app(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/health/live", get(|| async { "ok\n" }))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn ready(State(state): State<AppState>) -> Response {
    match state.not_ready() {
        None => "ready\n".into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.render_metrics().await,
    )
        .into_response()
}

/// Serves the management endpoints until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    axum::serve(listener, app(state)).await
}
