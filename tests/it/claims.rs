//! Issue 12, items 5 and 8: what a token's claims can make the policy check do.

use std::sync::Arc;

use fedgate::clock::{Clock, SystemClock};
use serde_json::{Value, json};

use crate::harness::issuer::Issuer;
use crate::harness::replica::{Replica, acme_admin, admin};
use crate::harness::{Backend, Gateway, Reply, send};

/// CPU seconds (user + system) process `pid` has used, from /proc/<pid>/stat (in clock ticks
/// of 1/100 s, Linux's USER_HZ).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

async fn call(url: &str, method: &str, path: &str, token: &str, body: Option<Value>) -> Reply {
    let mut request = reqwest::Client::new()
        .request(method.parse().unwrap(), format!("{url}{path}"))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    send(request).await
}

/// Item 5: 50 entries whose subject is the 1,024-byte pattern `*aaa…ab`, against a genuine
/// token whose `sub` is 11,000 `a`s: the worst case of a backtracking matcher (340 ms per
/// exchange in a release build before the fix). Fifty such exchanges must cost the gateway
/// process less than 5 s of CPU in all (a linear matcher needs a few milliseconds each, even
/// in a debug build). Patterns are bounded in bytes, so multi-byte characters buy no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_subjects_cannot_burn_cpu() {
    let issuer = Issuer::rsa().await;
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<(String, String)> = [
        (
            "FEDGATE_STORAGE_DATABASE_URL",
            format!("sqlite://{}/fedgate.db", dir.path().display()),
        ),
        (
            "FEDGATE_KEYS_DIR",
            dir.path().join("keys").display().to_string(),
        ),
        (
            "FEDGATE_FEDERATION_EXTRA_CA_FILE",
            issuer.ca_file.display().to_string(),
        ),
        (
            "FEDGATE_FEDERATION_ALLOW_PRIVATE_NETWORKS",
            "true".to_string(),
        ),
        ("FEDGATE_LOG_LEVEL", "warn".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    admin(&env, &["migrate"]);
    let token = acme_admin(&env);
    let gw = Replica::start(&env, dir.path(), "gw").await;
    let robot_path = "/api/v1/organization/acme/robots/ci";
    assert_eq!(
        call(&gw.url, "PUT", robot_path, &token, None).await.status,
        201
    );
    let federation = format!("{robot_path}/federation");
    let entries = |subject: &str| {
        Value::Array(
            (0..50)
                .map(|i| {
                    json!({"issuer": issuer.url, "subject": format!("{subject}{i}"),
                           "audiences": ["https://github.com/octo-org"]})
                })
                .collect(),
        )
    };

    // Multi-byte characters: 1,021 of them are 4,084 bytes, over the limit.
    let wide = format!("*{}", "𝔞".repeat(1021));
    let refused = call(&gw.url, "POST", &federation, &token, Some(entries(&wide))).await;
    assert_eq!(refused.status, 400, "{:.300}", refused.text);

    let worst = format!("*{}b", "a".repeat(1020)); // 1,022 bytes, and 2 more for the index
    let set = call(&gw.url, "POST", &federation, &token, Some(entries(&worst))).await;
    assert_eq!(set.status, 200, "{:.300}", set.text);

    let mut claims = issuer.claims("github-actions", SystemClock.unix());
    claims["sub"] = json!("a".repeat(11_000));
    let before = cpu_seconds(gw.pid());
    let mut spent = 0.0;
    for i in 0..50 {
        claims["jti"] = json!(format!("attack-{i}"));
        let reply = send(
            reqwest::Client::new()
                .get(format!("{}/oauth2/federation/robot/token", gw.url))
                .basic_auth("acme+ci", Some(issuer.token(&claims))),
        )
        .await;
        assert_eq!(reply.status, 401, "{}", reply.text);
        assert_eq!(reply.json()["error_code"], "subject_mismatch");
        spent = cpu_seconds(gw.pid()) - before;
        assert!(
            spent < 5.0,
            "{} attack exchanges cost {spent:.2} s of CPU",
            i + 1
        );
    }
    println!("50 worst-case exchanges: {spent:.2} s of CPU in the gateway");
}

/// Item 8: a condition on `kubernetes.io.namespace` is meant for the nested claim. A token
/// that also carries a flat claim of that very name (one a user could add, where the issuer
/// lets them) reads two ways: it is refused, not satisfied by whichever reading matches.
#[tokio::test]
async fn a_claim_path_that_reads_two_ways_satisfies_nothing() {
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting(Backend::Sqlite, &issuer, Arc::new(SystemClock), |_| {}).await;
    let entries = json!([{"issuer": issuer.url, "subject": "system:serviceaccount:ci:*",
                          "audiences": ["https://registry.example.com"],
                          "conditions": {"kubernetes.io.namespace": "ci"}}]);
    let admin = gw.federated_robot("acme", "ci", entries).await;
    let base = || issuer.claims("kubernetes-serviceaccount", SystemClock.unix());
    assert_eq!(base()["kubernetes.io"]["namespace"], "ci");
    let ok = gw.exchange("acme+ci", &issuer.token(&base())).await;
    assert_eq!(ok.status, 200, "the plain nested claim: {}", ok.text);

    // The real namespace is `prod`; a flat claim says `ci`.
    let mut smuggled = base();
    smuggled["kubernetes.io"]["namespace"] = json!("prod");
    smuggled["kubernetes.io.namespace"] = json!("ci");
    let reply = gw.exchange("acme+ci", &issuer.token(&smuggled)).await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert_eq!(reply.json()["error_code"], "claim_mismatch");
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("more than one way"),
        "{}",
        reply.text
    );
    // Also when both readings agree: the path is ambiguous either way.
    let mut both = base();
    both["kubernetes.io.namespace"] = json!("ci");
    let reply = gw.exchange("acme+ci", &issuer.token(&both)).await;
    assert_eq!(reply.json()["error_code"], "claim_mismatch");

    // A JSON Pointer names exactly one claim, and the flat claim cannot stand in for it.
    let pointer = json!([{"issuer": issuer.url, "subject": "system:serviceaccount:ci:*",
                          "audiences": ["https://registry.example.com"],
                          "conditions": {"/kubernetes.io/namespace": "ci"}}]);
    let set = gw
        .call(
            "POST",
            "/api/v1/organization/acme/robots/ci/federation",
            Some(&admin),
            Some(pointer),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text);
    let reply = gw.exchange("acme+ci", &issuer.token(&smuggled)).await;
    assert_eq!(
        reply.json()["error_code"],
        "claim_mismatch",
        "{}",
        reply.text
    );
    let reply = gw.exchange("acme+ci", &issuer.token(&base())).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}
