//! Issue 19, item 2: an exchange whose replay record cannot be written is refused (503), never
//! accepted. Everything the exchange needs before the replay check works (the per-address
//! limit, the robot, the issuer's keys: all warm), and only the replay store fails, so the 503
//! can come from nowhere but the replay check.

use std::sync::Arc;

use fedgate::clock::{Clock, SystemClock};
use serde_json::json;

use crate::harness::issuer::Issuer;
use crate::harness::redis::RedisServer;
use crate::harness::{Backend, Gateway};

fn entry(issuer: &Issuer) -> serde_json::Value {
    json!([{"issuer": issuer.url, "subject": "repo:octo-org/octo-repo:*",
            "audiences": ["https://github.com/octo-org"]}])
}

/// PostgreSQL without Redis: replay records in the database. The table is hidden once robot
/// and keys are cached (the rate limits live in memory). One SQLite node journals its records
/// instead; a journal that cannot write is `replay_ledger`'s unit test
/// `a_record_the_journal_cannot_write_is_an_error_and_not_kept`.
#[tokio::test]
async fn a_replay_record_the_database_cannot_write_fails_closed() {
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting(Backend::Postgres, &issuer, Arc::new(SystemClock), |_| {}).await;
    gw.federated_robot("acme", "ci", entry(&issuer)).await;
    let token = || issuer.token(&issuer.claims("github-actions", SystemClock.unix()));
    gw.caught_up().await;
    assert_eq!(gw.exchange("acme+ci", &token()).await.status, 200, "warm");

    let pool = gw.database().await;
    let rename = async |from: &str, to: &str| {
        sqlx::query(&format!("ALTER TABLE {from} RENAME TO {to}"))
            .execute(&pool)
            .await
            .unwrap();
    };
    rename("replay_records", "hidden_replay_records").await;
    let reply = gw.exchange("acme+ci", &token()).await;
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert_eq!(reply.headers["retry-after"], "1");
    assert!(!reply.text.contains("\"token\""), "{}", reply.text);

    rename("hidden_replay_records", "replay_records").await;
    let reply = gw.exchange("acme+ci", &token()).await;
    assert_eq!(reply.status, 200, "back with the table: {}", reply.text);
    pool.close().await;
}

/// Replicas: replay records and rate limits both in Redis. Redis's ACL takes the replay keys
/// away from fedgate's user while the rate-limit keys stay readable and writable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_record_redis_refuses_fails_closed() {
    let issuer = Issuer::rsa().await;
    let redis = RedisServer::start();
    let url = redis.url();
    let gw = Gateway::trusting(Backend::Sqlite, &issuer, Arc::new(SystemClock), |c| {
        c.storage.redis_url = url.clone();
    })
    .await;
    gw.federated_robot("acme", "ci", entry(&issuer)).await;
    let token = || issuer.token(&issuer.claims("github-actions", SystemClock.unix()));
    gw.caught_up().await;
    assert_eq!(gw.exchange("acme+ci", &token()).await.status, 200, "warm");

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys = async |conn: &mut redis::aio::MultiplexedConnection, pattern: &str| {
        redis::cmd("ACL")
            .arg(&["SETUSER", "default", "resetkeys", pattern])
            .query_async::<()>(conn)
            .await
            .unwrap();
    };
    keys(&mut conn, "~fedgate:limit:*").await;
    let limits_before: Vec<String> = redis::cmd("KEYS")
        .arg("fedgate:limit:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let reply = gw.exchange("acme+ci", &token()).await;
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert!(!reply.text.contains("\"token\""), "{}", reply.text);
    // The rate-limit keys were reachable: the robot's quota was checked in Redis, not failed.
    assert!(
        limits_before.iter().any(|k| k.contains(":robot:acme+ci:")),
        "{limits_before:?}"
    );

    keys(&mut conn, "~*").await;
    let reply = gw.exchange("acme+ci", &token()).await;
    assert_eq!(reply.status, 200, "back with the keys: {}", reply.text);
}
