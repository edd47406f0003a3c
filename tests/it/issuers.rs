//! Issue 12, items 6, 7 and 9: which issuers the gateway will contact, and how it behaves when
//! they fail or redirect.

use std::sync::Arc;

use fedgate::clock::{Clock, SystemClock};
use fedgate::oidc::policy::FederationEntry;
use serde_json::{Value, json};

use crate::harness::issuer::Issuer;
use crate::harness::{Backend, Gateway};

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
