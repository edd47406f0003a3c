//! The `avatar` block Quay puts beside every user and organization (Quay's
//! `avatars/avatars.py`), which Quay's web UI and clients that draw lists of namespaces read.

use serde::Serialize;
use utoipa::ToSchema;

use crate::tokens::sha256_hex;

/// Quay's default `AVATAR_COLORS`.
const COLORS: [&str; 32] = [
    "#969696", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896",
    "#9467bd", "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7",
    "#bcbd22", "#1f77b4", "#17becf", "#9edae5", "#393b79", "#5254a3", "#6b6ecf", "#9c9ede",
    "#9ecae1", "#31a354", "#b5cf6b", "#a1d99b", "#8c6d31", "#ad494a", "#e7ba52", "#a55194",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AvatarKind {
    User,
    Org,
}

/// `{"name", "hash", "color", "kind"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Avatar {
    name: String,
    /// SHA-256 (hex) of the lowercased name: fedgate keeps no e-mail addresses, which Quay
    /// hashes when it has them.
    hash: String,
    /// One of Quay's default avatar colours, chosen by the hash.
    color: &'static str,
    kind: AvatarKind,
}

impl Avatar {
    pub fn new(name: &str, kind: AvatarKind) -> Self {
        let hash = sha256_hex(name.trim().to_lowercase().as_bytes());
        // Quay takes as many hex digits as it needs to index its colours: two for 32.
        let index = usize::from_str_radix(&hash[..2], 16).unwrap_or_default() % COLORS.len();
        Self {
            name: name.to_string(),
            hash,
            color: COLORS[index],
            kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_follows_the_hash_as_quay_picks_it() {
        let avatar = Avatar::new("alice", AvatarKind::User);
        // sha256("alice") = 2bd806c9...; 0x2b = 43, 43 % 32 = 11.
        assert!(avatar.hash.starts_with("2bd806c9"), "{}", avatar.hash);
        assert_eq!(avatar.color, COLORS[11]);
        let json = serde_json::to_value(&avatar).unwrap();
        assert_eq!(json["kind"], "user");
        assert_eq!(json["name"], "alice");
    }
}
