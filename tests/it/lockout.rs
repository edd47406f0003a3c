//! Issue 12, item 1: nobody without an identity the robot trusts can use up its quota, and
//! behind a trusted proxy each client is counted by its own address.

use std::net::IpAddr;
use std::sync::Arc;

use fedgate::clock::{Clock, ManualClock, SystemClock};
use serde_json::json;

use crate::harness::issuer::Issuer;
use crate::harness::{Backend, Gateway, Reply, send};

fn now() -> i64 {
    SystemClock.unix()
}

/// A client whose connections come from `source` (127.0.0.2 and up are distinct addresses).
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

async fn exchange(client: &reqwest::Client, gw: &Gateway, robot: &str, jwt: &str) -> Reply {
    send(
        client
            .get(format!("{}/oauth2/federation/robot/token", gw.url))
            .basic_auth(robot, Some(jwt)),
    )
    .await
}

/// The attack: 10 addresses x 60 `Basic acme+ci:garbage` in a burst, with the
/// default limits. A genuine token from a new address must still be exchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_many_addresses_does_not_lock_a_robot_out() {
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting_on_a_manual_clock(&issuer).await;
    gw.federated_robot("acme", "ci", github_entry(&issuer))
        .await;
    let per_ip = gw.config.limits.failed_exchanges_per_minute_per_ip;
    let per_robot = gw.config.limits.exchanges_per_minute_per_robot;
    assert!(
        10 * per_ip >= per_robot,
        "the flood reaches the robot's quota"
    );

    let mut flood = tokio::task::JoinSet::new();
    for source in 2..12 {
        let client = client_from(&format!("127.0.0.{source}"));
        let url = format!("{}/oauth2/federation/robot/token", gw.url);
        flood.spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..per_ip + 5 {
                let reply = send(client.get(&url).basic_auth("acme+ci", Some("garbage"))).await;
                statuses.push(reply.status);
            }
            statuses
        });
    }
    for statuses in flood.join_all().await {
        let refused = statuses.iter().filter(|s| **s == 401).count();
        let limited = statuses.iter().filter(|s| **s == 429).count();
        assert_eq!(
            (refused, limited),
            (per_ip as usize, 5),
            "each address is limited on its own: {statuses:?}"
        );
    }

    let genuine = issuer.token(&issuer.claims("github-actions", now()));
    let reply = exchange(&client_from("127.0.0.12"), &gw, "acme+ci", &genuine).await;
    assert_eq!(
        reply.status, 200,
        "a genuine exchange during the flood: {}",
        reply.text
    );
}

async fn exchange_via(
    client: &reqwest::Client,
    gw: &Gateway,
    forwarded_for: &str,
    jwt: &str,
) -> u16 {
    send(
        client
            .get(format!("{}/oauth2/federation/robot/token", gw.url))
            .header("x-forwarded-for", forwarded_for)
            .basic_auth("acme+ci", Some(jwt)),
    )
    .await
    .status
}

/// Behind a load balancer (127.0.0.1, listed in `server.trusted_proxies`) the client is the
/// address the balancer appends to X-Forwarded-For: one client's failures do not limit the
/// others. Anyone else's X-Forwarded-For is ignored, and so is what a client writes to the
/// left of the balancer's entry.
#[tokio::test]
async fn behind_a_trusted_proxy_each_client_is_limited_on_its_own() {
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting(
        Backend::Sqlite,
        &issuer,
        Arc::new(ManualClock::at(SystemClock.unix())),
        |c| {
            c.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
            c.limits.failed_exchanges_per_minute_per_ip = 5;
        },
    )
    .await;
    gw.federated_robot("acme", "ci", github_entry(&issuer))
        .await;
    let balancer = client_from("127.0.0.1");
    let genuine = || issuer.token(&issuer.claims("github-actions", now()));

    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(exchange_via(&balancer, &gw, "203.0.113.7", "garbage").await);
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
    assert_eq!(
        exchange_via(&balancer, &gw, "203.0.113.8", &genuine()).await,
        200,
        "another client behind the same balancer"
    );
    assert_eq!(
        exchange_via(&balancer, &gw, "203.0.113.99, 203.0.113.7", &genuine()).await,
        429,
        "a forged address left of the balancer's entry does not help"
    );

    // Not a trusted proxy: its header is ignored, its own address is limited.
    let direct = client_from("127.0.0.2");
    let mut statuses = Vec::new();
    for i in 0..6 {
        statuses.push(exchange_via(&direct, &gw, &format!("198.51.100.{i}"), "garbage").await);
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
}
