//! The admin API's error body, shaped as Quay's `ApiException.to_dict()`:
//! `{"status", "error_message", "title", "error_type", "detail", "type"}`.
//!
//! Handlers return [`ApiError`]; the router's middleware renders it, because the `type` URL
//! needs `server.public_url`. Only messages written for the client reach the client: internal
//! failures are logged with their context and answered with a generic message.

use std::fmt::Display;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

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

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub error_type: ErrorType,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error_type: ErrorType, message: impl Into<String>) -> Self {
        Self {
            status,
            error_type,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorType::InvalidRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorType::NotFound, message)
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
    pub fn body(&self, public_url: &str) -> serde_json::Value {
        let kind = self.error_type.as_str();
        serde_json::json!({
            "status": self.status.as_u16(),
            "error_message": self.message,
            "title": kind,
            "error_type": kind,
            "detail": self.message,
            "type": format!("{}/api/v1/error/{kind}", public_url.trim_end_matches('/')),
        })
    }
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

    #[test]
    fn body_has_quays_fields() {
        let body = ApiError::not_found("Robot not found").body("https://fed.example/");
        assert_eq!(body["status"], 404);
        assert_eq!(body["error_message"], "Robot not found");
        assert_eq!(body["detail"], "Robot not found");
        assert_eq!(body["title"], "not_found");
        assert_eq!(body["error_type"], "not_found");
        assert_eq!(body["type"], "https://fed.example/api/v1/error/not_found");
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let err = ApiError::internal("test", "secret detail fgr_abc");
        assert_eq!(err.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!err.message.contains("secret"));
    }
}
