//! Identity-token checking (SPEC 7.3). Nothing here knows about HTTP frameworks or databases:
//! the checks take plain values and return typed results, and the network sits behind
//! [`keys::JwksSource`] so tests can replace it.
//!
//! - [`jws`]: compact JWS parsing and the algorithm allow-list tied to key types.
//! - [`verify`]: signature and time checks → [`verify::VerifiedIdentity`].
//! - [`policy`]: federation entries, `*` patterns and conditions → the entry that matched, or why none did.
//! - [`keys`]: the per-issuer JWKS cache (single flight, kid refetch cooldown, stale-if-error).
//! - [`discovery`], [`fetch`]: `.well-known/openid-configuration` and the one outbound client.

pub mod discovery;
pub mod fetch;
pub mod jws;
pub mod keys;
pub mod policy;
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
