//! The Quay endpoints clients call around robots: who am I (`GET /api/v1/user/`), an
//! organization (`GET /api/v1/organization/{org}`), the entity search, and Quay's message for
//! a robot that does not exist.

use fedgate::http::auth::Scope;
use fedgate::http::error::ROBOT_NOT_FOUND;
use fedgate::store::OrgRole;
use serde_json::json;

use crate::harness::{Backend, Gateway};
use crate::on_both_databases;

/// alice administers acme and is a plain member of globex (run by carol); dave belongs nowhere.
async fn world(backend: Backend) -> (Gateway, String) {
    let gw = Gateway::start(backend).await;
    let alice = gw.admin("alice").await;
    gw.org("acme", "alice").await;
    gw.user("carol").await;
    gw.org("globex", "carol").await;
    gw.member("globex", "alice", OrgRole::Member).await;
    gw.user("dave").await;
    (gw, alice)
}

async fn who_am_i_is_the_tokens_user_with_its_organizations(backend: Backend) {
    let (gw, alice) = world(backend).await;
    let me = gw.call("GET", "/api/v1/user/", Some(&alice), None).await;
    assert_eq!(me.status, 200, "{}", me.text);
    let me = me.json();
    assert_eq!(me["username"], "alice");
    assert_eq!(me["anonymous"], false);
    assert_eq!(me["is_me"], true);
    assert_eq!(me["avatar"]["name"], "alice");
    assert_eq!(me["avatar"]["kind"], "user");
    let orgs: Vec<_> = me["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["name"].clone(), o["is_org_admin"].clone()))
        .collect();
    assert_eq!(
        orgs,
        [
            (json!("acme"), json!(true)),
            (json!("globex"), json!(false))
        ]
    );

    // Any scope will do: the answer is about the token's own user.
    let dave = gw.token("dave", &[Scope::RepoAdmin]).await;
    let me = gw.call("GET", "/api/v1/user/", Some(&dave), None).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.json()["username"], "dave");
    assert_eq!(me.json()["organizations"], json!([]));

    for token in [None, Some("fga_not-a-real-token")] {
        let reply = gw.call("GET", "/api/v1/user/", token, None).await;
        assert_eq!(reply.status, 401, "{token:?}: {}", reply.text);
        assert_eq!(reply.json()["error_type"], "invalid_token");
    }
    // Quay's path has the trailing slash; without it there is no such endpoint.
    assert_eq!(
        gw.call("GET", "/api/v1/user", Some(&alice), None)
            .await
            .status,
        404
    );
}

async fn organizations_answer_their_members(backend: Backend) {
    let (gw, alice) = world(backend).await;
    let acme = gw
        .call("GET", "/api/v1/organization/acme", Some(&alice), None)
        .await;
    assert_eq!(acme.status, 200, "{}", acme.text);
    let acme = acme.json();
    assert_eq!(acme["name"], "acme");
    assert_eq!(
        (&acme["is_admin"], &acme["is_member"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(acme["teams"], json!({}));
    assert_eq!(acme["avatar"]["name"], "acme");

    let globex = gw
        .call("GET", "/api/v1/organization/globex", Some(&alice), None)
        .await
        .json();
    assert_eq!(
        (&globex["is_admin"], &globex["is_member"]),
        (&json!(false), &json!(true))
    );

    // A user namespace is not an organization (clients ask to tell them apart), and neither
    // is a name that cannot exist.
    for path in [
        "/api/v1/organization/nosuch",
        "/api/v1/organization/alice",
        "/api/v1/organization/A",
    ] {
        let reply = gw.call("GET", path, Some(&alice), None).await;
        assert_eq!(reply.status, 404, "{path}: {}", reply.text);
        assert_eq!(reply.json()["error_type"], "not_found");
    }
    let dave = gw.token("dave", &Scope::ALL).await;
    let outsider = gw
        .call("GET", "/api/v1/organization/acme", Some(&dave), None)
        .await;
    assert_eq!(outsider.status, 403, "{}", outsider.text);
    assert!(!outsider.text.contains("is_admin"));
    assert_eq!(
        gw.call("GET", "/api/v1/organization/acme", None, None)
            .await
            .status,
        401
    );
}

async fn entity_search_finds_users_by_exact_name_only(backend: Backend) {
    let (gw, alice) = world(backend).await;
    let search =
        |name: &str| format!("/api/v1/entities/{name}?includeOrgs=False&includeTeams=False");
    let found = gw.call("GET", &search("dave"), Some(&alice), None).await;
    assert_eq!(found.status, 200, "{}", found.text);
    let results = found.json()["results"].clone();
    assert_eq!(results.as_array().unwrap().len(), 1, "{results}");
    assert_eq!(results[0]["name"], "dave");
    assert_eq!(results[0]["kind"], "user");
    assert_eq!(results[0]["is_robot"], false);
    // Quay lowercases the prefix and drops spaces.
    let shouted = gw.call("GET", &search("DA%20VE"), Some(&alice), None).await;
    assert_eq!(shouted.json()["results"][0]["name"], "dave");
    // No prefix matches, organizations and unknown names are no result.
    for name in ["da", "acme", "nosuch", "x"] {
        let reply = gw.call("GET", &search(name), Some(&alice), None).await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.text);
        assert_eq!(reply.json()["results"], json!([]), "{name}");
    }
    assert_eq!(
        gw.call("GET", &search("dave"), None, None).await.status,
        401
    );
}

/// Quay answers a missing robot 400 `{"message": "Could not find robot with specified
/// username"}`; fedgate keeps its 404 and carries Quay's text where Quay clients look for it.
async fn missing_robots_carry_quays_message(backend: Backend) {
    let (gw, alice) = world(backend).await;
    let alice = Some(alice.as_str());
    for (method, path, body) in [
        ("GET", "/api/v1/organization/acme/robots/nosuch", None),
        ("DELETE", "/api/v1/organization/acme/robots/nosuch", None),
        (
            "POST",
            "/api/v1/organization/acme/robots/nosuch/regenerate",
            None,
        ),
        (
            "GET",
            "/api/v1/organization/acme/robots/nosuch/permissions",
            None,
        ),
        (
            "GET",
            "/api/v1/organization/acme/robots/nosuch/federation",
            None,
        ),
        (
            "POST",
            "/api/v1/organization/acme/robots/nosuch/federation",
            Some(json!([])),
        ),
        (
            "DELETE",
            "/api/v1/organization/acme/robots/nosuch/federation",
            None,
        ),
        ("GET", "/api/v1/user/robots/nosuch", None),
        ("DELETE", "/api/v1/user/robots/nosuch", None),
        (
            "GET",
            "/api/v1/repository/acme/app/permissions/user/acme+nosuch",
            None,
        ),
        (
            "PUT",
            "/api/v1/repository/acme/app/permissions/user/acme+nosuch",
            Some(json!({"role": "read"})),
        ),
    ] {
        let reply = gw.call(method, path, alice, body).await;
        assert_eq!(reply.status, 404, "{method} {path}: {}", reply.text);
        let body = reply.json();
        assert_eq!(body["error_type"], "not_found", "{method} {path}");
        for key in ["error_message", "detail", "message"] {
            assert_eq!(body[key], ROBOT_NOT_FOUND, "{method} {path}: {key}");
        }
    }
    // Other errors keep the ApiError shape alone.
    let org = gw
        .call("GET", "/api/v1/organization/nosuch/robots/ci", alice, None)
        .await;
    assert_eq!(org.status, 404);
    assert!(org.json().get("message").is_none(), "{}", org.text);
}

on_both_databases!(
    who_am_i_is_the_tokens_user_with_its_organizations,
    organizations_answer_their_members,
    entity_search_finds_users_by_exact_name_only,
    missing_robots_carry_quays_message,
);
