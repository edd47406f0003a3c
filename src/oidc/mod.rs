//! Identity-token checking (SPEC 7.3). Nothing here knows about HTTP frameworks or databases:
//! the checks take plain values and return typed results, and the network sits behind
//! [`keys::JwksSource`] so tests can replace it.
//!
//! - [`jws`]: compact JWS parsing and the algorithm allow-list tied to key types.
//! - [`verify`]: signature and time checks → [`verify::VerifiedIdentity`].
//! - [`policy`]: federation entries, `*` patterns and conditions → the entry that matched, or why none did.
//! - [`keys`]: the per-issuer JWKS cache (single flight, kid refetch cooldown, stale-if-error,
//!   bounded in bytes); [`host_shares`]: what the issuers under one host may take of it.
//! - [`discovery`], [`fetch`]: `.well-known/openid-configuration` and the one outbound client.
//! - [`trust`]: per-issuer trust settings (static keys, `jwks_uri`, a CA, a bearer token,
//!   private networks) and `{tenantid}` issuer templates: how one issuer's keys are found.
//! - [`providers`]: presets (GitHub, GitLab, Kubernetes, Google) that expand into issuer,
//!   subject and conditions, and pin immutable IDs.

pub mod discovery;
pub mod fetch;
pub mod host_shares;
pub mod jws;
pub mod keys;
pub mod policy;
pub mod providers;
pub mod trust;
pub mod verify;

use url::{Host, Url};

/// Why an identity token was refused, with the SPEC 7.1 code and a message for the caller.
/// Messages name the received value that failed, never another tenant's configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Refusal {
    pub code: RefusalCode,
    pub message: String,
}

impl Refusal {
    pub fn new(code: RefusalCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The error codes of SPEC 7.1 (and `issuer_unavailable`, answered 503).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalCode {
    MissingAuth,
    MalformedAuth,
    UnknownRobot,
    NoFederation,
    MalformedToken,
    IssuerNotConfigured,
    IssuerNotAllowed,
    AlgorithmNotAllowed,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    AudienceMismatch,
    SubjectMismatch,
    ClaimMismatch,
    Replayed,
    IssuerUnavailable,
}

impl RefusalCode {
    pub const ALL: [RefusalCode; 18] = [
        RefusalCode::MissingAuth,
        RefusalCode::MalformedAuth,
        RefusalCode::UnknownRobot,
        RefusalCode::NoFederation,
        RefusalCode::MalformedToken,
        RefusalCode::IssuerNotConfigured,
        RefusalCode::IssuerNotAllowed,
        RefusalCode::AlgorithmNotAllowed,
        RefusalCode::UnknownKey,
        RefusalCode::BadSignature,
        RefusalCode::Expired,
        RefusalCode::NotYetValid,
        RefusalCode::IssuedInFuture,
        RefusalCode::AudienceMismatch,
        RefusalCode::SubjectMismatch,
        RefusalCode::ClaimMismatch,
        RefusalCode::Replayed,
        RefusalCode::IssuerUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::MissingAuth => "missing_auth",
            RefusalCode::MalformedAuth => "malformed_auth",
            RefusalCode::UnknownRobot => "unknown_robot",
            RefusalCode::NoFederation => "no_federation",
            RefusalCode::MalformedToken => "malformed_token",
            RefusalCode::IssuerNotConfigured => "issuer_not_configured",
            RefusalCode::IssuerNotAllowed => "issuer_not_allowed",
            RefusalCode::AlgorithmNotAllowed => "algorithm_not_allowed",
            RefusalCode::UnknownKey => "unknown_key",
            RefusalCode::BadSignature => "bad_signature",
            RefusalCode::Expired => "expired",
            RefusalCode::NotYetValid => "not_yet_valid",
            RefusalCode::IssuedInFuture => "issued_in_future",
            RefusalCode::AudienceMismatch => "audience_mismatch",
            RefusalCode::SubjectMismatch => "subject_mismatch",
            RefusalCode::ClaimMismatch => "claim_mismatch",
            RefusalCode::Replayed => "replayed",
            RefusalCode::IssuerUnavailable => "issuer_unavailable",
        }
    }
}

impl std::fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Issuers are compared exactly, except that one trailing `/` is ignored (SPEC 7.3 step 1).
pub fn same_issuer(a: &str, b: &str) -> bool {
    a.strip_suffix('/').unwrap_or(a) == b.strip_suffix('/').unwrap_or(b)
}

/// Checks an issuer against `federation.allowed_issuers`: empty allows any; otherwise an exact
/// URL, or a pattern in which `*` stands for exactly one host label or one path segment
/// (e.g. `https://*.example.com`, `https://gitlab.example.org/*`). One trailing `/` is ignored.
///
/// Both sides are compared as a URL parser reads them (scheme, host, port, path), never as
/// raw text: `https://1572395042\.example.com` looks like a host under `example.com`, but is
/// the address 93.184.216.34 with the path `/.example.com`, and that is what a fetch would use.
pub fn issuer_allowed(patterns: &[String], issuer: &str) -> bool {
    if patterns.is_empty() {
        return true;
    }
    let Ok(issuer) = Url::parse(issuer) else {
        return false;
    };
    if issuer.query().is_some()
        || issuer.fragment().is_some()
        || !issuer.username().is_empty()
        || issuer.password().is_some()
    {
        return false;
    }
    patterns
        .iter()
        .any(|pattern| Url::parse(pattern).is_ok_and(|pattern| issuer_matches(&pattern, &issuer)))
}

fn issuer_matches(pattern: &Url, issuer: &Url) -> bool {
    let hosts_match = match (pattern.host(), issuer.host()) {
        (Some(Host::Domain(p)), Some(Host::Domain(i))) => parts_match(p.split('.'), i.split('.')),
        (Some(p), Some(i)) => p == i, // IP addresses: exactly
        _ => false,
    };
    // Path segments, one trailing `/` ignored (`https://a` and `https://a/` are one issuer).
    fn segments(url: &Url) -> impl Iterator<Item = &str> {
        let path = url.path();
        path.strip_suffix('/').unwrap_or(path).split('/').skip(1)
    }
    pattern.scheme() == issuer.scheme()
        && pattern.port_or_known_default() == issuer.port_or_known_default()
        && hosts_match
        && parts_match(segments(pattern), segments(issuer))
}

/// Pattern parts against actual ones: as many, each equal, or `*` for any non-empty one.
fn parts_match<'a>(
    pattern: impl Iterator<Item = &'a str>,
    actual: impl Iterator<Item = &'a str>,
) -> bool {
    let (pattern, actual): (Vec<_>, Vec<_>) = (pattern.collect(), actual.collect());
    pattern.len() == actual.len()
        && pattern
            .iter()
            .zip(&actual)
            .all(|(p, a)| (*p == "*" && !a.is_empty()) || p == a)
}

/// Validates an issuer URL as a federation entry may hold it: `https://` (or `http://` when
/// `allow_http`), a host, no query, fragment or user info, and written as a URL parser writes
/// it (one trailing `/` aside), so that what the entry says is what gets fetched. Returns the
/// SPEC 6 message.
pub fn check_issuer_url(issuer: &str, allow_http: bool) -> Result<(), String> {
    if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
        return Err("Issuer must be a URL (http:// or https://)".into());
    }
    if issuer.starts_with("http://") && !allow_http {
        return Err(
            "Issuer must use https:// (http:// issuers are accepted only with federation.allow_http_issuers)".into(),
        );
    }
    let url = Url::parse(issuer).map_err(|_| "Issuer must be a URL (http:// or https://)")?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err("Issuer URL must have a host".into());
    }
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err("Issuer URL may not contain a query, fragment or user info".into());
    }
    if !same_issuer(url.as_str(), issuer) {
        return Err(format!(
            "Issuer URL must be written as a URL parser reads it: {}",
            url.as_str().strip_suffix('/').unwrap_or(url.as_str())
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_issuer_patterns_match_one_label_or_segment() {
        let patterns = vec![
            "https://token.actions.githubusercontent.com".to_string(),
            "https://*.example.com".to_string(),
            "https://gitlab.example.org/*".to_string(),
            "https://192.0.2.1".to_string(),
        ];
        for ok in [
            "https://token.actions.githubusercontent.com/",
            "https://ci.example.com",
            "https://gitlab.example.org/group",
            "https://192.0.2.1/",
        ] {
            assert!(issuer_allowed(&patterns, ok), "{ok}");
        }
        for no in [
            "https://token.actions.githubusercontent.com.evil.com",
            "https://a.b.example.com",
            "https://example.com",
            "http://ci.example.com",
            "https://gitlab.example.org/a/b",
            "https://gitlab.example.org",
            "https://1572395042\\.example.com",
            "https://x.example.com:8443",
            "https://u@ci.example.com",
            "https://:p@ci.example.com",
            "https://ci.example.com/?x=1",
            "https://ci.example.com/#f",
            "https://192.0.2.2",
            "https://192.0.2.1.example.com",
        ] {
            assert!(!issuer_allowed(&patterns, no), "{no}");
        }
        assert!(issuer_allowed(&[], "https://anything.example"));
    }

    /// Clients branch on these strings: they are SPEC 7.1's, in its order.
    #[test]
    fn refusal_codes_are_the_spec_strings() {
        let codes: Vec<String> = RefusalCode::ALL.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            codes,
            [
                "missing_auth",
                "malformed_auth",
                "unknown_robot",
                "no_federation",
                "malformed_token",
                "issuer_not_configured",
                "issuer_not_allowed",
                "algorithm_not_allowed",
                "unknown_key",
                "bad_signature",
                "expired",
                "not_yet_valid",
                "issued_in_future",
                "audience_mismatch",
                "subject_mismatch",
                "claim_mismatch",
                "replayed",
                "issuer_unavailable",
            ]
        );
    }

    #[test]
    fn issuer_urls_are_validated_with_spec_messages() {
        assert!(check_issuer_url("https://token.actions.githubusercontent.com", false).is_ok());
        assert_eq!(
            check_issuer_url("ftp://x", false).unwrap_err(),
            "Issuer must be a URL (http:// or https://)"
        );
        for odd in [
            "https://1572395042\\.example.com",
            "https://Example.com",
            "https://example.com:443",
            "https://example.com/a/../b",
        ] {
            assert!(
                check_issuer_url(odd, false)
                    .unwrap_err()
                    .contains("as a URL parser reads it"),
                "{odd}"
            );
        }
        assert!(check_issuer_url("https://accounts.google.com", false).is_ok());
        assert!(check_issuer_url("https://gitlab.example.com/", false).is_ok());
        assert!(
            check_issuer_url("http://x", false)
                .unwrap_err()
                .contains("https://")
        );
        assert!(check_issuer_url("http://x", true).is_ok());
        for bad in [
            "https://i?x=1",
            "https://i#f",
            "https://u:p@i",
            "https://u@i",
            "https://:p@i",
        ] {
            assert!(
                check_issuer_url(bad, false)
                    .unwrap_err()
                    .contains("query, fragment"),
                "{bad}"
            );
        }
        assert!(same_issuer("https://a/", "https://a"));
        assert!(!same_issuer("https://a//", "https://a"));
    }
}
