//! Secrets fedgate creates and how they are kept.
//!
//! - [`opaque`]: robot and API tokens: a recognisable prefix, 256 bits of randomness and a
//!   checksum, so leaked tokens are findable by secret scanners and garbage is refused without
//!   a database lookup.
//! - [`at_rest`]: the key in `keys.dir` that seals robot tokens (AES-256-GCM) and derives the
//!   keyed lookup hash under which every token is stored.
//! - [`registry`]: Docker registry token claims: scopes and what roles grant.
//! - [`signing`]: the keyring that signs robot and registry tokens (staged rotation, JWKS,
//!   kids, registry tokens' `x5c`); [`key_files`]: its keys and their sidecars in `keys.dir`.

pub mod at_rest;
pub mod key_files;
pub mod opaque;
pub mod registry;
pub mod signing;

/// Hex SHA-256: how audit lines name a token without revealing it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}
