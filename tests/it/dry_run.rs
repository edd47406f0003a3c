//! The admin dry run, `POST .../robots/{short}/federation/test`: for each entry, whether it
//! matched and the first check that failed, with the expected pattern and the received value;
//! what the exchange would answer; and nothing minted, recorded, counted or pinned.

use std::sync::Arc;

use fedgate::clock::{Clock, ManualClock, SystemClock};
use fedgate::http::auth::Scope;
use fedgate::oidc::trust::IssuerTrust;
use fedgate::store::OrgRole;
use serde_json::{Value, json};

use crate::harness::issuer::{Issuer, TestKey};
use crate::harness::{Backend, Gateway, Reply};
use crate::on_both_databases;

const GITHUB: &str = "https://token.actions.githubusercontent.com";
const AUD: &str = "https://github.com/octo-org";
const TEST: &str = "/api/v1/organization/acme/robots/ci/federation/test";

fn now() -> i64 {
    SystemClock.unix()
}

/// Robot `acme+ci` with one entry failing at each check, then a preset entry that matches.
async fn site(backend: Backend, issuer: &Issuer) -> (Gateway, String) {
    let keys_at = format!("{}/jwks", issuer.url);
    let gw = Gateway::trusting(
        backend,
        issuer,
        Arc::new(ManualClock::at(SystemClock.unix())),
        |c| {
            c.federation.issuers = vec![IssuerTrust {
                issuer: GITHUB.into(),
                jwks_uri: keys_at,
                ..IssuerTrust::default()
            }];
            c.limits.exchanges_per_minute_per_robot = 2;
        },
    )
    .await;
    let token = gw
        .federated_robot(
            "acme",
            "ci",
            json!([
                {"issuer": "https://gitlab.com", "subject": "project_path:acme/*"},
                {"issuer": GITHUB, "subject": "repo:octo-org/octo-repo:*",
                 "audiences": ["https://registry.example.com"]},
                {"issuer": GITHUB, "subject": "repo:octo-org/other-repo:*", "audiences": [AUD]},
                {"issuer": GITHUB, "subject": "repo:octo-org/octo-repo:*", "audiences": [AUD],
                 "conditions": {"ref": ["refs/heads/release", "refs/tags/*"]}},
                {"provider": "github", "repository": "octo-org/octo-repo", "audiences": [AUD]},
            ]),
        )
        .await;
    (gw, token)
}

async fn dry_run(gw: &Gateway, token: &str, jwt: &str) -> Value {
    let reply = gw
        .call("POST", TEST, Some(token), Some(json!({"token": jwt})))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(
        !reply.text.contains(jwt) && !reply.text.contains(jwt.rsplit('.').next().unwrap()),
        "the token is never echoed"
    );
    reply.json()
}

fn failed(answer: &Value, index: usize) -> &Value {
    let entry = &answer["entries"][index];
    assert_eq!(entry["matched"], false, "{answer}");
    &entry["failed"]
}

async fn each_entry_says_which_check_failed(backend: Backend) {
    let issuer = Issuer::rsa().await;
    let (gw, token) = site(backend, &issuer).await;
    let jwt = issuer.token(&issuer.claims_as("github-actions", GITHUB, now()));

    let answer = dry_run(&gw, &token, &jwt).await;
    assert_eq!(answer["result"], "accepted", "{answer}");
    assert_eq!(
        answer["identity"]["sub"],
        "repo:octo-org/octo-repo:environment:prod"
    );
    assert_eq!(
        *failed(&answer, 0),
        json!({"check": "issuer", "expected": "https://gitlab.com", "received": GITHUB})
    );
    assert_eq!(
        *failed(&answer, 1),
        json!({"check": "audience", "expected": ["https://registry.example.com"],
               "received": [AUD]})
    );
    assert_eq!(
        *failed(&answer, 2),
        json!({"check": "subject", "expected": "repo:octo-org/other-repo:*",
               "received": "repo:octo-org/octo-repo:environment:prod"})
    );
    assert_eq!(
        *failed(&answer, 3),
        json!({"check": "condition", "claim": "ref",
               "expected": ["refs/heads/release", "refs/tags/*"],
               "received": "refs/heads/main", "pinned": false})
    );
    assert_eq!(answer["entries"][4]["matched"], true);
    assert_eq!(
        answer["entries"][4]["would_pin"],
        json!({"repository_owner_id": "123456", "repository_id": "987654"})
    );

    // Nothing was recorded: no pin, no replay record, no quota (2 a minute) spent.
    let path = "/api/v1/organization/acme/robots/ci/federation";
    for _ in 0..3 {
        dry_run(&gw, &token, &jwt).await;
    }
    let entries = gw.call("GET", path, Some(&token), None).await.json();
    assert_eq!(entries[4]["pinned_at"], Value::Null, "{entries}");
    let reply = gw.exchange("acme+ci", &jwt).await;
    assert_eq!(
        reply.status, 200,
        "the dry-run token is still unused: {}",
        reply.text
    );

    // After the first exchange pinned the IDs, a resurrected owner fails on the pinned value.
    let mut resurrected = issuer.claims_as("github-actions", GITHUB, now());
    resurrected["repository_owner_id"] = json!("31337");
    let answer = dry_run(&gw, &token, &issuer.token(&resurrected)).await;
    assert_eq!(answer["result"], "refused");
    assert_eq!(answer["error_code"], "claim_mismatch");
    assert_eq!(
        *failed(&answer, 4),
        json!({"check": "condition", "claim": "repository_owner_id", "expected": "123456",
               "received": "31337", "pinned": true})
    );
    // The verdict is the exchange's own.
    let refused = gw.exchange("acme+ci", &issuer.token(&resurrected)).await;
    assert_eq!(refused.json()["error"], answer["error"]);
}

async fn token_checks_are_the_exchanges(backend: Backend) {
    let issuer = Issuer::rsa().await;
    let (gw, token) = site(backend, &issuer).await;
    let verdict = |answer: &Value| {
        (
            answer["result"].as_str().unwrap().to_string(),
            answer["error_code"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    let refused = |code: &str| ("refused".to_string(), code.to_string());

    let mut expired = issuer.claims_as("github-actions", GITHUB, now() - 3600);
    expired["exp"] = json!(now() - 600);
    let answer = dry_run(&gw, &token, &issuer.token(&expired)).await;
    assert_eq!(verdict(&answer), refused("expired"));
    assert_eq!(
        answer["entries"][4]["matched"], true,
        "entries are still evaluated"
    );

    let impostor = TestKey::rsa("rsa-1"); // the published kid, another key
    let answer = dry_run(
        &gw,
        &token,
        &impostor.sign(&issuer.claims_as("github-actions", GITHUB, now())),
    )
    .await;
    assert_eq!(verdict(&answer), refused("bad_signature"));

    let answer = dry_run(&gw, &token, "not-a-jwt").await;
    assert_eq!(verdict(&answer), refused("malformed_token"));
    assert_eq!(answer["entries"], json!([]));

    let stranger = issuer.claims("github-actions", now()); // iss: the test issuer's own URL
    let answer = dry_run(&gw, &token, &issuer.token(&stranger)).await;
    assert_eq!(verdict(&answer), refused("issuer_not_configured"));
    assert!(
        answer["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["failed"]["check"] == "issuer"),
        "{answer}"
    );
}

async fn only_the_robots_admins_may_ask(backend: Backend) {
    let issuer = Issuer::rsa().await;
    let (gw, _token) = site(backend, &issuer).await;
    let jwt = issuer.token(&issuer.claims_as("github-actions", GITHUB, now()));
    let body = || Some(json!({"token": jwt}));
    gw.user("bob").await;
    gw.member("acme", "bob", OrgRole::Member).await;
    let member = gw.token("bob", &Scope::ALL).await;
    let outsider = gw.admin("mallory").await;
    for token in [&member, &outsider] {
        let reply = gw.call("POST", TEST, Some(token), body()).await;
        assert_eq!(reply.status, 403, "{}", reply.text);
        assert!(!reply.text.contains("entries"));
    }
    assert_eq!(gw.call("POST", TEST, None, body()).await.status, 401);
    let admin = gw.token("acme-admin", &Scope::ALL).await;
    let missing = gw
        .call(
            "POST",
            "/api/v1/organization/acme/robots/nosuch/federation/test",
            Some(&admin),
            body(),
        )
        .await;
    assert_eq!(missing.status, 404, "{}", missing.text);
    for bad in [json!({}), json!({"token": 5}), json!({"token": ""})] {
        let reply: Reply = gw.call("POST", TEST, Some(&admin), Some(bad)).await;
        assert_eq!(reply.status, 400, "{}", reply.text);
        assert!(reply.message().contains("{\"token\""), "{}", reply.text);
    }

    // A user's own robots have the dry run too.
    let alice = gw.admin("alice").await;
    gw.call("PUT", "/api/v1/user/robots/mine", Some(&alice), None)
        .await;
    let answer = gw
        .call(
            "POST",
            "/api/v1/user/robots/mine/federation/test",
            Some(&alice),
            body(),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json()["error_code"], "no_federation");
}

on_both_databases!(
    each_entry_says_which_check_failed,
    token_checks_are_the_exchanges,
    only_the_robots_admins_may_ask,
);
