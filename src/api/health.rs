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

/// Readiness: the database answers and shutdown has not started
///
/// 200 when this replica can serve: the database answers and shutdown has not started.
/// Redis is reported but does not decide: every replica shares it, so taking them all out of
/// the load balancer during a Redis outage would also stop what works without it (`/v2/auth`,
/// JWKS, the admin API); the exchange answers 503 by itself meanwhile.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "health",
    responses(
        (status = 200, description = "Ready", body = serde_json::Value),
        (status = 503, description = "Draining, or the database is unreachable", body = serde_json::Value),
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.is_draining() {
        let body = serde_json::json!({ "status": "draining" });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body));
    }
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
                tracing::warn!(error = %e, "redis unreachable (exchanges answer 503; still ready)");
                "unreachable"
            }
        }),
    };
    let status = match (database, redis) {
        ("ok", Some("unreachable")) => "degraded",
        ("ok", _) => "ready",
        _ => "unavailable",
    };
    let mut body = serde_json::json!({ "status": status, "database": database });
    if let Some(redis) = redis {
        body["redis"] = serde_json::Value::from(redis);
    }
    let code = if database == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
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
