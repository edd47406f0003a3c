//! `GET`/`POST /oauth2/federation/robot/token` (SPEC 7.1), Quay's form of the exchange:
//! `Authorization: Basic base64("<robot full name>:<OIDC JWT>")`.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use data_encoding::BASE64;
use http::header::{AUTHORIZATION, CACHE_CONTROL, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, StatusCode};
use secrecy::ExposeSecret;

use crate::app::AppState;
use crate::exchange::{self, ExchangeError};
use crate::http::ClientAddr;
use crate::oidc::{Refusal, RefusalCode};

/// Reads `Basic base64(user:password)`; the password may itself contain `:`.
pub fn basic_credentials(headers: &HeaderMap) -> Result<(String, String), Refusal> {
    let header = headers.get(AUTHORIZATION).ok_or_else(|| {
        Refusal::new(
            RefusalCode::MissingAuth,
            "an Authorization: Basic header is required",
        )
    })?;
    let malformed = || {
        Refusal::new(
            RefusalCode::MalformedAuth,
            "the Authorization header must be Basic base64(<robot>:<token>)",
        )
    };
    let value = header.to_str().map_err(|_| malformed())?;
    let (scheme, encoded) = value.split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(malformed());
    }
    let decoded = BASE64
        .decode(encoded.trim().as_bytes())
        .map_err(|_| malformed())?;
    let text = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (user, password) = text.split_once(':').ok_or_else(malformed)?;
    if user.is_empty() || password.is_empty() {
        return Err(malformed());
    }
    Ok((user.to_string(), password.to_string()))
}

/// The JSON error body of 7.1: `{"error": <message>, "error_code": <code>}`.
fn error(status: StatusCode, code: &str, message: &str, retry_after: Option<u64>) -> Response {
    let mut response = (
        status,
        Json(serde_json::json!({ "error": message, "error_code": code })),
    )
        .into_response();
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Maps an exchange failure to the 7.1 answer (shared with nothing else: the STS form has its own).
fn failure(state: &AppState, err: ExchangeError) -> Response {
    match err {
        ExchangeError::Refused(r) if r.code == RefusalCode::IssuerUnavailable => error(
            StatusCode::SERVICE_UNAVAILABLE,
            r.code.as_str(),
            &r.message,
            Some(state.config.federation.jwks_refresh_cooldown_seconds.max(1)),
        ),
        ExchangeError::Refused(r) => {
            error(StatusCode::UNAUTHORIZED, r.code.as_str(), &r.message, None)
        }
        ExchangeError::RateLimited(l) => error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many exchanges; slow down",
            Some(l.retry_after),
        ),
        ExchangeError::Unavailable => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the gateway's database is unavailable; try again shortly",
            Some(1),
        ),
        ExchangeError::Internal => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal server error",
            None,
        ),
    }
}

pub async fn exchange(
    State(state): State<AppState>,
    client: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
) -> Response {
    let credentials = basic_credentials(&headers);
    let client_ip = client.map(|c| c.0.0.ip());
    let result = exchange::exchange(
        &state,
        credentials
            .as_ref()
            .map(|(r, t)| (r.as_str(), t.as_str()))
            .map_err(Clone::clone),
        client_ip,
    )
    .await;
    match result {
        Ok(minted) => {
            let mut response = Json(serde_json::json!({
                "token": minted.token.expose_secret(),
                "expires_in": minted.expires_in,
                "token_type": "Bearer",
            }))
            .into_response();
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(err) => failure(&state, err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn basic_credentials_are_read_strictly() {
        let ok = format!("Basic {}", BASE64.encode(b"acme+ci:a.b:c"));
        assert_eq!(
            basic_credentials(&headers(&ok)).unwrap(),
            ("acme+ci".to_string(), "a.b:c".to_string())
        );
        assert_eq!(
            basic_credentials(&HeaderMap::new()).unwrap_err().code,
            RefusalCode::MissingAuth
        );
        for bad in [
            "Bearer x".to_string(),
            "Basic !!!".to_string(),
            format!("Basic {}", BASE64.encode(b"no-colon")),
            format!("Basic {}", BASE64.encode(b":token")),
            format!("Basic {}", BASE64.encode(b"robot:")),
            format!("Basic {}", BASE64.encode(&[0xff, b':', b'x'])),
        ] {
            assert_eq!(
                basic_credentials(&headers(&bad)).unwrap_err().code,
                RefusalCode::MalformedAuth,
                "{bad}"
            );
        }
    }
}
