//! `POST /v2/auth`: the OAuth2 form of the registry token service (distribution
//! `docs/spec/auth/oauth.md`), which containerd, and so BuildKit and
//! `docker/build-push-action`, try before `GET`.
//!
//! `grant_type=password` with `username`, `password`, `service`, `client_id` and optional
//! `scope` is answered exactly as `GET /v2/auth` answers the same robot and scopes: the two
//! share [`registry_auth::serve`](super::registry_auth::serve), with its limits, metrics and
//! audit line. Only the wire form differs: errors are RFC 6749 §5.2 bodies.
//!
//! No refresh tokens. A robot's credential is already a token that can be revoked (a robot
//! token, or a minted token that lives an hour and dies with any change to the robot); a
//! refresh token would be a second long-lived credential outliving the federated token it
//! came from, which is what federation exists to avoid. So `grant_type=refresh_token` is
//! `unsupported_grant_type`, and `access_type=offline` gets the same answer as `online`,
//! without a `refresh_token` (the field is optional in the spec).

use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, StatusCode};

use super::oauth_form::{BodyError, Params, invalid_request, oauth_error, token_response};
use super::registry_auth::{self, Denied, TokenRequest};
use crate::app::AppState;
use crate::http::ClientAddr;
use crate::wire;

const FORM: &str = "application/x-www-form-urlencoded";

/// The answer: RFC 6749 §5.1 with distribution's `issued_at`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct OAuthRegistryToken<'a> {
    /// The registry token (a JWT).
    access_token: &'a str,
    /// `Bearer`.
    token_type: &'static str,
    /// Seconds until it expires.
    expires_in: u64,
    /// RFC 3339, UTC.
    issued_at: &'a str,
    /// What was granted, space-separated `repository:<ns>/<repo>:<actions>`.
    scope: String,
}

/// The form fields of the request.
#[derive(utoipa::ToSchema)]
#[expect(
    dead_code,
    reason = "describes the form for the OpenAPI document; the handler reads it as Params"
)]
pub struct RegistryTokenForm {
    /// `password` (no refresh tokens)
    grant_type: String,
    /// The robot's full name
    username: String,
    /// The robot's token, or a token from the exchange
    password: String,
    /// The registry's service name
    service: String,
    /// The client's name, for the audit line
    client_id: String,
    /// `repository:<ns>/<repo>:<actions>`, space-separated
    scope: Option<String>,
    /// `online` or `offline` (the same answer: no refresh token)
    access_type: Option<String>,
}

/// Why the form itself was refused, before any credential was looked at.
enum FormError {
    /// 415: not a form body.
    ContentType,
    /// 400 `unsupported_grant_type`.
    GrantType(String),
    /// 400 `invalid_request`.
    Invalid(String),
    /// 413, or 400 for an unreadable body.
    Body(BodyError),
}

/// The body, if it is a form.
fn read_form(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Params, FormError> {
    let is_form = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case(FORM));
    if !is_form {
        return Err(FormError::ContentType);
    }
    Params::read(body).map_err(FormError::Body)
}

/// The checks the spec's form asks for; on success, `(username, password)`.
fn check_form(params: &Params) -> Result<(&str, &str), FormError> {
    let grant_type = params.required("grant_type").map_err(FormError::Invalid)?;
    match grant_type {
        "password" => {}
        "refresh_token" => {
            return Err(FormError::GrantType(
                "fedgate issues no refresh tokens: use grant_type=password with the robot's token or a token from the exchange".into(),
            ));
        }
        _ => {
            return Err(FormError::GrantType(
                "this grant_type is not supported; use password".into(),
            ));
        }
    }
    let username = params.required("username").map_err(FormError::Invalid)?;
    let password = params.required("password").map_err(FormError::Invalid)?;
    params.required("service").map_err(FormError::Invalid)?;
    let client_id = params.required("client_id").map_err(FormError::Invalid)?;
    if !registry_auth::is_client_id(client_id) {
        return Err(FormError::Invalid(
            "client_id must be at most 100 printable ASCII characters".into(),
        ));
    }
    match params.optional("access_type").map_err(FormError::Invalid)? {
        None | Some("online" | "offline") => {}
        Some(_) => {
            return Err(FormError::Invalid(
                "access_type must be online or offline".into(),
            ));
        }
    }
    Ok((username, password))
}

/// Get a registry token (OAuth2 password grant)
///
/// Distribution's OAuth2 form of the token service, which containerd tries before `GET`:
/// answered exactly as `GET /v2/auth` answers the same robot and scopes.
#[utoipa::path(
    post,
    path = "/v2/auth",
    operation_id = "registryOAuthToken",
    tag = "registry",
    request_body(content = RegistryTokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "A registry token", body = OAuthRegistryToken),
        (status = 400, description = "The form or the credentials were refused", body = wire::OAuthError),
        (status = 413, description = "The body is larger than `server.max_body_bytes`", body = wire::OAuthError),
        (status = 415, description = "The body is not a form", body = wire::OAuthError),
        (status = 503, description = "The database is unavailable", body = wire::OAuthError),
    ),
)]
pub async fn token(
    State(state): State<AppState>,
    client: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let client_ip = client.map(|c| c.0.0.ip());
    let client = client_ip.map(|ip| ip.to_string()).unwrap_or_default();
    let params = match read_form(&headers, body) {
        Ok(params) => params,
        Err(error) => return refuse_form(&state, &client, "", error),
    };
    let (username, password) = match check_form(&params) {
        Ok(credentials) => credentials,
        Err(error) => {
            let robot = params
                .optional("username")
                .ok()
                .flatten()
                .unwrap_or_default();
            return refuse_form(&state, &client, robot, error);
        }
    };
    let request = TokenRequest {
        credentials: Ok((username, password)),
        params: &params.0,
        client,
        client_ip,
    };
    match registry_auth::serve(&state, request).await {
        Ok(issued) => {
            let scope: Vec<String> = issued.access.iter().map(|a| a.scope()).collect();
            token_response(OAuthRegistryToken {
                access_token: &issued.token,
                token_type: "Bearer",
                expires_in: issued.expires_in,
                issued_at: &issued.issued_at,
                scope: scope.join(" "),
            })
        }
        Err(Denied::Unauthorized(message)) => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", &message, None)
        }
        Err(Denied::BadRequest(message)) => invalid_request(&message),
        Err(Denied::RateLimited(limited)) => oauth_error(
            StatusCode::TOO_MANY_REQUESTS,
            "slow_down",
            "too many failed logins from this address; slow down",
            Some(limited.retry_after),
        ),
        Err(Denied::Unavailable) => oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the gateway cannot issue tokens right now; try again shortly",
            Some(1),
        ),
    }
}

/// Answers a refused form, counted and audited like any refused token request.
fn refuse_form(state: &AppState, client: &str, robot: &str, error: FormError) -> Response {
    registry_auth::record_refusal(state, robot, client, None, "bad_request");
    match error {
        FormError::ContentType => oauth_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            &format!("the body must be {FORM}"),
            None,
        ),
        FormError::GrantType(message) => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &message,
            None,
        ),
        FormError::Invalid(message) => invalid_request(&message),
        FormError::Body(error) => error.answer(),
    }
}
