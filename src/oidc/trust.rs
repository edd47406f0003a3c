//! Per-issuer trust: how the keys of one issuer are found, apart from how they are cached
//! ([`super::keys`]).
//!
//! By default an issuer's keys come from its discovery document over the gateway's one
//! outbound client. `[[federation.issuers]]` in the configuration changes that for one issuer:
//!
//! - `jwks` / `jwks_file`: static keys (a Kubernetes cluster whose issuer nobody can reach);
//!   the file is re-read as soon as it changes, so removing a key takes effect at once.
//! - `jwks_uri`: no discovery, fetch the keys there.
//! - `ca_file`: a private CA trusted for this issuer's fetches only.
//! - `bearer_token_file`: a token sent with the JWKS request (a Kubernetes API server), read
//!   again on every fetch since projected service-account tokens rotate. It is only ever sent
//!   to the `jwks_uri` the operator named, never to a URL a discovery document names.
//! - `allow_private_network`: this issuer may live on a private address, without the global
//!   `federation.allow_private_networks`.
//!
//! Issuer templates: Azure's multi-tenant discovery documents name their issuer
//! `https://login.microsoftonline.com/{tenantid}/v2.0`. An entry (or a trust setting) naming
//! such a template accepts a token whose `iss` is the template with the token's own `tid` in
//! place of `{tenantid}`; the keys are those of the template (one key set for every tenant),
//! found at the discovery document of `{tenantid}` → `common`, as Azure publishes it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::fetch::{FetchError, Fetcher};
use super::jws::{KeySet, parse_jwks};
use super::keys::{CachedKeys, JwksSource};
use super::verify::Claims;
use super::{check_issuer_url, discovery, same_issuer};
use crate::config::Federation;

/// The placeholder of an issuer template, standing for the token's `tid` claim.
pub const TENANT: &str = "{tenantid}";
/// What a template's discovery document is fetched for, as Azure's multi-tenant endpoints do.
const TEMPLATE_DISCOVERY_TENANT: &str = "common";

/// Whether an entry's issuer accepts the token's `iss`: the same URL (one trailing `/`
/// ignored), or a template whose `{tenantid}` is the token's own `tid`.
///
/// Every exchange asks this of every entry, so the plain comparison comes first: looking for
/// the placeholder in every entry cost a third more (`policy/match_50_entries`). A token whose
/// `iss` is the literal template is taken as the template's own: only its key set can sign it.
pub fn issuer_accepts(entry_issuer: &str, claims: &Claims) -> bool {
    if same_issuer(entry_issuer, &claims.iss) {
        return true;
    }
    if !is_template(entry_issuer) {
        return false;
    }
    match claims.all.get("tid") {
        Some(Value::String(tid)) if is_tenant_id(tid) => {
            same_issuer(&entry_issuer.replace(TENANT, tid), &claims.iss)
        }
        _ => false,
    }
}

pub fn is_template(issuer: &str) -> bool {
    issuer.as_bytes().contains(&b'{') && issuer.contains(TENANT)
}

/// Tenant IDs are GUIDs; anything else (a `/`, a `.`) could splice another issuer together.
fn is_tenant_id(tid: &str) -> bool {
    (1..=64).contains(&tid.len()) && tid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Checks an issuer as an entry or a trust setting may name it: a URL as
/// [`check_issuer_url`] wants, where `{tenantid}` may stand for one whole path segment, once.
pub fn check_issuer(issuer: &str, allow_http: bool) -> Result<(), String> {
    if is_template(issuer) {
        let (_, path) = issuer
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('/'))
            .unwrap_or_default();
        if issuer.matches(TENANT).count() != 1 || !path.split('/').any(|s| s == TENANT) {
            return Err(format!(
                "Issuer template {issuer:?}: {TENANT} must be one whole path segment, once"
            ));
        }
    }
    let concrete = issuer.replace(TENANT, TEMPLATE_DISCOVERY_TENANT);
    if concrete.contains(['{', '}']) {
        return Err(format!(
            "Issuer {issuer:?}: the only placeholder an issuer may hold is {TENANT}"
        ));
    }
    check_issuer_url(&concrete, allow_http)
}

/// One `[[federation.issuers]]` table of the configuration (file only: an array of tables
/// has no `FEDGATE_*` form).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IssuerTrust {
    /// The issuer these settings are for, as tokens name it (or a `{tenantid}` template).
    pub issuer: String,
    /// Fetch the keys here instead of reading the discovery document.
    pub jwks_uri: String,
    /// Static keys: a JWKS document, inline.
    pub jwks: String,
    /// Static keys: a JWKS file, re-read when it changes.
    pub jwks_file: String,
    /// PEM CA bundle trusted (besides the web roots) for this issuer's fetches, instead of
    /// `federation.extra_ca_file`.
    pub ca_file: String,
    /// A file holding a bearer token sent with the request to `jwks_uri`; read on every fetch.
    pub bearer_token_file: String,
    /// This issuer's fetches may reach private addresses.
    pub allow_private_network: bool,
}

impl IssuerTrust {
    fn check(&self, allow_http: bool) -> Result<(), String> {
        if self.issuer.is_empty() {
            return Err("issuer is required".into());
        }
        check_issuer(&self.issuer, allow_http)?;
        let sources = [&self.jwks_uri, &self.jwks, &self.jwks_file]
            .iter()
            .filter(|s| !s.is_empty())
            .count();
        if sources > 1 {
            return Err("set at most one of jwks_uri, jwks, jwks_file".into());
        }
        if !self.jwks_uri.is_empty() {
            let url = Url::parse(&self.jwks_uri).map_err(|e| format!("jwks_uri: {e}"))?;
            let scheme_ok = url.scheme() == "https" || (allow_http && url.scheme() == "http");
            if !scheme_ok || url.host_str().is_none() {
                return Err("jwks_uri must be an https:// URL".into());
            }
        }
        if !self.bearer_token_file.is_empty() && !self.jwks_uri.starts_with("https://") {
            return Err(
                "bearer_token_file needs an https:// jwks_uri: the token is sent only to the URL you name"
                    .into(),
            );
        }
        let is_static = !self.jwks.is_empty() || !self.jwks_file.is_empty();
        if is_static
            && (!self.ca_file.is_empty()
                || !self.bearer_token_file.is_empty()
                || self.allow_private_network)
        {
            return Err(
                "ca_file, bearer_token_file and allow_private_network are for fetched keys; this issuer's keys are static"
                    .into(),
            );
        }
        if !self.jwks.is_empty() {
            parse_jwks(self.jwks.as_bytes()).map_err(|e| format!("jwks: {e}"))?;
        }
        Ok(())
    }

    fn key(&self) -> &str {
        issuer_key(&self.issuer)
    }
}

/// Validates `[[federation.issuers]]`; the message names the table.
pub fn check_settings(settings: &[IssuerTrust], allow_http: bool) -> Result<(), String> {
    for (i, trust) in settings.iter().enumerate() {
        let name = format!("federation.issuers[{i}] ({:?})", trust.issuer);
        trust
            .check(allow_http)
            .map_err(|e| format!("{name}: {e}"))?;
        if settings[..i].iter().any(|t| t.key() == trust.key()) {
            return Err(format!("{name}: this issuer has settings twice"));
        }
    }
    Ok(())
}

fn issuer_key(issuer: &str) -> &str {
    issuer.strip_suffix('/').unwrap_or(issuer)
}

/// Where one issuer's keys come from when its settings say so.
enum Source {
    Static(StaticKeys),
    Fetched {
        fetcher: Fetcher,
        jwks_uri: Option<Url>,
        bearer_token_file: Option<PathBuf>,
    },
}

/// The gateway's key source: each issuer's trust settings, or discovery over the default
/// outbound client.
pub struct TrustedSource {
    default: Fetcher,
    issuers: HashMap<String, Source>,
}

impl std::fmt::Debug for TrustedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedSource")
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl TrustedSource {
    /// Builds one outbound client per issuer that has its own CA or network setting, and
    /// reads static key files (an unreadable one is a start-up error).
    pub fn new(config: &Federation) -> Result<Self, String> {
        let default = Fetcher::new(config)?;
        let mut issuers = HashMap::new();
        for trust in &config.issuers {
            let name = format!("federation.issuers ({})", trust.issuer);
            let source = if !trust.jwks.is_empty() || !trust.jwks_file.is_empty() {
                Source::Static(StaticKeys::load(trust).map_err(|e| format!("{name}: {e}"))?)
            } else {
                let fetcher = if trust.ca_file.is_empty() && !trust.allow_private_network {
                    default.clone()
                } else {
                    let mut own = config.clone();
                    if !trust.ca_file.is_empty() {
                        own.extra_ca_file = trust.ca_file.clone();
                    }
                    own.allow_private_networks |= trust.allow_private_network;
                    Fetcher::new(&own).map_err(|e| format!("{name}: {e}"))?
                };
                Source::Fetched {
                    fetcher,
                    jwks_uri: (!trust.jwks_uri.is_empty())
                        .then(|| Url::parse(&trust.jwks_uri))
                        .transpose()
                        .map_err(|e| format!("{name}: jwks_uri: {e}"))?,
                    bearer_token_file: (!trust.bearer_token_file.is_empty())
                        .then(|| PathBuf::from(&trust.bearer_token_file)),
                }
            };
            issuers.insert(trust.key().to_string(), source);
        }
        Ok(Self { default, issuers })
    }
}

#[async_trait]
impl JwksSource for TrustedSource {
    async fn fetch(&self, issuer: &str) -> Result<KeySet, FetchError> {
        let (fetcher, jwks_uri, bearer) = match self.issuers.get(issuer_key(issuer)) {
            Some(Source::Static(keys)) => return keys.reparse(),
            Some(Source::Fetched {
                fetcher,
                jwks_uri,
                bearer_token_file,
            }) => (fetcher, jwks_uri.clone(), bearer_token_file.as_deref()),
            None => (&self.default, None, None),
        };
        let jwks_uri = match jwks_uri {
            Some(url) => url,
            None if is_template(issuer) => {
                let at = issuer.replace(TENANT, TEMPLATE_DISCOVERY_TENANT);
                discovery::jwks_uri_at(fetcher, &at, issuer).await?
            }
            None => discovery::jwks_uri(fetcher, issuer).await?,
        };
        let bearer = match bearer {
            Some(path) => Some(read_bearer(path).await?),
            None => None,
        };
        let body = fetcher.get_authorized(&jwks_uri, bearer.as_deref()).await?;
        parse_jwks(&body).map_err(|e| FetchError::Unreachable(format!("{jwks_uri}: {e}")))
    }

    fn local_keys(&self, issuer: &str) -> Option<Arc<CachedKeys>> {
        match self.issuers.get(issuer_key(issuer)) {
            Some(Source::Static(keys)) => Some(keys.current()),
            _ => None,
        }
    }
}

/// Reads a bearer token file; its content never reaches a log line or an error message.
async fn read_bearer(path: &Path) -> Result<String, FetchError> {
    let text = tokio::fs::read_to_string(path).await.map_err(|e| {
        FetchError::Unreachable(format!("bearer_token_file {}: {e}", path.display()))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(FetchError::Unreachable(format!(
            "bearer_token_file {} is empty",
            path.display()
        )));
    }
    Ok(token.to_string())
}

/// When a file was last seen, to notice a change with one `stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    Ok(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

/// Static keys, inline or from a file that is re-read when it changes (its modification
/// time or size). A file that turns unreadable or invalid keeps the last good keys serving,
/// with a warning, until it is fixed.
struct StaticKeys {
    issuer: String,
    file: Option<PathBuf>,
    inline: String,
    current: Mutex<(Option<Stamp>, Arc<CachedKeys>)>,
}

impl StaticKeys {
    fn load(trust: &IssuerTrust) -> Result<Self, String> {
        let file = (!trust.jwks_file.is_empty()).then(|| PathBuf::from(&trust.jwks_file));
        let (seen, keys) = match &file {
            Some(path) => {
                let seen = stamp(path).map_err(|e| format!("jwks_file {}: {e}", path.display()))?;
                let text = std::fs::read(path)
                    .map_err(|e| format!("jwks_file {}: {e}", path.display()))?;
                let keys =
                    parse_jwks(&text).map_err(|e| format!("jwks_file {}: {e}", path.display()))?;
                (Some(seen), keys)
            }
            None => (
                None,
                parse_jwks(trust.jwks.as_bytes()).map_err(|e| format!("jwks: {e}"))?,
            ),
        };
        Ok(Self {
            issuer: trust.issuer.clone(),
            file,
            inline: trust.jwks.clone(),
            current: Mutex::new((seen, Arc::new(CachedKeys::new(keys, 0)))),
        })
    }

    /// The keys as the file holds them now: a `stat`, and a parse when it changed.
    fn current(&self) -> Arc<CachedKeys> {
        // A panic cannot leave the pair inconsistent (it is replaced whole).
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let Some(path) = &self.file else {
            return current.1.clone();
        };
        let now = stamp(path).ok();
        if now.is_some() && now != current.0 {
            match std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|text| parse_jwks(&text))
            {
                Ok(keys) => {
                    tracing::info!(issuer = %self.issuer, file = %path.display(), keys = keys.jwk_count, "static JWKS re-read");
                    current.1 = Arc::new(CachedKeys::new(keys, 0));
                }
                Err(e) => {
                    tracing::warn!(issuer = %self.issuer, file = %path.display(), error = %e, "static JWKS file is invalid; the last good keys stay in use");
                }
            }
            current.0 = now;
        }
        current.1.clone()
    }

    fn reparse(&self) -> Result<KeySet, FetchError> {
        let text = match &self.file {
            Some(path) => std::fs::read(path)
                .map_err(|e| FetchError::Unreachable(format!("{}: {e}", path.display())))?,
            None => self.inline.as_bytes().to_vec(),
        };
        parse_jwks(&text).map_err(FetchError::Unreachable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        super::super::verify::claims(v.as_object().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_template_accepts_the_tokens_own_tenant_only() {
        let template = "https://login.microsoftonline.com/{tenantid}/v2.0";
        let tid = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        let ok = claims(
            json!({"iss": format!("https://login.microsoftonline.com/{tid}/v2.0"),
                               "sub": "s", "exp": 1, "tid": tid}),
        );
        assert!(issuer_accepts(template, &ok));
        let other = claims(
            json!({"iss": "https://login.microsoftonline.com/other/v2.0",
                                  "sub": "s", "exp": 1, "tid": tid}),
        );
        assert!(
            !issuer_accepts(template, &other),
            "iss names another tenant"
        );
        for bad_tid in [json!("a/b"), json!("x.y"), json!(""), json!(5)] {
            let c = claims(json!({"iss": "https://login.microsoftonline.com/a/b/v2.0",
                                  "sub": "s", "exp": 1, "tid": bad_tid}));
            assert!(!issuer_accepts(
                "https://login.microsoftonline.com/{tenantid}/v2.0",
                &c
            ));
        }
        let no_tid = claims(json!({"iss": "https://login.microsoftonline.com/x/v2.0",
                                   "sub": "s", "exp": 1}));
        assert!(!issuer_accepts(template, &no_tid), "a template needs tid");
        assert!(issuer_accepts(
            "https://i/",
            &claims(json!({"iss": "https://i", "sub": "s", "exp": 1}))
        ));
    }

    #[test]
    fn a_tenant_id_is_1_to_64_letters_digits_or_dashes() {
        let template = "https://login.microsoftonline.com/{tenantid}/v2.0";
        let token = |tid: &str| {
            claims(
                json!({"iss": format!("https://login.microsoftonline.com/{tid}/v2.0"),
                          "sub": "s", "exp": 1, "tid": tid}),
            )
        };
        assert!(issuer_accepts(template, &token(&"a-1".repeat(21))));
        assert!(issuer_accepts(template, &token(&"a".repeat(64))));
        assert!(!issuer_accepts(template, &token(&"a".repeat(65))));
        assert!(!issuer_accepts(template, &token("a_b")));
        assert!(
            !issuer_accepts("https://login.microsoftonline.com/common/v2.0", &token("x")),
            "a plain issuer is no template"
        );
    }

    #[test]
    fn templates_hold_one_whole_segment() {
        assert!(
            check_issuer("https://h/{other}/v2.0", false)
                .unwrap_err()
                .contains("the only placeholder"),
            "another placeholder is not a template"
        );
        assert!(!is_template("https://h/{other}/v2.0") && !is_template("https://h/tenantid/"));
        assert!(check_issuer("https://login.microsoftonline.com/{tenantid}/v2.0", false).is_ok());
        assert!(check_issuer("https://sts.windows.net/{tenantid}/", false).is_ok());
        for bad in [
            "https://{tenantid}.example.com",
            "https://h/x{tenantid}/v2.0",
            "https://h/{tenantid}/{tenantid}",
            "https://h/{other}/v2.0",
        ] {
            assert!(check_issuer(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_are_checked() {
        let t = |v: Value| -> IssuerTrust { serde_json::from_value(v).unwrap() };
        for (bad, needle) in [
            (json!({}), "issuer is required"),
            (
                json!({"issuer": "https://k", "jwks": "{}", "jwks_uri": "https://k/j"}),
                "at most one",
            ),
            (
                json!({"issuer": "https://k", "jwks_uri": "ftp://k/j"}),
                "https://",
            ),
            (
                json!({"issuer": "https://k", "bearer_token_file": "/t"}),
                "needs an https:// jwks_uri",
            ),
            (
                json!({"issuer": "https://k", "jwks": "{\"keys\": []}", "ca_file": "/ca"}),
                "static",
            ),
            (json!({"issuer": "https://k", "jwks": "not json"}), "jwks:"),
            (
                json!({"issuer": "https://k", "jwks": "{\"keys\": []}", "allow_private_network": true}),
                "static",
            ),
            (
                json!({"issuer": "https://k", "jwks_file": "/j", "jwks_uri": "https://k/j"}),
                "at most one",
            ),
            (
                json!({"issuer": "https://k", "jwks_uri": "http://k/j"}),
                "https://",
            ),
            (json!({"issuer": "http://k"}), "https://"),
        ] {
            let err = check_settings(&[t(bad.clone())], false).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
        let twice = [
            t(json!({"issuer": "https://k", "jwks_uri": "https://k/j"})),
            t(json!({"issuer": "https://k/", "jwks_uri": "https://k/j"})),
        ];
        assert!(check_settings(&twice, false).unwrap_err().contains("twice"));
        let two = [
            t(json!({"issuer": "https://k", "jwks_file": "/j"})),
            t(json!({"issuer": "https://l", "jwks_uri": "https://l/j"})),
        ];
        check_settings(&two, false).unwrap();
        check_settings(
            &[t(json!({"issuer": "http://k", "jwks_uri": "http://k/j"}))],
            true,
        )
        .unwrap();
        check_settings(
            &[t(json!({"issuer": "https://k", "jwks_uri": "https://api:6443/openid/v1/jwks",
                        "bearer_token_file": "/t", "ca_file": "/ca", "allow_private_network": true}))],
            false,
        )
        .unwrap();
    }
}
