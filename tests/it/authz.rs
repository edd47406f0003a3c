//! Who may do what (SPEC section 3): anonymous 401, wrong scope or namespace 403, missing 404,
//! and one organization's admin never reaches another's robots.

use fedgate::http::auth::Scope;
use fedgate::store::OrgRole;
use serde_json::json;

use crate::harness::{Backend, Gateway};
use crate::on_both_databases;

/// Every admin endpoint that touches `acme`'s robot `ci`, with a body where it takes one.
fn acme_endpoints() -> Vec<(&'static str, &'static str, Option<serde_json::Value>)> {
    vec![
        ("GET", "/api/v1/organization/acme/robots", None),
        ("GET", "/api/v1/organization/acme/robots/ci", None),
        ("PUT", "/api/v1/organization/acme/robots/newbot", None),
        ("DELETE", "/api/v1/organization/acme/robots/ci", None),
        (
            "POST",
            "/api/v1/organization/acme/robots/ci/regenerate",
            None,
        ),
        (
            "GET",
            "/api/v1/organization/acme/robots/ci/permissions",
            None,
        ),
        ("GET", "/api/v1/repository/acme/app/permissions/user/", None),
        (
            "GET",
            "/api/v1/repository/acme/app/permissions/user/acme+ci",
            None,
        ),
        (
            "PUT",
            "/api/v1/repository/acme/app/permissions/user/acme+ci",
            Some(json!({"role": "admin"})),
        ),
        (
            "DELETE",
            "/api/v1/repository/acme/app/permissions/user/acme+ci",
            None,
        ),
    ]
}

struct World {
    gw: Gateway,
    alice: String,
    ci_token: String,
}

/// alice administers acme (robot `ci`, with read on `app`); bob is a plain member; carol
/// administers globex; dave belongs nowhere.
async fn world(backend: Backend) -> World {
    let gw = Gateway::start(backend).await;
    let alice = gw.admin("alice").await;
    gw.org("acme", "alice").await;
    let ci = gw
        .call(
            "PUT",
            "/api/v1/organization/acme/robots/ci",
            Some(&alice),
            None,
        )
        .await
        .json();
    let grant = gw
        .call(
            "PUT",
            "/api/v1/repository/acme/app/permissions/user/acme+ci",
            Some(&alice),
            Some(json!({"role": "read"})),
        )
        .await;
    assert_eq!(grant.status, 200);
    gw.user("bob").await;
    gw.member("acme", "bob", OrgRole::Member).await;
    gw.user("carol").await;
    gw.org("globex", "carol").await;
    gw.user("dave").await;
    World {
        gw,
        alice,
        ci_token: ci["token"].as_str().unwrap().to_string(),
    }
}

/// Asserts acme is as `world` left it.
async fn assert_acme_untouched(w: &World) {
    let robot =
        w.gw.call(
            "GET",
            "/api/v1/organization/acme/robots/ci",
            Some(&w.alice),
            None,
        )
        .await
        .json();
    assert_eq!(robot["token"], w.ci_token.as_str(), "token unchanged");
    assert_eq!(
        w.gw.robot_count("acme").await,
        1,
        "no robot added or removed"
    );
    let grant =
        w.gw.call(
            "GET",
            "/api/v1/repository/acme/app/permissions/user/acme+ci",
            Some(&w.alice),
            None,
        )
        .await
        .json();
    assert_eq!(grant["role"], "read", "grant unchanged");
}

async fn anonymous_and_bad_credentials_get_401(backend: Backend) {
    let w = world(backend).await;
    let gw = &w.gw;
    let expired = gw.token_expiring("alice", &Scope::ALL, Some(1_000)).await;
    let mut corrupted = w.alice.clone();
    corrupted.replace_range(10..11, if &corrupted[10..11] == "A" { "B" } else { "A" });
    let unknown = {
        // Well-formed (right prefix and checksum) but never issued.
        let other = Gateway::start(Backend::Sqlite).await;
        other.admin("alice").await
    };
    for (method, path, body) in acme_endpoints() {
        let anonymous = gw.call(method, path, None, body.clone()).await;
        assert_eq!(anonymous.status, 401, "{method} {path}");
        assert_eq!(anonymous.json()["error_type"], "invalid_token");
        assert_eq!(anonymous.message(), "Requires authentication");
        for bad in [
            expired.as_str(),
            corrupted.as_str(),
            unknown.as_str(),
            "garbage",
        ] {
            let reply = gw.call(method, path, Some(bad), body.clone()).await;
            assert_eq!(reply.status, 401, "{method} {path} with a bad token");
            assert_eq!(reply.json()["error_type"], "invalid_token");
            assert!(!reply.text.contains(bad), "the token is not echoed");
        }
        let basic = crate::harness::send(
            gw.client
                .request(method.parse().unwrap(), format!("{}{path}", gw.url))
                .basic_auth("alice", Some(&w.alice)),
        )
        .await;
        assert_eq!(basic.status, 401, "Basic is not an admin credential");
        // A valid API token under another scheme than Bearer is refused too.
        for scheme in ["Basic", "Token"] {
            let reply = crate::harness::send(
                gw.client
                    .request(method.parse().unwrap(), format!("{}{path}", gw.url))
                    .header("authorization", format!("{scheme} {}", w.alice)),
            )
            .await;
            assert_eq!(reply.status, 401, "{scheme} {method} {path}");
        }
    }
    assert_acme_untouched(&w).await;
}

async fn outsiders_get_403_and_change_nothing(backend: Backend) {
    let w = world(backend).await;
    let gw = &w.gw;
    let carol = gw.token("carol", &Scope::ALL).await;
    let dave = gw.token("dave", &Scope::ALL).await;
    for token in [&carol, &dave] {
        for (method, path, body) in acme_endpoints() {
            let reply = gw.call(method, path, Some(token), body).await;
            assert_eq!(reply.status, 403, "{method} {path}: {}", reply.text);
            assert_eq!(reply.json()["error_type"], "insufficient_scope");
            assert_eq!(reply.message(), "Unauthorized");
            assert!(!reply.text.contains("fgr_"));
        }
    }
    // carol's own organization works, and she cannot pull acme's robot into it.
    assert_eq!(
        gw.call(
            "PUT",
            "/api/v1/organization/globex/robots/ci",
            Some(&carol),
            None
        )
        .await
        .status,
        201
    );
    let cross = gw
        .call(
            "PUT",
            "/api/v1/repository/globex/app/permissions/user/acme+ci",
            Some(&carol),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(cross.status, 400, "{}", cross.text);
    assert!(
        cross.message().contains("own namespace"),
        "{}",
        cross.message()
    );
    // Nor can alice, who administers both sides' robot but not globex's repositories.
    let alice_cross = gw
        .call(
            "PUT",
            "/api/v1/repository/globex/app/permissions/user/acme+ci",
            Some(&w.alice),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(alice_cross.status, 403);
    assert_acme_untouched(&w).await;
}

async fn members_list_without_secrets(backend: Backend) {
    let w = world(backend).await;
    let gw = &w.gw;
    let bob = gw.token("bob", &Scope::ALL).await;
    let listed = gw
        .call(
            "GET",
            "/api/v1/organization/acme/robots?token=true&permissions=true",
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let entry = &listed.json()["robots"][0];
    assert_eq!(entry["name"], "acme+ci");
    for hidden in ["token", "teams", "repositories"] {
        assert!(entry.get(hidden).is_none(), "{hidden} shown to a member");
    }
    for (method, path, body) in acme_endpoints().into_iter().skip(1) {
        let reply = gw.call(method, path, Some(&bob), body).await;
        assert_eq!(reply.status, 403, "member {method} {path}");
    }
    // Promoted to admin, bob sees the token.
    gw.member("acme", "bob", OrgRole::Admin).await;
    let listed = gw
        .call("GET", "/api/v1/organization/acme/robots", Some(&bob), None)
        .await
        .json();
    assert_eq!(listed["robots"][0]["token"], w.ci_token.as_str());
    assert_acme_untouched(&w).await;
}

async fn scopes_limit_what_a_token_may_do(backend: Backend) {
    let w = world(backend).await;
    let gw = &w.gw;
    let user_only = gw.token("alice", &[Scope::UserAdmin]).await;
    let org_only = gw.token("alice", &[Scope::OrgAdmin]).await;
    let repo_only = gw.token("alice", &[Scope::RepoAdmin]).await;

    let own = async |token: &str| {
        gw.call("PUT", "/api/v1/user/robots/mine", Some(token), None)
            .await
    };
    assert_eq!(own(&org_only).await.status, 403);
    assert_eq!(own(&repo_only).await.status, 403);
    assert_eq!(own(&user_only).await.status, 201);

    let org_list = async |token: &str| {
        gw.call("GET", "/api/v1/organization/acme/robots", Some(token), None)
            .await
    };
    assert_eq!(org_list(&user_only).await.status, 403);
    assert_eq!(org_list(&repo_only).await.status, 403);
    assert_eq!(org_list(&org_only).await.status, 200);

    let grant = async |token: &str| {
        gw.call(
            "PUT",
            "/api/v1/repository/acme/web/permissions/user/acme+ci",
            Some(token),
            Some(json!({"role": "read"})),
        )
        .await
    };
    assert_eq!(grant(&user_only).await.status, 403);
    assert_eq!(grant(&org_only).await.status, 403);
    assert_eq!(grant(&repo_only).await.status, 200);
    assert_acme_untouched(&w).await;
}

async fn missing_namespaces_and_robots_are_404(backend: Backend) {
    let w = world(backend).await;
    let gw = &w.gw;
    let alice = Some(w.alice.as_str());
    for (method, path) in [
        ("GET", "/api/v1/organization/nosuch/robots"),
        ("PUT", "/api/v1/organization/nosuch/robots/ci"),
        ("GET", "/api/v1/organization/alice/robots"), // a user, not an organization
        ("GET", "/api/v1/organization/acme/robots/nosuch"),
        ("DELETE", "/api/v1/organization/acme/robots/nosuch"),
        ("POST", "/api/v1/organization/acme/robots/nosuch/regenerate"),
        ("GET", "/api/v1/organization/acme/robots/nosuch/permissions"),
        ("GET", "/api/v1/repository/nosuch/app/permissions/user/"),
        (
            "GET",
            "/api/v1/repository/acme/app/permissions/user/acme+nosuch",
        ),
        (
            "DELETE",
            "/api/v1/repository/acme/web/permissions/user/acme+ci",
        ),
    ] {
        let reply = gw.call(method, path, alice, None).await;
        assert_eq!(reply.status, 404, "{method} {path}: {}", reply.text);
        assert_eq!(reply.json()["error_type"], "not_found");
        assert_eq!(reply.json()["status"], 404);
    }
    assert_acme_untouched(&w).await;
}

on_both_databases!(
    anonymous_and_bad_credentials_get_401,
    outsiders_get_403_and_change_nothing,
    members_list_without_secrets,
    scopes_limit_what_a_token_may_do,
    missing_namespaces_and_robots_are_404,
);
