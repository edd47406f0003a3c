//! `POST /v2/auth`, the OAuth2 form of the registry token service: containerd's `ctr` pushing
//! and pulling through a real registry with one token request per token, and the form's
//! answers next to `GET`'s for the same robots, scopes and mistakes.

use std::sync::Arc;

use fedgate::clock::{Clock, SystemClock};
use serde_json::{Value, json};

use crate::harness::containerd::Containerd;
use crate::harness::issuer::Issuer;
use crate::harness::registry::{Registry, TokenAuth, Trust, assert_push_refused, oci_image};
use crate::harness::replica::{Replica, acme_admin, admin};
use crate::harness::{Backend, Gateway, Reply, send};
use crate::registry::{acme, minted, robot_token};
use crate::replicas::call;

/// `POST /v2/auth` with `form` as an `application/x-www-form-urlencoded` body.
async fn post_form(url: &str, form: &[(&str, &str)]) -> Reply {
    send(
        reqwest::Client::new()
            .post(format!("{url}/v2/auth"))
            .form(form),
    )
    .await
}

/// The `http` request lines of a replica's JSON log for `/v2/auth`, as `(method, status)`.
fn token_requests(log: &str) -> Vec<(String, u64)> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["target"] == "http" && line["route"] == "/v2/auth")
        .map(|line| {
            (
                line["method"].as_str().unwrap_or_default().to_string(),
                line["status"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

/// The issue's story: a BuildKit-style client (containerd's `ctr`) imports an OCI archive,
/// pushes it with a federated robot's token, pulls it with a read-only robot, and that robot
/// cannot push a new tag; fedgate answered every token request once, by POST, never 405.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_pushes_and_pulls_with_one_post_per_token() {
    let issuer = Issuer::rsa().await;
    let dir = tempfile::tempdir().unwrap();
    let public_url = "http://fedgate.test";
    let env: Vec<(String, String)> = [
        ("FEDGATE_SERVER_PUBLIC_URL", public_url.to_string()),
        (
            "FEDGATE_STORAGE_DATABASE_URL",
            format!("sqlite://{}/fedgate.db", dir.path().display()),
        ),
        (
            "FEDGATE_KEYS_DIR",
            dir.path().join("keys").display().to_string(),
        ),
        (
            "FEDGATE_FEDERATION_EXTRA_CA_FILE",
            issuer.ca_file.display().to_string(),
        ),
        ("FEDGATE_FEDERATION_ALLOW_PRIVATE_NETWORKS", "true".into()),
        ("FEDGATE_LOG_FORMAT", "json".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    admin(&env, &["migrate"]);
    admin(&env, &["keys", "rotate"]);
    let api = acme_admin(&env);
    let fedgate = Replica::start(&env, dir.path(), "fedgate").await;
    let entries = json!([{
        "issuer": issuer.url, "subject": "repo:octo-org/octo-repo:*",
        "audiences": ["https://github.com/octo-org"],
    }]);
    for (robot, role) in [("writer", "write"), ("reader", "read")] {
        let path = format!("/api/v1/organization/acme/robots/{robot}");
        assert_eq!(
            call(&fedgate.url, "PUT", &path, &api, None).await.status,
            201
        );
        let set = call(
            &fedgate.url,
            "POST",
            &format!("{path}/federation"),
            &api,
            Some(entries.clone()),
        )
        .await;
        assert_eq!(set.status, 200, "{}", set.text);
        let grant = call(
            &fedgate.url,
            "PUT",
            &format!("/api/v1/repository/acme/app/permissions/user/acme+{robot}"),
            &api,
            Some(json!({"role": role})),
        )
        .await;
        assert_eq!(grant.status, 200, "{}", grant.text);
    }
    let exchange = async |robot: &str| -> String {
        let jwt = issuer.token(&issuer.claims("github-actions", SystemClock.unix()));
        let reply = send(
            reqwest::Client::new()
                .get(format!("{}/oauth2/federation/robot/token", fedgate.url))
                .basic_auth(robot, Some(jwt)),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json()["token"].as_str().unwrap().to_string()
    };

    let registry = Registry::start_with(
        crate::harness::registry::Distribution::Debian2,
        TokenAuth {
            realm: format!("{}/v2/auth", fedgate.url),
            service: "fedgate.test".into(),
            issuer: public_url.into(),
        },
        Trust::Bundle(admin(&env, &["keys", "registry-cert"]) + "\n"),
    )
    .await;

    let containerd = Containerd::start().await;
    let layout = oci_image(&containerd.dir().join("image"), "pushed by ctr");
    let layout = layout
        .strip_prefix("oci:")
        .and_then(|l| l.strip_suffix(":v1"))
        .unwrap();
    let archive = containerd.dir().join("image.tar");
    let tarred = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(layout)
        .arg(".")
        .status()
        .unwrap();
    assert!(tarred.success());
    let base = format!("{}/acme/app", registry.addr);
    let image = format!("{base}:v1");
    containerd
        .ctr(&[
            "images",
            "import",
            "--no-unpack",
            "--base-name",
            &base,
            archive.to_str().unwrap(),
        ])
        .unwrap_or_else(|e| panic!("ctr images import: {e}"));

    let writer = exchange("acme+writer").await;
    containerd
        .ctr(&[
            "images",
            "push",
            "--plain-http",
            "--user",
            &format!("acme+writer:{writer}"),
            &image,
        ])
        .unwrap_or_else(|e| {
            panic!(
                "ctr push with a federated token: {e}\nfedgate: {}\nregistry: {}",
                fedgate.logs(),
                registry.log()
            )
        });
    containerd.ctr(&["images", "rm", &image]).unwrap();

    let reader = exchange("acme+reader").await;
    let reader_user = format!("acme+reader:{reader}");
    containerd
        .ctr(&[
            "images",
            "pull",
            "--plain-http",
            "--snapshotter",
            "native",
            "--user",
            &reader_user,
            &image,
        ])
        .unwrap_or_else(|e| panic!("ctr pull with a read-only robot: {e}"));
    let listed = containerd.ctr(&["images", "ls", "--quiet"]).unwrap();
    assert!(listed.lines().any(|l| l == image), "{listed}");

    let tag = format!("{base}:by-reader");
    containerd.ctr(&["images", "tag", &image, &tag]).unwrap();
    assert_push_refused(
        || {
            containerd.ctr(&[
                "images",
                "push",
                "--plain-http",
                "--user",
                &reader_user,
                &tag,
            ])
        },
        "a read-only robot pushes a new tag",
    );
    // Looked at with a pull token: v1 is there, the reader's tag is not.
    let pull = post_form(
        &fedgate.url,
        &[
            ("grant_type", "password"),
            ("username", "acme+reader"),
            ("password", &reader),
            ("service", "fedgate.test"),
            ("client_id", "fedgate-test"),
            ("scope", "repository:acme/app:pull"),
        ],
    )
    .await;
    assert_eq!(pull.status, 200, "{}", pull.text);
    let pull = pull.json()["access_token"].as_str().unwrap().to_string();
    for (tag, status) in [("v1", 200), ("by-reader", 404)] {
        let manifest = reqwest::Client::new()
            .head(format!(
                "http://{}/v2/acme/app/manifests/{tag}",
                registry.addr
            ))
            .bearer_auth(&pull)
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap();
        assert_eq!(manifest.status(), status, "tag {tag}");
    }

    // fedgate's own log: every token was one POST answered 200; no 405, no GET fallback.
    let log = fedgate.logs();
    let requests = token_requests(&log);
    eprintln!("token requests seen by fedgate: {requests:?}");
    assert!(
        requests.len() >= 3,
        "push, pull and the refused push asked: {requests:?}"
    );
    assert!(
        requests
            .iter()
            .all(|(method, status)| method == "POST" && *status == 200),
        "{requests:?}"
    );
    assert!(
        !log.lines().any(|l| l.contains("\"status\":405")),
        "a 405 in fedgate's log"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("\"kind\":\"registry_token\"") && l.contains("containerd-client")),
        "the audit line names containerd's client_id"
    );
}

/// The same robots and scopes through both forms grant the same access; the form's own
/// mistakes are clear 4xx answers in OAuth2's shape.
async fn post_answers_as_get_does(backend: Backend) {
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting(backend, &issuer, Arc::new(SystemClock), |_| {}).await;
    let admin = acme(&gw, &issuer).await;
    let service = gw.config.registry_service();
    let scope = "repository:acme/app:pull,push,delete repository:acme/other:pull repository:globex/app:pull registry:catalog:*";
    let writer_minted = minted(&gw, &issuer, "acme+writer").await;
    let writer = robot_token(&gw, &admin, "writer").await;
    let reader = robot_token(&gw, &admin, "reader").await;
    let stranger = robot_token(&gw, &admin, "stranger").await;
    let access = |token: &str| -> Value {
        let payload = token.split('.').nth(1).unwrap();
        let bytes = data_encoding::BASE64URL_NOPAD
            .decode(payload.as_bytes())
            .unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()["access"].clone()
    };
    for (robot, password, granted) in [
        (
            "acme+writer",
            writer_minted.as_str(),
            "repository:acme/app:pull,push",
        ),
        (
            "acme+writer",
            writer.as_str(),
            "repository:acme/app:pull,push",
        ),
        ("acme+reader", reader.as_str(), "repository:acme/app:pull"),
        ("acme+stranger", stranger.as_str(), ""),
    ] {
        let post = post_form(
            &gw.url,
            &[
                ("grant_type", "password"),
                ("username", robot),
                ("password", password),
                ("service", &service),
                ("client_id", "test-client"),
                ("scope", scope),
            ],
        )
        .await;
        assert_eq!(post.status, 200, "{robot}: {}", post.text);
        let body = post.json();
        assert_eq!(body["scope"], granted, "{robot}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 300);
        assert!(body["issued_at"].as_str().unwrap().ends_with('Z'));
        assert!(body.get("refresh_token").is_none());
        assert_eq!(post.headers["cache-control"], "no-store");
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("service", &service)
            .extend_pairs(scope.split(' ').map(|s| ("scope", s)))
            .finish();
        let get = send(
            gw.client
                .get(format!("{}/v2/auth?{query}", gw.url))
                .basic_auth(robot, Some(password)),
        )
        .await;
        assert_eq!(get.status, 200);
        assert_eq!(
            access(body["access_token"].as_str().unwrap()),
            access(get.json()["token"].as_str().unwrap()),
            "{robot}: POST and GET grant the same"
        );
    }

    // Refusals: the same cases as GET's, in OAuth2's form.
    let valid = |changes: &[(&'static str, Option<&'static str>)]| -> Vec<(&'static str, String)> {
        let mut form: Vec<(&'static str, String)> = vec![
            ("grant_type", "password".into()),
            ("username", "acme+writer".into()),
            ("password", writer.clone()),
            ("service", service.clone()),
            ("client_id", "test-client".into()),
            ("scope", "repository:acme/app:pull".into()),
        ];
        for (key, value) in changes {
            form.retain(|(k, _)| k != key);
            if let Some(value) = value {
                form.push((key, value.to_string()));
            }
        }
        form
    };
    type Form = Vec<(&'static str, String)>;
    let cases: Vec<(&str, Form, u16, &str)> = vec![
        (
            "wrong password",
            valid(&[("password", Some("fgr_wrong"))]),
            400,
            "invalid_grant",
        ),
        (
            "another robot's token",
            valid(&[("username", Some("acme+reader"))]),
            400,
            "invalid_grant",
        ),
        (
            "not a robot",
            valid(&[("username", Some("acme-admin"))]),
            400,
            "invalid_grant",
        ),
        (
            "other service",
            valid(&[("service", Some("elsewhere"))]),
            400,
            "invalid_request",
        ),
        (
            "no grant_type",
            valid(&[("grant_type", None)]),
            400,
            "invalid_request",
        ),
        (
            "no username",
            valid(&[("username", None)]),
            400,
            "invalid_request",
        ),
        (
            "no password",
            valid(&[("password", None)]),
            400,
            "invalid_request",
        ),
        (
            "no service",
            valid(&[("service", None)]),
            400,
            "invalid_request",
        ),
        (
            "no client_id",
            valid(&[("client_id", None)]),
            400,
            "invalid_request",
        ),
        (
            "refresh_token",
            valid(&[("grant_type", Some("refresh_token"))]),
            400,
            "unsupported_grant_type",
        ),
        (
            "authorization_code",
            valid(&[("grant_type", Some("authorization_code"))]),
            400,
            "unsupported_grant_type",
        ),
        (
            "bad access_type",
            valid(&[("access_type", Some("forever"))]),
            400,
            "invalid_request",
        ),
        (
            "control characters in client_id",
            valid(&[("client_id", Some("a\nb"))]),
            400,
            "invalid_request",
        ),
    ];
    for (case, form, status, error) in cases {
        let reply = send(gw.client.post(format!("{}/v2/auth", gw.url)).form(&form)).await;
        assert_eq!(reply.status, status, "{case}: {}", reply.text);
        assert_eq!(reply.json()["error"], error, "{case}");
        assert!(
            reply.json()["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{case}"
        );
        assert!(
            !reply.text.contains(&writer),
            "{case}: the password came back"
        );
    }
    // A repeated parameter is a mistake (RFC 6749 3.2).
    let mut twice = valid(&[]);
    twice.push(("username", "acme+reader".into()));
    let reply = send(gw.client.post(format!("{}/v2/auth", gw.url)).form(&twice)).await;
    assert_eq!(
        (reply.status, reply.json()["error"].clone()),
        (400, json!("invalid_request"))
    );

    // offline access is answered like online: no refresh token.
    let offline = send(
        gw.client
            .post(format!("{}/v2/auth", gw.url))
            .form(&valid(&[("access_type", Some("offline"))])),
    )
    .await;
    assert_eq!(offline.status, 200, "{}", offline.text);
    assert!(offline.json().get("refresh_token").is_none());

    // Not a form: JSON, no content type, bytes that are not UTF-8, too large.
    let body = serde_urlencoded(&valid(&[]));
    for (case, content_type, bytes, status) in [
        ("JSON", Some("application/json"), b"{}".to_vec(), 415),
        ("no content type", None, body.clone().into_bytes(), 415),
        (
            "multipart",
            Some("multipart/form-data; boundary=x"),
            body.clone().into_bytes(),
            415,
        ),
        (
            "not UTF-8",
            Some("application/x-www-form-urlencoded"),
            vec![0xff, 0xfe, b'='],
            400,
        ),
        (
            "oversized",
            Some("application/x-www-form-urlencoded"),
            vec![b'a'; gw.config.server.max_body_bytes + 1],
            413,
        ),
    ] {
        let mut request = gw.client.post(format!("{}/v2/auth", gw.url)).body(bytes);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let reply = send(request).await;
        assert_eq!(reply.status, status, "{case}: {}", reply.text);
        assert_eq!(reply.json()["error"], "invalid_request", "{case}");
    }
    // The charset parameter is allowed.
    let with_charset = send(
        gw.client
            .post(format!("{}/v2/auth", gw.url))
            .header(
                "content-type",
                "application/x-www-form-urlencoded; charset=UTF-8",
            )
            .body(body),
    )
    .await;
    assert_eq!(with_charset.status, 200, "{}", with_charset.text);

    // Counted like GET's.
    let metrics = gw.metrics().await;
    assert!(metrics.contains(r#"fedgate_registry_tokens_total{result="bad_request"}"#));
    assert!(metrics.contains(r#"fedgate_registry_tokens_total{result="unauthorized"}"#));
    assert!(
        !metrics.contains(r#"status="5"#),
        "no 5xx: {}",
        metrics
            .lines()
            .filter(|l| l.contains("status=\"5"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

crate::on_both_databases!(post_answers_as_get_does);

fn serde_urlencoded(form: &[(&str, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
        .finish()
}
