//! `GET /v2/auth`: the Docker registry token service (SPEC 8, distribution
//! `docs/spec/auth/token.md`), so a stock registry can use fedgate as its auth backend.
//!
//! The robot logs in with Basic `<robot full name>:<password>`, the password being its robot
//! token or a robot token minted by the exchange. The answer is a JWT signed with the active
//! key, whose header `kid` is the libtrust key ID the registry derives from
//! `keys registry-cert`'s certificates, and whose `access` holds only what the robot's
//! repository roles allow.

use axum::Json;
use axum::extract::{RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};

use super::exchange::{BasicCredentials, basic_credentials};
use crate::app::AppState;
use crate::exchange::verify_minted;
use crate::http::ClientAddr;
use crate::http::extract::query_pairs;
use crate::names;
use crate::oidc::Refusal;
use crate::tokens::opaque::{self, TokenKind};
use crate::tokens::registry::{Access, RegistryClaims, grant, parse_scopes, repository_in};

/// Why a token request was not answered with a token.
enum Denied {
    /// 401: the credentials are missing or wrong.
    Unauthorized(String),
    /// 400: the request itself is wrong.
    BadRequest(String),
    /// 503: the database is unavailable.
    Unavailable,
}

fn errors_body(status: StatusCode, code: &str, message: &str) -> Response {
    let mut response = (
        status,
        Json(serde_json::json!({"errors": [{"code": code, "message": message}]})),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"fedgate\""),
        );
    }
    response
}

/// The robot the credentials prove, as `(robot id, full name)`.
async fn authenticate(
    state: &AppState,
    credentials: Result<&BasicCredentials, &Refusal>,
) -> Result<(i64, String), Denied> {
    let credentials = credentials.map_err(|r| Denied::Unauthorized(r.message.clone()))?;
    let (user, password) = (credentials.user(), credentials.password());
    let unauthorized = || Denied::Unauthorized(format!("invalid credentials for {user}"));
    let Some((namespace, short)) = names::split_robot_name(user) else {
        return Err(Denied::Unauthorized(
            "only robot accounts (namespace+name) can log in here".into(),
        ));
    };
    if opaque::is_well_formed(TokenKind::Robot, password) {
        let robot = state
            .store
            .robot_by_token_lookup(&state.at_rest.lookup_hash(password))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "robot token lookup failed");
                Denied::Unavailable
            })?
            .ok_or_else(unauthorized)?;
        if robot.namespace != namespace || robot.short_name != short {
            return Err(unauthorized());
        }
        return Ok((robot.id, user.to_string()));
    }
    // Otherwise it must be a robot token fedgate minted for this robot.
    let (claims, policy) = verify_minted(state, password).await.map_err(|why| {
        tracing::debug!(robot = %user, why, "minted token refused");
        unauthorized()
    })?;
    if claims.sub != user {
        return Err(unauthorized());
    }
    Ok((policy.robot_id, user.to_string()))
}

async fn issue(
    state: &AppState,
    credentials: Result<&BasicCredentials, &Refusal>,
    query: Option<&str>,
) -> Result<(String, Vec<Access>), Denied> {
    let params = query_pairs(query);
    let service = &state.registry_service;
    let foreign = params.iter().find(|(k, v)| k == "service" && v != service);
    if let Some((_, requested)) = foreign {
        return Err(Denied::BadRequest(format!(
            "unknown service {requested:?}; this gateway serves {service:?}"
        )));
    }
    let (robot_id, robot) = authenticate(state, credentials).await?;
    let namespace = names::split_robot_name(&robot)
        .map(|(ns, _)| ns)
        .unwrap_or_default();
    let scopes = parse_scopes(
        params
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str()),
    );
    let mut access = Vec::new();
    for scope in &scopes {
        let Some(repository) = repository_in(scope, namespace) else {
            continue;
        };
        let role = state
            .store
            .permission(robot_id, repository)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "permission lookup failed");
                Denied::Unavailable
            })?;
        if let Some(granted) = role.and_then(|role| grant(scope, role)) {
            access.push(granted);
        }
    }
    let now = state.clock.unix();
    let mut jti = [0u8; 16];
    state.rng.fill(&mut jti).map_err(|_| Denied::Unavailable)?;
    let claims = RegistryClaims {
        iss: state.config.server.public_url.clone(),
        sub: robot.clone(),
        aud: service.clone(),
        exp: now + state.config.registry.token_ttl_seconds as i64,
        nbf: now,
        iat: now,
        jti: data_encoding::HEXLOWER.encode(&jti),
        access,
    };
    let token = state.keyring().active().sign_jwt(&claims).map_err(|e| {
        tracing::error!(error = %e, "signing a registry token failed");
        Denied::Unavailable
    })?;
    if state.recent_access.hit(&robot, 1).is_ok() {
        let store = state.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.touch_robot(robot_id, now).await {
                tracing::warn!(error = %e, "cannot record the robot's last access");
            }
        });
    }
    Ok((token, claims.access))
}

/// Get a registry token (Docker token service)
///
/// `Authorization: Basic base64(<robot full name>:<robot token or minted token>)`, with
/// `service` and `scope=repository:<ns>/<repo>:pull,push` parameters. Success is
/// `{"token", "access_token", "expires_in", "issued_at"}`; refusals are distribution's
/// `{"errors": [{"code", "message"}]}`.
#[utoipa::path(
    get,
    path = "/v2/auth",
    operation_id = "registryToken",
    tag = "registry",
    security(("robot_password" = [])),
    params(
        ("service" = Option<String>, Query, description = "The registry's service name"),
        ("scope" = Option<Vec<String>>, Query, description = "`repository:<ns>/<repo>:<actions>`, repeatable"),
    ),
    responses(
        (status = 200, description = "A registry token", body = serde_json::Value),
        (status = 400, description = "The request is malformed", body = serde_json::Value),
        (status = 401, description = "The credentials are missing or wrong", body = serde_json::Value),
        (status = 503, description = "The database is unavailable", body = serde_json::Value),
    ),
)]
pub async fn token(
    State(state): State<AppState>,
    client: Option<axum::Extension<ClientAddr>>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    let credentials = basic_credentials(request.headers());
    let robot = credentials.as_ref().map_or("", BasicCredentials::user);
    let client = client.map(|c| c.0.0.ip().to_string()).unwrap_or_default();
    let result = issue(&state, credentials.as_ref(), query.as_deref()).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(Denied::Unauthorized(_)) => "unauthorized",
        Err(Denied::BadRequest(_)) => "bad_request",
        Err(Denied::Unavailable) => "unavailable",
    };
    state
        .metrics
        .registry_tokens
        .with_label_values(&[outcome])
        .inc();
    match result {
        Ok((token, access)) => {
            // Inside the event, like the hash: computed only when the audit line is enabled.
            let granted = || {
                let granted: Vec<String> = access
                    .iter()
                    .map(|a| format!("{}:{}", a.name, a.actions.join(",")))
                    .collect();
                granted.join(" ")
            };
            tracing::info!(
                target: "audit",
                kind = "registry_token",
                robot,
                result = "ok",
                access = granted(),
                client,
                token_sha256 = crate::tokens::sha256_hex(token.as_bytes()),
            );
            let issued_at = time::OffsetDateTime::from_unix_timestamp(state.clock.unix())
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default();
            let mut response = Json(serde_json::json!({
                "token": token,
                "access_token": token,
                "expires_in": state.config.registry.token_ttl_seconds,
                "issued_at": issued_at,
            }))
            .into_response();
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(denied) => {
            let (status, code, message) = match &denied {
                Denied::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED", m.as_str()),
                Denied::BadRequest(m) => (StatusCode::BAD_REQUEST, "DENIED", m.as_str()),
                Denied::Unavailable => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UNAVAILABLE",
                    "the gateway cannot issue tokens right now; try again shortly",
                ),
            };
            tracing::info!(target: "audit", kind = "registry_token", robot, result = "refused", error_code = outcome, client);
            errors_body(status, code, message)
        }
    }
}
