//! The token exchange (SPEC 7) against a real HTTPS issuer on loopback.

use std::sync::Arc;

use fedgate::clock::{Clock, ManualClock, SystemClock};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Value, json};

use crate::harness::issuer::{Issuer, Mode, TestKey};
use crate::harness::{Backend, Gateway, send};
use crate::on_both_databases;

const REGISTRY_AUD: &str = "https://registry.example.com";

fn now() -> i64 {
    SystemClock.unix()
}

/// A GitHub-shaped entry for `issuer` matching the fixture's repository.
fn github_entry(issuer: &Issuer) -> Value {
    json!([{
        "issuer": issuer.url,
        "subject": "repo:octo-org/octo-repo:*",
        "audiences": ["https://github.com/octo-org"],
        "conditions": {"repository_owner_id": "123456", "ref": "refs/heads/main"},
    }])
}

/// Verifies a minted token with jsonwebtoken against the gateway's published JWKS.
async fn verify_minted(gw: &Gateway, token: &str) -> Value {
    let jwks: JwkSet = gw
        .client
        .get(format!("{}/.well-known/jwks.json", gw.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let kid = header.kid.expect("minted tokens carry a kid");
    let jwk = jwks.find(&kid).expect("the kid is published");
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[gw.config.registry_service()]);
    validation.set_issuer(&[gw.url.as_str()]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .expect("the minted token verifies with the published keys")
        .claims
}

async fn github_token_exchanges_for_a_verifiable_robot_token(backend: Backend) {
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting(backend, &issuer, Arc::new(SystemClock), |_| {}).await;
    gw.federated_robot("acme", "ci", github_entry(&issuer))
        .await;
    let claims = issuer.claims("github-actions", now());
    let reply = gw.exchange("acme+ci", &issuer.token(&claims)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.headers["cache-control"], "no-store");
    assert_eq!(reply.headers["content-type"], "application/json");
    let body = reply.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let minted = verify_minted(&gw, body["token"].as_str().unwrap()).await;
    assert_eq!(minted["iss"], gw.url.as_str());
    assert_eq!(minted["sub"], "acme+ci");
    assert_eq!(minted["aud"], gw.config.registry_service());
    assert_eq!(
        minted["exp"].as_i64().unwrap() - minted["iat"].as_i64().unwrap(),
        3600
    );
    assert!(minted["jti"].as_str().is_some_and(|j| j.len() >= 32));
    assert_eq!(
        minted["fed"],
        json!({"iss": issuer.url, "sub": "repo:octo-org/octo-repo:environment:prod"})
    );

    // POST works the same, and the gateway publishes its discovery document.
    let post = send(
        gw.client
            .post(format!("{}/oauth2/federation/robot/token", gw.url))
            .basic_auth(
                "acme+ci",
                Some(issuer.token(&issuer.claims("github-actions", now()))),
            ),
    )
    .await;
    assert_eq!(post.status, 200, "{}", post.text);
    let discovery = gw
        .call("GET", "/.well-known/openid-configuration", None, None)
        .await
        .json();
    assert_eq!(discovery["issuer"], gw.url.as_str());
    assert_eq!(
        discovery["jwks_uri"],
        format!("{}/.well-known/jwks.json", gw.url)
    );
    assert_eq!(
        discovery["token_endpoint"],
        format!("{}/oauth2/token", gw.url)
    );
    assert_eq!(
        discovery["grant_types_supported"],
        json!(["urn:ietf:params:oauth:grant-type:token-exchange"])
    );

    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(r#"fedgate_exchanges_total{result="ok"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"fedgate_jwks_fetches_total{result="ok"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("fedgate_exchange_duration_seconds_bucket"));
}

async fn replayed_tokens_are_refused_even_concurrently(backend: Backend) {
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting(backend, &issuer, Arc::new(SystemClock), |_| {}).await;
    gw.federated_robot("acme", "ci", github_entry(&issuer))
        .await;
    let token = issuer.token(&issuer.claims("github-actions", now()));
    assert_eq!(gw.exchange("acme+ci", &token).await.status, 200);
    let again = gw.exchange("acme+ci", &token).await;
    assert_eq!(again.status, 401);
    assert_eq!(again.json()["error_code"], "replayed");

    let fresh = issuer.token(&issuer.claims("github-actions", now()));
    let mut racers = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let request = gw
            .client
            .get(format!("{}/oauth2/federation/robot/token", gw.url))
            .basic_auth("acme+ci", Some(fresh.clone()));
        racers.spawn(send(request));
    }
    let replies = racers.join_all().await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let replayed = replies
        .iter()
        .filter(|r| r.status == 401 && r.json()["error_code"] == "replayed")
        .count();
    assert_eq!(
        (ok, replayed),
        (1, 9),
        "exactly one concurrent use succeeds"
    );
}

async fn every_platform_shape_exchanges(backend: Backend) {
    let rsa = Issuer::rsa().await;
    let ec = Issuer::start(vec![TestKey::ec("ec-1")]).await;
    // One gateway trusting both test CAs: concatenate them.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("cas.pem");
    std::fs::write(
        &bundle,
        std::fs::read_to_string(&rsa.ca_file).unwrap()
            + &std::fs::read_to_string(&ec.ca_file).unwrap(),
    )
    .unwrap();
    let bundle = bundle.display().to_string();
    let gw = Gateway::trusting(backend, &rsa, Arc::new(SystemClock), |c| {
        c.federation.extra_ca_file = bundle
    })
    .await;
    let entries = json!([
        {"issuer": rsa.url, "subject": "project_path:my-group/my-project:*", "audiences": [REGISTRY_AUD],
         "conditions": {"project_path": "my-group/*", "ref_protected": "true"}},
        {"issuer": rsa.url, "subject": "system:serviceaccount:ci:*", "audiences": [REGISTRY_AUD],
         "conditions": {"kubernetes.io.namespace": "ci"}},
        {"issuer": rsa.url, "subject": "112233445566778899000", "audiences": [REGISTRY_AUD],
         "conditions": {"email_verified": "true", "email": "*@my-project.iam.gserviceaccount.com"}},
        {"issuer": ec.url, "subject": "repo:octo-org/octo-repo:*", "audiences": ["https://github.com/octo-org"]},
    ]);
    gw.federated_robot("acme", "ci", entries).await;
    for (issuer, fixture) in [
        (&rsa, "gitlab-ci"),
        (&rsa, "kubernetes-serviceaccount"),
        (&rsa, "google"),
        (&ec, "github-actions"),
    ] {
        let mut claims = issuer.claims(fixture, now());
        if fixture == "google" {
            claims.as_object_mut().unwrap().remove("jti"); // Google ID tokens carry none
        }
        let reply = gw.exchange("acme+ci", &issuer.token(&claims)).await;
        assert_eq!(reply.status, 200, "{fixture}: {}", reply.text);
        let minted = verify_minted(&gw, reply.json()["token"].as_str().unwrap()).await;
        assert_eq!(minted["fed"]["sub"], claims["sub"], "{fixture}");
    }
}

async fn rfc8693_form_exchanges(backend: Backend) {
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting(backend, &issuer, Arc::new(SystemClock), |_| {}).await;
    gw.federated_robot("acme", "ci", github_entry(&issuer))
        .await;
    let form = |token: String, resource: &str, grant: &str| {
        vec![
            ("grant_type".to_string(), grant.to_string()),
            ("subject_token".to_string(), token),
            (
                "subject_token_type".to_string(),
                "urn:ietf:params:oauth:token-type:jwt".to_string(),
            ),
            ("resource".to_string(), resource.to_string()),
        ]
    };
    let sts = |params: Vec<(String, String)>| {
        send(
            gw.client
                .post(format!("{}/oauth2/token", gw.url))
                .form(&params),
        )
    };
    let grant = "urn:ietf:params:oauth:grant-type:token-exchange";
    let ok = sts(form(
        issuer.token(&issuer.claims("github-actions", now())),
        "urn:quay:robot:acme+ci",
        grant,
    ))
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.headers["cache-control"], "no-store");
    let body = ok.json();
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:jwt"
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    verify_minted(&gw, body["access_token"].as_str().unwrap()).await;

    let token = || issuer.token(&issuer.claims("github-actions", now()));
    for (params, error, needle) in [
        (
            form(token(), "urn:quay:robot:acme+ci", "password"),
            "unsupported_grant_type",
            "grant_type",
        ),
        (
            form(token(), "urn:quay:robot:acme+nosuch", grant),
            "invalid_target",
            "unknown_robot",
        ),
        (
            form(token(), "https://elsewhere", grant),
            "invalid_target",
            "urn:quay:robot:",
        ),
        (
            form("garbage".into(), "urn:quay:robot:acme+ci", grant),
            "invalid_request",
            "malformed_token",
        ),
        (
            vec![("grant_type".into(), grant.into())],
            "invalid_request",
            "subject_token is required",
        ),
    ] {
        let reply = sts(params).await;
        assert_eq!(reply.status, 400, "{error}: {}", reply.text);
        assert_eq!(reply.json()["error"], error);
        assert!(
            reply.json()["error_description"]
                .as_str()
                .unwrap()
                .contains(needle),
            "{}",
            reply.text
        );
    }

    // A body over server.max_body_bytes still gets an OAuth error body, not a bare 413.
    let oversized = form("x".repeat(gw.config.server.max_body_bytes + 1), "r", grant);
    let reply = sts(oversized).await;
    assert_eq!(reply.status, 413, "{}", reply.text);
    assert_eq!(reply.json()["error"], "invalid_request", "{}", reply.text);
    assert!(!reply.text.contains("xxxx"), "{}", reply.text);
}

on_both_databases!(
    github_token_exchanges_for_a_verifiable_robot_token,
    replayed_tokens_are_refused_even_concurrently,
    every_platform_shape_exchanges,
    rfc8693_form_exchanges,
);

/// Asserts a 401 with `code`, naming the robot, and returns the message.
fn refused(reply: &crate::harness::Reply, code: &str) -> String {
    assert_eq!(reply.status, 401, "{code}: {}", reply.text);
    assert_eq!(reply.json()["error_code"], code, "{}", reply.text);
    reply.json()["error"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn each_refusal_code_comes_from_its_input() {
    let issuer = Issuer::rsa().await;
    let unconfigured = Issuer::rsa().await;
    let gw = Gateway::trusting(Backend::Sqlite, &issuer, Arc::new(SystemClock), |_| {}).await;
    gw.federated_robot("acme", "ci", github_entry(&issuer))
        .await;
    let admin = gw
        .token("acme-admin", &fedgate::http::auth::Scope::ALL)
        .await;
    gw.call(
        "PUT",
        "/api/v1/organization/acme/robots/bare",
        Some(&admin),
        None,
    )
    .await;
    let good = || issuer.claims("github-actions", now());
    let sign = |claims: &Value| issuer.token(claims);
    let key = issuer.key(0);

    assert_eq!(
        gw.exchange("acme+ci", &sign(&good())).await.status,
        200,
        "warm the key cache"
    );

    let missing = send(
        gw.client
            .get(format!("{}/oauth2/federation/robot/token", gw.url)),
    )
    .await;
    refused(&missing, "missing_auth");
    let malformed = send(
        gw.client
            .get(format!("{}/oauth2/federation/robot/token", gw.url))
            .header("authorization", "Basic not-base64!"),
    )
    .await;
    refused(&malformed, "malformed_auth");
    refused(
        &gw.exchange("acme+nosuch", &sign(&good())).await,
        "unknown_robot",
    );
    let msg = refused(
        &gw.exchange("acme+bare", &sign(&good())).await,
        "no_federation",
    );
    assert!(msg.contains("acme+bare"));
    // Nothing remembers those refusals: a robot works as soon as it exists and is configured.
    for (method, path, body) in [
        ("PUT", "/api/v1/organization/acme/robots/nosuch", None),
        (
            "POST",
            "/api/v1/organization/acme/robots/nosuch/federation",
            Some(github_entry(&issuer)),
        ),
    ] {
        let reply = gw.call(method, path, Some(&admin), body).await;
        assert!(reply.status < 300, "{}", reply.text);
    }
    assert_eq!(gw.exchange("acme+nosuch", &sign(&good())).await.status, 200);
    refused(
        &gw.exchange("acme+ci", "a-static-password").await,
        "malformed_token",
    );

    // An issuer the robot does not trust: refused before any request reaches it.
    let msg = refused(
        &gw.exchange(
            "acme+ci",
            &unconfigured.token(&unconfigured.claims("github-actions", now())),
        )
        .await,
        "issuer_not_configured",
    );
    assert!(msg.contains(&unconfigured.url));
    assert_eq!(
        unconfigured.discovery_hits() + unconfigured.jwks_hits(),
        0,
        "no request reached the unconfigured issuer"
    );

    // alg none, and HS256 keyed with the issuer's public key.
    let header_none = data_encoding::BASE64URL_NOPAD.encode(
        json!({"alg": "none", "kid": key.kid})
            .to_string()
            .as_bytes(),
    );
    let payload = data_encoding::BASE64URL_NOPAD.encode(good().to_string().as_bytes());
    refused(
        &gw.exchange("acme+ci", &format!("{header_none}.{payload}."))
            .await,
        "algorithm_not_allowed",
    );
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = Some(key.kid.clone());
    let confused = jsonwebtoken::encode(
        &hs,
        &good(),
        &jsonwebtoken::EncodingKey::from_secret(key.public_pem.as_bytes()),
    )
    .unwrap();
    refused(
        &gw.exchange("acme+ci", &confused).await,
        "algorithm_not_allowed",
    );
    // ES256 claimed for an RSA key.
    let ec = TestKey::ec("other");
    refused(
        &gw.exchange("acme+ci", &ec.sign_as(Some(&key.kid), &good()))
            .await,
        "algorithm_not_allowed",
    );

    // A signature by another key under the issuer's kid.
    let impostor = TestKey::rsa("impostor");
    refused(
        &gw.exchange("acme+ci", &impostor.sign_as(Some(&key.kid), &good()))
            .await,
        "bad_signature",
    );
    refused(
        &gw.exchange("acme+ci", &impostor.sign(&good())).await,
        "unknown_key",
    );

    let with = |patch: Value| {
        let mut claims = good();
        for (k, v) in patch.as_object().unwrap() {
            claims[k] = v.clone();
        }
        sign(&claims)
    };
    let t = now();
    refused(
        &gw.exchange(
            "acme+ci",
            &with(json!({"exp": t - 120, "iat": t - 400, "nbf": t - 400})),
        )
        .await,
        "expired",
    );
    refused(
        &gw.exchange("acme+ci", &with(json!({"nbf": t + 600}))).await,
        "not_yet_valid",
    );
    refused(
        &gw.exchange("acme+ci", &with(json!({"iat": t + 600}))).await,
        "issued_in_future",
    );
    let msg = refused(
        &gw.exchange("acme+ci", &with(json!({"aud": "https://someone.else"})))
            .await,
        "audience_mismatch",
    );
    assert!(
        msg.contains("https://someone.else") && msg.contains("acme+ci"),
        "{msg}"
    );
    let msg = refused(
        &gw.exchange(
            "acme+ci",
            &with(json!({"sub": "repo:evil/repo:ref:refs/heads/main"})),
        )
        .await,
        "subject_mismatch",
    );
    assert!(
        msg.contains("repo:evil/repo") && !msg.contains("octo-org/octo-repo:*"),
        "no configuration leaks: {msg}"
    );
    let msg = refused(
        &gw.exchange("acme+ci", &with(json!({"ref": "refs/heads/feature"})))
            .await,
        "claim_mismatch",
    );
    assert!(
        msg.contains("ref") && msg.contains("refs/heads/feature"),
        "{msg}"
    );
    let mut no_owner = good();
    no_owner
        .as_object_mut()
        .unwrap()
        .remove("repository_owner_id");
    refused(
        &gw.exchange("acme+ci", &sign(&no_owner)).await,
        "claim_mismatch",
    );
    let replay = sign(&good());
    assert_eq!(gw.exchange("acme+ci", &replay).await.status, 200);
    refused(&gw.exchange("acme+ci", &replay).await, "replayed");

    // Nothing secret in any refusal body: every code's text was checked above for shape; the
    // token itself is never echoed.
    let reply = gw.exchange("acme+ci", &with(json!({"aud": "x"}))).await;
    assert!(!reply.text.contains("eyJ"), "{}", reply.text);
}

#[tokio::test]
async fn issuer_not_allowed_is_checked_before_any_fetch() {
    let issuer = Issuer::rsa().await;
    let url = issuer.url.clone();
    let gw = Gateway::trusting(Backend::Sqlite, &issuer, Arc::new(SystemClock), |_| {}).await;
    gw.federated_robot("acme", "ci", github_entry(&issuer))
        .await;
    // The operator narrows allowed_issuers after the entry was made: a second gateway on the
    // same database, configured without this issuer.
    let mut narrowed = gw.config.clone();
    narrowed.federation.allowed_issuers =
        vec!["https://token.actions.githubusercontent.com".into()];
    let gw2 = Gateway::serve(
        narrowed,
        Arc::new(tempfile::tempdir().unwrap()),
        Default::default(),
    )
    .await;
    let reply = gw2
        .exchange(
            "acme+ci",
            &issuer.token(&issuer.claims("github-actions", now())),
        )
        .await;
    let msg = refused(&reply, "issuer_not_allowed");
    assert!(msg.contains(&url));
    assert_eq!(issuer.discovery_hits(), 0);
}

#[tokio::test]
async fn fifty_concurrent_first_exchanges_fetch_the_keys_once() {
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting(Backend::Sqlite, &issuer, Arc::new(SystemClock), |_| {}).await;
    gw.federated_robot("acme", "ci", github_entry(&issuer))
        .await;
    let mut exchanges = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let request = gw
            .client
            .get(format!("{}/oauth2/federation/robot/token", gw.url))
            .basic_auth(
                "acme+ci",
                Some(issuer.token(&issuer.claims("github-actions", now()))),
            );
        exchanges.spawn(send(request));
    }
    let statuses: Vec<u16> = exchanges
        .join_all()
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!((issuer.discovery_hits(), issuer.jwks_hits()), (1, 1));
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_per_cooldown_and_rotation_is_picked_up() {
    let clock = Arc::new(ManualClock::at(now()));
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting(Backend::Sqlite, &issuer, clock.clone(), |c| {
        c.federation.jwks_refresh_cooldown_seconds = 30;
    })
    .await;
    gw.federated_robot("acme", "ci", github_entry(&issuer))
        .await;
    let claims = || issuer.claims("github-actions", clock.unix());
    assert_eq!(
        gw.exchange("acme+ci", &issuer.token(&claims()))
            .await
            .status,
        200
    );
    assert_eq!(issuer.jwks_hits(), 1);

    let burst = |n: usize| {
        let gw = &gw;
        let issuer = &issuer;
        let claims = &claims;
        async move {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..n {
                let stranger = issuer.key(0).sign_as(
                    Some(&format!("random-{i}-{}", crate::harness::random_suffix())),
                    &claims(),
                );
                let request = gw
                    .client
                    .get(format!("{}/oauth2/federation/robot/token", gw.url))
                    .basic_auth("acme+ci", Some(stranger));
                set.spawn(send(request));
            }
            for reply in set.join_all().await {
                assert_eq!(reply.json()["error_code"], "unknown_key", "{}", reply.text);
            }
        }
    };
    burst(20).await;
    assert_eq!(
        issuer.jwks_hits(),
        1,
        "within the cooldown of the first fetch: no refetch"
    );
    clock.advance(31);
    burst(20).await;
    assert_eq!(issuer.jwks_hits(), 2, "one refetch for the whole burst");
    burst(20).await;
    assert_eq!(issuer.jwks_hits(), 2);

    // The issuer rotates: the new kid is picked up once the cooldown allows a refetch.
    let rotated = TestKey::rsa("rsa-2");
    issuer.publish(vec![rotated.clone()]);
    clock.advance(31);
    let reply = gw.exchange("acme+ci", &rotated.sign(&claims())).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(issuer.jwks_hits(), 3);
}

#[tokio::test]
async fn cached_keys_keep_working_while_the_issuer_is_down() {
    let clock = Arc::new(ManualClock::at(now()));
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting(Backend::Sqlite, &issuer, clock.clone(), |c| {
        c.federation.jwks_max_stale_seconds = 3600;
    })
    .await;
    gw.federated_robot("acme", "ci", github_entry(&issuer))
        .await;
    let exchange = async || {
        gw.exchange(
            "acme+ci",
            &issuer.token(&issuer.claims("github-actions", clock.unix())),
        )
        .await
    };
    assert_eq!(exchange().await.status, 200);
    issuer.set_mode(Mode::Down);
    clock.advance(600); // old enough for a background refresh, which fails
    for _ in 0..3 {
        let reply = exchange().await;
        assert_eq!(reply.status, 200, "stale-if-error: {}", reply.text);
    }
    clock.advance(3600); // now beyond jwks_max_stale_seconds
    let reply = exchange().await;
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert_eq!(reply.json()["error_code"], "issuer_unavailable");
    assert!(reply.headers.contains_key("retry-after"));
    issuer.set_mode(Mode::Normal);
    clock.advance(31);
    assert_eq!(
        exchange().await.status,
        200,
        "recovers when the issuer is back"
    );
}

#[tokio::test]
async fn a_broken_issuer_is_unavailable_not_an_error_500() {
    for mode in [Mode::Down, Mode::Garbage, Mode::WrongIssuer] {
        let issuer = Issuer::rsa().await;
        issuer.set_mode(mode);
        let gw = Gateway::trusting(Backend::Sqlite, &issuer, Arc::new(SystemClock), |_| {}).await;
        gw.federated_robot("acme", "ci", github_entry(&issuer))
            .await;
        let reply = gw
            .exchange(
                "acme+ci",
                &issuer.token(&issuer.claims("github-actions", now())),
            )
            .await;
        assert_eq!(reply.status, 503, "{mode:?}: {}", reply.text);
        assert_eq!(reply.json()["error_code"], "issuer_unavailable");
        let hits = issuer.discovery_hits();
        let again = gw
            .exchange(
                "acme+ci",
                &issuer.token(&issuer.claims("github-actions", now())),
            )
            .await;
        assert_eq!(again.status, 503);
        assert_eq!(
            issuer.discovery_hits(),
            hits,
            "{mode:?}: a failed issuer is not refetched within the cooldown"
        );
    }
    // A stalled issuer is cut off by fetch_timeout_ms.
    let issuer = Issuer::rsa().await;
    issuer.set_mode(Mode::Stall);
    let gw = Gateway::trusting(Backend::Sqlite, &issuer, Arc::new(SystemClock), |c| {
        c.federation.fetch_timeout_ms = 300
    })
    .await;
    gw.federated_robot("acme", "ci", github_entry(&issuer))
        .await;
    let reply = gw
        .exchange(
            "acme+ci",
            &issuer.token(&issuer.claims("github-actions", now())),
        )
        .await;
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert_eq!(reply.json()["error_code"], "issuer_unavailable");
    // Cut off by the gateway's own timeout: the issuer never answers within the test.
    assert!(reply.text.contains("timed out"), "{}", reply.text);
}

#[tokio::test]
async fn the_ssrf_guard_refuses_loopback_issuers_unless_allowed() {
    let issuer = Issuer::rsa().await;
    let ca = issuer.ca_file.display().to_string();
    let gw = Gateway::start_with(Backend::Sqlite, |c| c.federation.extra_ca_file = ca).await;
    gw.federated_robot("acme", "ci", github_entry(&issuer))
        .await;
    let reply = gw
        .exchange(
            "acme+ci",
            &issuer.token(&issuer.claims("github-actions", now())),
        )
        .await;
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("allow_private_networks"),
        "{}",
        reply.text
    );
    assert_eq!(
        issuer.discovery_hits(),
        0,
        "no request was made to a loopback address"
    );
}

#[tokio::test]
async fn minted_tokens_are_revoked_by_changes_to_the_robot() {
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting(Backend::Sqlite, &issuer, Arc::new(SystemClock), |_| {}).await;
    let admin = gw
        .federated_robot("acme", "ci", github_entry(&issuer))
        .await;
    let mint = async || {
        let reply = gw
            .exchange(
                "acme+ci",
                &issuer.token(&issuer.claims("github-actions", now())),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json()["token"].as_str().unwrap().to_string()
    };
    let accepted = async |token: &str| {
        fedgate::exchange::verify_minted(&gw.state, token)
            .await
            .map_err(|e| e.to_string())
    };

    let token = mint().await;
    assert!(accepted(&token).await.is_ok());
    let path = "/api/v1/organization/acme/robots/ci/federation";
    gw.call("POST", path, Some(&admin), Some(github_entry(&issuer)))
        .await;
    let err = accepted(&token).await.unwrap_err();
    assert!(err.contains("revoked"), "federation change revokes: {err}");

    let token = mint().await;
    gw.call(
        "POST",
        "/api/v1/organization/acme/robots/ci/regenerate",
        Some(&admin),
        None,
    )
    .await;
    assert!(
        accepted(&token).await.unwrap_err().contains("revoked"),
        "regenerate revokes"
    );

    let token = mint().await;
    let deleted = gw
        .call(
            "DELETE",
            "/api/v1/organization/acme/robots/ci",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    assert!(
        accepted(&token)
            .await
            .unwrap_err()
            .contains("no longer exists"),
        "delete revokes"
    );
    gw.call(
        "PUT",
        "/api/v1/organization/acme/robots/ci",
        Some(&admin),
        None,
    )
    .await;
    assert!(
        accepted(&token).await.is_err(),
        "a new robot of the same name does not inherit old tokens"
    );
}

#[tokio::test]
async fn failed_exchanges_are_rate_limited_per_address() {
    // The windows are minutes of the gateway's clock, which stands still here.
    let clock = Arc::new(ManualClock::at(now()));
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting(Backend::Sqlite, &issuer, clock.clone(), |c| {
        c.limits.failed_exchanges_per_minute_per_ip = 3;
        c.limits.exchanges_per_minute_per_robot = 5;
    })
    .await;
    gw.federated_robot("acme", "ci", github_entry(&issuer))
        .await;
    for _ in 0..3 {
        assert_eq!(gw.exchange("acme+ci", "garbage").await.status, 401);
    }
    let limited = gw
        .exchange(
            "acme+ci",
            &issuer.token(&issuer.claims("github-actions", now())),
        )
        .await;
    assert_eq!(limited.status, 429, "{}", limited.text);
    assert!(
        limited.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            <= 60
    );

    // Per robot: a second gateway (fresh counters) allows 5 exchanges a minute for the robot.
    let gw2 = Gateway::trusting(Backend::Sqlite, &issuer, clock.clone(), |c| {
        c.limits.exchanges_per_minute_per_robot = 5;
    })
    .await;
    gw2.federated_robot("acme", "ci", github_entry(&issuer))
        .await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            gw2.exchange(
                "acme+ci",
                &issuer.token(&issuer.claims("github-actions", now())),
            )
            .await
            .status,
        );
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429]);
    // The next minute has a quota of its own; so has the address.
    clock.advance(60);
    let token = issuer.token(&issuer.claims("github-actions", clock.unix()));
    assert_eq!(gw2.exchange("acme+ci", &token).await.status, 200);
    assert_eq!(gw.exchange("acme+ci", "garbage").await.status, 401);
}

/// SPEC 7.3: the warm path touches the database at most once, for the replay record (one
/// SQLite node journals it beside the database instead). Shown by hiding every table from the
/// gateway once it is warm: exchanges keep working, and each records its `jti`.
#[tokio::test]
async fn the_warm_path_reads_nothing_but_the_replay_record() {
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting(Backend::Sqlite, &issuer, Arc::new(SystemClock), |_| {}).await;
    gw.federated_robot("acme", "ci", github_entry(&issuer))
        .await;
    let exchange = async || {
        gw.exchange(
            "acme+ci",
            &issuer.token(&issuer.claims("github-actions", now())),
        )
        .await
    };
    // Once the change log's entries for the set-up have reached the cache, nothing drops the
    // robot that the next exchange caches.
    gw.caught_up().await;
    assert_eq!(exchange().await.status, 200, "warm: keys and robot cached");

    let pool = gw.database().await;
    for table in [
        "robots",
        "federation_entries",
        "repository_permissions",
        "org_members",
        "api_tokens",
        "namespaces",
        "replay_records",
    ] {
        sqlx::query(&format!("ALTER TABLE {table} RENAME TO hidden_{table}"))
            .execute(&pool)
            .await
            .unwrap();
    }
    for _ in 0..3 {
        let reply = exchange().await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    let token = issuer.token(&issuer.claims("github-actions", now()));
    assert_eq!(gw.exchange("acme+ci", &token).await.status, 200);
    let again = gw.exchange("acme+ci", &token).await;
    assert_eq!(again.json()["error_code"], "replayed", "{}", again.text);
    let database = gw
        .config
        .storage
        .database_url
        .trim_start_matches("sqlite://");
    let journal = std::fs::read_dir(format!("{database}-replays")).unwrap();
    let lines: usize = journal
        .map(|segment| segment.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "log"))
        .map(|path| std::fs::read_to_string(path).unwrap().lines().count())
        .sum();
    assert_eq!(lines, 5, "each exchange journaled its jti");
    pool.close().await;
}
