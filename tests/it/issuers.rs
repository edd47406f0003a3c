//! Issue 12, items 6, 7 and 9: which issuers the gateway will contact, and how it behaves when
//! they fail or redirect.

use std::sync::Arc;

use fedgate::clock::{Clock, ManualClock, SystemClock};
use fedgate::oidc::policy::FederationEntry;
use serde_json::{Value, json};

use crate::harness::issuer::{Issuer, Mode, TestKey};
use crate::harness::{Backend, Gateway, send};

fn github_entry(issuer: &str) -> Value {
    json!([{"issuer": issuer, "subject": "repo:octo-org/octo-repo:*",
            "audiences": ["https://github.com/octo-org"]}])
}

/// Item 6: `https://<decimal IPv4>\.example.com` splits into labels that end in
/// `example.com`, but a URL parser reads its host as the IPv4 address (here 127.0.0.1, where
/// the test issuer listens). Patterns are matched against the parsed URL, so it is refused,
/// both when an entry is made and when a token names it.
#[tokio::test]
async fn allowed_issuer_patterns_cannot_be_bypassed_with_a_backslash() {
    let issuer = Issuer::rsa().await;
    let port = issuer.url.rsplit(':').next().unwrap().to_string();
    let sneaky = format!("https://2130706433:{port}\\.example.com");
    let gw = Gateway::trusting(Backend::Sqlite, &issuer, Arc::new(SystemClock), |c| {
        c.federation.allowed_issuers = vec!["https://*.example.com".into()];
    })
    .await;
    let admin = gw
        .federated_robot("acme", "ci", github_entry("https://ci.example.com"))
        .await;
    let made = gw
        .call(
            "POST",
            "/api/v1/organization/acme/robots/ci/federation",
            Some(&admin),
            Some(github_entry(&sneaky)),
        )
        .await;
    assert_eq!(made.status, 400, "{}", made.text);

    // An entry that got into the database anyway (made before this check existed).
    let robot = gw.store().robot("acme", "ci").await.unwrap().unwrap();
    let entry: FederationEntry = serde_json::from_value(github_entry(&sneaky)[0].clone()).unwrap();
    gw.store()
        .replace_federation(robot.id, &[entry], 7)
        .await
        .unwrap();
    let mut claims = issuer.claims("github-actions", SystemClock.unix());
    claims["iss"] = json!(sneaky);
    let reply = gw.exchange("acme+ci", &issuer.token(&claims)).await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert_eq!(reply.json()["error_code"], "issuer_not_allowed");
    assert_eq!(issuer.requests(), 0, "nothing was fetched from 127.0.0.1");
}

/// Item 7: once the cached keys are older than `jwks_max_stale_seconds` and the issuer hangs,
/// one request tries a refetch; the others, and everything within the cooldown after it,
/// fail fast instead of queueing for their own refetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_past_max_stale_fails_fast_within_the_cooldown() {
    let clock = Arc::new(ManualClock::at(SystemClock.unix()));
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting(Backend::Sqlite, &issuer, clock.clone(), |c| {
        c.federation.jwks_max_stale_seconds = 600;
        c.federation.jwks_refresh_cooldown_seconds = 30;
        c.federation.fetch_timeout_ms = 500;
    })
    .await;
    gw.federated_robot("acme", "ci", github_entry(&issuer.url))
        .await;
    let token = || issuer.token(&issuer.claims("github-actions", clock.unix()));
    assert_eq!(gw.exchange("acme+ci", &token()).await.status, 200);

    issuer.set_mode(Mode::Stall);
    clock.advance(700);
    let burst = async || {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let request = gw
                .client
                .get(format!("{}/oauth2/federation/robot/token", gw.url))
                .basic_auth("acme+ci", Some(token()));
            set.spawn(send(request));
        }
        for reply in set.join_all().await {
            assert_eq!(reply.status, 503, "{}", reply.text);
            assert_eq!(reply.json()["error_code"], "issuer_unavailable");
        }
    };
    let hits = issuer.discovery_hits();
    burst().await;
    assert_eq!(
        issuer.discovery_hits() - hits,
        1,
        "one refetch for the whole burst"
    );
    clock.advance(10);
    burst().await;
    assert_eq!(
        issuer.discovery_hits() - hits,
        1,
        "none within the cooldown"
    );
    issuer.set_mode(Mode::Normal);
    clock.advance(31);
    assert_eq!(
        gw.exchange("acme+ci", &token()).await.status,
        200,
        "back once the issuer is"
    );
}

/// Item 9: a redirect may stay on the issuer's host, but not switch to plain HTTP or to
/// another port.
#[tokio::test]
async fn redirects_keep_the_scheme_and_the_port() {
    let issuer = Issuer::rsa().await;
    let other_port = Issuer::start(vec![TestKey::rsa("rsa-1")]).await;
    let plain = Issuer::start_on([127, 0, 0, 1].into(), false, vec![TestKey::rsa("rsa-1")]).await;
    let dir = tempfile::tempdir().unwrap();
    let cas = dir.path().join("cas.pem");
    std::fs::write(
        &cas,
        std::fs::read_to_string(&issuer.ca_file).unwrap()
            + &std::fs::read_to_string(&other_port.ca_file).unwrap(),
    )
    .unwrap();
    let cas = cas.display().to_string();
    // One gateway per case: each starts with no keys and no memory of failed fetches.
    let gateway = async || {
        let gw = Gateway::trusting(Backend::Sqlite, &issuer, Arc::new(SystemClock), |c| {
            c.federation.extra_ca_file = cas.clone();
        })
        .await;
        gw.federated_robot("acme", "ci", github_entry(&issuer.url))
            .await;
        gw
    };
    let exchange = async |gw: &Gateway| {
        gw.exchange(
            "acme+ci",
            &issuer.token(&issuer.claims("github-actions", SystemClock.unix())),
        )
        .await
    };
    for target in [&plain, &other_port] {
        issuer.redirect_to(Some(&target.url));
        let gw = gateway().await;
        let reply = exchange(&gw).await;
        assert_eq!(reply.status, 503, "{}", reply.text);
        // A policy refusal, not an outage, and the whole error chain, each part once.
        assert!(
            reply
                .text
                .contains("(refused: error following redirect for url (https://127.0.0.1:")
                && reply.text.contains(
                    "/.well-known/openid-configuration): redirect to another scheme or port)"
                ),
            "{}",
            reply.text
        );
        assert_eq!(
            target.requests(),
            0,
            "the redirect to {} was not followed",
            target.url
        );
    }
    // Without the redirect, the same issuer works.
    issuer.redirect_to(None);
    let gw = gateway().await;
    assert_eq!(exchange(&gw).await.status, 200);
}
