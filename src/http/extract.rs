//! Request parsing whose every failure is a clear 4xx [`ApiError`] instead of axum's plain-text
//! rejections.

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use bytes::Bytes;
use http::StatusCode;
use http::request::Parts;
use serde::de::DeserializeOwned;

use super::connections::is_body_timeout;
use super::error::{ApiError, ErrorType};

/// Path parameters, percent-decoded. Text that is not UTF-8 once decoded is a 400.
#[derive(Debug)]
pub struct PathParams(Vec<(String, String)>);

impl PathParams {
    /// A parameter the route pattern declares. Absent only when a route is miswired.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PathParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("Invalid path: {}", e.body_text())))?;
        Ok(Self(
            raw.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ))
    }
}

/// A JSON body. An empty body is read as JSON `null`, so `JsonBody<Option<T>>` makes the body
/// optional. Bodies over `server.max_body_bytes` are 413.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"null"
        } else {
            &bytes
        };
        serde_json::from_slice(text).map(JsonBody).map_err(|e| {
            if text == b"null" {
                ApiError::bad_request("A JSON request body is required")
            } else {
                ApiError::bad_request(format!("Invalid JSON body: {e}"))
            }
        })
    }
}

fn body_rejection(rejection: BytesRejection) -> ApiError {
    if is_body_timeout(&rejection) {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorType::InvalidRequest,
            "The request body did not arrive in time (server.body_timeout_seconds)",
        )
    } else if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorType::InvalidRequest,
            "Request body is larger than this gateway accepts (server.max_body_bytes)",
        )
    } else {
        ApiError::bad_request(format!(
            "Could not read the request body: {}",
            rejection.body_text()
        ))
    }
}

/// Quay's `truthy_bool`: false for `false`, `False`, `FALSE`, `0`, `null` and the empty string,
/// true for anything else.
pub fn truthy(value: &str) -> bool {
    !matches!(value, "false" | "False" | "FALSE" | "0" | "null" | "")
}

/// Query-string pairs, decoded (invalid UTF-8 becomes U+FFFD and fails any later parse).
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truthy_follows_quay() {
        for f in ["false", "False", "FALSE", "0", "null", ""] {
            assert!(!truthy(f), "{f}");
        }
        for t in ["true", "1", "yes", "no", "off"] {
            assert!(truthy(t), "{t}");
        }
    }

    #[test]
    fn query_pairs_decode() {
        let pairs = query_pairs(Some("limit=2&token=fal%73e&x"));
        assert_eq!(pairs[0], ("limit".into(), "2".into()));
        assert_eq!(pairs[1], ("token".into(), "false".into()));
        assert_eq!(pairs[2], ("x".into(), String::new()));
    }
}
