//! Issue 19, item 1: `/v2/auth` against forged robot tokens. Each forgery is refused for the
//! one thing it gets wrong, and the same token with that one thing right is accepted, so the
//! refusal can only come from the check under test (signature, `alg`, `iss`, `aud`, `exp`,
//! `nbf`, `rev`).

use std::sync::Arc;

use data_encoding::BASE64URL_NOPAD;
use fedgate::clock::{Clock, ManualClock, SystemClock};
use fedgate::exchange::RobotTokenClaims;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::harness::issuer::{Issuer, TestKey};
use crate::harness::{Backend, Gateway, Reply, send};
use crate::registry::{acme, minted};

async fn v2_auth(gw: &Gateway, user: &str, password: &str) -> Reply {
    let service = gw.config.registry_service();
    send(
        gw.client
            .get(format!(
                "{}/v2/auth?service={service}&scope=repository:acme/app:pull",
                gw.url
            ))
            .basic_auth(user, Some(password)),
    )
    .await
}

/// 200 with `acme/app` pull, or 401 `UNAUTHORIZED` that does not echo the password.
async fn accepted(gw: &Gateway, password: &str) -> bool {
    let reply = v2_auth(gw, "acme+writer", password).await;
    match reply.status {
        200 => true,
        401 => {
            assert_eq!(reply.json()["errors"][0]["code"], "UNAUTHORIZED");
            assert!(!reply.text.contains(password), "{}", reply.text);
            false
        }
        other => panic!("{other}: {}", reply.text),
    }
}

/// One change to a genuine token's claims.
type ClaimsChange = dyn Fn(&mut RobotTokenClaims);

fn b64(value: &Value) -> String {
    BASE64URL_NOPAD.encode(value.to_string().as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_robot_tokens_are_refused_at_v2_auth() {
    let clock = Arc::new(ManualClock::at(SystemClock.unix()));
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting(Backend::Sqlite, &issuer, clock.clone(), |_| {}).await;
    acme(&gw, &issuer).await;
    let genuine = minted(&gw, &issuer, "acme+writer").await;
    assert!(accepted(&gw, &genuine).await, "the genuine token works");

    let payload = genuine.split('.').nth(1).unwrap();
    let claims: RobotTokenClaims =
        serde_json::from_slice(&BASE64URL_NOPAD.decode(payload.as_bytes()).unwrap()).unwrap();
    let ring = gw.state.keyring();
    let key = ring.signing_key(clock.unix()).clone();
    let kid = key.kid.clone();
    let header: Value = serde_json::from_slice(
        &BASE64URL_NOPAD
            .decode(genuine.split('.').next().unwrap().as_bytes())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256", "the default signing algorithm");

    // Signed by the gateway's real key, with claims changed one at a time.
    let leeway = gw.config.federation.leeway_seconds as i64;
    let now = clock.unix();
    let resigned = |change: &dyn Fn(&mut RobotTokenClaims)| {
        let mut c = claims.clone();
        change(&mut c);
        key.sign_jwt(&c).unwrap()
    };
    assert!(
        accepted(&gw, &resigned(&|_| {})).await,
        "re-signing the same claims changes nothing"
    );
    let cases: Vec<(&str, Box<ClaimsChange>, bool)> = vec![
        (
            "another gateway's iss",
            Box::new(|c| c.iss = "https://other.example".into()),
            false,
        ),
        (
            "another service's aud",
            Box::new(|c| c.aud = "other-registry".into()),
            false,
        ),
        (
            "expired beyond the leeway",
            Box::new(move |c| c.exp = now - leeway - 1),
            false,
        ),
        (
            "expired within the leeway",
            Box::new(move |c| c.exp = now - leeway),
            true,
        ),
        (
            "not valid before a time beyond the leeway",
            Box::new(move |c| c.nbf = now + leeway + 1),
            false,
        ),
        (
            "not valid before a time within the leeway",
            Box::new(move |c| c.nbf = now + leeway),
            true,
        ),
        (
            "an older revision of the robot",
            Box::new(|c| c.rev -= 1),
            false,
        ),
        (
            "a robot that does not exist",
            Box::new(|c| c.sub = "acme+ghost".into()),
            false,
        ),
    ];
    for (what, change, expected) in &cases {
        let token = resigned(change.as_ref());
        assert_eq!(accepted(&gw, &token).await, *expected, "{what}");
    }
    // A robot token for another robot is refused for this one, though genuine.
    let reader = resigned(&|c| c.sub = "acme+reader".into());
    assert_eq!(
        v2_auth(&gw, "acme+reader", &reader).await.status,
        401,
        "rev"
    );
    // A token that is not a robot token (no rev) is refused even when signed by the key.
    let mut not_robot = serde_json::to_value(&claims).unwrap();
    not_robot.as_object_mut().unwrap().remove("rev");
    assert!(!accepted(&gw, &key.sign_jwt(&not_robot).unwrap()).await);

    // The genuine payload changed after signing (another robot's revision kept).
    let mut tampered = serde_json::to_value(&claims).unwrap();
    tampered["exp"] = json!(claims.exp + 86_400);
    let parts: Vec<&str> = genuine.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], b64(&tampered), parts[2]);
    assert!(!accepted(&gw, &tampered).await, "payload changed");

    // Signed by a key the gateway does not publish, under the gateway's own kid.
    let stranger = TestKey::ec("stranger");
    let claims_json = serde_json::to_value(&claims).unwrap();
    assert!(
        !accepted(&gw, &stranger.sign_as(Some(&kid), &claims_json)).await,
        "another key, same kid"
    );
    assert!(
        !accepted(&gw, &stranger.sign_as(None, &claims_json)).await,
        "another key, no kid"
    );

    // alg none, with and without a signature.
    let none = b64(&json!({"alg": "none", "typ": "JWT", "kid": kid}));
    assert!(!accepted(&gw, &format!("{none}.{}.", b64(&claims_json))).await);
    assert!(!accepted(&gw, &format!("{none}.{}.{}", b64(&claims_json), parts[2])).await);

    // HS256 keyed with the public key (the key-confusion attack): the certificate the registry
    // trusts, and the public JWK, as the HMAC secret.
    let certificate = key.registry_certificate(now).unwrap();
    for secret in [certificate.as_bytes(), key.jwk().to_string().as_bytes()] {
        let mut hs = Header::new(Algorithm::HS256);
        hs.kid = Some(kid.clone());
        let forged =
            jsonwebtoken::encode(&hs, &claims_json, &EncodingKey::from_secret(secret)).unwrap();
        assert!(!accepted(&gw, &forged).await, "HS256");
    }

    // The genuine signature under another header: ES384 names a curve the key is not on.
    let es384 = b64(&json!({"alg": "ES384", "typ": "JWT", "kid": kid}));
    assert!(!accepted(&gw, &format!("{es384}.{}.{}", parts[1], parts[2])).await);

    // Time: the genuine token is refused once it has expired beyond the leeway.
    clock.advance(claims.exp - now + leeway);
    assert!(accepted(&gw, &genuine).await, "at exp + leeway");
    clock.advance(1);
    assert!(!accepted(&gw, &genuine).await, "after exp + leeway");
}
