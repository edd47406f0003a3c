//! `POST /oauth2/token`: the RFC 8693 form of the exchange (SPEC 7.2).
//!
//! `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`, `subject_token=<JWT>`,
//! `subject_token_type=...:jwt` (or `...:id_token`), `resource=urn:quay:robot:<robot>`.
//! Errors follow RFC 8693 §2.2.2 / RFC 6749 §5.2, with the SPEC 7.1 code in the description.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{CACHE_CONTROL, RETRY_AFTER};
use http::{HeaderValue, StatusCode};
use secrecy::ExposeSecret;

use crate::app::AppState;
use crate::exchange::{self, ExchangeError};
use crate::http::ClientAddr;
use crate::oidc::RefusalCode;
use crate::wire::{
    self, GRANT_TYPE, ROBOT_RESOURCE_PREFIX as RESOURCE_PREFIX, TOKEN_TYPE_ID_TOKEN, TOKEN_TYPE_JWT,
};

fn oauth_error(
    status: StatusCode,
    error: &str,
    description: &str,
    retry_after: Option<u64>,
) -> Response {
    let body = wire::OAuthError {
        error: error.into(),
        error_description: description.into(),
    };
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

fn unsupported_grant_type() -> Response {
    oauth_error(
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
        &format!("grant_type must be {GRANT_TYPE}"),
        None,
    )
}

fn invalid_request(description: &str) -> Response {
    oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        description,
        None,
    )
}

/// The request's parameters; each may appear once (RFC 6749 §3.2).
struct Params(Vec<(String, String)>);

impl Params {
    /// The single non-empty value of `name`, or the `invalid_request` description.
    fn required(&self, name: &str) -> Result<&str, String> {
        let mut found = self.0.iter().filter(|(k, _)| k == name);
        let first = found.next().map(|(_, v)| v.as_str());
        if found.next().is_some() {
            return Err(format!("parameter {name} appears more than once"));
        }
        first
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("parameter {name} is required"))
    }
}

pub async fn token(
    State(state): State<AppState>,
    client: Option<axum::Extension<ClientAddr>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return oauth_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "the request body is larger than this gateway accepts (server.max_body_bytes)",
                None,
            );
        }
        Err(_) => return invalid_request("the request body could not be read"),
    };
    let client = client.map(|c| c.0.0.ip());
    if std::str::from_utf8(&body).is_err() {
        return invalid_request("the body must be application/x-www-form-urlencoded");
    }
    let params = Params(url::form_urlencoded::parse(&body).into_owned().collect());
    let read = || -> Result<(&str, &str, &str, &str), String> {
        Ok((
            params.required("grant_type")?,
            params.required("subject_token")?,
            params.required("subject_token_type")?,
            params.required("resource")?,
        ))
    };
    let (grant_type, subject_token, token_type, resource) = match read() {
        Ok(values) => values,
        // An unsupported grant type is reported as such even when other parameters are missing.
        Err(_) if params.required("grant_type").is_ok_and(|g| g != GRANT_TYPE) => {
            return unsupported_grant_type();
        }
        Err(description) => return invalid_request(&description),
    };
    if grant_type != GRANT_TYPE {
        return unsupported_grant_type();
    }
    if token_type != TOKEN_TYPE_JWT && token_type != TOKEN_TYPE_ID_TOKEN {
        return invalid_request(&format!(
            "subject_token_type must be {TOKEN_TYPE_JWT} or {TOKEN_TYPE_ID_TOKEN}"
        ));
    }
    let Some(robot) = resource
        .strip_prefix(RESOURCE_PREFIX)
        .filter(|r| !r.is_empty())
    else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            &format!("resource must be {RESOURCE_PREFIX}<robot full name>"),
            None,
        );
    };
    match exchange::exchange(&state, Ok((robot, subject_token)), client).await {
        Ok(minted) => {
            let mut response = Json(wire::StsToken {
                access_token: minted.token.expose_secret().into(),
                issued_token_type: TOKEN_TYPE_JWT.into(),
                token_type: "Bearer".into(),
                expires_in: minted.expires_in,
            })
            .into_response();
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(ExchangeError::Refused(r)) => {
            let description = format!("{}: {}", r.code, r.message);
            match r.code {
                RefusalCode::UnknownRobot | RefusalCode::NoFederation => oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_target",
                    &description,
                    None,
                ),
                RefusalCode::IssuerUnavailable => oauth_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    &description,
                    Some(state.config.federation.jwks_refresh_cooldown_seconds.max(1)),
                ),
                _ => invalid_request(&description),
            }
        }
        Err(ExchangeError::RateLimited(l)) => oauth_error(
            StatusCode::TOO_MANY_REQUESTS,
            "slow_down",
            "too many exchanges; slow down",
            Some(l.retry_after),
        ),
        Err(ExchangeError::Unavailable) => oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the gateway's database is unavailable; try again shortly",
            Some(1),
        ),
        Err(ExchangeError::Internal) => oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal server error",
            None,
        ),
    }
}
