//! OpenID Connect discovery: `<iss>/.well-known/openid-configuration` → `jwks_uri`.
//!
//! Only two members matter to fedgate, so a two-field struct reads them; the document's
//! `issuer` must equal the token's `iss` (OpenID Connect Discovery §4.3), which stops one
//! issuer from serving keys for another.

use serde::Deserialize;
use url::Url;

use super::fetch::{FetchError, Fetcher};

#[derive(Debug, Deserialize)]
struct ProviderMetadata {
    issuer: String,
    jwks_uri: String,
}

/// The discovery URL of `issuer`.
pub fn discovery_url(issuer: &str) -> Result<Url, FetchError> {
    let base = issuer.strip_suffix('/').unwrap_or(issuer);
    Url::parse(&format!("{base}/.well-known/openid-configuration"))
        .map_err(|e| FetchError::Refused(format!("issuer {issuer:?} is not a URL: {e}")))
}

/// Fetches the discovery document and returns its checked `jwks_uri`.
pub async fn jwks_uri(fetcher: &Fetcher, issuer: &str) -> Result<Url, FetchError> {
    jwks_uri_at(fetcher, issuer, issuer).await
}

/// As [`jwks_uri`], for the document under `base` that must name `issuer` (an issuer
/// template's document lives under a concrete URL: `oidc::trust`).
pub async fn jwks_uri_at(fetcher: &Fetcher, base: &str, issuer: &str) -> Result<Url, FetchError> {
    let url = discovery_url(base)?;
    let body = fetcher.get(&url).await?;
    let meta: ProviderMetadata = serde_json::from_slice(&body)
        .map_err(|e| FetchError::Unreachable(format!("{url}: not a discovery document: {e}")))?;
    if meta.issuer != issuer {
        return Err(FetchError::Refused(format!(
            "{url}: the document's issuer {:?} is not the token's iss {issuer:?}",
            meta.issuer
        )));
    }
    let jwks = Url::parse(&meta.jwks_uri)
        .map_err(|e| FetchError::Unreachable(format!("{url}: jwks_uri is not a URL: {e}")))?;
    fetcher.check_url(&jwks)?;
    Ok(jwks)
}
