//! Identity-token checking (SPEC 7.3). Nothing here knows about HTTP frameworks or databases:
//! the checks take plain values and return typed results, and the network sits behind
//! [`keys::JwksSource`] so tests can replace it.
//!
//! - [`jws`]: compact JWS parsing and the algorithm allow-list tied to key types.
//! - [`verify`]: signature and time checks → [`verify::VerifiedIdentity`].
//! - [`policy`]: federation entries, `*` patterns and conditions → the entry that matched, or why none did.
//! - [`keys`]: the per-issuer JWKS cache (single flight, kid refetch cooldown, stale-if-error).
//! - [`discovery`], [`fetch`]: `.well-known/openid-configuration` and the one outbound client.
//! - [`trust`]: per-issuer trust settings (static keys, `jwks_uri`, a CA, a bearer token,
//!   private networks) and `{tenantid}` issuer templates: how one issuer's keys are found.
//! - [`providers`]: presets (GitHub, GitLab, Kubernetes, Google) that expand into issuer,
//!   subject and conditions, and pin immutable IDs.

pub mod discovery;
pub mod fetch;
pub mod jws;
pub mod keys;
pub mod policy;
pub mod providers;
pub mod trust;
pub mod verify;

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
/// (e.g. `https://*.example.com`, `https://gitlab.example.com/*`). One trailing `/` is ignored.
pub fn issuer_allowed(patterns: &[String], issuer: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| issuer_matches(p, issuer))
}

fn issuer_matches(pattern: &str, issuer: &str) -> bool {
    let split = |url: &str| -> Option<(String, Vec<String>, Vec<String>)> {
        let url = url.strip_suffix('/').unwrap_or(url);
        let (scheme, rest) = url.split_once("://")?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let labels = authority.split('.').map(str::to_string).collect();
        let segments = if path.is_empty() {
            Vec::new()
        } else {
            path.split('/').map(str::to_string).collect()
        };
        Some((scheme.to_string(), labels, segments))
    };
    let (Some((ps, pl, pp)), Some((is, il, ip))) = (split(pattern), split(issuer)) else {
        return false;
    };
    let parts_match = |p: &[String], i: &[String]| {
        p.len() == i.len()
            && p.iter()
                .zip(i)
                .all(|(p, i)| (p == "*" && !i.is_empty()) || p == i)
    };
    ps == is && parts_match(&pl, &il) && parts_match(&pp, &ip)
}

/// Validates an issuer URL as a federation entry may hold it: `https://` (or `http://` when
/// `allow_http`), a host, and no query, fragment or user info. Returns the SPEC 6 message.
pub fn check_issuer_url(issuer: &str, allow_http: bool) -> Result<(), &'static str> {
    if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
        return Err("Issuer must be a URL (http:// or https://)");
    }
    if issuer.starts_with("http://") && !allow_http {
        return Err(
            "Issuer must use https:// (http:// issuers are accepted only with federation.allow_http_issuers)",
        );
    }
    let url = url::Url::parse(issuer).map_err(|_| "Issuer must be a URL (http:// or https://)")?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err("Issuer URL must have a host");
    }
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err("Issuer URL may not contain a query, fragment or user info");
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
        ];
        for ok in [
            "https://token.actions.githubusercontent.com/",
            "https://ci.example.com",
            "https://gitlab.example.org/group",
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
        ] {
            assert!(!issuer_allowed(&patterns, no), "{no}");
        }
        assert!(issuer_allowed(&[], "https://anything.example"));
    }

    #[test]
    fn issuer_urls_are_validated_with_spec_messages() {
        assert!(check_issuer_url("https://token.actions.githubusercontent.com", false).is_ok());
        assert_eq!(
            check_issuer_url("ftp://x", false),
            Err("Issuer must be a URL (http:// or https://)")
        );
        assert!(
            check_issuer_url("http://x", false)
                .unwrap_err()
                .contains("https://")
        );
        assert!(check_issuer_url("http://x", true).is_ok());
        for bad in ["https://i?x=1", "https://i#f", "https://u:p@i"] {
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
