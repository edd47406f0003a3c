//! Minted robot tokens whose signature fedgate has already checked, for `/v2/auth`: a registry
//! client sends the same token at every login (`docker login` keeps it), and checking an ES256
//! signature costs more than the rest of the login. An entry is found only by the SHA-256 of
//! the exact token, and only while the keyring that verified it is still the current one (a
//! reload may have withdrawn its key). What can change over a token's life is still checked at
//! every login: its times, and the robot's revision.

use std::sync::{Arc, Weak};

use crate::exchange::RobotTokenClaims;
use crate::tokens::signing::Keyring;

/// Tokens remembered at most (each entry is its claims, a few hundred bytes).
const CAPACITY: usize = 10_000;

/// The SHA-256 of a token: the key it is remembered under.
pub type TokenDigest = [u8; 32];

#[derive(Clone)]
struct Verified {
    claims: Arc<RobotTokenClaims>,
    /// The keyring that checked the signature (a `Weak` keeps its address from being reused).
    keyring: Weak<Keyring>,
}

pub struct MintedCache {
    tokens: quick_cache::sync::Cache<TokenDigest, Verified>,
}

impl std::fmt::Debug for MintedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedCache")
            .field("entries", &self.tokens.len())
            .finish()
    }
}

impl Default for MintedCache {
    fn default() -> Self {
        Self {
            tokens: quick_cache::sync::Cache::new(CAPACITY),
        }
    }
}

impl MintedCache {
    pub fn digest(token: &str) -> TokenDigest {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut key = [0; 32];
        key.copy_from_slice(digest.as_ref());
        key
    }

    /// The claims of the token with `digest`, if `keyring` checked its signature.
    pub fn get(
        &self,
        digest: &TokenDigest,
        keyring: &Arc<Keyring>,
    ) -> Option<Arc<RobotTokenClaims>> {
        let verified = self.tokens.get(digest)?;
        Weak::ptr_eq(&verified.keyring, &Arc::downgrade(keyring)).then_some(verified.claims)
    }

    /// Remembers that `keyring` checked the signature of the token with `digest`.
    pub fn insert(
        &self,
        digest: TokenDigest,
        claims: Arc<RobotTokenClaims>,
        keyring: &Arc<Keyring>,
    ) {
        let keyring = Arc::downgrade(keyring);
        self.tokens.insert(digest, Verified { claims, keyring });
    }
}
