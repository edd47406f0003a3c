//! `GET /v2/auth`: the Docker registry token service (SPEC 8, distribution
//! `docs/spec/auth/token.md`), so a stock registry can use fedgate as its auth backend, and the
//! core it shares with the OAuth2 form, `POST /v2/auth` ([`super::registry_oauth`]).
//!
//! The robot logs in with Basic `<robot full name>:<password>`, the password being its robot
//! token or a robot token minted by the exchange. The answer is a JWT signed with the key
//! active at that instant, whose header carries the key's certificate (`x5c`, checked by
//! distribution 2.x and 3.x against `keys registry-cert`'s bundle) and `kid`, and whose
//! `access` holds only what the robot's repository roles allow. No refresh tokens:
//! `offline_token=true` is answered like any request (see docs/api.md).

use std::net::IpAddr;

use axum::Json;
use axum::extract::{RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};

use super::exchange::{BasicCredentials, basic_credentials};
use crate::app::AppState;
use crate::clock::rfc3339;
use crate::exchange::{MintedTokenError, verify_minted};
use crate::http::ClientAddr;
use crate::http::extract::query_pairs;
use crate::names;
use crate::oidc::Refusal;
use crate::shared::limits::Limited;
use crate::tokens::opaque::{self, TokenKind};
use crate::tokens::registry::{Access, RegistryClaims, grant, parse_scopes, repository_in};

/// Scopes one token request may ask for. Clients ask for one to three (a push with a
/// cross-repository blob mount is two); each costs a role lookup and a line of the token, so
/// a request with thousands is refused rather than served.
pub const MAX_SCOPES: usize = 32;

/// Why a token request was not answered with a token.
pub(super) enum Denied {
    /// 401: the credentials are missing or wrong.
    Unauthorized(String),
    /// 400: the request itself is wrong.
    BadRequest(String),
    /// 429: too many failed logins from the client's address this minute.
    RateLimited(Limited),
    /// 503: the database (or, for the failure count, Redis) is unavailable.
    Unavailable,
}

impl Denied {
    /// The `result` label of `fedgate_registry_tokens_total` and the audit line's error code.
    pub(super) fn outcome(&self) -> &'static str {
        match self {
            Denied::Unauthorized(_) => "unauthorized",
            Denied::BadRequest(_) => "bad_request",
            Denied::RateLimited(_) => "rate_limited",
            Denied::Unavailable => "unavailable",
        }
    }
}

/// A token request, GET or POST, reduced to what both forms share.
pub(super) struct TokenRequest<'a> {
    /// `(user, password)`, or why the request carries none.
    pub credentials: Result<(&'a str, &'a str), &'a Refusal>,
    /// The `service`, `scope` and `client_id` parameters (query string or form); a `scope`
    /// value may hold several scopes, space-separated.
    pub params: &'a [(String, String)],
    /// The client's address, for the audit line.
    pub client: String,
    /// The same, for the limit of failed logins per address.
    pub client_ip: Option<IpAddr>,
}

impl TokenRequest<'_> {
    fn user(&self) -> &str {
        self.credentials.map_or("", |(user, _)| user)
    }
}

/// A registry token and what it grants.
pub(super) struct Issued {
    pub token: String,
    pub access: Vec<Access>,
    pub expires_in: u64,
    /// RFC 3339, UTC.
    pub issued_at: String,
}

/// `GET /v2/auth`'s answer (distribution's token specification).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct RegistryToken<'a> {
    /// The registry token (a JWT).
    token: &'a str,
    /// The same token, under the OAuth2 name.
    access_token: &'a str,
    /// Seconds until it expires.
    expires_in: u64,
    /// RFC 3339, UTC.
    issued_at: &'a str,
}

/// A refusal, in distribution's error form.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct RegistryErrors<'a> {
    errors: [RegistryError<'a>; 1],
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct RegistryError<'a> {
    /// `UNAUTHORIZED`, `DENIED`, `TOOMANYREQUESTS` or `UNAVAILABLE`.
    code: &'a str,
    message: &'a str,
}

fn errors_body(status: StatusCode, code: &str, message: &str) -> Response {
    let body = RegistryErrors {
        errors: [RegistryError { code, message }],
    };
    let mut response = (status, Json(body)).into_response();
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
    credentials: Result<(&str, &str), &Refusal>,
) -> Result<(i64, String), Denied> {
    let (user, password) = credentials.map_err(|r| Denied::Unauthorized(r.message.clone()))?;
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
    // Otherwise it must be a robot token fedgate minted for this robot. Whether it is good
    // may not be knowable right now (the robot unreadable): that is 503, not a wrong password.
    let (claims, policy) = verify_minted(state, password).await.map_err(|e| match e {
        MintedTokenError::Unavailable => Denied::Unavailable,
        MintedTokenError::Refused(why) => {
            tracing::debug!(robot = %user, why, "minted token refused");
            unauthorized()
        }
    })?;
    if claims.sub != user {
        return Err(unauthorized());
    }
    Ok((policy.robot_id, user.to_string()))
}

/// [`authenticate`], within the limit of failed logins per client address: refused at once
/// while the address is over it, and counted when credentials were given but were wrong
/// (a request without any costs nothing to answer, and clients send one first).
async fn authenticate_limited(
    state: &AppState,
    request: &TokenRequest<'_>,
) -> Result<(i64, String), Denied> {
    let limit = state.config.limits.failed_registry_logins_per_minute_per_ip;
    let key = request.client_ip.map(|ip| format!("failed-login:{ip}"));
    let unavailable = |e: crate::shared::Unavailable| {
        tracing::error!(error = %e, "rate-limit check failed");
        Denied::Unavailable
    };
    if let Some(key) = &key {
        state
            .shared
            .limit_check(key, limit)
            .await
            .map_err(unavailable)?
            .map_err(Denied::RateLimited)?;
    }
    let result = authenticate(state, request.credentials).await;
    if let (Some(key), Ok(_), Err(Denied::Unauthorized(_))) = (&key, request.credentials, &result)
        && let Err(e) = state.shared.limit_hit(key, limit).await
    {
        tracing::warn!(error = %e, "cannot count a failed registry login");
    }
    result
}

async fn issue(state: &AppState, request: &TokenRequest<'_>) -> Result<Issued, Denied> {
    let params = request.params;
    let service = &state.registry_service;
    let foreign = params.iter().find(|(k, v)| k == "service" && v != service);
    if let Some((_, requested)) = foreign {
        return Err(Denied::BadRequest(format!(
            "unknown service {requested:?}; this gateway serves {service:?}"
        )));
    }
    let scopes = parse_scopes(
        params
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str()),
    );
    if scopes.len() > MAX_SCOPES {
        return Err(Denied::BadRequest(format!(
            "at most {MAX_SCOPES} scopes per token request (got {})",
            scopes.len()
        )));
    }
    let (robot_id, robot) = authenticate_limited(state, request).await?;
    let namespace = names::split_robot_name(&robot)
        .map(|(ns, _)| ns)
        .unwrap_or_default();
    let mut access = Vec::new();
    // Every role of the robot, from memory once warm (one read when not).
    let mut roles = None;
    for scope in &scopes {
        let Some(repository) = repository_in(scope, namespace) else {
            continue;
        };
        let roles = match &roles {
            Some(roles) => roles,
            None => roles.insert(
                state
                    .robots
                    .roles(
                        state.store.as_ref(),
                        state.shared.notices_live(),
                        &robot,
                        robot_id,
                    )
                    .await
                    .map_err(|e| {
                        tracing::error!(error = %e, "permission lookup failed");
                        Denied::Unavailable
                    })?,
            ),
        };
        if let Some(granted) = roles.role(repository).and_then(|role| grant(scope, role)) {
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
    let token = state
        .keyring()
        .signing_key(now)
        .sign_registry_jwt(&claims, state.config.registry.token_x5c)
        .map_err(|e| {
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
    Ok(Issued {
        token,
        access: claims.access,
        expires_in: state.config.registry.token_ttl_seconds,
        issued_at: rfc3339(now),
    })
}

/// A `client_id` fit for the audit line: printable ASCII (RFC 6749 A.1), at most 100 bytes.
pub(super) fn is_client_id(value: &str) -> bool {
    value.len() <= 100 && value.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// `client_id` as the client named itself, for the audit line; anything unfit is left out
/// rather than logged.
fn client_id(params: &[(String, String)]) -> Option<&str> {
    params
        .iter()
        .find(|(k, _)| k == "client_id")
        .map(|(_, v)| v.as_str())
        .filter(|v| is_client_id(v))
}

/// The core `GET` and `POST /v2/auth` share: authenticates the robot, grants what its roles
/// allow, signs the token, and counts and audits the outcome.
pub(super) async fn serve(state: &AppState, request: TokenRequest<'_>) -> Result<Issued, Denied> {
    let result = issue(state, &request).await;
    let robot = request.user();
    let client = request.client.as_str();
    let client_id = client_id(request.params);
    match &result {
        Ok(issued) => {
            state
                .metrics
                .registry_tokens
                .with_label_values(&["ok"])
                .inc();
            // Inside the event, like the hash: computed only when the audit line is enabled.
            let granted = || {
                let granted: Vec<String> = issued
                    .access
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
                client_id,
                token_sha256 = crate::tokens::sha256_hex(issued.token.as_bytes()),
            );
        }
        Err(denied) => record_refusal(state, robot, client, client_id, denied.outcome()),
    }
    result
}

/// Counts and audits a refused token request (also for the POST form's own refusals).
pub(super) fn record_refusal(
    state: &AppState,
    robot: &str,
    client: &str,
    client_id: Option<&str>,
    outcome: &str,
) {
    state
        .metrics
        .registry_tokens
        .with_label_values(&[outcome])
        .inc();
    tracing::info!(target: "audit", kind = "registry_token", robot, result = "refused", error_code = outcome, client, client_id);
}

/// Get a registry token (Docker token service)
///
/// `Authorization: Basic base64(<robot full name>:<robot token or minted token>)`, with
/// `service` and `scope=repository:<ns>/<repo>:pull,push` parameters; the token grants what
/// the robot's roles allow of the scopes asked.
#[utoipa::path(
    get,
    path = "/v2/auth",
    operation_id = "registryToken",
    tag = "registry",
    security(("robot_password" = [])),
    params(
        ("service" = Option<String>, Query, description = "The registry's service name"),
        ("scope" = Option<Vec<String>>, Query, description = "`repository:<ns>/<repo>:<actions>`, repeatable"),
        ("client_id" = Option<String>, Query, description = "The client's name, for the audit line"),
    ),
    responses(
        (status = 200, description = "A registry token", body = RegistryToken),
        (status = 400, description = "The request is malformed", body = RegistryErrors),
        (status = 401, description = "The credentials are missing or wrong", body = RegistryErrors),
        (status = 429, description = "Too many failed logins from this address", body = RegistryErrors),
        (status = 503, description = "The database is unavailable", body = RegistryErrors),
    ),
)]
pub async fn token(
    State(state): State<AppState>,
    client: Option<axum::Extension<ClientAddr>>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    let credentials = basic_credentials(request.headers());
    let params = query_pairs(query.as_deref());
    let request = TokenRequest {
        credentials: credentials
            .as_ref()
            .map(|c: &BasicCredentials| (c.user(), c.password())),
        params: &params,
        client: client.map(|c| c.0.0.ip().to_string()).unwrap_or_default(),
        client_ip: client.map(|c| c.0.0.ip()),
    };
    match serve(&state, request).await {
        Ok(issued) => {
            let mut response = Json(RegistryToken {
                token: &issued.token,
                access_token: &issued.token,
                expires_in: issued.expires_in,
                issued_at: &issued.issued_at,
            })
            .into_response();
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(denied) => {
            let (status, code, message, retry_after) = match &denied {
                Denied::Unauthorized(m) => {
                    (StatusCode::UNAUTHORIZED, "UNAUTHORIZED", m.as_str(), None)
                }
                Denied::BadRequest(m) => (StatusCode::BAD_REQUEST, "DENIED", m.as_str(), None),
                Denied::RateLimited(l) => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "TOOMANYREQUESTS",
                    "too many failed logins from this address; slow down",
                    Some(l.retry_after),
                ),
                Denied::Unavailable => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UNAVAILABLE",
                    "the gateway cannot issue tokens right now; try again shortly",
                    Some(1),
                ),
            };
            let mut response = errors_body(status, code, message);
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(seconds));
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_id_is_at_most_100_printable_ascii_bytes() {
        assert!(is_client_id(&"x".repeat(100)));
        assert!(!is_client_id(&"x".repeat(101)));
        assert!(
            is_client_id(" containerd/2.0 ~"),
            "0x20 and 0x7e are printable"
        );
        for unfit in ["a\u{1f}b", "a\u{7f}b", "a\nb", "é"] {
            assert!(!is_client_id(unfit), "{unfit:?}");
        }
        let params = |id: &str| vec![("client_id".to_string(), id.to_string())];
        assert_eq!(client_id(&params("skopeo")), Some("skopeo"));
        assert_eq!(client_id(&params("a\nforged audit line")), None);
    }
}
