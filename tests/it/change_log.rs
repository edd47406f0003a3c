//! The change log every replica follows (issue 12, item 11), on both databases: each change to
//! a robot's cached state is numbered in commit order, only committed changes are recorded,
//! and purging keeps the latest.

use std::sync::Arc;

use fedgate::clock::{Clock, SystemClock};
use serde_json::json;

use crate::harness::issuer::Issuer;
use crate::harness::{Backend, Gateway};
use crate::on_both_databases;

fn now() -> i64 {
    SystemClock.unix()
}

async fn changes_are_numbered_in_commit_order(backend: Backend) {
    let gw = Gateway::start(backend).await;
    let token = gw
        .federated_robot(
            "acme",
            "ci",
            json!([{"issuer": "https://i.example", "subject": "s"}]),
        )
        .await;
    let store = gw.store();
    let start = store.latest_change().await.unwrap();
    let robot = "/api/v1/organization/acme/robots";
    for (method, path, body) in [
        ("POST", format!("{robot}/ci/federation"), Some(json!([]))),
        ("POST", format!("{robot}/ci/regenerate"), None),
        ("PUT", format!("{robot}/other"), None),
        ("DELETE", format!("{robot}/ci"), None),
        ("DELETE", format!("{robot}/ci"), None), // 404: nothing changes
        (
            "POST",
            format!("{robot}/nosuch/federation"),
            Some(json!([])),
        ),
    ] {
        gw.call(method, &path, Some(&token), body).await;
    }
    let changes = store.changes_since(start, 100).await.unwrap();
    let names: Vec<&str> = changes.iter().map(|(_, robot)| robot.as_str()).collect();
    assert_eq!(names, ["acme+ci", "acme+ci", "acme+ci"], "{changes:?}");
    let numbers: Vec<i64> = changes.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, [start + 1, start + 2, start + 3]);
    assert_eq!(store.latest_change().await.unwrap(), start + 3);

    assert_eq!(store.purge_changes(1).await.unwrap(), 2 + start as u64);
    let kept = store.changes_since(0, 100).await.unwrap();
    assert_eq!(kept, [(start + 3, "acme+ci".to_string())]);
}

on_both_databases!(changes_are_numbered_in_commit_order);

/// A replica that finds a gap in the change log (changes purged before it read them) cannot
/// tell which robots they were about, so it drops its whole robot cache, not only the robots
/// of the changes it can read. Here the log loses `acme+ci`'s change at once (a trigger
/// deletes its row in the transaction that writes it, as a purge past this replica would),
/// and the store is changed directly, as another replica whose Redis notice was lost does;
/// then another robot's change follows the gap.
#[tokio::test]
async fn a_gap_in_the_change_log_drops_the_whole_robot_cache() {
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting(Backend::Sqlite, &issuer, Arc::new(SystemClock), |_| {}).await;
    let entry = json!([{"issuer": issuer.url, "subject": "repo:octo-org/octo-repo:*",
                        "audiences": ["https://github.com/octo-org"]}]);
    let admin = gw.federated_robot("acme", "ci", entry).await;
    let other = gw
        .call(
            "PUT",
            "/api/v1/organization/acme/robots/other",
            Some(&admin),
            None,
        )
        .await;
    assert!((200..300).contains(&other.status), "{}", other.text);
    let exchange = async || {
        gw.exchange(
            "acme+ci",
            &issuer.token(&issuer.claims("github-actions", now())),
        )
        .await
    };
    gw.caught_up().await;
    assert_eq!(exchange().await.status, 200, "the robot is cached now");

    let pool = gw.database().await;
    sqlx::query(
        "CREATE TRIGGER lost AFTER INSERT ON robot_changes WHEN NEW.robot = 'acme+ci' \
         BEGIN DELETE FROM robot_changes WHERE generation = NEW.generation; END",
    )
    .execute(&pool)
    .await
    .unwrap();
    let robot = gw.store().robot("acme", "ci").await.unwrap().unwrap();
    gw.store()
        .replace_federation(robot.id, &[], robot.revision + 1)
        .await
        .unwrap();
    sqlx::query("DROP TRIGGER lost")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let other = gw
        .call(
            "POST",
            "/api/v1/organization/acme/robots/other/regenerate",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(other.status, 200, "{}", other.text);

    gw.caught_up().await;
    let reply = exchange().await;
    assert_eq!(
        reply.json()["error_code"],
        "no_federation",
        "the replica still serves acme+ci's purged change from its cache: {}",
        reply.text
    );
}
