//! `POST /oauth2/token`: the RFC 8693 form of the exchange (SPEC 7.2).
//!
//! `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`, `subject_token=<JWT>`,
//! `subject_token_type=...:jwt` (or `...:id_token`), `resource=urn:quay:robot:<robot>`.
//! Errors follow RFC 8693 §2.2.2 / RFC 6749 §5.2, with the SPEC 7.1 code in the description.

use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use secrecy::ExposeSecret;

use super::oauth_form::{Params, invalid_request, oauth_error, token_response};
use crate::app::AppState;
use crate::exchange::{self, ExchangeError};
use crate::http::ClientAddr;
use crate::oidc::RefusalCode;
use crate::wire::{
    self, GRANT_TYPE, ROBOT_RESOURCE_PREFIX as RESOURCE_PREFIX, TOKEN_TYPE_ID_TOKEN, TOKEN_TYPE_JWT,
};

/// The form fields of the request.
#[derive(utoipa::ToSchema)]
#[expect(
    dead_code,
    reason = "describes the form for the OpenAPI document; the handler reads it as Params"
)]
pub struct TokenExchangeForm {
    /// `urn:ietf:params:oauth:grant-type:token-exchange`
    grant_type: String,
    /// The OIDC identity token.
    subject_token: String,
    /// `urn:ietf:params:oauth:token-type:jwt` or `...:id_token`
    subject_token_type: String,
    /// `urn:quay:robot:<robot full name>`
    resource: String,
}

fn unsupported_grant_type() -> Response {
    oauth_error(
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
        &format!("grant_type must be {GRANT_TYPE}"),
        None,
    )
}

/// Exchange an identity token for a robot token (RFC 8693)
#[utoipa::path(
    post,
    path = "/oauth2/token",
    operation_id = "tokenExchange",
    tag = "exchange",
    request_body(content = TokenExchangeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "A robot token", body = wire::StsToken),
        (status = 400, description = "The request or the identity token was refused", body = wire::OAuthError),
        (status = 413, description = "The body is larger than `server.max_body_bytes`", body = wire::OAuthError),
        (status = 429, description = "Too many attempts; see `Retry-After`", body = wire::OAuthError),
        (status = 503, description = "The issuer or the database is unreachable; see `Retry-After`", body = wire::OAuthError),
    ),
)]
pub async fn token(
    State(state): State<AppState>,
    client: Option<axum::Extension<ClientAddr>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let client = client.map(|c| c.0.0.ip());
    let params = match Params::read(body) {
        Ok(params) => params,
        Err(error) => return error.answer(),
    };
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
        Ok(minted) => token_response(wire::StsToken {
            access_token: minted.token.expose_secret().into(),
            issued_token_type: TOKEN_TYPE_JWT.into(),
            token_type: "Bearer".into(),
            expires_in: minted.expires_in,
        }),
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
