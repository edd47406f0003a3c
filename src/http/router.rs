//! The route table, and one middleware that every request passes: it renders [`ApiError`]s,
//! turns axum's bare 405s into error bodies, counts the request in the metrics and writes the
//! request log line (fields first; route patterns, never tokens or query strings).

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, Method, StatusCode, header};
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{PathItem, RefOr};
use utoipa_axum::router::UtoipaMethodRouter;
use utoipa_axum::routes;

use super::ClientAddr;
use super::auth::Scope;
use super::error::{ApiError, ErrorType};
use crate::api::{
    discovery, entities, exchange, federation, federation_test, health, organization, permissions,
    registry_auth, registry_oauth, robots, sts, user, well_known,
};
use crate::app::AppState;
use crate::metrics::Metrics;

/// One route: its handlers with the OpenAPI description of their `#[utoipa::path]` annotations
/// (utoipa-axum's `routes!`): the schemas they use, their path pattern with its operations, and
/// the method router. The path and methods the router serves come from the same annotations
/// that `/api/v1/discovery` publishes, so the two cannot disagree.
pub type Endpoint = UtoipaMethodRouter<AppState>;

/// Every route of the public listener, as `(path pattern, endpoint)`. One table, so the
/// router, the OpenAPI document and whatever lists its paths (the API reference test) agree.
/// A new endpoint is one `routes!` line here.
pub fn routes() -> Vec<(String, Endpoint)> {
    // The caller's own robots and an organization's are served by the same handlers, whose
    // annotations describe the organization's form.
    let robot_api = || {
        [
            routes!(robots::list),
            routes!(robots::get, robots::create, robots::delete),
            routes!(robots::regenerate),
            routes!(robots::permissions),
            routes!(federation::list, federation::set, federation::delete),
            routes!(federation_test::test),
        ]
    };
    let mut endpoints: Vec<Endpoint> = robot_api().into_iter().map(for_own_robots).collect();
    endpoints.extend(robot_api());
    endpoints.extend([
        routes!(permissions::list),
        routes!(permissions::get, permissions::set, permissions::delete),
        routes!(exchange::exchange),
        routes!(sts::token),
        routes!(registry_auth::token, registry_oauth::token),
        routes!(well_known::jwks),
        routes!(well_known::openid_configuration),
        routes!(health::healthz),
        routes!(health::readyz),
        routes!(user::get),
        routes!(organization::get),
        routes!(entities::search),
        routes!(discovery::document),
    ]);
    endpoints
        .into_iter()
        .map(|endpoint| (path_of(&endpoint), endpoint))
        .collect()
}

/// The one path pattern an endpoint's annotations name (one `routes!` per path).
fn path_of(endpoint: &Endpoint) -> String {
    let mut paths = endpoint.1.paths.keys();
    match (paths.next(), paths.next()) {
        (Some(path), None) => path.clone(),
        _ => panic!(
            "one routes! per path pattern: {:?}",
            endpoint.1.paths.keys()
        ),
    }
}

const ORG_ROBOTS: &str = "/api/v1/organization/{org}/robots";
const OWN_ROBOTS: &str = "/api/v1/user/robots";

/// An organization robot endpoint moved to `/api/v1/user/robots...`: without the `{org}`
/// parameter, needing `user:admin` instead of `org:admin`, and with Quay's operation ids
/// (`getOrgRobot` becomes `getUserRobot`).
fn for_own_robots((schemas, mut paths, handlers): Endpoint) -> Endpoint {
    paths.paths = std::mem::take(&mut paths.paths)
        .into_iter()
        .map(|(path, mut item)| {
            let suffix = path.strip_prefix(ORG_ROBOTS).unwrap_or_else(|| {
                panic!("{path}: the robot API's annotations name {ORG_ROBOTS}...")
            });
            for_own_namespace(&mut item);
            (format!("{OWN_ROBOTS}{suffix}"), item)
        })
        .collect();
    (schemas, paths, handlers)
}

fn for_own_namespace(item: &mut PathItem) {
    for operation in [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
    ]
    .into_iter()
    .flatten()
    {
        if let Some(parameters) = &mut operation.parameters {
            parameters.retain(|p| {
                !matches!(p, RefOr::T(p) if p.name == "org" && p.parameter_in == ParameterIn::Path)
            });
        }
        if let Some(id) = &mut operation.operation_id {
            *id = id.replacen("Org", "User", 1);
        }
        operation.security = Some(vec![SecurityRequirement::new(
            discovery::API_TOKEN,
            [Scope::UserAdmin.as_str()],
        )]);
    }
}

/// The gateway's public router (everything on `server.listen`).
pub fn router(state: AppState) -> Router {
    routes()
        .into_iter()
        .fold(Router::new(), |router, (path, (_, _, handlers))| {
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

/// Behind a trusted proxy, the client is the address its forwarded header names.
fn resolve_client(state: &AppState, request: &mut Request) -> Option<std::net::IpAddr> {
    let peer = request.extensions().get::<ClientAddr>()?.0;
    if state.trusted_proxies.is_empty() {
        return Some(peer.ip());
    }
    let client = state.trusted_proxies.client(peer.ip(), request.headers());
    if client != peer.ip() {
        let forwarded = std::net::SocketAddr::new(client, 0);
        request.extensions_mut().insert(ClientAddr(forwarded));
    }
    Some(client)
}

async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = request.method().clone();
    let client = resolve_client(&state, &mut request);

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
        // Strings and a number: serializing cannot fail.
        let body =
            serde_json::to_string(&error.body(&state.config.server.public_url)).unwrap_or_default();
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
