//! The signing keyring: the keys fedgate signs robot and registry tokens with.
//!
//! Keys live in `keys.dir` ([`super::key_files`]). Each has an activation instant; the key
//! that signs is, at the signing moment, the newest key whose activation has passed, so every
//! replica switches at the same instant whenever it loaded the key. A key is published (in
//! the JWKS, in `keys registry-cert`/`registry-jwks`, and for fedgate's own checks) from the
//! moment it exists, staged, until every token it can have signed has expired after a newer
//! key took over. `fedgate keys rotate` stages a key, `keys activate` brings its activation
//! forward; running gateways re-read the directory every few seconds.
//!
//! `kid`: keys with a sidecar carry the RFC 7638 JWK thumbprint (what distribution 3.x derives
//! from certificates and expects in JWKS files); older keys keep the libtrust fingerprint that
//! a Docker registry 2.x derives from the certificate it is given.

use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair,
};
use base64_simd::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64URL_NOPAD};
use data_encoding::BASE32_NOPAD;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use secrecy::{ExposeSecret, SecretSlice};
use serde::Serialize;

use super::key_files::{self, KeyFile, KeyMeta};
use crate::oidc::jws::{KeySet, parse_jwks};

/// How often a running gateway re-reads `keys.dir` (the server's keyring check).
pub const RELOAD_INTERVAL_SECONDS: i64 = 5;

/// The shortest time between changing when a key activates and that instant: twice the reload
/// interval, so every replica has read the change before it takes effect.
pub const ACTIVATION_MARGIN_SECONDS: i64 = 2 * RELOAD_INTERVAL_SECONDS;

/// Algorithms fedgate signs with (`keys.signing_alg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    ES256,
    RS256,
    EdDSA,
}

impl SigningAlg {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(Self::ES256),
            "RS256" => Some(Self::RS256),
            "EdDSA" => Some(Self::EdDSA),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
            Self::EdDSA => "EdDSA",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("signing keys in {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("signing key {0} cannot be read (not a PKCS#8 key of its algorithm)")]
    BadKey(String),
    #[error("signing key metadata {0}")]
    BadMeta(String),
    #[error("no signing key in the keys directory (`fedgate keys rotate` creates the first)")]
    Empty,
    #[error("generating a signing key failed")]
    Generate,
}

enum Pair {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// One private key, parsed once.
pub struct SigningKey {
    pub kid: String,
    pub alg: SigningAlg,
    pub created_at: i64,
    /// When the key starts signing.
    pub activates_at: i64,
    pair: Pair,
    pkcs8: SecretSlice<u8>,
    jwk: serde_json::Value,
    /// The stored certificate (PEM), for keys that have one.
    certificate: Option<String>,
    /// `base64url({"alg":…,"typ":"JWT","kid":…}).`: the same for every token this key signs.
    encoded_header: String,
    /// The same with `"x5c":[<certificate>]`, for registry tokens (keys with a certificate).
    encoded_x5c_header: Option<String>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("created_at", &self.created_at)
            .field("activates_at", &self.activates_at)
            .finish_non_exhaustive()
    }
}

/// The libtrust key ID: SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits, base32,
/// in twelve groups of four separated by `:` (docker/libtrust `keyIDFromCryptoKey`).
pub fn libtrust_kid(spki_der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki_der);
    let encoded = BASE32_NOPAD.encode(&digest.as_ref()[..30]);
    encoded
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// The RFC 7638 JWK thumbprint (SHA-256, base64url) of a public JWK's members: the required
/// members in lexicographic order, no whitespace (RFC 8037 for OKP keys).
pub fn jwk_thumbprint(jwk: &serde_json::Value) -> String {
    let member = |name: &str| jwk[name].as_str().unwrap_or_default();
    let canonical = match member("kty") {
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            member("crv"),
            member("x"),
            member("y")
        ),
        "RSA" => format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            member("e"),
            member("n")
        ),
        _ => format!(
            r#"{{"crv":"{}","kty":"{}","x":"{}"}}"#,
            member("crv"),
            member("kty"),
            member("x")
        ),
    };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    BASE64URL_NOPAD.encode_to_string(digest.as_ref())
}

fn encode_header(header: &serde_json::Value) -> String {
    let mut encoded = BASE64URL_NOPAD.encode_to_string(header.to_string().as_bytes());
    encoded.push('.');
    encoded
}

impl SigningKey {
    /// Parses a PKCS#8 key of `alg`, with its sidecar if it has one.
    pub fn parse(
        alg: SigningAlg,
        der: &[u8],
        created_at: i64,
        name: &str,
        meta: Option<&KeyMeta>,
    ) -> Result<Self, KeyringError> {
        let bad = || KeyringError::BadKey(name.to_string());
        let (pair, spki, jwk_members) = match alg {
            SigningAlg::ES256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|_| bad())?;
                let point = pair.public_key().as_ref().to_vec();
                let spki = pair
                    .public_key()
                    .as_der()
                    .map_err(|_| bad())?
                    .as_ref()
                    .to_vec();
                let members = serde_json::json!({
                    "kty": "EC", "crv": "P-256",
                    "x": BASE64URL_NOPAD.encode_to_string(&point[1..33]),
                    "y": BASE64URL_NOPAD.encode_to_string(&point[33..65]),
                });
                (Pair::Ec(pair), spki, members)
            }
            SigningAlg::RS256 => {
                let pair = RsaKeyPair::from_pkcs8(der).map_err(|_| bad())?;
                let public = pair.public_key();
                let spki = public.as_der().map_err(|_| bad())?.as_ref().to_vec();
                let members = serde_json::json!({
                    "kty": "RSA",
                    "n": BASE64URL_NOPAD.encode_to_string(public.modulus().big_endian_without_leading_zero()),
                    "e": BASE64URL_NOPAD.encode_to_string(public.exponent().big_endian_without_leading_zero()),
                });
                (Pair::Rsa(pair), spki, members)
            }
            SigningAlg::EdDSA => {
                let pair = Ed25519KeyPair::from_pkcs8(der).map_err(|_| bad())?;
                let spki = pair
                    .public_key()
                    .as_der()
                    .map_err(|_| bad())?
                    .as_ref()
                    .to_vec();
                let members = serde_json::json!({
                    "kty": "OKP", "crv": "Ed25519",
                    "x": BASE64URL_NOPAD.encode_to_string(pair.public_key().as_ref()),
                });
                (Pair::Ed(pair), spki, members)
            }
        };
        let kid = match meta {
            Some(_) => jwk_thumbprint(&jwk_members),
            None => libtrust_kid(&spki),
        };
        let mut jwk = jwk_members;
        jwk["kid"] = serde_json::Value::String(kid.clone());
        jwk["alg"] = serde_json::Value::String(alg.as_str().to_string());
        jwk["use"] = serde_json::Value::String("sig".to_string());
        let header = serde_json::json!({"alg": alg.as_str(), "typ": "JWT", "kid": kid});
        let encoded_x5c_header = match meta {
            Some(meta) => {
                let cert = CertificateDer::from_pem_slice(meta.certificate.as_bytes())
                    .map_err(|_| KeyringError::BadMeta(format!("of {name}: no PEM certificate")))?;
                // The certificate must carry this very key, or registries would trust another.
                if !cert.windows(spki.len()).any(|w| w == spki.as_slice()) {
                    return Err(KeyringError::BadMeta(format!(
                        "of {name}: the certificate is for another key"
                    )));
                }
                let mut with_x5c = header.clone();
                with_x5c["x5c"] = serde_json::json!([BASE64.encode_to_string(cert.as_ref())]);
                Some(encode_header(&with_x5c))
            }
            None => None,
        };
        Ok(Self {
            encoded_header: encode_header(&header),
            encoded_x5c_header,
            kid,
            alg,
            created_at,
            activates_at: meta.map_or(created_at, |m| m.activates_at),
            pair,
            pkcs8: SecretSlice::from(der.to_vec()),
            jwk,
            certificate: meta.map(|m| m.certificate.clone()),
        })
    }

    /// The private key as PKCS#8 DER (for certificates); never logged.
    pub fn pkcs8(&self) -> &[u8] {
        self.pkcs8.expose_secret()
    }

    pub fn jwk(&self) -> &serde_json::Value {
        &self.jwk
    }

    /// The certificate made with the key, when it has one (keys made since staged rotation).
    pub fn stored_certificate(&self) -> Option<&str> {
        self.certificate.as_deref()
    }

    /// The certificate a registry's `rootcertbundle` needs for this key (PEM): the stored one,
    /// or for older keys one made now.
    pub fn registry_certificate(&self, now: i64) -> Result<String, KeyringError> {
        match &self.certificate {
            Some(pem) => Ok(pem.clone()),
            None => key_files::self_signed(self, now),
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyringError> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Ec(pair) => pair
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyringError::Generate),
            Pair::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| KeyringError::Generate)?;
                Ok(sig)
            }
            Pair::Ed(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }

    fn sign_with(
        &self,
        encoded_header: &str,
        claims: &impl Serialize,
    ) -> Result<String, KeyringError> {
        let payload = serde_json::to_vec(claims).map_err(|_| KeyringError::Generate)?;
        let mut token = String::with_capacity(
            // Room for the signature: 86 characters for ES256, 342 for RS256 with RSA-2048.
            encoded_header.len() + BASE64URL_NOPAD.encoded_length(payload.len()) + 400,
        );
        token.push_str(encoded_header);
        BASE64URL_NOPAD.encode_append(&payload, &mut token);
        let signature = self.sign(token.as_bytes())?;
        token.push('.');
        BASE64URL_NOPAD.encode_append(&signature, &mut token);
        Ok(token)
    }

    /// Signs `claims` as a compact JWS whose header names this key's `kid`.
    pub fn sign_jwt(&self, claims: &impl Serialize) -> Result<String, KeyringError> {
        self.sign_with(&self.encoded_header, claims)
    }

    /// Signs a registry token. With `x5c` (and a stored certificate) the header also carries
    /// the key's certificate, which distribution 2.x and 3.x check against their
    /// `rootcertbundle`; without, only the `kid` (distribution 3.x with a `jwks` file).
    pub fn sign_registry_jwt(
        &self,
        claims: &impl Serialize,
        x5c: bool,
    ) -> Result<String, KeyringError> {
        match (&self.encoded_x5c_header, x5c) {
            (Some(header), true) => self.sign_with(header, claims),
            _ => self.sign_with(&self.encoded_header, claims),
        }
    }
}

/// What a key is doing at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published, not signing yet.
    Staged,
    /// Signing.
    Active,
    /// Superseded; published until its tokens have expired.
    Retiring,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Staged => "staged",
            Self::Active => "active",
            Self::Retiring => "retiring",
        }
    }
}

/// The published keys.
#[derive(Debug)]
pub struct Keyring {
    /// Oldest first: superseded keys whose tokens can still be alive, the active one, staged ones.
    published: Vec<Arc<SigningKey>>,
    verifying: KeySet,
    /// The files this ring was loaded from, to notice changes (`keys rotate`, `keys activate`).
    loaded_from: Vec<KeyFile>,
    /// When the next superseded key stops being published (the ring is then out of date).
    retires_at: Option<i64>,
}

impl Keyring {
    /// Loads the keys in `dir`. Keys superseded more than `retire_after` seconds before `now`
    /// are no longer published.
    pub fn load(dir: &Path, retire_after: i64, now: i64) -> Result<Self, KeyringError> {
        let files = key_files::list(dir)?;
        let mut keys = Vec::new();
        for file in &files {
            let Some(alg) = SigningAlg::parse(&file.alg) else {
                continue;
            };
            let der = std::fs::read(&file.path).map_err(|source| KeyringError::Io {
                path: file.path.display().to_string(),
                source,
            })?;
            keys.push(Arc::new(SigningKey::parse(
                alg,
                &der,
                file.created,
                &file.name,
                file.meta.as_ref(),
            )?));
        }
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        // A key is superseded when a newer key activates; it stays published while a token it
        // signed can be alive, i.e. until `retire_after` after that.
        let mut published = Vec::new();
        let mut retires_at: Option<i64> = None;
        for (i, key) in keys.iter().enumerate() {
            let superseded_at = keys[i + 1..].iter().map(|k| k.activates_at).min();
            match superseded_at.map(|at| at.saturating_add(retire_after)) {
                Some(retire) if retire <= now => {}
                Some(retire) => {
                    published.push(key.clone());
                    retires_at = Some(retires_at.map_or(retire, |r| r.min(retire)));
                }
                None => published.push(key.clone()),
            }
        }
        let jwks = serde_json::json!({"keys": published.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
        let verifying =
            parse_jwks(jwks.to_string().as_bytes()).map_err(|_| KeyringError::Generate)?;
        Ok(Self {
            published,
            verifying,
            loaded_from: files,
            retires_at,
        })
    }

    /// The key that signs at `now`: the newest whose activation has passed. (Should the clock
    /// stand before every activation, the first to activate.)
    pub fn signing_key(&self, now: i64) -> &Arc<SigningKey> {
        self.published
            .iter()
            .rev()
            .find(|k| k.activates_at <= now)
            .or_else(|| self.published.iter().min_by_key(|k| k.activates_at))
            .expect("a loaded keyring holds at least one key")
    }

    /// What `key` (a published key) does at `now`.
    pub fn state(&self, key: &SigningKey, now: i64) -> KeyState {
        let superseded = self.superseded_at(key).is_some_and(|at| at <= now);
        if std::ptr::eq(self.signing_key(now).as_ref(), key) {
            KeyState::Active
        } else if key.activates_at > now && !superseded {
            KeyState::Staged
        } else {
            KeyState::Retiring
        }
    }

    pub fn published(&self) -> &[Arc<SigningKey>] {
        &self.published
    }

    /// When a newer key takes over from `key` (it then retires once its tokens have expired).
    pub fn superseded_at(&self, key: &SigningKey) -> Option<i64> {
        let position = self
            .published
            .iter()
            .position(|k| std::ptr::eq(k.as_ref(), key))?;
        self.published[position + 1..]
            .iter()
            .map(|k| k.activates_at)
            .min()
    }

    /// The public JWKS document: every published key, staged ones included.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({"keys": self.published.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
    }

    /// Public keys for checking tokens fedgate signed.
    pub fn verifying_keys(&self) -> &KeySet {
        &self.verifying
    }

    /// True when this ring no longer matches what [`Keyring::load`] would give at `now`: key
    /// files or their activation changed on disk, or a superseded key is due to retire.
    pub fn out_of_date(&self, dir: &Path, now: i64) -> bool {
        self.retires_at.is_some_and(|at| now >= at) || self.changed_on_disk(dir)
    }

    /// True when the key files on disk (names and sidecars) differ from this ring's.
    pub fn changed_on_disk(&self, dir: &Path) -> bool {
        key_files::list(dir).is_ok_and(|files| files != self.loaded_from)
    }
}

/// Makes sure `dir` has a key that signs with `alg`: in an empty directory, a first key that
/// signs at once; when the newest key is of another algorithm (`keys.signing_alg` changed), a
/// key staged to activate `activation_delay` seconds from `now`. Returns the key it made.
pub fn ensure_key(
    dir: &Path,
    alg: SigningAlg,
    activation_delay: i64,
    now: i64,
) -> Result<Option<KeyFile>, KeyringError> {
    let files = key_files::list(dir)?;
    match files.last() {
        None => key_files::generate(dir, alg, now, now).map(Some),
        Some(newest) if SigningAlg::parse(&newest.alg) != Some(alg) => {
            key_files::generate(dir, alg, now, now.saturating_add(activation_delay)).map(Some)
        }
        Some(_) => Ok(None),
    }
}

/// Stages a new key of `alg` (`keys rotate`): published from now, signing from
/// `now + activation_delay`. In an empty directory the first key signs at once.
pub fn stage(
    dir: &Path,
    alg: SigningAlg,
    activation_delay: i64,
    now: i64,
) -> Result<KeyFile, KeyringError> {
    let activates_at = if key_files::list(dir)?.is_empty() {
        now
    } else {
        now.saturating_add(activation_delay)
    };
    key_files::generate(dir, alg, now, activates_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::jws::{self, Alg, KeyLookup};

    const DAY: i64 = 86_400;

    #[test]
    fn libtrust_kid_has_twelve_groups_of_four() {
        let kid = libtrust_kid(b"any der");
        // Known answer, computed apart from this code (Python: hashlib.sha256(b"any der"),
        // first 30 bytes, base64.b32encode, groups of four).
        assert_eq!(
            kid,
            "ZNOJ:IEIH:OXNR:PEWA:4UM2:ULTD:KWGS:USDZ:FTCL:X3OI:3IXV:MWS2"
        );
        assert_eq!(kid.len(), 12 * 4 + 11);
        assert!(kid.split(':').all(|g| {
            g.len() == 4
                && g.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        }));
    }

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        // RFC 7638 section 3.1.
        let jwk = serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
        });
        assert_eq!(
            jwk_thumbprint(&jwk),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        // RFC 7517 appendix A.1's EC key (the thumbprint computed apart, with Python's
        // hashlib over the canonical members).
        let ec = serde_json::json!({
            "kty": "EC", "crv": "P-256", "use": "enc", "kid": "1",
            "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
            "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM",
        });
        assert_eq!(
            jwk_thumbprint(&ec),
            "cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s"
        );
    }

    fn load(dir: &Path, now: i64) -> Keyring {
        Keyring::load(dir, 100, now).unwrap()
    }

    /// A key made since staged rotation carries the certificate written beside it, and the
    /// registry is given that one (not one made afresh, which would not match what the
    /// operator configured).
    #[test]
    fn a_new_key_serves_the_certificate_stored_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        ensure_key(dir.path(), SigningAlg::ES256, DAY, 1000).unwrap();
        let stored = key_files::list(dir.path()).unwrap()[0]
            .meta
            .clone()
            .unwrap()
            .certificate;
        let ring = load(dir.path(), 1000);
        let key = ring.signing_key(1000);
        assert_eq!(key.stored_certificate(), Some(stored.as_str()));
        assert_eq!(key.registry_certificate(5000).unwrap(), stored);
    }

    #[test]
    fn every_algorithm_signs_what_its_jwks_verifies() {
        for alg in [SigningAlg::ES256, SigningAlg::RS256, SigningAlg::EdDSA] {
            let dir = tempfile::tempdir().unwrap();
            ensure_key(dir.path(), alg, DAY, 1000).unwrap();
            let ring = load(dir.path(), 1000);
            let key = ring.signing_key(1000);
            assert_eq!(key.kid, jwk_thumbprint(key.jwk()), "{alg:?}");
            for token in [
                key.sign_jwt(&serde_json::json!({"sub": "x"})).unwrap(),
                key.sign_registry_jwt(&serde_json::json!({"sub": "x"}), true)
                    .unwrap(),
            ] {
                let compact = jws::decode(&token).unwrap();
                assert_eq!(compact.header.kid.as_deref(), Some(key.kid.as_str()));
                let jws_alg = Alg::parse(alg.as_str()).unwrap();
                let KeyLookup::Found(public) = ring
                    .verifying_keys()
                    .find(compact.header.kid.as_deref(), jws_alg)
                else {
                    panic!("{alg:?}: own key not found");
                };
                assert!(
                    public.verify(jws_alg, compact.signing_input, &compact.signature),
                    "{alg:?}"
                );
            }
            assert_eq!(ring.jwks()["keys"][0]["alg"], alg.as_str());
        }
    }

    /// The header of a registry token, decoded.
    fn header(token: &str) -> serde_json::Value {
        let part = token.split('.').next().unwrap();
        serde_json::from_slice(&BASE64URL_NOPAD.decode_to_vec(part).unwrap()).unwrap()
    }

    #[test]
    fn registry_tokens_carry_the_certificate_registry_cert_prints() {
        for alg in [SigningAlg::ES256, SigningAlg::RS256] {
            let dir = tempfile::tempdir().unwrap();
            ensure_key(dir.path(), alg, DAY, 1_700_000_000).unwrap();
            let ring = load(dir.path(), 1_700_000_000);
            let key = ring.signing_key(1_700_000_000);
            let claims = serde_json::json!({"sub": "x"});
            let x5c = header(&key.sign_registry_jwt(&claims, true).unwrap())["x5c"].clone();
            let pem = key.registry_certificate(1_800_000_000).unwrap();
            let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
            assert_eq!(
                x5c,
                serde_json::json!([BASE64.encode_to_string(der.as_ref())]),
                "{alg:?}: the same bytes, whenever printed"
            );
            let kid_only = header(&key.sign_registry_jwt(&claims, false).unwrap());
            assert!(kid_only.get("x5c").is_none());
            assert!(header(&key.sign_jwt(&claims).unwrap()).get("x5c").is_none());
        }
    }

    /// A key file as fedgate wrote them before staged rotation: the PKCS#8 file alone.
    fn legacy_key(dir: &Path, created: i64) {
        let file = key_files::generate(dir, SigningAlg::ES256, created, created).unwrap();
        std::fs::remove_file(file.path.with_extension("json")).unwrap();
    }

    #[test]
    fn keys_made_before_staged_rotation_keep_their_kid_and_no_x5c() {
        let dir = tempfile::tempdir().unwrap();
        legacy_key(dir.path(), 1000);
        let ring = load(dir.path(), 1000);
        let key = ring.signing_key(1000);
        assert_eq!(key.activates_at, 1000);
        assert_eq!(key.kid.len(), 59, "libtrust form: {}", key.kid);
        let token = key
            .sign_registry_jwt(&serde_json::json!({"sub": "x"}), true)
            .unwrap();
        assert!(header(&token).get("x5c").is_none());
        // registry-cert still makes a certificate for it, with the key libtrust names.
        let pem = key.registry_certificate(1000).unwrap();
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(libtrust_kid(spki_of(der.as_ref())), key.kid);
    }

    /// Finds the SubjectPublicKeyInfo inside a certificate (seventh field of TBSCertificate).
    fn spki_of(cert: &[u8]) -> &[u8] {
        fn element(der: &[u8]) -> (usize, usize) {
            let len0 = der[1] as usize;
            if len0 < 0x80 {
                (2, len0)
            } else {
                let n = len0 & 0x7f;
                (
                    2 + n,
                    der[2..2 + n]
                        .iter()
                        .fold(0usize, |acc, b| (acc << 8) | *b as usize),
                )
            }
        }
        let (h, _) = element(cert);
        let tbs = &cert[h..];
        let (h, _) = element(tbs);
        let mut rest = &tbs[h..];
        // version [0], serial, signature alg, issuer, validity, subject, then SPKI.
        for _ in 0..6 {
            let (hh, len) = element(rest);
            rest = &rest[hh + len..];
        }
        let (hh, len) = element(rest);
        &rest[..hh + len]
    }

    #[test]
    fn a_staged_key_is_published_at_once_and_signs_from_its_activation() {
        let dir = tempfile::tempdir().unwrap();
        ensure_key(dir.path(), SigningAlg::ES256, DAY, 1000).unwrap();
        let first = load(dir.path(), 1000).signing_key(1000).kid.clone();
        let staged = stage(dir.path(), SigningAlg::ES256, 500, 2000).unwrap();
        let ring = load(dir.path(), 2000);
        assert_eq!(ring.published().len(), 2, "published while staged");
        assert!(ring.jwks()["keys"][1]["kid"].is_string());
        // Decided by the clock at signing time, not at load time: one ring, every instant.
        assert_eq!(ring.signing_key(2499).kid, first);
        let second = ring.signing_key(2500).kid.clone();
        assert_ne!(second, first);
        assert_eq!(ring.state(&ring.published()[1], 2499), KeyState::Staged);
        assert_eq!(ring.state(&ring.published()[0], 2500), KeyState::Retiring);
        // What `keys list` shows: the old key is superseded when the staged one activates, the
        // newest key by nothing.
        assert_eq!(ring.superseded_at(&ring.published()[0]), Some(2500));
        assert_eq!(ring.superseded_at(&ring.published()[1]), None);
        // The old key retires `retire_after` after the new one activated.
        assert!(!ring.out_of_date(dir.path(), 2599));
        assert!(ring.out_of_date(dir.path(), 2600));
        let later = load(dir.path(), 2600);
        assert_eq!(later.published().len(), 1);
        assert_eq!(later.signing_key(2600).kid, second);
        // `keys activate` moving the activation is a change every replica notices.
        key_files::set_activation(&staged, 2100).unwrap();
        assert!(ring.changed_on_disk(dir.path()));
        assert_eq!(load(dir.path(), 2050).signing_key(2100).kid, second);
    }

    #[test]
    fn the_first_key_signs_at_once_and_an_algorithm_change_is_staged() {
        let dir = tempfile::tempdir().unwrap();
        stage(dir.path(), SigningAlg::ES256, DAY, 1000).unwrap();
        assert_eq!(
            load(dir.path(), 1000).signing_key(1000).alg,
            SigningAlg::ES256
        );
        assert!(
            ensure_key(dir.path(), SigningAlg::ES256, DAY, 1001)
                .unwrap()
                .is_none()
        );
        let rsa = ensure_key(dir.path(), SigningAlg::RS256, DAY, 2000)
            .unwrap()
            .unwrap();
        assert_eq!(rsa.activates_at(), 2000 + DAY);
        let ring = load(dir.path(), 2000);
        assert_eq!(ring.signing_key(2000).alg, SigningAlg::ES256);
        assert_eq!(ring.signing_key(2000 + DAY).alg, SigningAlg::RS256);
    }

    #[test]
    fn a_newer_key_activated_first_wins_over_an_older_staged_one() {
        let dir = tempfile::tempdir().unwrap();
        stage(dir.path(), SigningAlg::ES256, DAY, 1000).unwrap();
        stage(dir.path(), SigningAlg::ES256, 5000, 1000).unwrap();
        let newest = stage(dir.path(), SigningAlg::ES256, 5000, 1000).unwrap();
        key_files::set_activation(&newest, 2000).unwrap();
        let ring = load(dir.path(), 1000);
        let kids: Vec<_> = ring.published().iter().map(|k| k.kid.clone()).collect();
        assert_eq!(ring.signing_key(1999).kid, kids[0]);
        assert_eq!(ring.signing_key(2000).kid, kids[2]);
        assert_eq!(
            ring.signing_key(6001).kid,
            kids[2],
            "the older staged key never signs"
        );
        assert_eq!(ring.state(&ring.published()[1], 1999), KeyState::Staged);
        assert_eq!(ring.state(&ring.published()[1], 2000), KeyState::Retiring);
    }

    #[test]
    fn a_rotation_within_the_same_second_still_wins() {
        let dir = tempfile::tempdir().unwrap();
        stage(dir.path(), SigningAlg::ES256, 0, 1000).unwrap();
        let first = load(dir.path(), 1000).signing_key(1000).kid.clone();
        for _ in 0..3 {
            stage(dir.path(), SigningAlg::ES256, 0, 1000).unwrap();
        }
        let last = load(dir.path(), 1000);
        assert_ne!(last.signing_key(1003).kid, first);
        assert_eq!(last.signing_key(1003).created_at, 1003);
    }

    #[test]
    fn a_certificate_for_another_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = stage(dir.path(), SigningAlg::ES256, 0, 1000).unwrap();
        let b = stage(dir.path(), SigningAlg::ES256, 0, 1000).unwrap();
        std::fs::copy(a.path.with_extension("json"), b.path.with_extension("json")).unwrap();
        let err = Keyring::load(dir.path(), 100, 1000).unwrap_err();
        assert!(err.to_string().contains("another key"), "{err}");
    }
}
