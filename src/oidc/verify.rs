//! The checks of SPEC 7.3 steps 4 and 5 that need no network: header, claims, signature, time.
//! The caller (the exchange) sequences them around the key cache.

use serde_json::{Map, Value};

use super::jws::{Alg, Compact, KeyLookup, KeySet};
use super::{Refusal, RefusalCode};

/// The claims fedgate uses, read from an identity token's payload.
#[derive(Debug, Clone)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
    pub jti: Option<String>,
    /// Every claim, for `conditions`.
    pub all: Map<String, Value>,
}

fn malformed(message: impl Into<String>) -> Refusal {
    Refusal::new(RefusalCode::MalformedToken, message)
}

/// A NumericDate: seconds, possibly fractional (RFC 7519 §2); fractions are dropped.
fn numeric_date(payload: &Map<String, Value>, name: &str) -> Result<Option<i64>, Refusal> {
    match payload.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.floor() as i64)
            })
            .map(Some)
            .ok_or_else(|| malformed(format!("the token's {name} is not a valid date"))),
        Some(_) => Err(malformed(format!("the token's {name} is not a number"))),
    }
}

fn string_claim(payload: &Map<String, Value>, name: &str) -> Result<Option<String>, Refusal> {
    match payload.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(malformed(format!("the token's {name} is not a string"))),
    }
}

/// Reads the claims; `iss`, `sub` and `exp` are required.
pub fn claims(payload: Map<String, Value>) -> Result<Claims, Refusal> {
    let iss = string_claim(&payload, "iss")?.ok_or_else(|| malformed("the token has no iss"))?;
    let sub = string_claim(&payload, "sub")?.ok_or_else(|| malformed("the token has no sub"))?;
    let exp = numeric_date(&payload, "exp")?.ok_or_else(|| malformed("the token has no exp"))?;
    let aud = match payload.get("aud") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| malformed("the token's aud is not a string or list of strings"))?,
        Some(_) => {
            return Err(malformed(
                "the token's aud is not a string or list of strings",
            ));
        }
    };
    Ok(Claims {
        iss,
        sub,
        aud,
        exp,
        nbf: numeric_date(&payload, "nbf")?,
        iat: numeric_date(&payload, "iat")?,
        jti: string_claim(&payload, "jti")?,
        all: payload,
    })
}

/// The header's algorithm, if it is on the allow-list. `none` and HS* never are.
pub fn algorithm(compact: &Compact<'_>) -> Result<Alg, Refusal> {
    if compact.header.crit.is_some() {
        return Err(malformed(
            "the token has critical header extensions fedgate does not support",
        ));
    }
    Alg::parse(&compact.header.alg).ok_or_else(|| {
        Refusal::new(
            RefusalCode::AlgorithmNotAllowed,
            format!(
                "algorithm {:?} is not allowed (use RS256/384/512, PS256/384/512, ES256, ES384 or EdDSA)",
                compact.header.alg
            ),
        )
    })
}

/// Checks the signature against `keys`. `Err(None)` means the `kid` is unknown: the caller may
/// refetch the key set (within its cooldown) and try again.
pub fn signature(compact: &Compact<'_>, alg: Alg, keys: &KeySet) -> Result<(), Option<Refusal>> {
    let kid = compact.header.kid.as_deref();
    match keys.find(kid, alg) {
        KeyLookup::Found(key) if key.verify(alg, compact.signing_input, &compact.signature) => {
            Ok(())
        }
        KeyLookup::Found(_) => Err(Some(Refusal::new(
            RefusalCode::BadSignature,
            format!(
                "the token's signature does not verify with the issuer's key {:?}",
                kid.unwrap_or("(only key)")
            ),
        ))),
        KeyLookup::UnknownKid => Err(None),
        KeyLookup::Ambiguous => Err(Some(Refusal::new(
            RefusalCode::UnknownKey,
            "the token has no kid and the issuer publishes more than one key",
        ))),
        KeyLookup::WrongAlgorithm => Err(Some(Refusal::new(
            RefusalCode::AlgorithmNotAllowed,
            format!(
                "algorithm {} does not match the type of the issuer's key {:?}",
                alg.as_str(),
                kid.unwrap_or("(only key)")
            ),
        ))),
    }
}

/// `exp`, `nbf` and `iat`, each with `leeway` seconds (SPEC 7.3 step 5).
pub fn times(claims: &Claims, now: i64, leeway: i64) -> Result<(), Refusal> {
    if now > claims.exp.saturating_add(leeway) {
        return Err(Refusal::new(
            RefusalCode::Expired,
            format!("the token expired at {} (exp), now is {now}", claims.exp),
        ));
    }
    if let Some(nbf) = claims.nbf.filter(|nbf| *nbf > now.saturating_add(leeway)) {
        return Err(Refusal::new(
            RefusalCode::NotYetValid,
            format!("the token is not valid before {nbf} (nbf), now is {now}"),
        ));
    }
    if let Some(iat) = claims.iat.filter(|iat| *iat > now.saturating_add(leeway)) {
        return Err(Refusal::new(
            RefusalCode::IssuedInFuture,
            format!("the token claims to be issued at {iat} (iat), in the future; now is {now}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn claims_require_iss_sub_exp_and_accept_both_aud_forms() {
        let c = claims(payload(
            json!({"iss": "https://i", "sub": "s", "exp": 10.7, "aud": "a"}),
        ))
        .unwrap();
        assert_eq!((c.exp, c.aud.clone()), (10, vec!["a".to_string()]));
        let c = claims(payload(
            json!({"iss": "https://i", "sub": "s", "exp": 10, "aud": ["a", "b"]}),
        ))
        .unwrap();
        assert_eq!(c.aud, ["a", "b"]);
        for bad in [
            json!({"sub": "s", "exp": 1}),
            json!({"iss": "i", "exp": 1}),
            json!({"iss": "i", "sub": "s"}),
            json!({"iss": "i", "sub": "s", "exp": "soon"}),
            json!({"iss": "i", "sub": "s", "exp": 1, "aud": 5}),
            json!({"iss": "i", "sub": 5, "exp": 1}),
        ] {
            assert_eq!(
                claims(payload(bad.clone())).unwrap_err().code,
                RefusalCode::MalformedToken,
                "{bad}"
            );
        }
    }

    /// The signature check's four answers, each from the one thing that is wrong.
    #[test]
    fn signatures_verify_only_with_the_named_key_of_the_right_type() {
        use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
        use base64_simd::URL_SAFE_NO_PAD as B64;
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pair = || {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
            Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
        };
        let (signer, other) = (pair(), pair());
        let jwk = |kid: &str, key: &Ed25519KeyPair| {
            json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
                   "x": B64.encode_to_string(key.public_key().as_ref())})
        };
        let keys = |jwks: Vec<Value>| {
            super::super::jws::parse_jwks(json!({ "keys": jwks }).to_string().as_bytes()).unwrap()
        };
        let token = |header: Value, key: &Ed25519KeyPair| {
            let input = format!(
                "{}.{}",
                B64.encode_to_string(header.to_string()),
                B64.encode_to_string(json!({"iss": "i"}).to_string())
            );
            let sig = B64.encode_to_string(key.sign(input.as_bytes()).as_ref());
            format!("{input}.{sig}")
        };
        let check = |token: &str, set: &KeySet| {
            let compact = super::super::jws::decode(token).unwrap();
            let alg = algorithm(&compact).unwrap();
            signature(&compact, alg, set).map_err(|e| e.map(|r| r.code))
        };
        let one = keys(vec![jwk("a", &signer)]);
        let good = token(json!({"alg": "EdDSA", "kid": "a"}), &signer);
        assert_eq!(check(&good, &one), Ok(()));
        let forged = token(json!({"alg": "EdDSA", "kid": "a"}), &other);
        assert_eq!(check(&forged, &one), Err(Some(RefusalCode::BadSignature)));
        let unknown = token(json!({"alg": "EdDSA", "kid": "b"}), &signer);
        assert_eq!(check(&unknown, &one), Err(None), "a refetch may find it");
        let no_kid = token(json!({"alg": "EdDSA"}), &signer);
        assert_eq!(check(&no_kid, &one), Ok(()), "the only key");
        let two = keys(vec![jwk("a", &signer), jwk("b", &other)]);
        assert_eq!(check(&no_kid, &two), Err(Some(RefusalCode::UnknownKey)));
        let wrong_alg = token(json!({"alg": "ES256", "kid": "a"}), &signer);
        assert_eq!(
            check(&wrong_alg, &one),
            Err(Some(RefusalCode::AlgorithmNotAllowed))
        );
    }

    #[test]
    fn times_honour_leeway() {
        let c = claims(payload(
            json!({"iss": "i", "sub": "s", "exp": 100, "nbf": 50, "iat": 50}),
        ))
        .unwrap();
        assert!(times(&c, 100, 0).is_ok());
        assert!(times(&c, 160, 60).is_ok());
        assert_eq!(times(&c, 161, 60).unwrap_err().code, RefusalCode::Expired);
        assert_eq!(times(&c, 40, 5).unwrap_err().code, RefusalCode::NotYetValid);
        assert!(times(&c, 45, 5).is_ok());
        let future = claims(payload(
            json!({"iss": "i", "sub": "s", "exp": 1000, "iat": 500}),
        ))
        .unwrap();
        assert_eq!(
            times(&future, 100, 60).unwrap_err().code,
            RefusalCode::IssuedInFuture
        );
    }
}
