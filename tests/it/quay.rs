//! What Quay clients expect around robots: Quay's message for a robot that does not exist.

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

on_both_databases!(missing_robots_carry_quays_message);
