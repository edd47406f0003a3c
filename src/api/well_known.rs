//! What fedgate publishes so others can verify its tokens offline (SPEC 7.4):
//! `/.well-known/jwks.json` and `/.well-known/openid-configuration`.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use http::header::CACHE_CONTROL;

use crate::app::AppState;

use crate::wire::GRANT_TYPE;

/// Verifiers may cache the key set briefly; rotation keeps old keys published for longer.
const JWKS_MAX_AGE: &str = "public, max-age=60";

/// The keys that verify fedgate's tokens (JWK set)
///
/// Every published key: the active one and those whose tokens may still be valid.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    operation_id = "jwks",
    tag = "keys",
    responses((status = 200, description = "`{\"keys\": [JWK...]}`", body = serde_json::Value)),
)]
pub async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = Json(state.keyring().jwks()).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static(JWKS_MAX_AGE));
    response
}

/// fedgate's OpenID provider metadata
///
/// `issuer`, `jwks_uri` and `token_endpoint`, so verifiers find the keys.
#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    operation_id = "openidConfiguration",
    tag = "keys",
    responses((status = 200, description = "The metadata", body = serde_json::Value)),
)]
pub async fn openid_configuration(State(state): State<AppState>) -> Json<serde_json::Value> {
    let base = state.config.server.public_url.trim_end_matches('/');
    Json(serde_json::json!({
        "issuer": state.config.server.public_url,
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "token_endpoint": format!("{base}/oauth2/token"),
        "grant_types_supported": [GRANT_TYPE],
        "token_endpoint_auth_methods_supported": ["none"],
        "id_token_signing_alg_values_supported": [state.config.keys.signing_alg],
        "subject_types_supported": ["public"],
        "response_types_supported": ["token"],
    }))
}
