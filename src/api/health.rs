//! `/healthz` (the process answers) and `/readyz` (its dependencies answer), and the metrics
//! page served on `server.metrics_listen`.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use http::{StatusCode, header};

use crate::app::AppState;
use crate::metrics::Metrics;

/// Liveness: the process answers
///
/// `{"status": "ok"}` while the process can answer at all.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "health",
    responses((status = 200, description = "Alive", body = serde_json::Value)),
)]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: the database (and Redis) answer
///
/// 200 when the database (and Redis, when configured) answer, else 503 naming which does not,
/// so the load balancer stops sending requests this replica cannot serve.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "health",
    responses(
        (status = 200, description = "Ready", body = serde_json::Value),
        (status = 503, description = "A dependency is unreachable", body = serde_json::Value),
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let database = match state.store.ping().await {
        Ok(()) => "ok",
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed: database");
            "unreachable"
        }
    };
    let redis = match state.shared.redis() {
        None => None,
        Some(redis) => Some(match redis.ping().await {
            Ok(()) => "ok",
            Err(e) => {
                tracing::warn!(error = %e, "readiness check failed: redis");
                "unreachable"
            }
        }),
    };
    let ready = database == "ok" && redis.is_none_or(|r| r == "ok");
    let mut body = serde_json::json!({
        "status": if ready { "ready" } else { "unavailable" },
        "database": database,
    });
    if let Some(redis) = redis {
        body["redis"] = serde_json::Value::from(redis);
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// `GET /metrics` (metrics listener only): Prometheus text format.
pub async fn metrics(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
}
