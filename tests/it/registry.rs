//! The Docker registry token service (SPEC 8): `/v2/auth` on its own, then end to end with a
//! stock `docker-registry` and `skopeo`.

use std::sync::Arc;

use fedgate::clock::{Clock, SystemClock};
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Value, json};

use crate::harness::issuer::Issuer;
use crate::harness::registry::{
    Registry, Trust, assert_push_refused, assert_refused, keys_verb, oci_image, pulled_content,
    registry_cert,
};
use crate::harness::{Backend, Gateway, Reply, send};

/// acme has robots `writer` (write on app), `reader` (read on app) and `stranger` (nothing),
/// all federated with `issuer`'s GitHub-shaped tokens. Returns the admin token.
pub async fn acme(gw: &Gateway, issuer: &Issuer) -> String {
    let entries = json!([{
        "issuer": issuer.url, "subject": "repo:octo-org/octo-repo:*",
        "audiences": ["https://github.com/octo-org"],
    }]);
    let admin = gw.federated_robot("acme", "writer", entries.clone()).await;
    for robot in ["reader", "stranger"] {
        gw.call(
            "PUT",
            &format!("/api/v1/organization/acme/robots/{robot}"),
            Some(&admin),
            None,
        )
        .await;
        let set = gw
            .call(
                "POST",
                &format!("/api/v1/organization/acme/robots/{robot}/federation"),
                Some(&admin),
                Some(entries.clone()),
            )
            .await;
        assert_eq!(set.status, 200);
    }
    for (robot, role) in [("writer", "write"), ("reader", "read")] {
        let grant = gw
            .call(
                "PUT",
                &format!("/api/v1/repository/acme/app/permissions/user/acme+{robot}"),
                Some(&admin),
                Some(json!({"role": role})),
            )
            .await;
        assert_eq!(grant.status, 200);
    }
    admin
}

pub async fn robot_token(gw: &Gateway, admin: &str, robot: &str) -> String {
    let reply = gw
        .call(
            "GET",
            &format!("/api/v1/organization/acme/robots/{robot}"),
            Some(admin),
            None,
        )
        .await;
    reply.json()["token"].as_str().unwrap().to_string()
}

pub async fn minted(gw: &Gateway, issuer: &Issuer, robot: &str) -> String {
    let reply = gw
        .exchange(
            robot,
            &issuer.token(&issuer.claims("github-actions", SystemClock.unix())),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()["token"].as_str().unwrap().to_string()
}

async fn v2_auth(gw: &Gateway, user: &str, password: &str, query: &str) -> Reply {
    send(
        gw.client
            .get(format!("{}/v2/auth?{query}", gw.url))
            .basic_auth(user, Some(password)),
    )
    .await
}

/// The registry token's claims, checked with the certificate `keys registry-cert` prints.
fn registry_claims(gw: &Gateway, token: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let kid = header.kid.clone().expect("registry tokens carry a kid");
    let ring = gw.state.keyring();
    let key = ring
        .published()
        .iter()
        .find(|k| k.kid == kid)
        .expect("kid of a published key");
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.jwk().clone()).unwrap();
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[gw.config.registry_service()]);
    validation.set_issuer(&[gw.url.as_str()]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(&jwk).unwrap(), &validation)
        .unwrap()
        .claims
}

async fn registry_tokens_hold_only_what_roles_allow(backend: Backend) {
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting(backend, &issuer, Arc::new(SystemClock), |_| {}).await;
    let admin = acme(&gw, &issuer).await;
    let service = gw.config.registry_service();
    let scopes = format!(
        "service={service}&scope=repository:acme/app:pull,push,delete&scope=repository:acme/other:pull&scope=repository:globex/app:pull&scope=registry:catalog:*"
    );
    for (robot, expected) in [
        (
            "acme+writer",
            json!([{"type": "repository", "name": "acme/app", "actions": ["pull", "push"]}]),
        ),
        (
            "acme+reader",
            json!([{"type": "repository", "name": "acme/app", "actions": ["pull"]}]),
        ),
        ("acme+stranger", json!([])),
    ] {
        let password = robot_token(&gw, &admin, robot.trim_start_matches("acme+")).await;
        let reply = v2_auth(&gw, robot, &password, &scopes).await;
        assert_eq!(reply.status, 200, "{robot}: {}", reply.text);
        let body = reply.json();
        assert_eq!(body["token"], body["access_token"]);
        assert_eq!(body["expires_in"], 300);
        assert!(body["issued_at"].as_str().unwrap().ends_with('Z'));
        let claims = registry_claims(&gw, body["token"].as_str().unwrap());
        assert_eq!(claims["sub"], robot);
        assert_eq!(claims["access"], expected, "{robot}");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            300
        );
    }

    // A minted token works as the password too, for its own robot only.
    let token = minted(&gw, &issuer, "acme+writer").await;
    let reply = v2_auth(&gw, "acme+writer", &token, &scopes).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        registry_claims(&gw, reply.json()["token"].as_str().unwrap())["access"][0]["actions"],
        json!(["pull", "push"])
    );
    assert_eq!(
        v2_auth(&gw, "acme+reader", &token, &scopes).await.status,
        401
    );

    // Roles are cached once warm, and a change to them is seen at once.
    let pull_push = "scope=repository:acme/app:pull,push";
    let granted = async |role: Option<&str>| {
        let path = "/api/v1/repository/acme/app/permissions/user/acme+writer";
        let changed = match role {
            Some(role) => gw.call("PUT", path, Some(&admin), Some(json!({"role": role}))),
            None => gw.call("DELETE", path, Some(&admin), None),
        }
        .await;
        assert!(
            changed.status == 200 || changed.status == 204,
            "{}",
            changed.text
        );
        let reply = v2_auth(&gw, "acme+writer", &token, pull_push).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        registry_claims(&gw, reply.json()["token"].as_str().unwrap())["access"].clone()
    };
    assert_eq!(granted(Some("read")).await[0]["actions"], json!(["pull"]));
    assert_eq!(granted(None).await, json!([]));
    assert_eq!(
        granted(Some("write")).await[0]["actions"],
        json!(["pull", "push"])
    );

    // Bad credentials: 401 with the spec's body; never 500.
    let writer = robot_token(&gw, &admin, "writer").await;
    for (user, password) in [
        ("acme+writer", "fgr_wrong"),
        ("acme+reader", writer.as_str()),
        ("acme+writer", "not.a.jwt"),
        ("acme+nosuch", writer.as_str()),
        ("writer", writer.as_str()),
    ] {
        let reply = v2_auth(&gw, user, password, &scopes).await;
        assert_eq!(reply.status, 401, "{user}: {}", reply.text);
        assert_eq!(reply.json()["errors"][0]["code"], "UNAUTHORIZED");
        assert!(!reply.text.contains(password), "{user}: {}", reply.text);
    }
    let anonymous = send(gw.client.get(format!("{}/v2/auth?{scopes}", gw.url))).await;
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.headers.contains_key("www-authenticate"));
    let other_service = v2_auth(
        &gw,
        "acme+writer",
        &writer,
        "service=elsewhere&scope=repository:acme/app:pull",
    )
    .await;
    assert_eq!(other_service.status, 400, "{}", other_service.text);

    // Revocation: a federation change (or regenerate, or delete) stops the minted token.
    gw.call(
        "POST",
        "/api/v1/organization/acme/robots/writer/federation",
        Some(&admin),
        Some(json!([{"issuer": issuer.url, "subject": "repo:octo-org/octo-repo:*", "audiences": ["x"]}])),
    )
    .await;
    assert_eq!(
        v2_auth(&gw, "acme+writer", &token, &scopes).await.status,
        401
    );

    // The robot's last access is recorded.
    let robot = gw
        .call(
            "GET",
            "/api/v1/organization/acme/robots/reader",
            Some(&admin),
            None,
        )
        .await
        .json();
    assert!(robot["last_accessed"].as_str().is_some(), "{robot}");
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(r#"fedgate_registry_tokens_total{result="ok"}"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"fedgate_registry_tokens_total{result="unauthorized"}"#));
}

crate::on_both_databases!(registry_tokens_hold_only_what_roles_allow);

/// The issue's end-to-end story with real programs, on a keys directory written before staged
/// rotation (an upgrade): its key keeps working with the registry as it was configured, and
/// a staged rotation moves the registry onto a key whose tokens carry `x5c`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_registry_and_skopeo_log_in_through_fedgate() {
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting(Backend::Sqlite, &issuer, Arc::new(SystemClock), |_| {}).await;
    // Keys from before staged rotation have no sidecar (activation time, certificate).
    for entry in std::fs::read_dir(&gw.config.keys.dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            std::fs::remove_file(path).unwrap();
        }
    }
    gw.state.reload_keyring().unwrap();
    let legacy = gw.state.keyring().signing_key(SystemClock.unix()).clone();
    assert!(legacy.stored_certificate().is_none(), "{legacy:?}");
    let admin = acme(&gw, &issuer).await;
    let mut registry = Registry::start(&gw, &registry_cert(&gw)).await;
    let work = tempfile::tempdir().unwrap();
    let image = oci_image(work.path(), "hello from CI");
    let app = registry.image("acme/app", "1");

    // A GitHub-Actions-shaped identity token, exchanged, pushes and pulls.
    let writer_minted = minted(&gw, &issuer, "acme+writer").await;
    registry
        .skopeo_copy(&image, &app, "acme+writer", &writer_minted)
        .unwrap_or_else(|e| {
            panic!(
                "push with a minted token: {e}\nregistry: {}",
                registry.log()
            )
        });
    let pulled = work.path().join("pulled");
    registry
        .skopeo_copy(
            &app,
            &format!("oci:{}:copy", pulled.display()),
            "acme+writer",
            &writer_minted,
        )
        .unwrap_or_else(|e| panic!("pull with a minted token: {e}"));
    assert_eq!(pulled_content(&pulled), "hello from CI");

    // The long-lived robot token pushes too.
    let writer_token = robot_token(&gw, &admin, "writer").await;
    registry
        .skopeo_copy(
            &image,
            &registry.image("acme/app", "2"),
            "acme+writer",
            &writer_token,
        )
        .unwrap_or_else(|e| panic!("push with the robot token: {e}"));

    // read: pull yes, push no. No permission: neither.
    let reader = minted(&gw, &issuer, "acme+reader").await;
    let reader_pull = work.path().join("reader");
    registry
        .skopeo_copy(
            &app,
            &format!("oci:{}:copy", reader_pull.display()),
            "acme+reader",
            &reader,
        )
        .unwrap_or_else(|e| panic!("read robot pulls: {e}"));
    assert_push_refused(
        || {
            registry.skopeo_copy(
                &image,
                &registry.image("acme/app", "3"),
                "acme+reader",
                &reader,
            )
        },
        "read robot cannot push",
    );
    let stranger = minted(&gw, &issuer, "acme+stranger").await;
    let stranger_pull = work.path().join("stranger");
    assert_refused(
        registry.skopeo_copy(
            &app,
            &format!("oci:{}:copy", stranger_pull.display()),
            "acme+stranger",
            &stranger,
        ),
        "a robot without a role cannot pull",
    );
    assert_push_refused(
        || {
            registry.skopeo_copy(
                &image,
                &registry.image("acme/app", "4"),
                "acme+stranger",
                &stranger,
            )
        },
        "a robot without a role cannot push",
    );

    // A federation change revokes the minted token: no more pushes with it.
    gw.call(
        "POST",
        "/api/v1/organization/acme/robots/writer/federation",
        Some(&admin),
        Some(json!([{"issuer": issuer.url, "subject": "repo:octo-org/octo-repo:*", "audiences": ["https://github.com/octo-org"]}])),
    )
    .await;
    assert_push_refused(
        || {
            registry.skopeo_copy(
                &image,
                &registry.image("acme/app", "5"),
                "acme+writer",
                &writer_minted,
            )
        },
        "revoked token",
    );

    // Key rotation, staged: the new key is in the bundle before it signs anything, so the old
    // bundle keeps working until the registry is restarted with the new one, and the new key
    // signs from its activation on.
    let before = gw
        .state
        .keyring()
        .signing_key(SystemClock.unix())
        .kid
        .clone();
    keys_verb(&gw, "rotate");
    gw.state.reload_keyring().unwrap();
    let ring = gw.state.keyring();
    assert_eq!(
        ring.signing_key(SystemClock.unix()).kid,
        before,
        "staged, not active"
    );
    let staged = ring.published().last().unwrap().clone();
    assert_ne!(staged.kid, before);
    let fresh = minted(&gw, &issuer, "acme+writer").await;
    registry
        .skopeo_copy(
            &image,
            &registry.image("acme/app", "6"),
            "acme+writer",
            &fresh,
        )
        .unwrap_or_else(|e| panic!("push while a key is staged: {e}"));
    let bundle = registry_cert(&gw);
    assert_eq!(
        bundle.matches("BEGIN CERTIFICATE").count(),
        2,
        "old and new key both published"
    );
    registry.restart(Trust::Bundle(bundle)).await;
    let tokens_after_activation = gw.state.keyring();
    let signer = tokens_after_activation.signing_key(staged.activates_at);
    assert_eq!(
        signer.kid, staged.kid,
        "the staged key signs from its activation"
    );
    let registry_token = signer
        .sign_registry_jwt(
            &json!({
                "iss": gw.url, "sub": "acme+writer", "aud": gw.config.registry_service(),
                "exp": SystemClock.unix() + 300, "nbf": SystemClock.unix(), "iat": SystemClock.unix(),
                "jti": "rotation", "access": [{"type": "repository", "name": "acme/app", "actions": ["pull"]}],
            }),
            true,
        )
        .unwrap();
    let manifest = reqwest::Client::new()
        .get(format!("http://{}/v2/acme/app/manifests/6", registry.addr))
        .bearer_auth(&registry_token)
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        manifest.status(),
        200,
        "a token of the new key, after the restart: {}",
        registry.log()
    );
}
