//! The exchange's wire format (SPEC 7.1 and 7.2): paths, constants and JSON bodies that the
//! gateway writes (`api/exchange.rs`, `api/sts.rs`) and the client reads (`client/`). One
//! definition, so the two sides cannot drift apart.
//!
//! Strings are `Cow` so the gateway serializes borrowed values and the client deserializes
//! owned (or borrowed) ones with the same types.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// Quay's form: `GET`/`POST` with `Authorization: Basic base64("<robot>:<OIDC JWT>")`.
pub const QUAY_EXCHANGE_PATH: &str = "/oauth2/federation/robot/token";
/// RFC 8693's form: `POST`, form-encoded.
pub const STS_PATH: &str = "/oauth2/token";

pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const TOKEN_TYPE_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
/// `resource=urn:quay:robot:<robot full name>` names the robot in the RFC 8693 form.
pub const ROBOT_RESOURCE_PREFIX: &str = "urn:quay:robot:";

/// 7.1 success: `{"token", "expires_in", "token_type": "Bearer"}`.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(
    feature = "server",
    derive(utoipa::ToSchema),
    schema(description = "A minted robot token (the JWT is the robot's password at `/v2/auth`).")
)]
pub struct RobotToken<'a> {
    #[serde(borrow)]
    #[cfg_attr(feature = "server", schema(value_type = String))]
    pub token: Cow<'a, str>,
    pub expires_in: u64,
    #[serde(borrow)]
    #[cfg_attr(feature = "server", schema(value_type = String))]
    pub token_type: Cow<'a, str>,
}

/// 7.1 refusal (401, 429, 503): `{"error": <message>, "error_code": <code>}`.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(
    feature = "server",
    derive(utoipa::ToSchema),
    schema(
        description = "A refused exchange: what failed, naming the received value, and its error code."
    )
)]
pub struct ExchangeError<'a> {
    #[serde(borrow)]
    #[cfg_attr(feature = "server", schema(value_type = String))]
    pub error: Cow<'a, str>,
    #[serde(borrow)]
    #[cfg_attr(feature = "server", schema(value_type = String))]
    pub error_code: Cow<'a, str>,
}

/// 7.2 success (RFC 8693 §2.2.1).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(
    feature = "server",
    derive(utoipa::ToSchema),
    schema(description = "A minted robot token, in RFC 8693's form.")
)]
pub struct StsToken<'a> {
    #[serde(borrow)]
    #[cfg_attr(feature = "server", schema(value_type = String))]
    pub access_token: Cow<'a, str>,
    #[serde(borrow)]
    #[cfg_attr(feature = "server", schema(value_type = String))]
    pub issued_token_type: Cow<'a, str>,
    #[serde(borrow)]
    #[cfg_attr(feature = "server", schema(value_type = String))]
    pub token_type: Cow<'a, str>,
    pub expires_in: u64,
}

/// 7.2 refusal (RFC 6749 §5.2): `{"error", "error_description"}`; the description starts
/// with the 7.1 code.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(
    feature = "server",
    derive(utoipa::ToSchema),
    schema(
        description = "An RFC 6749 error: its code, and a description (for the exchange, its error code first)."
    )
)]
pub struct OAuthError<'a> {
    #[serde(borrow)]
    #[cfg_attr(feature = "server", schema(value_type = String))]
    pub error: Cow<'a, str>,
    #[serde(borrow, default)]
    #[cfg_attr(feature = "server", schema(value_type = String))]
    pub error_description: Cow<'a, str>,
}
