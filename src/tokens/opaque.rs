//! Opaque bearer tokens: `<prefix><43 base62 random chars><6 base62 CRC-32 chars>`.
//!
//! 43 base62 characters carry 256 bits of randomness. The CRC-32 (of prefix and random part)
//! is not a security feature: it lets fedgate and secret scanners refuse a mistyped or invented
//! token cheaply. The shape follows GitHub's token format.

use secrecy::SecretString;

use crate::rng::{RandomUnavailable, Rng};

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const RANDOM_CHARS: usize = 43;
const CHECKSUM_CHARS: usize = 6;

/// Which token, told apart by prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A robot's long-lived password (`fgr_`).
    Robot,
    /// An admin-API access token (`fga_`).
    Api,
}

impl TokenKind {
    pub const fn prefix(self) -> &'static str {
        match self {
            TokenKind::Robot => "fgr_",
            TokenKind::Api => "fga_",
        }
    }

    /// Length of every token of this kind.
    pub const fn token_len(self) -> usize {
        self.prefix().len() + RANDOM_CHARS + CHECKSUM_CHARS
    }
}

/// Mints a new token of `kind`.
pub fn generate(kind: TokenKind, rng: &dyn Rng) -> Result<SecretString, RandomUnavailable> {
    let mut out = String::with_capacity(kind.token_len());
    out.push_str(kind.prefix());
    let mut pool = [0u8; 64];
    while out.len() < kind.prefix().len() + RANDOM_CHARS {
        rng.fill(&mut pool)?;
        // Rejection sampling keeps every character uniform: 248 = 4 × 62.
        for &b in pool.iter().filter(|&&b| b < 248) {
            if out.len() == kind.prefix().len() + RANDOM_CHARS {
                break;
            }
            out.push(ALPHABET[usize::from(b % 62)] as char);
        }
    }
    out.push_str(&checksum(&out));
    Ok(SecretString::from(out))
}

/// True when `candidate` has the shape and checksum of a `kind` token.
pub fn is_well_formed(kind: TokenKind, candidate: &str) -> bool {
    if !candidate.is_ascii()
        || candidate.len() != kind.token_len()
        || !candidate.starts_with(kind.prefix())
    {
        return false;
    }
    let (body, sum) = candidate.split_at(candidate.len() - CHECKSUM_CHARS);
    body[kind.prefix().len()..]
        .bytes()
        .all(|b| b.is_ascii_alphanumeric())
        && checksum(body) == sum
}

fn checksum(body: &str) -> String {
    let mut n = crc32fast::hash(body.as_bytes());
    let mut digits = [b'0'; CHECKSUM_CHARS];
    for d in digits.iter_mut().rev() {
        *d = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8_lossy(&digits).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SystemRng;
    use secrecy::ExposeSecret;

    #[test]
    fn generated_tokens_are_well_formed_and_distinct() {
        let rng = SystemRng::default();
        let a = generate(TokenKind::Robot, &rng).unwrap();
        let b = generate(TokenKind::Robot, &rng).unwrap();
        assert!(a.expose_secret().starts_with("fgr_"));
        assert_eq!(a.expose_secret().len(), TokenKind::Robot.token_len());
        assert!(is_well_formed(TokenKind::Robot, a.expose_secret()));
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(
            !is_well_formed(TokenKind::Api, a.expose_secret()),
            "prefix tells kinds apart"
        );
    }

    #[test]
    fn any_single_character_change_is_caught() {
        let rng = SystemRng::default();
        let token = generate(TokenKind::Api, &rng).unwrap();
        let original = token.expose_secret().to_string();
        for i in 4..original.len() {
            let mut bytes = original.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).unwrap();
            assert!(!is_well_formed(TokenKind::Api, &changed), "position {i}");
        }
        assert!(!is_well_formed(TokenKind::Api, "fga_short"));
        assert!(!is_well_formed(TokenKind::Api, ""));
        let unicode = format!("fga_{}a", "é".repeat(24)); // right byte length, not ASCII
        assert!(!is_well_formed(TokenKind::Api, &unicode));
    }

    /// Bytes 248-255 would make the first characters of the alphabet likelier: they are
    /// skipped, and more are drawn until the token is complete.
    #[test]
    fn random_bytes_past_the_last_whole_alphabet_are_skipped() {
        struct Pattern;
        impl Rng for Pattern {
            fn fill(&self, dest: &mut [u8]) -> Result<(), RandomUnavailable> {
                for (i, b) in dest.iter_mut().enumerate() {
                    *b = if i % 2 == 0 {
                        248 + (i % 8) as u8
                    } else {
                        1 + 62 * 3
                    };
                }
                Ok(())
            }
        }
        let token = generate(TokenKind::Robot, &Pattern).unwrap();
        assert_eq!(
            token.expose_secret(),
            format!("fgr_{}2PeVHj", "1".repeat(43)),
            "the checksum is a known answer (Python: zlib.crc32, base62, six digits)"
        );
    }

    /// Known answers computed apart from this code (Python: `zlib.crc32` of prefix and random
    /// part, six base62 digits, most significant first): secret scanners check the same sum.
    #[test]
    fn the_checksum_is_crc32_in_base62() {
        let robot = format!("fgr_{}2PeVHj", "1".repeat(43));
        assert!(is_well_formed(TokenKind::Robot, &robot));
        let api = format!("fga_{}119a31", "z".repeat(43));
        assert!(is_well_formed(TokenKind::Api, &api));
        let dash = format!("fgr_{}-2mMlFg", "1".repeat(42));
        assert!(
            !is_well_formed(TokenKind::Robot, &dash),
            "a right checksum does not make a non-alphanumeric character right"
        );
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let token = generate(TokenKind::Robot, &SystemRng::default()).unwrap();
        assert!(!format!("{token:?}").contains("fgr_"));
    }
}
