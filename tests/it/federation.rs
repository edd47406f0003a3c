//! Federation entries (SPEC 6): validation, messages, limits, and who may change them.

use fedgate::http::auth::Scope;
use fedgate::store::OrgRole;
use serde_json::json;

use crate::harness::{Backend, Gateway};
use crate::on_both_databases;

const GITHUB: &str = "https://token.actions.githubusercontent.com";

async fn entries_round_trip_and_replace_the_whole_list(backend: Backend) {
    let gw = Gateway::start(backend).await;
    let token = gw.federated_robot("acme", "ci", json!([])).await;
    let path = "/api/v1/organization/acme/robots/ci/federation";
    assert_eq!(
        gw.call("GET", path, Some(&token), None).await.json(),
        json!([])
    );

    let entries = json!([
        {"issuer": GITHUB, "subject": "repo:acme/app:ref:refs/heads/main",
         "audiences": ["https://registry.example.com"],
         "conditions": {"repository_owner_id": "123456", "event_name": "push"},
         "ignored_key": true},
        {"issuer": "https://gitlab.example.com", "subject": "project_path:acme/*"},
    ]);
    let set = gw.call("POST", path, Some(&token), Some(entries)).await;
    assert_eq!(set.status, 200, "{}", set.text);
    let expected = json!([
        {"issuer": GITHUB, "subject": "repo:acme/app:ref:refs/heads/main",
         "audiences": ["https://registry.example.com"],
         "conditions": {"event_name": "push", "repository_owner_id": "123456"}},
        {"issuer": "https://gitlab.example.com", "subject": "project_path:acme/*",
         "audiences": [], "conditions": {}},
    ]);
    assert_eq!(
        set.json(),
        expected,
        "unknown keys dropped, defaults filled"
    );
    assert_eq!(
        gw.call("GET", path, Some(&token), None).await.json(),
        expected
    );

    let replaced = gw
        .call(
            "POST",
            path,
            Some(&token),
            Some(json!([{"issuer": GITHUB, "subject": "x"}])),
        )
        .await;
    assert_eq!(
        replaced.json().as_array().unwrap().len(),
        1,
        "POST replaces, not appends"
    );
    assert_eq!(
        gw.call("POST", path, Some(&token), Some(json!([])))
            .await
            .json(),
        json!([])
    );
    gw.call(
        "POST",
        path,
        Some(&token),
        Some(json!([{"issuer": GITHUB, "subject": "x"}])),
    )
    .await;
    let deleted = gw.call("DELETE", path, Some(&token), None).await;
    assert_eq!((deleted.status, deleted.text.as_str()), (204, ""));
    assert_eq!(
        gw.call("GET", path, Some(&token), None).await.json(),
        json!([])
    );

    // User robots have federation too.
    let alice = gw.admin("alice").await;
    gw.call("PUT", "/api/v1/user/robots/mine", Some(&alice), None)
        .await;
    let user_set = gw
        .call(
            "POST",
            "/api/v1/user/robots/mine/federation",
            Some(&alice),
            Some(json!([{"issuer": GITHUB, "subject": "repo:alice/*"}])),
        )
        .await;
    assert_eq!(user_set.status, 200, "{}", user_set.text);
}

async fn invalid_entries_are_refused_with_spec_messages(backend: Backend) {
    let gw = Gateway::start_with(backend, |c| {
        c.federation.allowed_issuers =
            vec![GITHUB.to_string(), "https://*.example.com".to_string()];
    })
    .await;
    let token = gw
        .federated_robot("acme", "ci", json!([{"issuer": GITHUB, "subject": "keep"}]))
        .await;
    let path = "/api/v1/organization/acme/robots/ci/federation";
    let too_many: Vec<_> = (0..51)
        .map(|i| json!({"issuer": GITHUB, "subject": format!("s{i}")}))
        .collect();
    // Fifty entries of 1.5 KiB each: every field within its own limit, the list over 64 KiB.
    let big_list: Vec<_> = (0..50)
        .map(|i| {
            json!({"issuer": GITHUB, "subject": format!("{i}{}", "s".repeat(1000)),
                        "audiences": ["a".repeat(500)]})
        })
        .collect();
    let fifty: Vec<_> = (0..50)
        .map(|i| json!({"issuer": GITHUB, "subject": format!("s{i}")}))
        .collect();
    for (body, needle) in [
        (
            json!([{"issuer": GITHUB}]),
            "Missing one or more required fields (issuer, subject)",
        ),
        (
            json!([{"subject": "x"}]),
            "Missing one or more required fields (issuer, subject)",
        ),
        (
            json!([{"issuer": "", "subject": "x"}]),
            "Missing one or more required fields (issuer, subject)",
        ),
        (
            json!([{}]),
            "Missing one or more required fields (issuer, subject)",
        ),
        (
            json!(["not an object"]),
            "Missing one or more required fields (issuer, subject)",
        ),
        (
            json!([{"issuer": "token.actions.githubusercontent.com", "subject": "x"}]),
            "Issuer must be a URL (http:// or https://)",
        ),
        (
            json!([{"issuer": "http://ci.example.com", "subject": "x"}]),
            "must use https://",
        ),
        (
            json!([{"issuer": "https://ci.example.com?x=1", "subject": "x"}]),
            "query, fragment or user info",
        ),
        (
            json!([{"issuer": "https://evil.example.org", "subject": "x"}]),
            "Issuer is not allowed by this gateway",
        ),
        (
            json!([{"issuer": GITHUB, "subject": "x"}, {"issuer": format!("{GITHUB}/"), "subject": "x"}]),
            "Duplicate federation config entry",
        ),
        (
            json!([{"issuer": GITHUB, "subject": 5}]),
            "subject must be a string",
        ),
        (
            json!([{"issuer": GITHUB, "subject": "x", "audiences": "aud"}]),
            "audiences must be a list",
        ),
        (
            json!([{"issuer": GITHUB, "subject": "x", "conditions": {"ref": 1}}]),
            "conditions must map",
        ),
        (json!({"issuer": GITHUB, "subject": "x"}), "JSON array"),
        (json!(too_many), "At most 50"),
        // Sizes count bytes: 600 three-byte characters are 1,800 bytes.
        (
            json!([{"issuer": GITHUB, "subject": "€".repeat(600)}]),
            "subject may be at most 1024 bytes",
        ),
        (
            json!([{"issuer": GITHUB, "subject": "x", "conditions": {"c".repeat(129): "v"}}]),
            "condition names must be 1 to 128 bytes",
        ),
        (
            json!([{"issuer": GITHUB, "subject": "x", "conditions": {"/a~2b": "v"}}]),
            "not a JSON Pointer",
        ),
        (
            json!([{"issuer": GITHUB, "subject": "x", "audiences": ["a".repeat(513)]}]),
            "at most 512 bytes",
        ),
        (json!(big_list), "at most 64 KiB as JSON"),
    ] {
        let reply = gw
            .call("POST", path, Some(&token), Some(body.clone()))
            .await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        assert!(
            reply.message().contains(needle),
            "{body}: {}",
            reply.message()
        );
    }
    let kept = gw.call("GET", path, Some(&token), None).await.json();
    assert_eq!(
        kept[0]["subject"], "keep",
        "a refused POST leaves the list as it was"
    );
    let ok = gw
        .call("POST", path, Some(&token), Some(json!(fifty)))
        .await;
    assert_eq!(ok.status, 200, "50 entries are allowed");
    let wildcard = gw
        .call(
            "POST",
            path,
            Some(&token),
            Some(json!([{"issuer": "https://ci.example.com", "subject": "x"}])),
        )
        .await;
    assert_eq!(
        wildcard.status, 200,
        "allowed_issuers pattern: {}",
        wildcard.text
    );
}

async fn only_admins_touch_federation(backend: Backend) {
    let gw = Gateway::start(backend).await;
    gw.federated_robot("acme", "ci", json!([{"issuer": GITHUB, "subject": "x"}]))
        .await;
    gw.user("bob").await;
    gw.member("acme", "bob", OrgRole::Member).await;
    let bob = gw.token("bob", &Scope::ALL).await;
    let outsider = gw.admin("mallory").await;
    let path = "/api/v1/organization/acme/robots/ci/federation";
    for token in [&bob, &outsider] {
        for method in ["GET", "POST", "DELETE"] {
            let body = (method == "POST").then(|| json!([{"issuer": GITHUB, "subject": "*"}]));
            let reply = gw.call(method, path, Some(token), body).await;
            assert_eq!(reply.status, 403, "{method}");
        }
    }
    assert_eq!(gw.call("GET", path, None, None).await.status, 401);
    let missing = gw
        .call(
            "GET",
            "/api/v1/organization/acme/robots/nosuch/federation",
            Some(&gw.token("acme-admin", &Scope::ALL).await),
            None,
        )
        .await;
    assert_eq!(missing.status, 404);
}

on_both_databases!(
    entries_round_trip_and_replace_the_whole_list,
    invalid_entries_are_refused_with_spec_messages,
    only_admins_touch_federation,
);
