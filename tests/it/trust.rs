//! Issuers that are not public, trusted through `[[federation.issuers]]`: a Kubernetes cluster
//! whose issuer serves no discovery document (static keys, then its API server's JWKS behind
//! a private CA and a bearer token), and Azure's `{tenantid}` issuer template.
//!
//! These gateways do not set `federation.extra_ca_file` or `allow_private_networks`: what
//! they trust, they trust for one issuer only.

use std::sync::Arc;

use fedgate::clock::{Clock, SystemClock};
use fedgate::config::Config;
use fedgate::oidc::trust::IssuerTrust;
use serde_json::{Value, json};

use crate::harness::issuer::{Issuer, TestKey};
use crate::harness::{Backend, Gateway, Reply};

fn now() -> i64 {
    SystemClock.unix()
}

/// The in-cluster issuer name of a cluster nobody outside can reach; never contacted.
const CLUSTER: &str = "https://kubernetes.default.svc.cluster.local";

fn cluster_entry(issuer: &str) -> Value {
    json!([{"provider": "kubernetes", "issuer": issuer, "namespace": "ci",
            "service_account": "builder", "audiences": ["https://registry.example.com"]}])
}

/// A gateway with `trust` as its only issuer settings, and robot `acme+ci` with `entries`.
async fn gateway(
    trust: Vec<IssuerTrust>,
    adjust: impl FnOnce(&mut Config),
    entries: Value,
) -> Gateway {
    let gw = Gateway::start_with(Backend::Sqlite, |c| {
        c.federation.issuers = trust;
        adjust(c);
    })
    .await;
    gw.federated_robot("acme", "ci", entries).await;
    gw
}

fn assert_code(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(reply.json()["error_code"], code, "{}", reply.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_discovery_is_trusted_through_static_keys() {
    let issuer = Issuer::rsa().await;
    // An issuer on the test host whose discovery document is not served (404).
    let cluster = format!("{}/clusters/no-discovery", issuer.url);
    let token =
        |key: &TestKey| key.sign(&issuer.claims_as("kubernetes-serviceaccount", &cluster, now()));
    let first = issuer.key(0);

    let discovering =
        Gateway::trusting(Backend::Sqlite, &issuer, Arc::new(SystemClock), |_| {}).await;
    discovering
        .federated_robot("acme", "ci", cluster_entry(&cluster))
        .await;
    assert_code(
        &discovering.exchange("acme+ci", &token(&first)).await,
        503,
        "issuer_unavailable",
    );

    let (discovery_hits, jwks_hits) = (issuer.discovery_hits(), issuer.jwks_hits());
    let inline = gateway(
        vec![IssuerTrust {
            issuer: cluster.clone(),
            jwks: issuer.jwks_document().to_string(),
            ..IssuerTrust::default()
        }],
        |_| {},
        cluster_entry(&cluster),
    )
    .await;
    let reply = inline.exchange("acme+ci", &token(&first)).await;
    assert_eq!(reply.status, 200, "inline jwks: {}", reply.text);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster-jwks.json");
    std::fs::write(&file, issuer.jwks_document().to_string()).unwrap();
    let from_file = gateway(
        vec![IssuerTrust {
            issuer: cluster.clone(),
            jwks_file: file.display().to_string(),
            ..IssuerTrust::default()
        }],
        |_| {},
        cluster_entry(&cluster),
    )
    .await;
    let reply = from_file.exchange("acme+ci", &token(&first)).await;
    assert_eq!(reply.status, 200, "jwks_file: {}", reply.text);
    assert_eq!(
        (issuer.discovery_hits(), issuer.jwks_hits()),
        (discovery_hits, jwks_hits),
        "static keys need no network"
    );

    // The cluster rotates its signing key; the file is updated and read again at once (no
    // refetch cooldown applies to a file).
    let second = TestKey::rsa("rsa-2");
    assert_code(
        &from_file.exchange("acme+ci", &token(&second)).await,
        401,
        "unknown_key",
    );
    let both = json!({"keys": [first.jwk, second.jwk]});
    std::fs::write(&file, both.to_string()).unwrap();
    let reply = from_file.exchange("acme+ci", &token(&second)).await;
    assert_eq!(reply.status, 200, "the new key, at once: {}", reply.text);
    std::fs::write(&file, json!({"keys": [second.jwk]}).to_string()).unwrap();
    assert_code(
        &from_file.exchange("acme+ci", &token(&first)).await,
        401,
        "unknown_key",
    );
    // A file broken mid-write keeps the last good keys serving.
    std::fs::write(&file, "{\"keys\": [").unwrap();
    let reply = from_file.exchange("acme+ci", &token(&second)).await;
    assert_eq!(reply.status, 200, "last good keys: {}", reply.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_api_server_is_trusted_through_jwks_uri_ca_and_bearer() {
    let issuer = Issuer::rsa().await;
    let jwks_uri = issuer.serve_protected_jwks("/openid/v1/jwks", "projected-token-1");
    let dir = tempfile::tempdir().unwrap();
    let bearer = dir.path().join("token");
    std::fs::write(&bearer, "projected-token-1\n").unwrap();
    let settings = IssuerTrust {
        issuer: CLUSTER.into(),
        jwks_uri: jwks_uri.clone(),
        ca_file: issuer.ca_file.display().to_string(),
        bearer_token_file: bearer.display().to_string(),
        allow_private_network: true,
        ..IssuerTrust::default()
    };
    let jwt =
        |key: &TestKey| key.sign(&issuer.claims_as("kubernetes-serviceaccount", CLUSTER, now()));

    let gw = gateway(
        vec![settings.clone()],
        |c| c.federation.jwks_refresh_cooldown_seconds = 0,
        cluster_entry(CLUSTER),
    )
    .await;
    let reply = gw.exchange("acme+ci", &jwt(&issuer.key(0))).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(issuer.unauthorized_hits(), 0);
    assert_eq!(issuer.discovery_hits(), 0, "jwks_uri skips discovery");

    // The projected token rotates (the API server wants the new one) and so does the key:
    // the refetch for the new kid reads the file again.
    let second = TestKey::rsa("rsa-2");
    issuer.publish(vec![issuer.key(0), second.clone()]);
    issuer.serve_protected_jwks("/openid/v1/jwks", "projected-token-2");
    std::fs::write(&bearer, "projected-token-2").unwrap();
    let reply = gw.exchange("acme+ci", &jwt(&second)).await;
    assert_eq!(reply.status, 200, "rotated bearer: {}", reply.text);
    assert_eq!(issuer.unauthorized_hits(), 0);

    // Each setting is needed, and none leaks into the answer.
    let without = |change: fn(&mut IssuerTrust)| {
        let mut s = settings.clone();
        change(&mut s);
        vec![s]
    };
    for (what, trust) in [
        ("no bearer", without(|s| s.bearer_token_file.clear())),
        ("no CA", without(|s| s.ca_file.clear())),
        (
            "no private network",
            without(|s| s.allow_private_network = false),
        ),
    ] {
        let gw = gateway(trust, |_| {}, cluster_entry(CLUSTER)).await;
        let reply = gw.exchange("acme+ci", &jwt(&second)).await;
        assert_code(&reply, 503, "issuer_unavailable");
        assert!(
            !reply.text.contains("projected-token"),
            "{what}: {}",
            reply.text
        );
    }
    assert!(
        issuer.unauthorized_hits() >= 1,
        "the API server refused the bearer-less fetch"
    );

    // The CA is trusted for this issuer only: another private issuer (with a CA of its own,
    // not configured anywhere) is not reachable through it.
    let other = Issuer::rsa().await;
    let gw = gateway(
        vec![settings.clone()],
        |c| c.federation.allow_private_networks = true,
        json!([{"issuer": other.url, "subject": "repo:*",
                "audiences": ["https://github.com/octo-org"]},
               {"issuer": CLUSTER, "subject": "system:serviceaccount:ci:builder",
                "audiences": ["https://registry.example.com"]}]),
    )
    .await;
    let reply = gw
        .exchange(
            "acme+ci",
            &other.token(&other.claims("github-actions", now())),
        )
        .await;
    assert_code(&reply, 503, "issuer_unavailable");
    let reply = gw.exchange("acme+ci", &jwt(&second)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const OTHER_TENANT: &str = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_azure_tenant_template_accepts_the_tokens_own_tenant() {
    let issuer = Issuer::rsa().await;
    let template = issuer.serve_tenant_template();
    let v1_template = "https://sts.windows.net/{tenantid}/";
    let keys = format!("{}/common/discovery/v2.0/keys", issuer.url);
    let gw = Gateway::trusting(Backend::Sqlite, &issuer, Arc::new(SystemClock), |c| {
        c.federation.issuers = vec![IssuerTrust {
            issuer: v1_template.into(),
            jwks_uri: keys,
            ..IssuerTrust::default()
        }];
    })
    .await;
    let token = gw
        .federated_robot(
            "acme",
            "ci",
            json!([{"issuer": template, "subject": "5f0a1d6c-8e2b-4c3a-9b7d-1e2f3a4b5c6d",
                    "audiences": ["9e6b1b52-f4b2-4d8c-9c1a-3a7c24b0e3f2"],
                    "conditions": {"tid": [TENANT], "azp": "9e6b1b52-f4b2-4d8c-9c1a-3a7c24b0e3f1"}},
                   {"issuer": v1_template, "subject": "5f0a1d6c-8e2b-4c3a-9b7d-1e2f3a4b5c6d",
                    "audiences": ["api://fedgate"],
                    "conditions": {"tid": TENANT, "appid": "9e6b1b52-f4b2-4d8c-9c1a-3a7c24b0e3f1"}}]),
        )
        .await;
    let v2 = |iss_tenant: &str, tid: &str| {
        let mut claims = issuer.claims_as(
            "azure-v2",
            &template.replace("{tenantid}", iss_tenant),
            now(),
        );
        claims["tid"] = json!(tid);
        claims.as_object_mut().unwrap().remove("jti"); // Azure's tokens carry none
        issuer.token(&claims)
    };
    let reply = gw.exchange("acme+ci", &v2(TENANT, TENANT)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(issuer.discovery_hits(), 1, "the common document, once");

    // iss names another tenant than tid: not the template's issuer.
    let reply = gw.exchange("acme+ci", &v2(OTHER_TENANT, TENANT)).await;
    assert_code(&reply, 401, "issuer_not_configured");
    // Consistent, but a tenant the entry does not name.
    let reply = gw
        .exchange("acme+ci", &v2(OTHER_TENANT, OTHER_TENANT))
        .await;
    assert_code(&reply, 401, "claim_mismatch");
    assert!(reply.text.contains("tid"), "{}", reply.text);

    // v1 tokens: https://sts.windows.net/{tid}/, keys from the configured jwks_uri.
    let v1 = |iss_tenant: &str| {
        let mut claims = issuer.claims_as(
            "azure-v1",
            &v1_template.replace("{tenantid}", iss_tenant),
            now(),
        );
        claims.as_object_mut().unwrap().remove("jti");
        issuer.token(&claims)
    };
    let reply = gw.exchange("acme+ci", &v1(TENANT)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = gw.exchange("acme+ci", &v1(OTHER_TENANT)).await;
    assert_code(&reply, 401, "issuer_not_configured");

    // A template without a tenant condition would trust every tenant of the cloud.
    let path = "/api/v1/organization/acme/robots/ci/federation";
    for conditions in [json!({}), json!({"tid": "*"})] {
        let reply = gw
            .call(
                "POST",
                path,
                Some(&token),
                Some(json!([{"issuer": template, "subject": "*", "conditions": conditions}])),
            )
            .await;
        assert_eq!(reply.status, 400, "{}", reply.text);
        assert!(
            reply.message().contains("accepts every tenant"),
            "{}",
            reply.text
        );
    }
}
