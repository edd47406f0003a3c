//! The admin API's error body, shaped as Quay's `ApiException.to_dict()`:
//! `{"status", "error_message", "title", "error_type", "detail", "type"}`.
//!
//! Handlers return [`ApiError`]; the router's middleware renders it, because the `type` URL
//! needs `server.public_url`. Only messages written for the client reach the client: internal
//! failures are logged with their context and answered with a generic message.

use std::fmt::Display;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// Quay's error types (`ApiErrorType`), plus the two fedgate needs for server-side failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    InvalidRequest,
    InvalidToken,
    InsufficientScope,
    NotFound,
    /// The database (or another dependency) is unavailable; retry later.
    DownstreamIssue,
    Internal,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::InvalidRequest => "invalid_request",
            ErrorType::InvalidToken => "invalid_token",
            ErrorType::InsufficientScope => "insufficient_scope",
            ErrorType::NotFound => "not_found",
            ErrorType::DownstreamIssue => "downstream_issue",
            ErrorType::Internal => "internal_error",
        }
    }
}

/// Quay's text for a robot that does not exist (`lookup_robot` in Quay's `data/model/user.py`),
/// which Quay clients match on.
pub const ROBOT_NOT_FOUND: &str = "Could not find robot with specified username";

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub error_type: ErrorType,
    pub message: String,
    /// Repeat the message under `message`, where Quay's `{"message": ...}` bodies carry it.
    quay_message: bool,
}

/// The body every admin-API error is answered with.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, written for the client.
    pub error_message: String,
    /// The error type again (Quay sends both).
    pub title: &'static str,
    /// One of `invalid_request`, `invalid_token`, `insufficient_scope`, `not_found`,
    /// `downstream_issue`, `internal_error`.
    pub error_type: &'static str,
    /// The message again (Quay sends both).
    pub detail: String,
    /// `<public_url>/api/v1/error/<error_type>`.
    #[serde(rename = "type")]
    pub type_url: String,
    /// The message once more, only where Quay answers with a `{"message": ...}` body
    /// (a robot that does not exist).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, error_type: ErrorType, message: impl Into<String>) -> Self {
        Self {
            status,
            error_type,
            message: message.into(),
            quay_message: false,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorType::InvalidRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorType::NotFound, message)
    }

    /// A robot that does not exist: fedgate's 404, with Quay's message (Quay answers 400).
    pub fn robot_not_found() -> Self {
        Self {
            quay_message: true,
            ..Self::not_found(ROBOT_NOT_FOUND)
        }
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorType::InvalidToken, message)
    }

    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ErrorType::InsufficientScope,
            "Unauthorized",
        )
    }

    /// A failure that is ours, not the client's: logged here with `context`, answered generically.
    pub fn internal(context: &str, err: impl Display) -> Self {
        tracing::error!(error = %err, context, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::Internal,
            "Internal server error",
        )
    }

    /// The JSON body, with `type` under `public_url` as Quay links it.
    pub fn body(&self, public_url: &str) -> ErrorBody {
        let kind = self.error_type.as_str();
        ErrorBody {
            status: self.status.as_u16(),
            error_message: self.message.clone(),
            title: kind,
            error_type: kind,
            detail: self.message.clone(),
            type_url: format!("{}/api/v1/error/{kind}", public_url.trim_end_matches('/')),
            message: self.quay_message.then(|| self.message.clone()),
        }
    }
}

/// The error answers of the admin API, for the operations' OpenAPI descriptions.
#[derive(utoipa::IntoResponses)]
pub enum AdminErrors {
    /// Invalid input: a name that breaks a rule, a body that does not parse (`invalid_request`).
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No API token, or an invalid or expired one (`invalid_token`).
    #[response(status = 401)]
    Unauthenticated(ErrorBody),
    /// The token lacks the scope, or its user the role (`insufficient_scope`).
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// The namespace or robot does not exist (`not_found`).
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The database is unavailable; `Retry-After: 1` (`downstream_issue`).
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            // The database is down or restarting: the client may retry; nothing is its fault.
            StoreError::Backend(
                ref e @ (sqlx::Error::PoolTimedOut
                | sqlx::Error::Io(_)
                | sqlx::Error::PoolClosed
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::WorkerCrashed),
            ) => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorType::DownstreamIssue,
                    "The database is unavailable; try again shortly",
                )
            }
            other => ApiError::internal("store", other),
        }
    }
}

/// Handlers' `ApiError`s travel in a response extension until the router's middleware renders
/// them (see `router::observe`).
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response.extensions_mut().insert(self);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(error: &ApiError) -> serde_json::Value {
        serde_json::to_value(error.body("https://fed.example/")).unwrap()
    }

    #[test]
    fn body_has_quays_fields() {
        let body = json(&ApiError::not_found("Organization not found: acme"));
        assert_eq!(body["status"], 404);
        assert_eq!(body["error_message"], "Organization not found: acme");
        assert_eq!(body["detail"], "Organization not found: acme");
        assert_eq!(body["title"], "not_found");
        assert_eq!(body["error_type"], "not_found");
        assert_eq!(body["type"], "https://fed.example/api/v1/error/not_found");
        assert!(body.get("message").is_none(), "{body}");
    }

    #[test]
    fn a_missing_robot_carries_quays_message_where_quay_clients_look() {
        let body = json(&ApiError::robot_not_found());
        assert_eq!(body["status"], 404);
        for key in ["error_message", "detail", "message"] {
            assert_eq!(body[key], ROBOT_NOT_FOUND, "{key}");
        }
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let err = ApiError::internal("test", "secret detail fgr_abc");
        assert_eq!(err.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!err.message.contains("secret"));
    }
}
