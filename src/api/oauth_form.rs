//! What the two OAuth2 token endpoints share (`POST /oauth2/token`, `POST /v2/auth`): reading
//! an `application/x-www-form-urlencoded` body and answering errors in RFC 6749 §5.2's form,
//! `{"error": <code>, "error_description": <text>}`; and the token answer, which the Quay
//! form of the exchange sends too.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};

use crate::http::connections::is_body_timeout;
use crate::wire;

/// A successful token answer (RFC 6749 §5.1, and the Quay form's): the JSON body, never
/// cached. Written into one 1 KiB buffer, the size of a token answer: axum's `Json` starts at
/// 128 bytes and grew three times for each minted token.
pub fn token_response(body: impl serde::Serialize) -> Response {
    let mut json = Vec::with_capacity(1024);
    if serde_json::to_writer(&mut json, &body).is_err() {
        // Strings and numbers: serializing cannot fail; should it, the client gets a 500.
        tracing::error!("a token answer could not be serialized");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        json,
    )
        .into_response()
}

/// An RFC 6749 §5.2 error answer.
pub fn oauth_error(
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

pub fn invalid_request(description: &str) -> Response {
    oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        description,
        None,
    )
}

/// Why a form body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Over `server.max_body_bytes`: 413.
    TooLarge,
    /// Not in full within `server.body_timeout_seconds`: 408.
    TimedOut,
    /// The body could not be read, or is not UTF-8: 400.
    Unreadable,
}

impl BodyError {
    pub fn answer(self) -> Response {
        match self {
            BodyError::TooLarge => oauth_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "the request body is larger than this gateway accepts (server.max_body_bytes)",
                None,
            ),
            BodyError::TimedOut => oauth_error(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request",
                "the request body did not arrive in time (server.body_timeout_seconds)",
                None,
            ),
            BodyError::Unreadable => {
                invalid_request("the body must be application/x-www-form-urlencoded")
            }
        }
    }
}

/// A form request's parameters. RFC 6749 §3.2: each may appear once.
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// Decodes a form body.
    pub fn read(body: Result<Bytes, BytesRejection>) -> Result<Self, BodyError> {
        let body = match body {
            Ok(body) => body,
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(BodyError::TooLarge);
            }
            Err(rejection) if is_body_timeout(&rejection) => return Err(BodyError::TimedOut),
            Err(_) => return Err(BodyError::Unreadable),
        };
        if std::str::from_utf8(&body).is_err() {
            return Err(BodyError::Unreadable);
        }
        Ok(Self(
            url::form_urlencoded::parse(&body).into_owned().collect(),
        ))
    }

    /// The value of `name` if present once, or the `invalid_request` description if repeated.
    pub fn optional(&self, name: &str) -> Result<Option<&str>, String> {
        let mut found = self.0.iter().filter(|(k, _)| k == name);
        let first = found.next().map(|(_, v)| v.as_str());
        if found.next().is_some() {
            return Err(format!("parameter {name} appears more than once"));
        }
        Ok(first)
    }

    /// The single non-empty value of `name`, or the `invalid_request` description.
    pub fn required(&self, name: &str) -> Result<&str, String> {
        self.optional(name)?
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("parameter {name} is required"))
    }
}
