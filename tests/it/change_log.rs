//! The change log every replica follows (issue 12, item 11), on both databases: each change to
//! a robot's cached state is numbered in commit order, only committed changes are recorded,
//! and purging keeps the latest.

use serde_json::json;

use crate::harness::{Backend, Gateway};
use crate::on_both_databases;

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
