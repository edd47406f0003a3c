//! `GET`/`POST /oauth2/federation/robot/token` (SPEC 7.1), Quay's form of the exchange:
//! `Authorization: Basic base64("<robot full name>:<OIDC JWT>")`.

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use base64_simd::STANDARD as BASE64;
use http::header::{AUTHORIZATION, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, StatusCode};
use secrecy::ExposeSecret;

use super::oauth_form::token_response;
use crate::app::AppState;
use crate::exchange::{self, ExchangeError};
use crate::http::ClientAddr;
use crate::oidc::{Refusal, RefusalCode};
use crate::wire;

/// `user:password` from a Basic header, decoded once and borrowed from.
#[derive(Debug)]
pub struct BasicCredentials {
    decoded: String,
    /// Where the first `:` is: the password may itself contain `:`.
    colon: usize,
}

impl BasicCredentials {
    pub fn user(&self) -> &str {
        &self.decoded[..self.colon]
    }

    pub fn password(&self) -> &str {
        &self.decoded[self.colon + 1..]
    }
}

/// Reads `Basic base64(user:password)`; neither part may be empty.
pub fn basic_credentials(headers: &HeaderMap) -> Result<BasicCredentials, Refusal> {
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
    // Bytes, not `to_str`: base64 decoding rejects every non-alphabet byte anyway.
    let value = header.as_bytes();
    let space = value
        .iter()
        .position(|&b| b == b' ')
        .ok_or_else(malformed)?;
    let (scheme, encoded) = (&value[..space], &value[space + 1..]);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return Err(malformed());
    }
    let decoded = BASE64
        .decode_to_vec(encoded.trim_ascii())
        .map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let colon = decoded.find(':').ok_or_else(malformed)?;
    if colon == 0 || colon + 1 == decoded.len() {
        return Err(malformed());
    }
    Ok(BasicCredentials { decoded, colon })
}

fn error(status: StatusCode, code: &str, message: &str, retry_after: Option<u64>) -> Response {
    let body = wire::ExchangeError {
        error: message.into(),
        error_code: code.into(),
    };
    let mut response = (status, Json(body)).into_response();
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

/// Exchange an identity token for a robot token (Quay's form)
///
/// `Authorization: Basic base64(<robot full name>:<OIDC identity token>)`, by GET or POST.
/// The request is taken whole (last extractor) so its headers are read, not cloned.
#[utoipa::path(
    method(get, post),
    path = "/oauth2/federation/robot/token",
    operation_id = "federationRobotToken",
    tag = "exchange",
    security(("robot_identity" = [])),
    responses(
        (status = 200, description = "A robot token", body = wire::RobotToken),
        (status = 401, description = "The identity token or the request was refused", body = wire::ExchangeError),
        (status = 429, description = "Too many attempts; see `Retry-After`", body = wire::ExchangeError),
        (status = 503, description = "The issuer or the database is unreachable; see `Retry-After`", body = wire::ExchangeError),
    ),
)]
pub async fn exchange(
    State(state): State<AppState>,
    client: Option<axum::Extension<ClientAddr>>,
    request: Request,
) -> Response {
    let credentials = basic_credentials(request.headers());
    let client_ip = client.map(|c| c.0.0.ip());
    let result = exchange::exchange(
        &state,
        credentials
            .as_ref()
            .map(|c| (c.user(), c.password()))
            .map_err(Clone::clone),
        client_ip,
    )
    .await;
    match result {
        Ok(minted) => token_response(wire::RobotToken {
            token: minted.token.expose_secret().into(),
            expires_in: minted.expires_in,
            token_type: "Bearer".into(),
        }),
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
        let ok = format!("Basic {}", BASE64.encode_to_string(b"acme+ci:a.b:c"));
        let credentials = basic_credentials(&headers(&ok)).unwrap();
        assert_eq!(
            (credentials.user(), credentials.password()),
            ("acme+ci", "a.b:c")
        );
        assert_eq!(
            basic_credentials(&HeaderMap::new()).unwrap_err().code,
            RefusalCode::MissingAuth
        );
        for bad in [
            "Bearer x".to_string(),
            "Basic !!!".to_string(),
            format!("Basic {}", BASE64.encode_to_string(b"no-colon")),
            format!("Basic {}", BASE64.encode_to_string(b":token")),
            format!("Basic {}", BASE64.encode_to_string(b"robot:")),
            format!("Basic {}", BASE64.encode_to_string([0xff, b':', b'x'])),
        ] {
            assert_eq!(
                basic_credentials(&headers(&bad)).unwrap_err().code,
                RefusalCode::MalformedAuth,
                "{bad}"
            );
        }
    }
}
