//! The signing keyring: the keys fedgate signs robot and registry tokens with.
//!
//! Keys live in `<keys.dir>` as PKCS#8 files named `signing-<created unix>-<alg>-<random>.p8`
//! (0600). The newest is active. When a newer key exists, an older one stays published (in the
//! JWKS, in `keys registry-cert`, and for fedgate's own checks) until every token it can have
//! signed has expired, then it is dropped. `fedgate keys rotate` adds a key; running gateways
//! notice within seconds ([`Keyring::load`] is cheap to call again).
//!
//! Every key's `kid` is the libtrust fingerprint of its public key, the form a Docker registry
//! 2.x derives from the certificate it is given, so one `kid` serves JWKS users and registries.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair,
};
use base64_simd::URL_SAFE_NO_PAD as BASE64URL_NOPAD;
use data_encoding::BASE32_NOPAD;
use secrecy::{ExposeSecret, SecretSlice};
use serde::Serialize;

use crate::oidc::jws::{KeySet, parse_jwks};

/// Key files are `signing-*.p8` directly in `keys.dir`: a flat directory maps one to one onto
/// a Kubernetes Secret (`kubectl create secret generic --from-file=<keys.dir>`).
const FILE_PREFIX: &str = "signing-";

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
    #[error("generating a signing key failed")]
    Generate,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> KeyringError + '_ {
    move |source| KeyringError::Io {
        path: path.display().to_string(),
        source,
    }
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
    pair: Pair,
    pkcs8: SecretSlice<u8>,
    jwk: serde_json::Value,
    /// `base64url({"alg":…,"typ":"JWT","kid":…}).`: the same for every token this key signs.
    encoded_header: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("created_at", &self.created_at)
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

impl SigningKey {
    fn from_pkcs8(
        alg: SigningAlg,
        der: &[u8],
        created_at: i64,
        name: &str,
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
        let kid = libtrust_kid(&spki);
        let mut jwk = jwk_members;
        jwk["kid"] = serde_json::Value::String(kid.clone());
        jwk["alg"] = serde_json::Value::String(alg.as_str().to_string());
        jwk["use"] = serde_json::Value::String("sig".to_string());
        let header = serde_json::json!({"alg": alg.as_str(), "typ": "JWT", "kid": kid});
        let mut encoded_header = BASE64URL_NOPAD.encode_to_string(header.to_string().as_bytes());
        encoded_header.push('.');
        Ok(Self {
            encoded_header,
            kid,
            alg,
            created_at,
            pair,
            pkcs8: SecretSlice::from(der.to_vec()),
            jwk,
        })
    }

    /// The private key as PKCS#8 DER (for `keys registry-cert`); never logged.
    pub fn pkcs8(&self) -> &[u8] {
        self.pkcs8.expose_secret()
    }

    pub fn jwk(&self) -> &serde_json::Value {
        &self.jwk
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

    /// Signs `claims` as a compact JWS with this key's `kid`.
    pub fn sign_jwt(&self, claims: &impl Serialize) -> Result<String, KeyringError> {
        let payload = serde_json::to_vec(claims).map_err(|_| KeyringError::Generate)?;
        let mut token = String::with_capacity(
            // Room for the signature: 86 characters for ES256, 342 for RS256 with RSA-2048.
            self.encoded_header.len() + BASE64URL_NOPAD.encoded_length(payload.len()) + 400,
        );
        token.push_str(&self.encoded_header);
        BASE64URL_NOPAD.encode_append(&payload, &mut token);
        let signature = self.sign(token.as_bytes())?;
        token.push('.');
        BASE64URL_NOPAD.encode_append(&signature, &mut token);
        Ok(token)
    }
}

/// A self-signed certificate (PEM) for `key`: what a Docker registry's
/// `auth.token.rootcertbundle` needs. The registry trusts the key, found by the `kid` it derives
/// from the certificate's public key; the certificate's own fields do not matter to it, so it
/// is valid for ten years.
pub fn registry_certificate(key: &SigningKey, now: i64) -> Result<String, KeyringError> {
    let bad = || KeyringError::BadKey(key.kid.clone());
    let pair = rcgen::KeyPair::try_from(key.pkcs8()).map_err(|_| bad())?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|_| bad())?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("fedgate signing key {}", key.kid),
    );
    let start = time::OffsetDateTime::from_unix_timestamp(now - 86_400).map_err(|_| bad())?;
    params.not_before = start;
    params.not_after = start + time::Duration::days(3653);
    let cert = params.self_signed(&pair).map_err(|_| bad())?;
    Ok(cert.pem())
}

/// The published keys and the active one.
#[derive(Debug)]
pub struct Keyring {
    active: Arc<SigningKey>,
    published: Vec<Arc<SigningKey>>,
    verifying: KeySet,
    /// The key files this ring was loaded from, to notice changes cheaply.
    files: Vec<PathBuf>,
    /// When the next superseded key stops being published (the ring is then out of date).
    retires_at: Option<i64>,
}

impl Keyring {
    /// Loads `<dir>/signing`, creating a key of `alg` when there is none or when the newest key
    /// is of another algorithm (the configured algorithm changed). Keys superseded more than
    /// `retire_after` seconds before `now` are no longer published.
    pub fn load(
        dir: &Path,
        alg: SigningAlg,
        retire_after: i64,
        now: i64,
    ) -> Result<Self, KeyringError> {
        let mut files = key_files(dir)?;
        let newest_alg = files.last().and_then(|(_, _, a, _)| SigningAlg::parse(a));
        if newest_alg != Some(alg) {
            generate(dir, alg, now)?;
            files = key_files(dir)?;
        }
        let mut keys = Vec::new();
        for (path, created, alg_name, name) in &files {
            let Some(key_alg) = SigningAlg::parse(alg_name) else {
                continue;
            };
            let der = fs::read(path).map_err(io_error(path))?;
            keys.push(Arc::new(SigningKey::from_pkcs8(
                key_alg, &der, *created, name,
            )?));
        }
        let active = keys.last().cloned().ok_or(KeyringError::Generate)?;
        // A key is published while a token it signed can be alive: until its successor has
        // been active for `retire_after` seconds.
        let mut published = Vec::new();
        let mut retires_at: Option<i64> = None;
        for (i, key) in keys.iter().enumerate() {
            let superseded_at = keys.get(i + 1).map(|next| next.created_at);
            if superseded_at.is_none_or(|at| now - at < retire_after) {
                published.push(key.clone());
            }
            if let Some(at) = superseded_at
                .map(|at| at + retire_after)
                .filter(|at| *at > now)
            {
                retires_at = Some(retires_at.map_or(at, |r| r.min(at)));
            }
        }
        let jwks = serde_json::json!({"keys": published.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
        let verifying =
            parse_jwks(jwks.to_string().as_bytes()).map_err(|_| KeyringError::Generate)?;
        Ok(Self {
            active,
            published,
            verifying,
            files: files.into_iter().map(|(p, ..)| p).collect(),
            retires_at,
        })
    }

    pub fn active(&self) -> &Arc<SigningKey> {
        &self.active
    }

    pub fn published(&self) -> &[Arc<SigningKey>] {
        &self.published
    }

    /// The public JWKS document.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({"keys": self.published.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
    }

    /// Public keys for checking tokens fedgate signed.
    pub fn verifying_keys(&self) -> &KeySet {
        &self.verifying
    }

    /// True when this ring no longer matches what [`Keyring::load`] would give at `now`: key
    /// files changed on disk, or a superseded key is due to retire.
    pub fn out_of_date(&self, dir: &Path, now: i64) -> bool {
        self.retires_at.is_some_and(|at| now >= at) || self.changed_on_disk(dir)
    }

    /// True when the key files on disk differ from the ones this ring was loaded from.
    pub fn changed_on_disk(&self, dir: &Path) -> bool {
        key_files(dir)
            .map(|files| files.into_iter().map(|(p, ..)| p).collect::<Vec<_>>() != self.files)
            .unwrap_or(false)
    }
}

/// `(path, created, alg, file name)` of every key file, oldest first.
fn key_files(signing_dir: &Path) -> Result<Vec<(PathBuf, i64, String, String)>, KeyringError> {
    let entries = match fs::read_dir(signing_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(signing_dir)(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(signing_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name
            .strip_prefix(FILE_PREFIX)
            .and_then(|n| n.strip_suffix(".p8"))
        else {
            continue;
        };
        let mut parts = stem.splitn(3, '-');
        let (Some(created), Some(alg)) = (
            parts.next().and_then(|c| c.parse::<i64>().ok()),
            parts.next(),
        ) else {
            continue;
        };
        files.push((entry.path(), created, alg.to_string(), name));
    }
    files.sort_by(|a, b| (a.1, &a.3).cmp(&(b.1, &b.3)));
    Ok(files)
}

/// Writes a new key of `alg` (0600, atomically) and returns its path. It becomes active.
pub fn generate(dir: &Path, alg: SigningAlg, now: i64) -> Result<PathBuf, KeyringError> {
    let signing_dir = dir;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(signing_dir)
        .map_err(io_error(signing_dir))?;
    let rng = SystemRandom::new();
    let der: Vec<u8> = match alg {
        SigningAlg::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| KeyringError::Generate)?
            .as_ref()
            .to_vec(),
        SigningAlg::RS256 => RsaKeyPair::generate(KeySize::Rsa2048)
            .and_then(|pair| pair.as_der().map(|d| d.as_ref().to_vec()))
            .map_err(|_| KeyringError::Generate)?,
        SigningAlg::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| KeyringError::Generate)?
            .as_ref()
            .to_vec(),
    };
    // Keys are ordered by creation second: a new key must sort after every existing one, even
    // when created within the same second.
    let created = key_files(signing_dir)?
        .last()
        .map_or(now, |(_, newest, ..)| now.max(newest + 1));
    let mut suffix = [0u8; 4];
    aws_lc_rs::rand::SecureRandom::fill(&rng, &mut suffix).map_err(|_| KeyringError::Generate)?;
    let name = format!(
        "{FILE_PREFIX}{created:012}-{}-{}.p8",
        alg.as_str(),
        data_encoding::HEXLOWER.encode(&suffix)
    );
    let path = signing_dir.join(&name);
    let tmp = signing_dir.join(format!(".{name}.tmp"));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_error(&tmp))?;
    file.write_all(&der)
        .and_then(|()| file.sync_all())
        .map_err(io_error(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_error(&path))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::jws::{self, Alg, KeyLookup};
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn libtrust_kid_has_twelve_groups_of_four() {
        let kid = libtrust_kid(b"any der");
        assert_eq!(kid.len(), 12 * 4 + 11);
        assert!(kid.split(':').all(|g| {
            g.len() == 4
                && g.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        }));
    }

    #[test]
    fn every_algorithm_signs_what_its_jwks_verifies() {
        for alg in [SigningAlg::ES256, SigningAlg::RS256, SigningAlg::EdDSA] {
            let dir = tempfile::tempdir().unwrap();
            let ring = Keyring::load(dir.path(), alg, 3600, 1000).unwrap();
            let token = ring
                .active()
                .sign_jwt(&serde_json::json!({"sub": "x"}))
                .unwrap();
            let compact = jws::decode(&token).unwrap();
            assert_eq!(
                compact.header.kid.as_deref(),
                Some(ring.active().kid.as_str())
            );
            let jws_alg = Alg::parse(alg.as_str()).unwrap();
            let KeyLookup::Found(key) = ring
                .verifying_keys()
                .find(compact.header.kid.as_deref(), jws_alg)
            else {
                panic!("{alg:?}: own key not found");
            };
            assert!(
                key.verify(jws_alg, compact.signing_input, &compact.signature),
                "{alg:?}"
            );
            assert_eq!(ring.jwks()["keys"][0]["alg"], alg.as_str());
        }
    }

    #[test]
    fn rotation_keeps_the_old_key_published_until_it_retires() {
        let dir = tempfile::tempdir().unwrap();
        let first = Keyring::load(dir.path(), SigningAlg::ES256, 100, 1000).unwrap();
        let old_kid = first.active().kid.clone();
        assert!(!first.changed_on_disk(dir.path()));
        generate(dir.path(), SigningAlg::ES256, 2000).unwrap();
        assert!(first.changed_on_disk(dir.path()));
        let rotated = Keyring::load(dir.path(), SigningAlg::ES256, 100, 2050).unwrap();
        assert_ne!(rotated.active().kid, old_kid);
        assert_eq!(rotated.published().len(), 2, "old key still published");
        assert!(!rotated.out_of_date(dir.path(), 2099));
        assert!(
            rotated.out_of_date(dir.path(), 2100),
            "the old key is due to retire"
        );
        let retired = Keyring::load(dir.path(), SigningAlg::ES256, 100, 2101).unwrap();
        assert_eq!(retired.published().len(), 1, "old key retired");
        assert_eq!(retired.published()[0].kid, rotated.active().kid);
    }

    #[test]
    fn registry_certificates_carry_the_signing_key() {
        for alg in [SigningAlg::ES256, SigningAlg::RS256] {
            let dir = tempfile::tempdir().unwrap();
            let ring = Keyring::load(dir.path(), alg, 3600, 1_700_000_000).unwrap();
            let pem = registry_certificate(ring.active(), 1_700_000_000).unwrap();
            let der = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
            // The certificate's SubjectPublicKeyInfo hashes to the key's kid, as the registry computes it.
            let spki = spki_of(der.as_ref());
            assert_eq!(libtrust_kid(spki), ring.active().kid, "{alg:?}");
        }
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
    fn a_rotation_within_the_same_second_still_wins() {
        let dir = tempfile::tempdir().unwrap();
        let first = Keyring::load(dir.path(), SigningAlg::ES256, 100, 1000).unwrap();
        for _ in 0..3 {
            generate(dir.path(), SigningAlg::ES256, 1000).unwrap();
        }
        let last = Keyring::load(dir.path(), SigningAlg::ES256, 100, 1000).unwrap();
        assert_ne!(last.active().kid, first.active().kid);
        assert_eq!(last.active().created_at, 1003);
    }

    #[test]
    fn key_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = generate(dir.path(), SigningAlg::EdDSA, 1).unwrap();
        assert_eq!(
            fs::metadata(path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
