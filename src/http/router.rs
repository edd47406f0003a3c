//! The route table, and one middleware that every request passes: it renders [`ApiError`]s,
//! turns axum's bare 405s into error bodies, counts the request in the metrics and writes the
//! request log line (fields first; route patterns, never tokens or query strings).

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use http::{HeaderValue, Method, StatusCode, header};

use super::ClientAddr;
use super::error::{ApiError, ErrorType};
use crate::api::{
    exchange, federation, federation_test, health, permissions, registry_auth, robots, sts,
    well_known,
};
use crate::app::AppState;
use crate::metrics::Metrics;

/// Every route of the public listener, as `(path pattern, handlers)`. One table, so the
/// router and whatever lists its paths (the API reference test) cannot disagree.
pub fn routes() -> Vec<(String, MethodRouter<AppState>)> {
    let mut routes = Vec::new();
    for prefix in ["/api/v1/user", "/api/v1/organization/{org}"] {
        routes.extend([
            (format!("{prefix}/robots"), get(robots::list)),
            (
                format!("{prefix}/robots/{{short}}"),
                get(robots::get).put(robots::create).delete(robots::delete),
            ),
            (
                format!("{prefix}/robots/{{short}}/regenerate"),
                post(robots::regenerate),
            ),
            (
                format!("{prefix}/robots/{{short}}/permissions"),
                get(robots::permissions),
            ),
            (
                format!("{prefix}/robots/{{short}}/federation"),
                get(federation::list)
                    .post(federation::set)
                    .delete(federation::delete),
            ),
            (
                format!("{prefix}/robots/{{short}}/federation/test"),
                post(federation_test::test),
            ),
        ]);
    }
    let fixed: [(&str, MethodRouter<AppState>); 9] = [
        (
            "/api/v1/repository/{ns}/{repo}/permissions/user/",
            get(permissions::list),
        ),
        (
            "/api/v1/repository/{ns}/{repo}/permissions/user/{name}",
            get(permissions::get)
                .put(permissions::set)
                .delete(permissions::delete),
        ),
        (
            "/oauth2/federation/robot/token",
            get(exchange::exchange).post(exchange::exchange),
        ),
        ("/oauth2/token", post(sts::token)),
        ("/v2/auth", get(registry_auth::token)),
        ("/.well-known/jwks.json", get(well_known::jwks)),
        (
            "/.well-known/openid-configuration",
            get(well_known::openid_configuration),
        ),
        ("/healthz", get(health::healthz)),
        ("/readyz", get(health::readyz)),
    ];
    routes.extend(fixed.map(|(path, handlers)| (path.to_string(), handlers)));
    routes
}

/// The gateway's public router (everything on `server.listen`).
pub fn router(state: AppState) -> Router {
    routes()
        .into_iter()
        .fold(Router::new(), |router, (path, handlers)| {
            router.route(&path, handlers)
        })
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.config.server.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The router of `server.metrics_listen`: `/metrics` and nothing else.
pub fn metrics_router(metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .with_state(metrics)
}

async fn not_found() -> ApiError {
    ApiError::not_found("No such endpoint")
}

/// Methods outside this set are counted as `other`, keeping the label bounded.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = request.method().clone();
    let client = request.extensions().get::<ClientAddr>().map(|c| c.0.ip());

    let mut response = next.run(request).await;
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && response.extensions().get::<ApiError>().is_none()
    {
        let allow = response.headers().get(header::ALLOW).cloned();
        response = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorType::InvalidRequest,
            format!("Method {method} is not allowed here"),
        )
        .into_response();
        if let Some(allow) = allow {
            response.headers_mut().insert(header::ALLOW, allow);
        }
    }
    let error = response.extensions_mut().remove::<ApiError>();
    if let Some(error) = &error {
        let body = error.body(&state.config.server.public_url).to_string();
        *response.body_mut() = Body::from(body);
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response.headers_mut().remove(header::CONTENT_LENGTH);
    }

    let status = response.status();
    let elapsed = started.elapsed();
    let method = method_label(&method);
    state
        .metrics
        .http_requests
        .with_label_values(&[route, method, status.as_str()])
        .inc();
    state
        .metrics
        .http_duration
        .with_label_values(&[route])
        .observe(elapsed.as_secs_f64());
    tracing::info!(
        target: "http",
        method,
        route,
        status = status.as_u16(),
        elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        client = %client.map(|c| c.to_string()).unwrap_or_default(),
        error_type = error.as_ref().map(|e| e.error_type.as_str()),
        "request"
    );
    response
}
