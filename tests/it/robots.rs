//! The robot API (SPEC section 4) as a Quay client sees it.

use serde_json::json;

use crate::harness::{Backend, Gateway};
use crate::on_both_databases;

const RFC2822_SUFFIX: &str = " -0000";

fn assert_quay_date(value: &serde_json::Value) {
    let date = value
        .as_str()
        .unwrap_or_else(|| panic!("not a date: {value}"));
    assert!(date.ends_with(RFC2822_SUFFIX) && date.len() == 31, "{date}");
}

async fn user_robot_lifecycle(backend: Backend) {
    let gw = Gateway::start(backend).await;
    let alice = gw.admin("alice").await;
    let token = Some(alice.as_str());

    let created = gw
        .call(
            "PUT",
            "/api/v1/user/robots/builder",
            token,
            Some(
                json!({"description": "builds things", "unstructured_metadata": {"team": "infra"}}),
            ),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let robot = created.json();
    assert_eq!(robot["name"], "alice+builder");
    assert_eq!(robot["description"], "builds things");
    assert_eq!(robot["unstructured_metadata"], json!({"team": "infra"}));
    assert_eq!(robot["last_accessed"], serde_json::Value::Null);
    assert_quay_date(&robot["created"]);
    let robot_token = robot["token"].as_str().unwrap().to_string();
    assert!(
        robot_token.starts_with("fgr_") && robot_token.len() >= 50,
        "{robot_token}"
    );

    let fetched = gw
        .call("GET", "/api/v1/user/robots/builder", token, None)
        .await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.json(), robot, "GET shows what PUT returned");

    let listed = gw
        .call("GET", "/api/v1/user/robots", token, None)
        .await
        .json();
    let entry = &listed["robots"][0];
    assert_eq!(entry["name"], "alice+builder");
    assert_eq!(
        entry["token"],
        robot_token.as_str(),
        "token listed by default"
    );
    assert!(entry.get("unstructured_metadata").is_none());
    assert!(entry.get("teams").is_none() && entry.get("repositories").is_none());

    let regenerated = gw
        .call(
            "POST",
            "/api/v1/user/robots/builder/regenerate",
            token,
            None,
        )
        .await;
    assert_eq!(regenerated.status, 200);
    let regenerated = regenerated.json();
    let new_token = regenerated["token"].as_str().unwrap();
    assert_ne!(new_token, robot_token);
    assert!(regenerated.get("unstructured_metadata").is_none());
    assert_eq!(regenerated["description"], "builds things");
    let fetched = gw
        .call("GET", "/api/v1/user/robots/builder", token, None)
        .await
        .json();
    assert_eq!(fetched["token"], new_token);

    let deleted = gw
        .call("DELETE", "/api/v1/user/robots/builder", token, None)
        .await;
    assert_eq!((deleted.status, deleted.text.as_str()), (204, ""));
    let gone = gw
        .call("GET", "/api/v1/user/robots/builder", token, None)
        .await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.json()["error_type"], "not_found");
    assert_eq!(
        gw.call("DELETE", "/api/v1/user/robots/builder", token, None)
            .await
            .status,
        404
    );
    let regen_gone = gw
        .call(
            "POST",
            "/api/v1/user/robots/builder/regenerate",
            token,
            None,
        )
        .await;
    assert_eq!(regen_gone.status, 404);
}

async fn organization_robots_and_list_options(backend: Backend) {
    let gw = Gateway::start(backend).await;
    let alice = gw.admin("alice").await;
    let token = Some(alice.as_str());
    gw.org("acme", "alice").await;
    for name in ["deploy", "build", "ci"] {
        let r = gw
            .call(
                "PUT",
                &format!("/api/v1/organization/acme/robots/{name}"),
                token,
                None,
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(r.json()["description"], "");
        assert_eq!(r.json()["unstructured_metadata"], json!({}));
    }
    let grant = gw
        .call(
            "PUT",
            "/api/v1/repository/acme/app/permissions/user/acme+ci",
            token,
            Some(json!({"role": "write"})),
        )
        .await;
    assert_eq!(grant.status, 200, "{}", grant.text);

    let all = gw
        .call("GET", "/api/v1/organization/acme/robots", token, None)
        .await
        .json();
    let names: Vec<_> = all["robots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].clone())
        .collect();
    assert_eq!(names, ["acme+build", "acme+ci", "acme+deploy"]);

    let limited = gw
        .call(
            "GET",
            "/api/v1/organization/acme/robots?limit=2",
            token,
            None,
        )
        .await
        .json();
    assert_eq!(limited["robots"].as_array().unwrap().len(), 2);
    let zero = gw
        .call(
            "GET",
            "/api/v1/organization/acme/robots?limit=0",
            token,
            None,
        )
        .await
        .json();
    assert_eq!(zero["robots"], json!([]));

    for falsy in ["false", "False", "FALSE", "0", "null", ""] {
        let listed = gw
            .call(
                "GET",
                &format!("/api/v1/organization/acme/robots?token={falsy}"),
                token,
                None,
            )
            .await
            .json();
        assert!(listed["robots"][0].get("token").is_none(), "token={falsy}");
    }

    let with_permissions = gw
        .call(
            "GET",
            "/api/v1/organization/acme/robots?permissions=true&token=false",
            token,
            None,
        )
        .await
        .json();
    let ci = &with_permissions["robots"][1];
    assert_eq!(ci["name"], "acme+ci");
    assert_eq!(ci["repositories"], json!(["app"]));
    assert_eq!(ci["teams"], json!([]));
    assert!(ci.get("token").is_none());
    assert_eq!(with_permissions["robots"][0]["repositories"], json!([]));
}

async fn existing_robot_is_refused(backend: Backend) {
    let gw = Gateway::start(backend).await;
    let alice = gw.admin("alice").await;
    gw.org("acme", "alice").await;
    let path = "/api/v1/organization/acme/robots/ci";
    let first = gw
        .call(
            "PUT",
            path,
            Some(&alice),
            Some(json!({"description": "one"})),
        )
        .await;
    assert_eq!(first.status, 201);
    let second = gw
        .call(
            "PUT",
            path,
            Some(&alice),
            Some(json!({"description": "two"})),
        )
        .await;
    assert_eq!(second.status, 400);
    assert_eq!(second.json()["error_type"], "invalid_request");
    assert_eq!(second.message(), "Existing robot with name: acme+ci");
    let kept = gw.call("GET", path, Some(&alice), None).await.json();
    assert_eq!(kept["description"], "one", "the first robot is untouched");
    assert_eq!(kept["token"], first.json()["token"]);
}

async fn concurrent_creates_make_one_robot(backend: Backend) {
    let gw = Gateway::start(backend).await;
    let alice = gw.admin("alice").await;
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let request = gw
            .client
            .put(format!("{}/api/v1/user/robots/racer", gw.url))
            .bearer_auth(&alice);
        attempts.spawn(crate::harness::send(request));
    }
    let mut statuses: Vec<u16> = attempts.join_all().await.iter().map(|r| r.status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 400, 400, 400, 400, 400, 400, 400]);
    assert_eq!(gw.robot_count("alice").await, 1);
}

async fn robot_permissions_endpoint(backend: Backend) {
    let gw = Gateway::start(backend).await;
    let alice = gw.admin("alice").await;
    gw.org("acme", "alice").await;
    gw.call(
        "PUT",
        "/api/v1/organization/acme/robots/ci",
        Some(&alice),
        None,
    )
    .await;
    for (repo, role) in [("web", "read"), ("app", "admin")] {
        let r = gw
            .call(
                "PUT",
                &format!("/api/v1/repository/acme/{repo}/permissions/user/acme+ci"),
                Some(&alice),
                Some(json!({ "role": role })),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    let perms = gw
        .call(
            "GET",
            "/api/v1/organization/acme/robots/ci/permissions",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(perms.status, 200);
    assert_eq!(
        perms.json(),
        json!({"permissions": [
            {"repository": {"name": "app", "is_public": false}, "role": "admin"},
            {"repository": {"name": "web", "is_public": false}, "role": "read"},
        ]})
    );
    // Deleting the robot deletes its grants: a new robot of the same name starts with none.
    gw.call(
        "DELETE",
        "/api/v1/organization/acme/robots/ci",
        Some(&alice),
        None,
    )
    .await;
    gw.call(
        "PUT",
        "/api/v1/organization/acme/robots/ci",
        Some(&alice),
        None,
    )
    .await;
    let perms = gw
        .call(
            "GET",
            "/api/v1/organization/acme/robots/ci/permissions",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(perms.json(), json!({"permissions": []}));
    let listed = gw
        .call(
            "GET",
            "/api/v1/repository/acme/app/permissions/user/",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(listed.json(), json!({"permissions": {}}));
}

async fn secrets_are_not_stored_in_plain_text(backend: Backend) {
    let gw = Gateway::start(backend).await;
    let alice = gw.admin("alice").await;
    let robot = gw
        .call("PUT", "/api/v1/user/robots/ci", Some(&alice), None)
        .await
        .json();
    let robot_token = robot["token"].as_str().unwrap();
    let pool = gw.database().await;
    let dump = dump_tables(&pool).await;
    assert!(
        !dump.contains(robot_token),
        "robot token stored in plain text"
    );
    assert!(!dump.contains(&alice), "API token stored in plain text");
    assert!(
        !dump.contains(&robot_token[4..20]),
        "part of the robot token is visible"
    );
    pool.close().await;
}

/// Every text column of every table, concatenated.
async fn dump_tables(pool: &sqlx::AnyPool) -> String {
    use sqlx::Row;
    let mut out = String::new();
    for (table, columns) in [
        (
            "robots",
            "namespace, short_name, description, metadata, token_sealed, token_lookup",
        ),
        ("api_tokens", "token_lookup, username, scopes"),
    ] {
        for row in sqlx::query(&format!("SELECT {columns} FROM {table}"))
            .fetch_all(pool)
            .await
            .unwrap()
        {
            for i in 0..row.len() {
                out.push_str(&row.try_get::<String, _>(i).unwrap());
                out.push('\n');
            }
        }
    }
    out
}

on_both_databases!(
    user_robot_lifecycle,
    organization_robots_and_list_options,
    existing_robot_is_refused,
    concurrent_creates_make_one_robot,
    robot_permissions_endpoint,
    secrets_are_not_stored_in_plain_text,
);
