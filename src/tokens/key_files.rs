//! The signing keys on disk, flat in `keys.dir` (so the directory maps one to one onto a
//! Kubernetes Secret).
//!
//! A key is `signing-<created, 12 digits>-<alg>-<8 hex>.p8` (PKCS#8 DER, 0600). Keys made by
//! this version on also have a sidecar, `signing-<same stem>.json`:
//!
//! ```json
//! {"activates_at": 1767225600, "certificate": "-----BEGIN CERTIFICATE-----\n…"}
//! ```
//!
//! - `activates_at` is the instant every replica starts signing with the key (staged
//!   rotation). `keys activate` rewrites it: a new file renamed over the old one, so a reader
//!   sees one version or the other, never a missing or half-written file.
//! - `certificate` is the key's self-signed certificate, made once with the key, so that the
//!   `x5c` header of every registry token, on every replica, holds the very bytes that
//!   `keys registry-cert` puts in the registry's bundle: a registry (Go's `x509`) accepts a
//!   self-signed `x5c` certificate only when its bundle holds that exact certificate, and an
//!   ECDSA certificate made twice differs in its signature.
//!
//! A key without a sidecar was made before staged rotation: it is active from its creation
//! second and has no stored certificate.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair,
};
use serde::{Deserialize, Serialize};

use super::signing::{KeyringError, SigningAlg, SigningKey, jwk_thumbprint};

const FILE_PREFIX: &str = "signing-";

/// How long a self-signed key certificate is valid. A registry checks the validity period of
/// the certificate in a token, so this bounds how long one key can sign registry tokens.
const CERTIFICATE_DAYS: i64 = 3653;

/// A key's sidecar: when it starts signing, and its certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyMeta {
    pub activates_at: i64,
    /// PEM.
    pub certificate: String,
}

/// One `signing-*.p8` file and its sidecar, if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    pub path: PathBuf,
    pub name: String,
    pub created: i64,
    pub alg: String,
    pub meta: Option<KeyMeta>,
}

impl KeyFile {
    /// The sidecar's path: the key's, with `.json` for `.p8`.
    fn meta_path(&self) -> PathBuf {
        self.path.with_extension("json")
    }

    /// When the key starts signing: its sidecar's `activates_at`, else its creation second.
    pub fn activates_at(&self) -> i64 {
        self.meta.as_ref().map_or(self.created, |m| m.activates_at)
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> KeyringError + '_ {
    move |source| KeyringError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Every key file in `dir` with its sidecar, oldest first (by creation second, then name).
pub fn list(dir: &Path) -> Result<Vec<KeyFile>, KeyringError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(dir)(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(dir))?;
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
            parts.next().map(str::to_string),
        ) else {
            continue;
        };
        let mut file = KeyFile {
            path: entry.path(),
            name,
            created,
            alg,
            meta: None,
        };
        file.meta = read_meta(&file.meta_path())?;
        files.push(file);
    }
    files.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    Ok(files)
}

fn read_meta(path: &Path) -> Result<Option<KeyMeta>, KeyringError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| KeyringError::BadMeta(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path)(e)),
    }
}

/// Writes `bytes` to `path` through a temporary file renamed into place, so readers see the
/// old content or the new, never a partial file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), KeyringError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut suffix = [0u8; 4];
    aws_lc_rs::rand::SecureRandom::fill(&SystemRandom::new(), &mut suffix)
        .map_err(|_| KeyringError::Generate)?;
    let tmp = dir.join(format!(
        ".{name}.{}.tmp",
        data_encoding::HEXLOWER.encode(&suffix)
    ));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_error(&tmp))?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_error(&tmp))
        .and_then(|()| fs::rename(&tmp, path).map_err(io_error(path)));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Creates a key of `alg` with its certificate, starting to sign at `activates_at` (or at its
/// creation second, if that is later), and returns its file. The sidecar is written before
/// the key file appears, so a reader never sees the key without it.
pub fn generate(
    dir: &Path,
    alg: SigningAlg,
    now: i64,
    activates_at: i64,
) -> Result<KeyFile, KeyringError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error(dir))?;
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
    let created = list(dir)?
        .last()
        .map_or(now, |newest| now.max(newest.created + 1));
    let mut suffix = [0u8; 4];
    aws_lc_rs::rand::SecureRandom::fill(&rng, &mut suffix).map_err(|_| KeyringError::Generate)?;
    let name = format!(
        "{FILE_PREFIX}{created:012}-{}-{}.p8",
        alg.as_str(),
        data_encoding::HEXLOWER.encode(&suffix)
    );
    let certificate = certificate(alg, &der, created, &name)?;
    let mut file = KeyFile {
        path: dir.join(&name),
        name,
        created,
        alg: alg.as_str().to_string(),
        meta: Some(KeyMeta {
            activates_at: activates_at.max(created),
            certificate,
        }),
    };
    write_meta(&file)?;
    write_atomically(&file.path, &der)?;
    file.meta = read_meta(&file.meta_path())?;
    Ok(file)
}

fn write_meta(file: &KeyFile) -> Result<(), KeyringError> {
    let meta = file.meta.as_ref().ok_or(KeyringError::Generate)?;
    let json = serde_json::to_vec_pretty(meta).map_err(|_| KeyringError::Generate)?;
    write_atomically(&file.meta_path(), &json)
}

/// Moves a staged key's activation to `at` (`keys activate`).
pub fn set_activation(file: &KeyFile, at: i64) -> Result<KeyFile, KeyringError> {
    let mut file = file.clone();
    let meta = file
        .meta
        .as_mut()
        .ok_or_else(|| KeyringError::BadMeta(format!("{} has no activation time", file.name)))?;
    meta.activates_at = at.max(file.created);
    write_meta(&file)?;
    Ok(file)
}

/// A self-signed certificate (PEM) for the PKCS#8 key `der`, named after its `kid` (the
/// RFC 7638 thumbprint of keys that have a sidecar).
fn certificate(
    alg: SigningAlg,
    der: &[u8],
    not_before: i64,
    name: &str,
) -> Result<String, KeyringError> {
    let key = SigningKey::parse(alg, der, not_before, name, None)?;
    self_signed_pem(key.pkcs8(), &jwk_thumbprint(key.jwk()), not_before)
}

/// The certificate `keys registry-cert` prints for a key without a stored one (made before
/// staged rotation). A registry 2.x finds such a key by the `kid` it derives from the
/// certificate's public key; the certificate's own fields do not matter to it.
pub fn self_signed(key: &SigningKey, not_before: i64) -> Result<String, KeyringError> {
    self_signed_pem(key.pkcs8(), &key.kid, not_before)
}

/// What a registry's `auth.token.rootcertbundle` holds: a self-signed certificate for the key,
/// valid from a day before `not_before` (clock skew) for ten years.
fn self_signed_pem(pkcs8: &[u8], kid: &str, not_before: i64) -> Result<String, KeyringError> {
    let bad = || KeyringError::BadKey(kid.to_string());
    let pair = rcgen::KeyPair::try_from(pkcs8).map_err(|_| bad())?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|_| bad())?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("fedgate signing key {kid}"),
    );
    let start =
        time::OffsetDateTime::from_unix_timestamp(not_before - 86_400).map_err(|_| bad())?;
    params.not_before = start;
    params.not_after = start + time::Duration::days(CERTIFICATE_DAYS);
    let cert = params.self_signed(&pair).map_err(|_| bad())?;
    Ok(cert.pem())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_has_its_sidecar_and_both_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = generate(dir.path(), SigningAlg::EdDSA, 1000, 1500).unwrap();
        let listed = list(dir.path()).unwrap();
        assert_eq!(listed, vec![file.clone()]);
        assert_eq!(file.activates_at(), 1500);
        for path in [&file.path, &file.meta_path()] {
            assert_eq!(
                fs::metadata(path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn activation_is_rewritten_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let file = generate(dir.path(), SigningAlg::ES256, 1000, 90_000).unwrap();
        let moved = set_activation(&file, 2000).unwrap();
        let listed = list(dir.path()).unwrap();
        assert_eq!(listed[0].activates_at(), 2000);
        assert_eq!(
            listed[0].meta.as_ref().unwrap().certificate,
            moved.meta.unwrap().certificate
        );
        // Never before the key existed.
        set_activation(&file, 10).unwrap();
        assert_eq!(list(dir.path()).unwrap()[0].activates_at(), 1000);
    }

    /// A missing `keys.dir` is an empty keyring (the first start makes it); one that cannot be
    /// read, or a sidecar that cannot be read, is an error: never a keyring that looks empty
    /// or a key that looks legacy (fedgate would make a new key beside keys it cannot see).
    #[test]
    fn only_a_missing_directory_or_sidecar_counts_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(list(&dir.path().join("missing")).unwrap(), vec![]);
        let not_a_dir = dir.path().join("file");
        fs::write(&not_a_dir, b"").unwrap();
        assert!(matches!(list(&not_a_dir), Err(KeyringError::Io { .. })));

        let keys = dir.path().join("keys");
        let file = generate(&keys, SigningAlg::EdDSA, 1000, 1000).unwrap();
        fs::remove_file(file.meta_path()).unwrap();
        assert_eq!(
            list(&keys).unwrap()[0].meta,
            None,
            "a key from before sidecars"
        );
        fs::create_dir(file.meta_path()).unwrap();
        assert!(matches!(list(&keys), Err(KeyringError::Io { .. })));
    }

    /// A registry checks the certificate's dates: valid from a day before the key was made
    /// (clock skew between hosts) for CERTIFICATE_DAYS.
    #[test]
    fn the_certificate_is_valid_from_a_day_before_the_key_for_ten_years() {
        let dir = tempfile::tempdir().unwrap();
        let created = 1_800_000_000;
        let file = generate(dir.path(), SigningAlg::ES256, created, created).unwrap();
        let pem = file.meta.unwrap().certificate;
        let base64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = data_encoding::BASE64.decode(base64.as_bytes()).unwrap();
        // RFC 5280: UTCTime (two-digit year) until 2049, GeneralizedTime after.
        let asn1_time = |unix: i64| {
            let at = time::OffsetDateTime::from_unix_timestamp(unix).unwrap();
            let utc = time::macros::format_description!(
                "[year repr:last_two][month][day][hour][minute][second]Z"
            );
            let generalized =
                time::macros::format_description!("[year][month][day][hour][minute][second]Z");
            let format = if at.year() < 2050 { utc } else { generalized };
            at.format(format).unwrap()
        };
        let not_before = asn1_time(created - 86_400);
        let not_after = asn1_time(created - 86_400 + CERTIFICATE_DAYS * 86_400);
        let holds = |text: &str| der.windows(text.len()).any(|w| w == text.as_bytes());
        assert!(holds(&not_before), "notBefore {not_before} (UTCTime)");
        assert!(
            holds(&not_after),
            "notAfter {not_after} (GeneralizedTime after 2049)"
        );
    }

    #[test]
    fn a_damaged_sidecar_is_an_error_not_a_silent_legacy_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = generate(dir.path(), SigningAlg::ES256, 1000, 1000).unwrap();
        fs::write(file.meta_path(), b"{\"activates_at\": ").unwrap();
        assert!(matches!(list(dir.path()), Err(KeyringError::BadMeta(_))));
    }
}
