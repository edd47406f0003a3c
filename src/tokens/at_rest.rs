//! Protection of stored secrets.
//!
//! One 32-byte master key lives in `<keys.dir>/storage.key` (created 0600 on first start; back
//! it up with the database). Two keys are derived from it with HKDF-SHA256:
//! - an AES-256-GCM key that seals robot tokens, so the API can show them as Quay does;
//! - an HMAC-SHA256 key for the lookup hash under which robot and API tokens are found.
//!   A stolen database alone neither reveals tokens nor lets anyone test guesses offline.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, KeyType, Salt};
use aws_lc_rs::hmac;
use base64_simd::URL_SAFE_NO_PAD as BASE64URL_NOPAD;
use secrecy::{ExposeSecret, SecretString};

use crate::rng::Rng;

const MASTER_KEY_FILE: &str = "storage.key";
const MASTER_KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum AtRestError {
    #[error("key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {0} is not {MASTER_KEY_LEN} bytes long; restore it from backup")]
    BadLength(String),
    #[error("the system random source failed")]
    Random,
    #[error("stored secret does not decrypt with this key (wrong keys.dir, or tampered data)")]
    Undecryptable,
}

/// The derived keys; cheap to share behind an `Arc`.
pub struct AtRestKeys {
    seal: LessSafeKey,
    lookup: hmac::Key,
}

impl std::fmt::Debug for AtRestKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AtRestKeys(..)")
    }
}

struct Len32;

impl KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

impl AtRestKeys {
    /// Loads `<dir>/storage.key`, creating the directory (0700) and key (0600) when missing.
    /// Two processes starting at once agree on one key: the file appears atomically.
    pub fn load_or_create(dir: &Path, rng: &dyn Rng) -> Result<Self, AtRestError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| AtRestError::Io { path, source }
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        let path = dir.join(MASTER_KEY_FILE);
        if !path.exists() {
            let mut master = [0u8; MASTER_KEY_LEN];
            rng.fill(&mut master).map_err(|_| AtRestError::Random)?;
            let mut suffix = [0u8; 8];
            rng.fill(&mut suffix).map_err(|_| AtRestError::Random)?;
            let tmp = dir.join(format!(".{MASTER_KEY_FILE}.{}", hex(&suffix)));
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io(&tmp))?;
            file.write_all(&master)
                .and_then(|()| file.sync_all())
                .map_err(io(&tmp))?;
            // hard_link refuses to replace: whoever links first wins, the other reads theirs.
            let linked = fs::hard_link(&tmp, &path);
            let _ = fs::remove_file(&tmp);
            match linked {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(&path)(e)),
            }
        }
        let master = fs::read(&path).map_err(io(&path))?;
        if master.len() != MASTER_KEY_LEN {
            return Err(AtRestError::BadLength(path.display().to_string()));
        }
        Ok(Self::from_master(&master))
    }

    /// Derives the working keys from a master key.
    pub fn from_master(master: &[u8]) -> Self {
        let prk = Salt::new(HKDF_SHA256, b"fedgate at-rest v1").extract(master);
        let derive = |info: &[u8]| {
            let mut out = [0u8; 32];
            // Expanding 32 bytes from SHA-256 cannot fail; the fallback keeps this infallible.
            if let Ok(okm) = prk.expand(&[info], Len32) {
                let _ = okm.fill(&mut out);
            }
            out
        };
        let seal_key = derive(b"robot-token seal");
        let lookup_key = derive(b"token lookup hmac");
        let seal = UnboundKey::new(&AES_256_GCM, &seal_key)
            .map(LessSafeKey::new)
            .unwrap_or_else(|_| unreachable!("a 32-byte key is valid for AES-256-GCM"));
        Self {
            seal,
            lookup: hmac::Key::new(hmac::HMAC_SHA256, &lookup_key),
        }
    }

    /// Encrypts `secret`, binding it to `context` (the owning row's id) so a sealed value
    /// copied to another row does not open there. Output: base64url(nonce ‖ ciphertext ‖ tag).
    pub fn seal(
        &self,
        secret: &SecretString,
        context: &[u8],
        rng: &dyn Rng,
    ) -> Result<String, AtRestError> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce).map_err(|_| AtRestError::Random)?;
        let mut buf = secret.expose_secret().as_bytes().to_vec();
        self.seal
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut buf,
            )
            .map_err(|_| AtRestError::Random)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(BASE64URL_NOPAD.encode_to_string(&out))
    }

    /// Reverses [`seal`](Self::seal).
    pub fn open(&self, sealed: &str, context: &[u8]) -> Result<SecretString, AtRestError> {
        let raw = BASE64URL_NOPAD
            .decode_to_vec(sealed.as_bytes())
            .map_err(|_| AtRestError::Undecryptable)?;
        if raw.len() < NONCE_LEN {
            return Err(AtRestError::Undecryptable);
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| AtRestError::Undecryptable)?;
        let mut body = body.to_vec();
        let plain = self
            .seal
            .open_in_place(nonce, Aad::from(context), &mut body)
            .map_err(|_| AtRestError::Undecryptable)?;
        let text = std::str::from_utf8(plain).map_err(|_| AtRestError::Undecryptable)?;
        Ok(SecretString::from(text))
    }

    /// The keyed hash a token is stored and found under (hex HMAC-SHA256).
    pub fn lookup_hash(&self, token: &str) -> String {
        hex(hmac::sign(&self.lookup, token.as_bytes()).as_ref())
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SystemRng;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join("keys");
        let rng = SystemRng::default();
        let first = AtRestKeys::load_or_create(&keys_dir, &rng).unwrap();
        let mode = fs::metadata(keys_dir.join(MASTER_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = AtRestKeys::load_or_create(&keys_dir, &rng).unwrap();
        assert_eq!(first.lookup_hash("x"), second.lookup_hash("x"));
        let secret = SecretString::from("fgr_secret");
        let sealed = first.seal(&secret, b"robot-1", &rng).unwrap();
        assert_eq!(
            second.open(&sealed, b"robot-1").unwrap().expose_secret(),
            "fgr_secret"
        );
    }

    #[test]
    fn sealed_values_are_bound_to_their_row_and_key() {
        let rng = SystemRng::default();
        let keys = AtRestKeys::from_master(&[7u8; 32]);
        let sealed = keys
            .seal(&SecretString::from("s3cret"), b"1", &rng)
            .unwrap();
        assert!(!sealed.contains("s3cret"));
        assert!(matches!(
            keys.open(&sealed, b"2"),
            Err(AtRestError::Undecryptable)
        ));
        let other = AtRestKeys::from_master(&[8u8; 32]);
        assert!(matches!(
            other.open(&sealed, b"1"),
            Err(AtRestError::Undecryptable)
        ));
        assert!(matches!(
            keys.open("!!", b"1"),
            Err(AtRestError::Undecryptable)
        ));
    }

    /// A known answer computed apart from this code (Python: HKDF-SHA256 with the salt
    /// `fedgate at-rest v1` and info `token lookup hmac`, then HMAC-SHA256 of the token).
    #[test]
    fn the_lookup_hash_is_an_hmac_under_the_derived_key() {
        let keys = AtRestKeys::from_master(&[7u8; 32]);
        assert_eq!(
            keys.lookup_hash("fgr_x"),
            "41a3b881254009e8adc1db14cf2e0d8a6ef3856e96a50b7b0212309255f47e61"
        );
    }

    #[test]
    fn a_sealed_value_too_short_for_its_nonce_is_undecryptable() {
        let keys = AtRestKeys::from_master(&[7u8; 32]);
        for short in ["", "AAAA", "AAAAAAAAAAAAAAA"] {
            assert!(
                matches!(keys.open(short, b"1"), Err(AtRestError::Undecryptable)),
                "{short:?}"
            );
        }
    }

    /// Replicas starting at once on one `keys.dir`: each finds no key and makes one, and
    /// the first to link its file wins; the others read the winner's instead of failing.
    #[test]
    fn gateways_starting_at_once_agree_on_one_key() {
        use std::sync::{Arc, Barrier};
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let start = Arc::new(Barrier::new(8));
        let starting: Vec<_> = (0..8)
            .map(|_| {
                let (dir, start) = (dir.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    AtRestKeys::load_or_create(dir.path(), &SystemRng::default())
                        .map(|keys| keys.lookup_hash("x"))
                })
            })
            .collect();
        let hashes: Vec<String> = starting
            .into_iter()
            .map(|t| t.join().unwrap().unwrap())
            .collect();
        assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
    }

    #[test]
    fn a_truncated_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(MASTER_KEY_FILE), b"short").unwrap();
        let err = AtRestKeys::load_or_create(dir.path(), &SystemRng::default()).unwrap_err();
        assert!(matches!(err, AtRestError::BadLength(_)));
    }
}
