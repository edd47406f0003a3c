//! Property tests (proptest) of the parsers and checks an anonymous caller reaches: compact
//! JWS and JWK parsing, claim checks, `*` patterns (against a plain reference matcher), the
//! client address behind proxies, `/v2/auth` scopes and Basic credentials. None may panic on
//! any input; where there is an exact answer, it is checked.
//!
//! 465,000 cases in all; the counts are set per test so that the suite takes well under a
//! minute in a debug build on two cores.

use std::net::IpAddr;

use base64_simd::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64URL};
use fedgate::api::exchange::basic_credentials;
use fedgate::http::client_ip::{Cidr, ForwardedHeader, TrustedProxies};
use fedgate::oidc::jws::{self, Alg, KeyLookup, parse_jwks};
use fedgate::oidc::policy::{ClaimLookup, FederationEntry, claim, glob, matching_entry};
use fedgate::oidc::verify;
use fedgate::oidc::{check_issuer_url, issuer_allowed};
use fedgate::store::Role;
use fedgate::tokens::registry::{allowed_actions, grant, parse_scopes, repository_in};
use http::{HeaderMap, HeaderValue};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};

/// Strings over `alphabet`, up to `max` characters: fast to generate even in a debug build,
/// and small alphabets make interesting coincidences (repeats, near-matches) likely.
fn text(alphabet: &'static [char], max: usize) -> impl Strategy<Value = String> {
    vec(select(alphabet), 0..=max).prop_map(|chars| chars.into_iter().collect())
}

/// Arbitrary Unicode, up to `max` characters.
fn any_text(max: usize) -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..=max).prop_map(|chars| chars.into_iter().collect())
}

/// Claim names as tokens use them: the registered claims, and names made of the characters
/// claim paths treat specially (`.`, `/`, `~`).
const KEYS: &[&str] = &[
    "iss", "sub", "aud", "exp", "nbf", "iat", "jti", "a", "b", "a.b", "b.a", "a.b.a", "", ".",
    "a.", "/", "~", "~0", "~1", "0", "01",
];

/// Condition names: the keys above, and dotted or pointer paths through them.
fn claim_name() -> impl Strategy<Value = String> {
    prop_oneof![
        select(KEYS).prop_map(str::to_string),
        text(&['a', 'b', '.', '/', '~', '0', '1'], 6),
    ]
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN and infinities become null
        any_text(8).prop_map(Value::from),
        text(&['a', 'b', '*'], 4).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec((select(KEYS), inner), 0..4).prop_map(|pairs| {
                Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

/// A JSON object shaped like an identity token's claims: the registered claims, often of the
/// right type, plus anything.
fn claims_object() -> impl Strategy<Value = Map<String, Value>> {
    (
        vec((select(KEYS), json_value()), 0..6),
        prop::option::of(text(&['h', 't', 'p', 's', ':', '/', 'i'], 12)),
        prop::option::of(text(&['a', 'b', '*'], 6)),
        prop::option::of(any::<i64>()),
        prop::option::of(prop_oneof![
            text(&['a', 'b'], 3).prop_map(Value::from),
            vec(text(&['a', 'b'], 3), 0..3).prop_map(Value::from),
        ]),
    )
        .prop_map(|(rest, iss, sub, exp, aud)| {
            let mut map: Map<String, Value> =
                rest.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            for (name, value) in [
                ("iss", iss.map(Value::from)),
                ("sub", sub.map(Value::from)),
                ("exp", exp.map(Value::from)),
                ("aud", aud),
            ] {
                if let Some(value) = value {
                    map.insert(name.into(), value);
                }
            }
            map
        })
}

/// `*` matches any run of characters: the textbook dynamic program, over characters.
fn reference_glob(pattern: &str, value: &str) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    // matches[j]: the pattern so far matches v[..j].
    let mut matches = vec![false; v.len() + 1];
    matches[0] = true;
    for c in &p {
        let mut next = vec![false; v.len() + 1];
        for j in 0..=v.len() {
            next[j] = if *c == '*' {
                matches[j] || (j > 0 && next[j - 1])
            } else {
                j > 0 && matches[j - 1] && v[j - 1] == *c
            };
        }
        matches = next;
    }
    matches[v.len()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150000))]

    /// The linear matcher agrees with the reference on every pattern and value, multi-byte
    /// characters included.
    #[test]
    fn glob_agrees_with_the_reference(
        pattern in text(&['a', 'b', '*', 'é', '𝔞'], 10),
        value in text(&['a', 'b', 'é', '𝔞'], 14),
    ) {
        prop_assert_eq!(glob(&pattern, &value), reference_glob(&pattern, &value));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40000))]

    /// Whatever a client sends as a token: no panic, and what decodes is within the size cap.
    #[test]
    fn compact_jws_decoding_never_panics(token in prop_oneof![
        any_text(64),
        text(&['e', 'y', 'J', '.', '-', '_', 'A', '0', '='], 64),
        (vec(any::<u8>(), 0..48), vec(any::<u8>(), 0..48), vec(any::<u8>(), 0..48)).prop_map(
            |(h, p, s)| format!(
                "{}.{}.{}",
                BASE64URL.encode_to_string(&h),
                BASE64URL.encode_to_string(&p),
                BASE64URL.encode_to_string(&s)
            )
        ),
    ]) {
        if let Ok(compact) = jws::decode(&token) {
            prop_assert!(token.len() <= jws::MAX_TOKEN_BYTES);
            let _ = verify::algorithm(&compact);
        }
    }

    /// `/v2/auth` scopes: no panic, every parsed scope is well-formed, and a grant never holds
    /// an action the role does not allow.
    #[test]
    fn registry_scopes_never_panic(
        params in vec(prop_oneof![
            any_text(24),
            text(&['r', 'e', 'p', 'o', ':', '/', ',', ' ', '*', 'a', 'p', 'u', 'l', 's', 'h'], 32),
        ], 0..4),
        namespace in text(&['a', 'r', 'e'], 3),
    ) {
        let scopes = parse_scopes(params.iter().map(String::as_str));
        for scope in &scopes {
            prop_assert!(!scope.kind.is_empty() && !scope.name.is_empty());
            prop_assert!(!scope.kind.contains(':') && !scope.name.contains(char::is_whitespace));
            if let Some(repository) = repository_in(scope, &namespace) {
                prop_assert!(!repository.is_empty() && !repository.contains('/'));
            }
            for role in [Role::Read, Role::Write, Role::Admin] {
                if let Some(access) = grant(scope, role) {
                    prop_assert!(access.actions.iter().all(|a| allowed_actions(role).contains(&a.as_str())));
                }
            }
        }
    }

    /// Basic credentials: any header value is read without panicking, and `user:password`
    /// (user without `:`, both non-empty) round-trips, the password keeping its `:`s.
    #[test]
    fn basic_credentials_never_panic(
        raw in vec(any::<u8>(), 0..64),
        user in text(&['a', 'c', 'm', 'e', '+', 'é'], 8),
        password in any_text(16),
    ) {
        if let Ok(value) = HeaderValue::from_bytes(&raw) {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::AUTHORIZATION, value);
            let _ = basic_credentials(&headers);
        }
        let mut headers = HeaderMap::new();
        let encoded = BASE64.encode_to_string(format!("{user}:{password}").as_bytes());
        headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {encoded}")).unwrap(),
        );
        match basic_credentials(&headers) {
            Ok(credentials) => {
                prop_assert_eq!(credentials.user(), user.as_str());
                prop_assert_eq!(credentials.password(), password.as_str());
            }
            Err(_) => prop_assert!(user.is_empty() || password.is_empty()),
        }
    }

    /// Behind trusted proxies: any forwarded header gives the peer or an address it names,
    /// and a peer that is not trusted is always its own client.
    #[test]
    fn forwarded_headers_never_panic(
        header in prop_oneof![
            any_text(40),
            vec(prop_oneof![
                any::<[u8; 4]>().prop_map(|o| IpAddr::from(o).to_string()),
                any::<[u16; 8]>().prop_map(|s| format!("[{}]:1", IpAddr::from(s))),
                text(&['1', '0', '.', ':', 'f', '[', ']', ' ', 'x'], 12),
            ], 0..4).prop_map(|hops| hops.join(", ")),
        ],
        forwarded in any::<bool>(),
        peer in any::<[u8; 4]>(),
    ) {
        let nets: Vec<Cidr> = ["10.0.0.0/8", "fd00::/8"].iter().map(|n| n.parse().unwrap()).collect();
        let kind = if forwarded { ForwardedHeader::Forwarded } else { ForwardedHeader::XForwardedFor };
        let name = if forwarded { "forwarded" } else { "x-forwarded-for" };
        let proxies = TrustedProxies::new(&nets, kind);
        let Ok(value) = HeaderValue::from_str(&header) else {
            return Ok(());
        };
        let mut headers = HeaderMap::new();
        headers.insert(name, value);
        let peer = IpAddr::from(peer);
        let client = proxies.client(peer, &headers);
        if !proxies.contains(peer) {
            prop_assert_eq!(client, peer);
        } else if client != peer {
            let canonical = client.to_string();
            prop_assert!(header.contains(&canonical) || header.contains(&client.to_canonical().to_string()),
                "{} is not in {:?}", client, header);
        }
    }

    /// Issuer URLs and allowed-issuer patterns: no panic on any text, and an issuer an entry
    /// may hold that a pattern allows is one whose URL parses to what the pattern says.
    #[test]
    fn issuer_checks_never_panic(
        issuer in prop_oneof![
            any_text(24),
            text(&['h', 't', 'p', 's', ':', '/', '\\', '.', 'a', '1', '*', '@', '?', '#', '%'], 24)
                .prop_map(|t| format!("https://{t}")),
        ],
        pattern in select(&["https://*.example.com", "https://a.example.com/*", "https://1.2.3.4"][..]),
    ) {
        let _ = check_issuer_url(&issuer, false);
        if issuer_allowed(&[pattern.to_string()], &issuer) {
            let url = url::Url::parse(&issuer).unwrap();
            prop_assert_eq!(url.scheme(), "https");
            prop_assert!(url.query().is_none() && url.username().is_empty());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20000))]

    /// Patterns cut from the value itself, so most cases match.
    #[test]
    fn glob_agrees_with_the_reference_on_near_matches(
        value in text(&['a', 'b', 'c'], 16),
        cuts in vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..4),
    ) {
        let mut pattern: Vec<char> = value.chars().collect();
        for (at, len) in cuts {
            if pattern.is_empty() {
                break;
            }
            let start = at.index(pattern.len());
            let end = (start + len.index(4)).min(pattern.len());
            pattern.splice(start..end, ['*']);
        }
        let pattern: String = pattern.into_iter().collect();
        prop_assert_eq!(glob(&pattern, &value), reference_glob(&pattern, &value));
    }

    #[test]
    fn glob_never_panics_on_any_text(pattern in any_text(12), value in any_text(12)) {
        let _ = glob(&pattern, &value);
    }

    /// Any JWKS document an issuer (or an attacker controlling one) serves: no panic, and keys
    /// that do load can be looked up for every algorithm.
    #[test]
    fn jwk_sets_never_panic(doc in prop_oneof![
        vec(any::<u8>(), 0..64).prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
        json_value().prop_map(|v| json!({"keys": [v]}).to_string()),
        vec((
            select(&["RSA", "EC", "OKP", "oct", ""][..]),
            prop::option::of(select(&["P-256", "P-384", "P-521", "Ed25519", "X25519"][..])),
            prop::option::of(select(&["RS256", "PS512", "ES256", "EdDSA", "HS256", "none"][..])),
            prop::option::of(select(&["sig", "enc"][..])),
            vec(any::<u8>(), 0..70),
            vec(any::<u8>(), 0..70),
        ), 0..4).prop_map(|keys| {
            let keys: Vec<Value> = keys.into_iter().map(|(kty, crv, alg, use_, a, b)| json!({
                "kty": kty, "crv": crv, "alg": alg, "use": use_, "kid": "k",
                "n": BASE64URL.encode_to_string(&a), "e": BASE64URL.encode_to_string(&b),
                "x": BASE64URL.encode_to_string(&a), "y": BASE64URL.encode_to_string(&b),
            })).collect();
            json!({"keys": keys}).to_string()
        }),
    ]) {
        if let Ok(set) = parse_jwks(doc.as_bytes()) {
            prop_assert!(set.jwk_count > 0);
            for name in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"] {
                let alg = Alg::parse(name).unwrap();
                for kid in [Some("k"), None, Some("other")] {
                    if let KeyLookup::Found(key) = set.find(kid, alg) {
                        prop_assert!(key.accepts(alg));
                        prop_assert!(!key.verify(alg, b"message", b"not a signature"));
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(15000))]

    /// Reading the claims and checking times never panics, at any value (overflow included),
    /// and an accepted token had iss, sub and exp of the right types.
    #[test]
    fn claim_checks_never_panic(
        payload in claims_object(),
        now in any::<i64>(),
        leeway in 0i64..100_000,
    ) {
        if let Ok(claims) = verify::claims(payload.clone()) {
            prop_assert!(payload["iss"].is_string() && payload["sub"].is_string());
            prop_assert!(payload["exp"].is_number());
            let _ = verify::times(&claims, now, leeway);
        }
    }

    /// A condition's claim name: plain names are keys, JSON Pointers agree with serde_json's,
    /// and a dotted name that is found is found one way only.
    #[test]
    fn claim_lookup_is_unambiguous(payload in claims_object(), name in claim_name()) {
        let found = claim(&payload, &name);
        if !name.contains('.') && !name.starts_with('/') {
            prop_assert_eq!(found, payload.get(&name).map_or(ClaimLookup::Missing, ClaimLookup::Found));
        }
        if name.starts_with('/') && !name.contains('~') && !name.split('/').any(|t| t.starts_with('0')) {
            let reference = Value::Object(payload.clone());
            prop_assert_eq!(found, reference.pointer(&name).map_or(ClaimLookup::Missing, ClaimLookup::Found));
        }
        if !name.starts_with('/') && payload.contains_key(&name) && name.contains('.') {
            // The literal key is one reading; another would make it ambiguous, never a
            // different value.
            prop_assert!(matches!(found, ClaimLookup::Found(v) if v == &payload[&name]) || found == ClaimLookup::Ambiguous);
        }
    }

    /// Matching an identity against entries never panics, and a match really matches.
    #[test]
    fn matching_entries_never_panics(
        payload in claims_object(),
        entries in vec((
            text(&['a', 'b', '*'], 5),
            vec(text(&['a', 'b'], 3), 0..3),
            btree_map(claim_name(), text(&['a', 'b', '*', '1'], 4), 0..3),
        ), 0..4),
        defaults in vec(text(&['a', 'b'], 3), 0..2),
    ) {
        let Ok(claims) = verify::claims(payload) else {
            return Ok(());
        };
        let entries: Vec<FederationEntry> = entries
            .into_iter()
            .map(|(subject, audiences, conditions)| FederationEntry {
                issuer: claims.iss.as_str().into(),
                subject: subject.into(),
                audiences: audiences.into_iter().map(Into::into).collect(),
                conditions: conditions.into_iter().collect(),
                preset: None,
            })
            .collect();
        if let Ok(entry) = matching_entry(&entries, &claims, &defaults, "acme+ci") {
            prop_assert!(glob(&entry.subject, &claims.sub));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10000))]

    /// A well-formed token decodes to exactly what was encoded.
    #[test]
    fn compact_jws_round_trips(
        alg in any_text(6),
        kid in prop::option::of(any_text(6)),
        payload in claims_object(),
        signature in vec(any::<u8>(), 0..80),
    ) {
        let mut header = json!({"alg": alg});
        if let Some(kid) = &kid {
            header["kid"] = json!(kid);
        }
        let (h, p) = (header.to_string(), Value::Object(payload.clone()).to_string());
        let token = format!(
            "{}.{}.{}",
            BASE64URL.encode_to_string(h.as_bytes()),
            BASE64URL.encode_to_string(p.as_bytes()),
            BASE64URL.encode_to_string(&signature)
        );
        prop_assume!(token.len() <= jws::MAX_TOKEN_BYTES);
        let compact = jws::decode(&token).unwrap();
        prop_assert_eq!(&compact.header.alg, &alg);
        prop_assert_eq!(&compact.header.kid, &kid);
        // The payload as JSON reads it (a float's last digit may not survive text).
        let expected: Map<String, Value> = serde_json::from_str(&p).unwrap();
        prop_assert_eq!(&compact.payload, &expected);
        prop_assert_eq!(&compact.signature, &signature);
        prop_assert_eq!(compact.signing_input, token.rsplit_once('.').unwrap().0.as_bytes());
    }
}
