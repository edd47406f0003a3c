//! Compact JWS (RFC 7515) parsing, JWK (RFC 7517) keys, and the algorithm allow-list.
//!
//! Keys are parsed once, when a JWKS is loaded, into aws-lc-rs `ParsedPublicKey`s; verifying a
//! signature then costs only the signature check itself. `none` and every HMAC algorithm are
//! refused outright: a public key is never used as an HMAC secret.

use std::collections::HashMap;

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use base64_simd::URL_SAFE_NO_PAD as BASE64URL_NOPAD;
use serde::Deserialize;

/// Largest identity token accepted; real ones are 1–3 KiB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Signature algorithms fedgate accepts on identity tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Alg {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "RS256" => Alg::RS256,
            "RS384" => Alg::RS384,
            "RS512" => Alg::RS512,
            "PS256" => Alg::PS256,
            "PS384" => Alg::PS384,
            "PS512" => Alg::PS512,
            "ES256" => Alg::ES256,
            "ES384" => Alg::ES384,
            "EdDSA" => Alg::EdDSA,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }

    fn rsa_parameters(self) -> Option<&'static signature::RsaParameters> {
        Some(match self {
            Alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Alg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            Alg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            Alg::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
            _ => return None,
        })
    }
}

/// The JOSE header fields fedgate looks at.
#[derive(Debug, Clone, Deserialize)]
pub struct Header {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
    /// Critical extensions fedgate does not understand make a token invalid (RFC 7515 §4.1.11).
    #[serde(default)]
    pub crit: Option<serde_json::Value>,
}

/// A compact JWS split and decoded, not yet verified.
#[derive(Debug)]
pub struct Compact<'a> {
    pub header: Header,
    /// The payload as a JSON object.
    pub payload: serde_json::Map<String, serde_json::Value>,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a [u8],
    pub signature: Vec<u8>,
}

/// Why a token could not even be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub &'static str);

/// Splits and decodes `header.payload.signature`.
pub fn decode(token: &str) -> Result<Compact<'_>, Malformed> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Malformed("the token is larger than 16 KiB"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Malformed("not a JWT (expected three dot-separated parts)"));
    };
    let header_bytes = BASE64URL_NOPAD
        .decode_to_vec(h.as_bytes())
        .map_err(|_| Malformed("the JWT header is not base64url"))?;
    let header: Header = serde_json::from_slice(&header_bytes)
        .map_err(|_| Malformed("the JWT header is not a JSON object with an alg"))?;
    let payload_bytes = BASE64URL_NOPAD
        .decode_to_vec(p.as_bytes())
        .map_err(|_| Malformed("the JWT payload is not base64url"))?;
    let payload: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&payload_bytes)
            .map_err(|_| Malformed("the JWT payload is not a JSON object"))?;
    let signature = BASE64URL_NOPAD
        .decode_to_vec(s.as_bytes())
        .map_err(|_| Malformed("the JWT signature is not base64url"))?;
    Ok(Compact {
        header,
        payload,
        signing_input: &token.as_bytes()[..h.len() + 1 + p.len()],
        signature,
    })
}

/// One public key, parsed once.
pub struct VerifyingKey {
    pub kid: Option<String>,
    pub alg: Alg,
    /// An RSA key whose JWK names no `alg` may sign with any RSA algorithm. It is still parsed
    /// once, for RS256 (what issuers that omit `alg` use, e.g. Entra ID); a token with another
    /// RSA algorithm has the key parsed again for its verification. Parsing it for all six up
    /// front made one issuer's 64 KiB key set take a megabyte (issue 12).
    any_rsa_alg: bool,
    key: ParsedPublicKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// True when a token signed with `alg` may be verified with this key.
    pub fn accepts(&self, alg: Alg) -> bool {
        self.alg == alg || (self.any_rsa_alg && alg.rsa_parameters().is_some())
    }

    pub fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        if alg == self.alg {
            return self.key.verify_sig(message, signature).is_ok();
        }
        match alg.rsa_parameters().filter(|_| self.any_rsa_alg) {
            // The parsed key's bytes are its SubjectPublicKeyInfo, which RSA verification reads.
            Some(params) => signature::UnparsedPublicKey::new(params, self.key.as_ref())
                .verify(message, signature)
                .is_ok(),
            None => false,
        }
    }

    /// Bytes this key holds in memory, roughly: its encoding, and the parsed form (for RSA the
    /// modulus several times over, in aws-lc's precomputed Montgomery form).
    fn weight(&self) -> usize {
        let encoded = self.key.as_ref().len();
        256 + self.kid.as_ref().map_or(0, String::len) + encoded * 5
    }
}

/// An issuer's keys, indexed by `kid`.
#[derive(Debug, Default)]
pub struct KeySet {
    by_kid: HashMap<String, Vec<VerifyingKey>>,
    without_kid: Vec<VerifyingKey>,
    /// Distinct JWKs that yielded at least one usable key.
    pub jwk_count: usize,
}

/// Outcome of looking a key up for a token header.
pub enum KeyLookup<'a> {
    Found(&'a VerifyingKey),
    /// The `kid` is not in the set (a refetch may help).
    UnknownKid,
    /// No `kid` and more than one key: the token does not say which.
    Ambiguous,
    /// The key exists but its type does not allow the token's `alg`.
    WrongAlgorithm,
}

impl KeySet {
    /// Bytes the set holds in memory, roughly (what the key cache weighs it at).
    pub fn weight(&self) -> usize {
        let keys = self
            .by_kid
            .iter()
            .map(|(kid, keys)| {
                64 + kid.len() + keys.iter().map(VerifyingKey::weight).sum::<usize>()
            })
            .sum::<usize>();
        128 + keys
            + self
                .without_kid
                .iter()
                .map(VerifyingKey::weight)
                .sum::<usize>()
    }

    pub fn find(&self, kid: Option<&str>, alg: Alg) -> KeyLookup<'_> {
        let candidates: &[VerifyingKey] = match kid {
            Some(kid) => match self.by_kid.get(kid) {
                Some(keys) => keys,
                None => return KeyLookup::UnknownKid,
            },
            None if self.jwk_count == 1 => match self.by_kid.values().next() {
                Some(keys) => keys,
                None => &self.without_kid,
            },
            None => return KeyLookup::Ambiguous,
        };
        candidates
            .iter()
            .find(|k| k.accepts(alg))
            .map_or(KeyLookup::WrongAlgorithm, KeyLookup::Found)
    }
}

#[derive(Debug, Deserialize)]
struct JwkSetDoc {
    keys: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

/// Parses a JWKS document. Keys fedgate cannot use (encryption keys, unknown types or curves,
/// malformed members, weak RSA) are skipped; a document with no usable key is an error.
pub fn parse_jwks(document: &[u8]) -> Result<KeySet, String> {
    let doc: JwkSetDoc =
        serde_json::from_slice(document).map_err(|e| format!("JWKS is not a JSON key set: {e}"))?;
    let mut set = KeySet::default();
    for value in doc.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        let Some(key) = parse_jwk(&jwk) else {
            continue;
        };
        set.jwk_count += 1;
        match &jwk.kid {
            Some(kid) => set.by_kid.entry(kid.clone()).or_default().push(key),
            None => set.without_kid.push(key),
        }
    }
    if set.jwk_count == 0 {
        return Err("JWKS holds no usable signing key".into());
    }
    Ok(set)
}

fn b64(field: &Option<String>) -> Option<Vec<u8>> {
    BASE64URL_NOPAD
        .decode_to_vec(field.as_deref()?.as_bytes())
        .ok()
}

/// The key a JWK describes, parsed once, if fedgate can verify signatures with it.
fn parse_jwk(jwk: &Jwk) -> Option<VerifyingKey> {
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    let declared = match jwk.alg.as_deref() {
        Some(name) => Some(Alg::parse(name)?),
        None => None,
    };
    let allowed = |alg: Alg| declared.is_none_or(|d| d == alg);
    let make = |alg: Alg, key: ParsedPublicKey| VerifyingKey {
        kid: jwk.kid.clone(),
        alg,
        any_rsa_alg: false,
        key,
    };
    match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => {
            let (Some(n), Some(e)) = (b64(&jwk.n), b64(&jwk.e)) else {
                return None;
            };
            let alg = match declared {
                Some(alg) if alg.rsa_parameters().is_some() => alg,
                Some(_) => return None,
                None => Alg::RS256,
            };
            let params = alg.rsa_parameters()?;
            let key = RsaPublicKeyComponents { n: &n, e: &e }
                .to_parsed_public_key(params)
                .ok()?;
            Some(VerifyingKey {
                any_rsa_alg: declared.is_none(),
                ..make(alg, key)
            })
        }
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let (alg, verification, len): (_, &'static dyn signature::VerificationAlgorithm, _) =
                if crv == "P-256" {
                    (Alg::ES256, &signature::ECDSA_P256_SHA256_FIXED, 32)
                } else {
                    (Alg::ES384, &signature::ECDSA_P384_SHA384_FIXED, 48)
                };
            let (Some(x), Some(y)) = (b64(&jwk.x), b64(&jwk.y)) else {
                return None;
            };
            if !allowed(alg) || x.len() != len || y.len() != len {
                return None;
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            ParsedPublicKey::new(verification, point)
                .ok()
                .map(|k| make(alg, k))
        }
        ("OKP", Some("Ed25519")) => {
            let x = b64(&jwk.x)?;
            if !allowed(Alg::EdDSA) || x.len() != 32 {
                return None;
            }
            ParsedPublicKey::new(&signature::ED25519, x)
                .ok()
                .map(|k| make(Alg::EdDSA, k))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        BASE64URL_NOPAD.encode_to_string(bytes)
    }

    fn b64json(v: serde_json::Value) -> String {
        b64(v.to_string().as_bytes())
    }

    /// The public JWK of an RSA key pair, without `alg`.
    fn rsa_jwk(pair: &aws_lc_rs::signature::RsaKeyPair, kid: &str) -> serde_json::Value {
        use aws_lc_rs::signature::KeyPair;
        let public = pair.public_key();
        serde_json::json!({"kty": "RSA", "kid": kid,
            "n": b64(public.modulus().big_endian_without_leading_zero()),
            "e": b64(public.exponent().big_endian_without_leading_zero())})
    }

    /// A well-formed token of exactly [`MAX_TOKEN_BYTES`] is read; one byte more is refused
    /// for its size (not for some other defect, as a made-up string would be).
    #[test]
    fn the_size_limit_is_16_kib_exactly() {
        let header = b64json(serde_json::json!({"alg": "RS256"}));
        let token_of_length = |len: usize| {
            for pad in (len * 3 / 4).saturating_sub(64)..len {
                let payload = b64json(serde_json::json!({ "pad": "x".repeat(pad) }));
                for sig in 0..4 {
                    let sig = BASE64URL_NOPAD.encode_to_string(vec![7u8; sig]);
                    let token = format!("{header}.{payload}.{sig}");
                    if token.len() == len {
                        return token;
                    }
                }
            }
            unreachable!("no token of {len} bytes")
        };
        let at_limit = token_of_length(MAX_TOKEN_BYTES);
        assert!(decode(&at_limit).is_ok());
        let over = token_of_length(MAX_TOKEN_BYTES + 1);
        assert_eq!(
            decode(&over).err(),
            Some(Malformed("the token is larger than 16 KiB"))
        );
    }

    #[test]
    fn decode_splits_and_bounds() {
        let token = format!(
            "{}.{}.{}",
            b64json(serde_json::json!({"alg": "RS256", "kid": "k"})),
            b64json(serde_json::json!({"iss": "https://i"})),
            BASE64URL_NOPAD.encode_to_string([1, 2, 3])
        );
        let c = decode(&token).unwrap();
        assert_eq!(c.header.alg, "RS256");
        assert_eq!(c.payload["iss"], "https://i");
        assert_eq!(c.signature, [1, 2, 3]);
        assert_eq!(
            c.signing_input,
            token.rsplit_once('.').unwrap().0.as_bytes()
        );

        for bad in ["", "a.b", "a.b.c.d", "!!.e30.e30", "e30.e30.e30"] {
            assert!(decode(bad).is_err(), "{bad:.20}");
        }
        let array_payload = format!(
            "{}.{}.",
            b64json(serde_json::json!({"alg": "none"})),
            b64json(serde_json::json!([1]))
        );
        assert!(decode(&array_payload).is_err());
    }

    #[test]
    fn the_allow_list_is_nine_algorithms_by_their_exact_names() {
        let names = [
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
        ];
        for name in names {
            let alg = Alg::parse(name).unwrap_or_else(|| panic!("{name} is accepted"));
            assert_eq!(alg.as_str(), name);
        }
        for refused in [
            "none", "HS256", "HS512", "ES512", "rs256", "RS256 ", "Ed25519", "",
        ] {
            assert_eq!(Alg::parse(refused), None, "{refused:?} is refused");
        }
    }

    #[test]
    fn an_rsa_key_without_alg_is_parsed_once_and_verifies_every_rsa_algorithm() {
        use aws_lc_rs::signature::RsaKeyPair;
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let doc = serde_json::json!({"keys": [rsa_jwk(&pair, "k")]});
        let set = parse_jwks(doc.to_string().as_bytes()).unwrap();
        assert_eq!(
            set.by_kid["k"].len(),
            1,
            "one parsed key, not one per algorithm"
        );
        let rng = aws_lc_rs::rand::SystemRandom::new();
        for (alg, padding) in [
            (Alg::RS256, &signature::RSA_PKCS1_SHA256),
            (Alg::RS384, &signature::RSA_PKCS1_SHA384),
            (Alg::RS512, &signature::RSA_PKCS1_SHA512),
            (Alg::PS256, &signature::RSA_PSS_SHA256),
            (Alg::PS384, &signature::RSA_PSS_SHA384),
            (Alg::PS512, &signature::RSA_PSS_SHA512),
        ] {
            let mut sig = vec![0u8; pair.public_modulus_len()];
            pair.sign(padding, &rng, b"message", &mut sig).unwrap();
            let KeyLookup::Found(key) = set.find(Some("k"), alg) else {
                panic!("{alg:?} finds the key");
            };
            assert!(key.verify(alg, b"message", &sig), "{alg:?}");
            assert!(!key.verify(alg, b"massage", &sig), "{alg:?}");
        }
        assert!(matches!(
            set.find(Some("k"), Alg::ES256),
            KeyLookup::WrongAlgorithm
        ));
        // Declared, the algorithm is the only one.
        let mut declared = doc.clone();
        declared["keys"][0]["alg"] = "PS256".into();
        let set = parse_jwks(declared.to_string().as_bytes()).unwrap();
        assert!(matches!(
            set.find(Some("k"), Alg::RS256),
            KeyLookup::WrongAlgorithm
        ));
    }

    /// The key cache's byte budget (`limits.jwks_cache_bytes`) is only as good as these
    /// weights: an RSA key weighs its parsed form (several times its modulus), and a set weighs
    /// each key and each `kid`.
    #[test]
    fn a_key_set_weighs_its_keys_and_their_kids() {
        use aws_lc_rs::signature::RsaKeyPair;
        let jwk = |size, kid: &str| rsa_jwk(&RsaKeyPair::generate(size).unwrap(), kid);
        let weigh = |keys: Vec<serde_json::Value>| {
            let doc = serde_json::json!({ "keys": keys });
            parse_jwks(doc.to_string().as_bytes()).unwrap().weight()
        };
        let small = jwk(aws_lc_rs::rsa::KeySize::Rsa2048, "k");
        let one = weigh(vec![small.clone()]);
        assert!(
            one >= 4 * 256,
            "a 2048-bit key weighs its parsed form: {one}"
        );
        let big = weigh(vec![jwk(aws_lc_rs::rsa::KeySize::Rsa4096, "k")]);
        assert!(
            big >= one + 4 * 256,
            "a 4096-bit key weighs four times its extra 256 bytes more: {big} against {one}"
        );
        let mut long_kid = small.clone();
        let kid = "k".repeat(101);
        long_kid["kid"] = kid.as_str().into();
        let long = weigh(vec![long_kid]);
        assert!(
            (one + 2 * 100..one + 300).contains(&long),
            "a kid weighs its bytes, in the index and in the key, and no more: {long} against {one}"
        );
        let mut other = small.clone();
        other["kid"] = "j".into();
        let mut without_kid = small.clone();
        without_kid.as_object_mut().unwrap().remove("kid");
        assert!(
            weigh(vec![without_kid]) >= one - 64 - 2,
            "a key without a kid still weighs"
        );
        let two = weigh(vec![small, other]);
        assert!(
            two >= 2 * one - 256,
            "two keys weigh about twice one: {two} against {one}"
        );
    }

    /// A JWK's `alg` names the one algorithm its key may verify (RFC 7517 4.4): a P-256 key
    /// declared for ES384, or an Ed25519 key declared for ES256, is not used at all.
    #[test]
    fn a_key_declared_for_another_algorithm_is_not_used() {
        use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};
        let p256 = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = p256.public_key().as_ref();
        let ec = |alg: &str| {
            serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k", "alg": alg,
                "x": b64(&point[1..33]), "y": b64(&point[33..65])}]})
        };
        let ed = Ed25519KeyPair::generate().unwrap();
        let okp = |alg: &str| {
            serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k", "alg": alg,
                "x": b64(ed.public_key().as_ref())}]})
        };
        for (doc, usable) in [
            (ec("ES256"), true),
            (ec("ES384"), false),
            (ec("RS256"), false),
            (okp("EdDSA"), true),
            (okp("ES256"), false),
        ] {
            assert_eq!(
                parse_jwks(doc.to_string().as_bytes()).is_ok(),
                usable,
                "{doc}"
            );
        }
    }

    #[test]
    fn jwks_skips_what_it_cannot_use() {
        let doc = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA"},
            {"kty": "EC", "crv": "P-256", "kid": "short", "x": "AA", "y": "AA"},
        ]});
        assert!(parse_jwks(doc.to_string().as_bytes()).is_err());
        assert!(parse_jwks(b"not json").is_err());
    }
}
