//! Issue 12, item 10: `/v2/auth` bounds what one request may ask for, and how many failed
//! logins one address may try.

use std::net::IpAddr;

use fedgate::api::registry_auth::MAX_SCOPES;
use serde_json::json;

use crate::harness::issuer::Issuer;
use crate::harness::{Gateway, Reply, send};

fn client_from(source: &str) -> reqwest::Client {
    let ip: IpAddr = source.parse().unwrap();
    reqwest::Client::builder()
        .local_address(ip)
        .build()
        .unwrap()
}

fn github_entry(issuer: &Issuer) -> serde_json::Value {
    json!([{"issuer": issuer.url, "subject": "repo:octo-org/octo-repo:*",
            "audiences": ["https://github.com/octo-org"]}])
}

/// Robot `acme+writer` with write on `acme/app`, federated with `issuer`; returns its robot
/// token.
async fn registry_robot(gw: &Gateway, issuer: &Issuer) -> String {
    let admin = gw
        .federated_robot("acme", "writer", github_entry(issuer))
        .await;
    let grant = gw
        .call(
            "PUT",
            "/api/v1/repository/acme/app/permissions/user/acme+writer",
            Some(&admin),
            Some(json!({"role": "write"})),
        )
        .await;
    assert_eq!(grant.status, 200, "{}", grant.text);
    let robot = gw
        .call(
            "GET",
            "/api/v1/organization/acme/robots/writer",
            Some(&admin),
            None,
        )
        .await;
    robot.json()["token"].as_str().unwrap().to_string()
}

async fn v2_auth(client: &reqwest::Client, gw: &Gateway, password: &str, query: &str) -> Reply {
    send(
        client
            .get(format!("{}/v2/auth?{query}", gw.url))
            .basic_auth("acme+writer", Some(password)),
    )
    .await
}

/// Item 10: one `/v2/auth` request cannot ask for thousands of scopes (1,500 fit in the
/// 64 KiB a request head may hold) (each a database read,
/// and a token that grows with them).
#[tokio::test]
async fn registry_token_requests_carry_a_bounded_number_of_scopes() {
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting_on_a_manual_clock(&issuer).await;
    let password = registry_robot(&gw, &issuer).await;
    let client = reqwest::Client::new();
    let scopes = |n: usize| {
        (0..n)
            .map(|i| format!("scope=repository:acme/a{i}:pull"))
            .collect::<Vec<_>>()
            .join("&")
    };
    let reply = v2_auth(&client, &gw, &password, &scopes(1_500)).await;
    assert_eq!(reply.status, 400, "{:.300}", reply.text);
    assert_eq!(reply.json()["errors"][0]["code"], "DENIED");
    assert!(reply.text.len() < 1000, "{:.300}", reply.text);

    let few = format!("scope=repository:acme/app:pull,push&{}", scopes(10));
    let reply = v2_auth(&client, &gw, &password, &few).await;
    assert_eq!(reply.status, 200, "{}", reply.text);

    // The bound is MAX_SCOPES exactly: 32 scopes are served, 33 are not.
    let reply = v2_auth(&client, &gw, &password, &scopes(MAX_SCOPES)).await;
    assert_eq!(reply.status, 200, "{:.300}", reply.text);
    let reply = v2_auth(&client, &gw, &password, &scopes(MAX_SCOPES + 1)).await;
    assert_eq!(reply.status, 400, "{:.300}", reply.text);
    assert!(reply.text.contains("at most 32 scopes"), "{}", reply.text);
}

/// Item 10: failed registry logins are limited per client address, like failed exchanges;
/// another address logs in all the same.
#[tokio::test]
async fn failed_registry_logins_are_limited_per_address() {
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting_on_a_manual_clock(&issuer).await;
    let password = registry_robot(&gw, &issuer).await;
    let guesser = client_from("127.0.0.2");
    let query = "scope=repository:acme/app:pull";
    let mut statuses = Vec::new();
    for i in 0..70 {
        statuses.push(
            v2_auth(&guesser, &gw, &format!("guess-{i}"), query)
                .await
                .status,
        );
    }
    let refused = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(refused, 60, "{statuses:?}");
    let limited = v2_auth(&guesser, &gw, &password, query).await;
    assert_eq!(limited.status, 429, "{}", limited.text);
    assert!(limited.headers.contains_key("retry-after"));
    assert_eq!(limited.json()["errors"][0]["code"], "TOOMANYREQUESTS");

    let other = v2_auth(&client_from("127.0.0.3"), &gw, &password, query).await;
    assert_eq!(other.status, 200, "{}", other.text);
}
