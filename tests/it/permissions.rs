//! Repository permissions (SPEC section 5) and the bad-input rules of the whole admin API:
//! every malformed request gets a clear 4xx and leaves the database as it was.

use serde_json::json;

use crate::harness::{Backend, Gateway};
use crate::on_both_databases;

async fn grant_read_change_and_revoke(backend: Backend) {
    let gw = Gateway::start(backend).await;
    let alice = gw.admin("alice").await;
    let token = Some(alice.as_str());
    gw.call("PUT", "/api/v1/user/robots/ci", token, None).await;
    gw.call("PUT", "/api/v1/user/robots/web", token, None).await;
    let path = "/api/v1/repository/alice/app/permissions/user/alice+ci";

    let put = gw
        .call("PUT", path, token, Some(json!({"role": "read"})))
        .await;
    assert_eq!(put.status, 200);
    assert_eq!(
        put.json(),
        json!({"role": "read", "name": "alice+ci", "is_robot": true})
    );
    let changed = gw
        .call("PUT", path, token, Some(json!({"role": "write"})))
        .await;
    assert_eq!(changed.json()["role"], "write");
    assert_eq!(
        gw.call("GET", path, token, None).await.json()["role"],
        "write"
    );
    gw.call(
        "PUT",
        "/api/v1/repository/alice/app/permissions/user/alice+web",
        token,
        Some(json!({"role": "admin"})),
    )
    .await;

    // `%2B` is the same name as `+`.
    let encoded = gw
        .call(
            "GET",
            "/api/v1/repository/alice/app/permissions/user/alice%2Bci",
            token,
            None,
        )
        .await;
    assert_eq!(encoded.json()["role"], "write");

    let listed = gw
        .call(
            "GET",
            "/api/v1/repository/alice/app/permissions/user/",
            token,
            None,
        )
        .await;
    assert_eq!(
        listed.json(),
        json!({"permissions": {
            "alice+ci": {"role": "write", "name": "alice+ci", "is_robot": true},
            "alice+web": {"role": "admin", "name": "alice+web", "is_robot": true},
        }})
    );

    let deleted = gw.call("DELETE", path, token, None).await;
    assert_eq!((deleted.status, deleted.text.as_str()), (204, ""));
    assert_eq!(gw.call("GET", path, token, None).await.status, 404);
    let listed = gw
        .call(
            "GET",
            "/api/v1/repository/alice/app/permissions/user/",
            token,
            None,
        )
        .await
        .json();
    assert_eq!(listed["permissions"].as_object().unwrap().len(), 1);
}

async fn bad_permission_requests_are_400(backend: Backend) {
    let gw = Gateway::start(backend).await;
    let alice = gw.admin("alice").await;
    let token = Some(alice.as_str());
    gw.call("PUT", "/api/v1/user/robots/ci", token, None).await;
    let base = "/api/v1/repository/alice";
    for (path, body, needle) in [
        (
            "/app/permissions/user/alice+ci",
            json!({"role": "owner"}),
            "Invalid role",
        ),
        (
            "/app/permissions/user/alice+ci",
            json!({"role": 3}),
            "Invalid JSON body",
        ),
        (
            "/app/permissions/user/alice+ci",
            json!({}),
            "missing field `role`",
        ),
        (
            "/app/permissions/user/alice",
            json!({"role": "read"}),
            "not a robot account",
        ),
        (
            "/app/permissions/user/bob+ci",
            json!({"role": "read"}),
            "own namespace",
        ),
        (
            "/App/permissions/user/alice+ci",
            json!({"role": "read"}),
            "Repository name",
        ),
        (
            "/app/permissions/user/alice+C",
            json!({"role": "read"}),
            "Robot name",
        ),
    ] {
        let reply = gw
            .call("PUT", &format!("{base}{path}"), token, Some(body.clone()))
            .await;
        assert_eq!(reply.status, 400, "{path} {body}: {}", reply.text);
        assert_eq!(reply.json()["error_type"], "invalid_request");
        assert!(
            reply.message().contains(needle),
            "{path} {body}: {}",
            reply.message()
        );
    }
    let no_body = gw
        .call_raw(
            "PUT",
            &format!("{base}/app/permissions/user/alice+ci"),
            &alice,
            Vec::new(),
        )
        .await;
    assert_eq!(no_body.status, 400);
    assert!(no_body.message().contains("JSON request body is required"));
    let grants = gw
        .call("GET", "/api/v1/user/robots/ci/permissions", token, None)
        .await
        .json();
    assert_eq!(grants, json!({"permissions": []}), "nothing was granted");
}

async fn bad_robot_requests_are_4xx_and_change_nothing(backend: Backend) {
    let gw = Gateway::start_with(backend, |c| c.server.max_body_bytes = 4096).await;
    let alice = gw.admin("alice").await;
    let path = "/api/v1/user/robots/ci";
    let long_description = "d".repeat(256);
    let big_metadata = json!({"unstructured_metadata": {"blob": "x".repeat(70 * 1024)}});
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{not json".to_vec(), 400, "Invalid JSON body"),
        (b"[1, 2]".to_vec(), 400, "Invalid JSON body"),
        (br#"{"description": 5}"#.to_vec(), 400, "Invalid JSON body"),
        (
            br#"{"unstructured_metadata": [1]}"#.to_vec(),
            400,
            "Invalid JSON body",
        ),
        (
            br#"{"unstructured_metadata": "x"}"#.to_vec(),
            400,
            "Invalid JSON body",
        ),
        (
            json!({"description": long_description})
                .to_string()
                .into_bytes(),
            400,
            "at most 255",
        ),
        (b"\xff\xfe{}".to_vec(), 400, "Invalid JSON body"),
        (big_metadata.to_string().into_bytes(), 413, "larger than"),
    ];
    for (body, status, needle) in cases {
        let reply = gw.call_raw("PUT", path, &alice, body.clone()).await;
        assert_eq!(
            reply.status,
            status,
            "{}: {}",
            String::from_utf8_lossy(&body[..body.len().min(40)]),
            reply.text
        );
        assert!(reply.message().contains(needle), "{}", reply.message());
    }
    assert_eq!(gw.robot_count("alice").await, 0, "no robot was created");

    // Metadata within the body limit but over its own 64 KiB cap.
    let gw_big = Gateway::start_with(backend, |_| {}).await;
    let bob = gw_big.admin("bob").await;
    let reply = gw_big
        .call_raw(
            "PUT",
            "/api/v1/user/robots/ci",
            &bob,
            big_metadata.to_string().into_bytes(),
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert!(reply.message().contains("64"), "{}", reply.message());
    assert_eq!(gw_big.robot_count("bob").await, 0);

    // Unicode descriptions count characters, not bytes.
    let unicode = json!({"description": "é".repeat(255)});
    let reply = gw.call("PUT", path, Some(&alice), Some(unicode)).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
}

async fn bad_names_and_queries_are_400(backend: Backend) {
    let gw = Gateway::start(backend).await;
    let alice = gw.admin("alice").await;
    let token = Some(alice.as_str());
    let long = "a".repeat(256);
    let long_path = format!("/api/v1/user/robots/{long}");
    for (method, path, needle) in [
        ("PUT", "/api/v1/user/robots/a", "2 to 255"),
        ("PUT", long_path.as_str(), "2 to 255"),
        ("PUT", "/api/v1/user/robots/Upper", "lowercase"),
        ("PUT", "/api/v1/user/robots/foo+bar", "lowercase"),
        ("PUT", "/api/v1/user/robots/foo%2Bbar", "lowercase"),
        ("PUT", "/api/v1/user/robots/-lead", "start and end"),
        ("PUT", "/api/v1/user/robots/a..b", "two separators"),
        ("PUT", "/api/v1/user/robots/%FF%FE", "Invalid path"),
        ("GET", "/api/v1/user/robots/foo+bar", "lowercase"),
        ("DELETE", "/api/v1/user/robots/foo+bar", "lowercase"),
        ("GET", "/api/v1/user/robots?limit=abc", "limit"),
        ("GET", "/api/v1/user/robots?limit=-1", "limit"),
        ("GET", "/api/v1/user/robots?limit=%FF", "limit"),
    ] {
        let reply = gw.call(method, path, token, None).await;
        assert_eq!(reply.status, 400, "{method} {path}: {}", reply.text);
        assert!(
            reply.message().contains(needle),
            "{method} {path}: {}",
            reply.message()
        );
    }
    // The full name (namespace + short) is bounded too.
    let gw2 = Gateway::start(backend).await;
    let long_user = "u".repeat(200);
    let token = gw2.admin(&long_user).await;
    let reply = gw2
        .call(
            "PUT",
            &format!("/api/v1/user/robots/{}", "r".repeat(60)),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.message().contains("at most 255"),
        "{}",
        reply.message()
    );
    assert_eq!(gw.robot_count("alice").await, 0);
    assert_eq!(gw2.robot_count(&long_user).await, 0);
}

on_both_databases!(
    grant_read_change_and_revoke,
    bad_permission_requests_are_400,
    bad_robot_requests_are_4xx_and_change_nothing,
    bad_names_and_queries_are_400,
);
