//! Provider presets (docs/providers.md): each preset exchanges a token shaped like its
//! platform's, and closes its traps: a resurrected owner, a reusable workflow that is not the
//! one named, an enterprise issuer against a github.com entry. GET shows the expansion and the
//! pins, and what GET returned can be POSTed back.
//!
//! github.com, GitHub Enterprise Cloud and Google issuers are real URLs no test may reach:
//! their keys come from the loopback issuer through `[[federation.issuers]] jwks_uri`, as an
//! operator could configure them.

use std::sync::Arc;

use fedgate::clock::{Clock, SystemClock};
use fedgate::oidc::trust::IssuerTrust;
use serde_json::{Value, json};

use crate::harness::issuer::Issuer;
use crate::harness::{Backend, Gateway, Reply};
use crate::on_both_databases;

const GITHUB: &str = "https://token.actions.githubusercontent.com";
const GHEC: &str = "https://token.actions.githubusercontent.com/octo-enterprise";
const GOOGLE: &str = "https://accounts.google.com";

fn now() -> i64 {
    SystemClock.unix()
}

/// A gateway trusting the loopback issuer, whose keys also stand for github.com's, the
/// `octo-enterprise` GHEC enterprise's and Google's; and the admin token of org `acme`.
async fn site(backend: Backend, issuer: &Issuer) -> (Gateway, String) {
    let keys_at = format!("{}/jwks", issuer.url);
    let gw = Gateway::trusting(backend, issuer, Arc::new(SystemClock), |c| {
        c.federation.issuers = [GITHUB, GHEC, GOOGLE]
            .iter()
            .map(|iss| IssuerTrust {
                issuer: iss.to_string(),
                jwks_uri: keys_at.clone(),
                ..IssuerTrust::default()
            })
            .collect();
    })
    .await;
    let token = gw.admin("acme-admin").await;
    gw.org("acme", "acme-admin").await;
    (gw, token)
}

async fn robot(gw: &Gateway, token: &str, name: &str, entries: Value) {
    let set = gw.add_robot(token, "acme", name, entries).await;
    assert_eq!(set.status, 200, "{name}: {}", set.text);
}

async fn entries(gw: &Gateway, token: &str, name: &str) -> Value {
    let path = format!("/api/v1/organization/acme/robots/{name}/federation");
    let got = gw.call("GET", &path, Some(token), None).await;
    assert_eq!(got.status, 200, "{}", got.text);
    got.json()
}

fn assert_refused(reply: &Reply, code: &str, needle: &str) {
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert_eq!(reply.json()["error_code"], code, "{}", reply.text);
    let message = reply.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains(needle), "{needle}: {message}");
}

async fn every_preset_exchanges_its_platforms_token(backend: Backend) {
    let issuer = Issuer::rsa().await;
    let (gw, token) = site(backend, &issuer).await;
    let ghes = issuer.serve_issuer("/_services/token");
    let ghes_host = issuer.url.trim_start_matches("https://").to_string();
    let gitlab = issuer.serve_issuer("/code/gitlab");
    let cluster = issuer.serve_issuer("/clusters/eks-1");

    robot(
        &gw,
        &token,
        "github",
        json!([{"provider": "github", "repository": "octo-org/octo-repo",
                "ref": "refs/heads/main", "environment": "prod",
                "workflow": ".github/workflows/release.yml",
                "event_name": ["push", "workflow_dispatch"],
                "audiences": ["https://github.com/octo-org"]}]),
    )
    .await;
    robot(
        &gw,
        &token,
        "ghec",
        json!([{"provider": "github", "enterprise": "octo-enterprise",
                "repository": "octo-enterprise-org/deploy-tools", "environment": "production",
                "job_workflow": "octo-enterprise-org/shared-workflows/.github/workflows/publish.yml@refs/tags/v2",
                "audiences": ["https://fedgate.example.com"]}]),
    )
    .await;
    robot(
        &gw,
        &token,
        "ghes",
        json!([{"provider": "github", "host": ghes_host, "repository": "octo-org/octo-repo",
                "audiences": ["https://github.com/octo-org"]}]),
    )
    .await;
    robot(
        &gw,
        &token,
        "gitlab",
        json!([{"provider": "gitlab", "url": gitlab, "project_path": "platform/images/base",
                "ref": "main", "ref_type": "branch", "ref_protected": true,
                "ci_config": ".gitlab-ci.yml", "audiences": ["https://fedgate.example.com"]}]),
    )
    .await;
    robot(
        &gw,
        &token,
        "k8s",
        json!([{"provider": "kubernetes", "issuer": cluster, "namespace": "ci",
                "service_account": "builder", "audiences": ["https://registry.example.com"],
                "service_account_uid": "14ee3fa4-a7e2-420f-9f9a-dbc4507c3798"}]),
    )
    .await;
    robot(
        &gw,
        &token,
        "gcp",
        json!([{"provider": "google", "email": "builder@my-project.iam.gserviceaccount.com",
                "audiences": ["https://registry.example.com"]}]),
    )
    .await;

    let mut gitlab_claims = issuer.claims_as("gitlab-self-managed", &gitlab, now());
    // The instance's host and relative URL, as GitLab writes them into ci_config_ref_uri.
    gitlab_claims["ci_config_ref_uri"] = json!(format!(
        "{}/platform/images/base//.gitlab-ci.yml@refs/heads/main",
        gitlab.trim_start_matches("https://")
    ));
    let mut google_claims = issuer.claims_as("google", GOOGLE, now());
    google_claims.as_object_mut().unwrap().remove("jti");
    for (robot, claims) in [
        ("github", issuer.claims_as("github-actions", GITHUB, now())),
        (
            "ghec",
            issuer.claims_as("github-enterprise-cloud", GHEC, now()),
        ),
        ("ghes", issuer.claims_as("github-actions", &ghes, now())),
        ("gitlab", gitlab_claims),
        (
            "k8s",
            issuer.claims_as("kubernetes-serviceaccount", &cluster, now()),
        ),
        ("gcp", google_claims),
    ] {
        let reply = gw
            .exchange(&format!("acme+{robot}"), &issuer.token(&claims))
            .await;
        assert_eq!(reply.status, 200, "{robot}: {}", reply.text);
    }

    // Each preset's IDs were recorded by its first exchange, and GET shows them.
    let github = entries(&gw, &token, "github").await;
    assert_eq!(github[0]["repository_owner_id"], "123456");
    assert_eq!(github[0]["repository_id"], "987654");
    assert_eq!(github[0]["conditions"]["repository_owner_id"], "123456");
    assert!(github[0]["pinned_at"].as_str().is_some(), "{github}");
    let gitlab = entries(&gw, &token, "gitlab").await;
    assert_eq!(
        (&gitlab[0]["project_id"], &gitlab[0]["namespace_id"]),
        (&json!("4410"), &json!("172"))
    );
    let gcp = entries(&gw, &token, "gcp").await;
    assert_eq!(gcp[0]["unique_id"], "112233445566778899000");
    assert_eq!(gcp[0]["conditions"]["sub"], "112233445566778899000");
    let k8s = entries(&gw, &token, "k8s").await;
    assert!(
        k8s[0].get("pinned_at").is_none(),
        "Kubernetes pins only what the admin gives: {k8s}"
    );
}

/// Same repository name, another owner: the account was deleted and its name registered
/// again. The IDs pinned by the first exchange refuse the newcomer; the pin itself revoked
/// nothing.
async fn a_resurrected_owner_is_refused(backend: Backend) {
    let issuer = Issuer::rsa().await;
    let (gw, token) = site(backend, &issuer).await;
    robot(
        &gw,
        &token,
        "ci",
        json!([{"provider": "github", "repository": "octo-org/octo-repo",
                "audiences": ["https://github.com/octo-org"]}]),
    )
    .await;
    let before = entries(&gw, &token, "ci").await;
    assert_eq!(before[0]["pinned_at"], Value::Null);
    assert_eq!(
        before[0]["pending_pins"],
        json!(["repository_owner_id", "repository_id"])
    );
    assert!(before[0].get("repository_owner_id").is_none());

    let first = gw
        .exchange(
            "acme+ci",
            &issuer.token(&issuer.claims_as("github-actions", GITHUB, now())),
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    let minted = first.json()["token"].as_str().unwrap().to_string();
    let after = entries(&gw, &token, "ci").await;
    assert_eq!(after[0]["repository_owner_id"], "123456");
    assert_eq!(after[0]["repository_id"], "987654");
    assert!(after[0].get("pending_pins").is_none(), "{after}");
    let pinned_at = after[0]["pinned_at"].as_str().unwrap();
    assert!(
        pinned_at.ends_with("-0000"),
        "a Quay-style date: {pinned_at}"
    );
    assert!(
        fedgate::exchange::verify_minted(&gw.state, &minted)
            .await
            .is_ok(),
        "recording the pins revoked no token"
    );

    // The owner's name registered again by someone else: a new owner ID (and, for a
    // repository created again under the old name, a new repository ID too).
    let mut resurrected = issuer.claims_as("github-actions", GITHUB, now());
    resurrected["repository_owner_id"] = json!("31337");
    let refused = gw.exchange("acme+ci", &issuer.token(&resurrected)).await;
    assert_refused(
        &refused,
        "claim_mismatch",
        "repository_owner_id (\"31337\")",
    );
    resurrected["repository_id"] = json!("4242");
    let refused = gw.exchange("acme+ci", &issuer.token(&resurrected)).await;
    assert_refused(&refused, "claim_mismatch", "repository_id (\"4242\")");
    let again = gw
        .exchange(
            "acme+ci",
            &issuer.token(&issuer.claims_as("github-actions", GITHUB, now())),
        )
        .await;
    assert_eq!(
        again.status, 200,
        "the real owner still works: {}",
        again.text
    );

    // IDs the admin gives are enforced from the first exchange on.
    robot(
        &gw,
        &token,
        "given",
        json!([{"provider": "github", "repository": "octo-org/octo-repo",
                "repository_owner_id": "123456", "repository_id": 987654,
                "audiences": ["https://github.com/octo-org"]}]),
    )
    .await;
    let given = entries(&gw, &token, "given").await;
    assert_eq!(given[0]["repository_id"], "987654");
    assert_eq!(given[0]["pinned_at"], Value::Null, "given, not recorded");
    let mut resurrected = issuer.claims_as("github-actions", GITHUB, now());
    resurrected["repository_owner_id"] = json!("31337");
    let refused = gw.exchange("acme+given", &issuer.token(&resurrected)).await;
    assert_refused(&refused, "claim_mismatch", "repository_owner_id");
}

/// First exchanges of different owners race, on two replicas: one value is pinned, and only
/// the tokens of that owner get through.
async fn racing_first_exchanges_pin_one_value(backend: Backend) {
    let issuer = Issuer::rsa().await;
    let (gw, token) = site(backend, &issuer).await;
    // One SQLite database has one node (it decides replays); PostgreSQL races two replicas.
    let other = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(gw.replica().await),
    };
    robot(
        &gw,
        &token,
        "ci",
        json!([{"provider": "github", "repository": "octo-org/octo-repo",
                "audiences": ["https://github.com/octo-org"]}]),
    )
    .await;
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..8 {
        let mut claims = issuer.claims_as("github-actions", GITHUB, now());
        let owner = if i % 2 == 0 { "123456" } else { "777" };
        claims["repository_owner_id"] = json!(owner);
        let replica = other.as_ref().filter(|_| i % 4 >= 2).unwrap_or(&gw);
        let request = replica
            .client
            .get(format!("{}/oauth2/federation/robot/token", replica.url))
            .basic_auth("acme+ci", Some(issuer.token(&claims)));
        racers.spawn(async move { (owner, crate::harness::send(request).await) });
    }
    let replies = racers.join_all().await;
    let pinned = entries(&gw, &token, "ci").await[0]["repository_owner_id"]
        .as_str()
        .unwrap()
        .to_string();
    for (owner, reply) in &replies {
        if *owner == pinned {
            assert_eq!(reply.status, 200, "{owner}: {}", reply.text);
        } else {
            assert_refused(reply, "claim_mismatch", "repository_owner_id");
        }
    }
}

/// `workflow` checks the caller's workflow (`workflow_ref`), `job_workflow` the reusable one
/// that runs the job (`job_workflow_ref`); naming one does not accept the other.
async fn a_reusable_workflow_mismatch_is_refused(backend: Backend) {
    let issuer = Issuer::rsa().await;
    let (gw, token) = site(backend, &issuer).await;
    let entry = |fields: Value| {
        let mut e = json!({"provider": "github", "repository": "octo-org/octo-repo",
                           "audiences": ["https://github.com/octo-org"]});
        e.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        json!([e])
    };
    // The fixture: release.yml in octo-org/octo-repo calls octo-automation's oidc.yml.
    let reusable = "octo-org/octo-automation/.github/workflows/oidc.yml";
    for (name, fields) in [
        (
            "reusable",
            json!({"job_workflow": format!("{reusable}@refs/heads/main")}),
        ),
        (
            "caller",
            json!({"workflow": ".github/workflows/release.yml"}),
        ),
        (
            "confused",
            json!({"workflow": ".github/workflows/oidc.yml"}),
        ),
        (
            "otherref",
            json!({"job_workflow": format!("{reusable}@refs/heads/dev")}),
        ),
    ] {
        robot(&gw, &token, name, entry(fields)).await;
    }
    let jwt = || issuer.token(&issuer.claims_as("github-actions", GITHUB, now()));
    for ok in ["reusable", "caller"] {
        let reply = gw.exchange(&format!("acme+{ok}"), &jwt()).await;
        assert_eq!(reply.status, 200, "{ok}: {}", reply.text);
    }
    assert_refused(
        &gw.exchange("acme+confused", &jwt()).await,
        "claim_mismatch",
        "workflow_ref",
    );
    assert_refused(
        &gw.exchange("acme+otherref", &jwt()).await,
        "claim_mismatch",
        "job_workflow_ref",
    );
}

/// Issuers compare exactly: an enterprise's tokens (GHEC's per-enterprise issuer, a GHES
/// host) are not github.com's, nor the reverse.
async fn enterprise_tokens_do_not_match_github_com(backend: Backend) {
    let issuer = Issuer::rsa().await;
    let (gw, token) = site(backend, &issuer).await;
    let ghes = issuer.serve_issuer("/_services/token");
    robot(
        &gw,
        &token,
        "dotcom",
        json!([{"provider": "github", "repository": "octo-enterprise-org/deploy-tools",
                "audiences": ["https://fedgate.example.com", "https://github.com/octo-org"]}]),
    )
    .await;
    robot(
        &gw,
        &token,
        "enterprise",
        json!([{"provider": "github", "enterprise": "octo-enterprise",
                "repository": "octo-org/octo-repo", "audiences": ["https://github.com/octo-org"]}]),
    )
    .await;
    let ghec_token = issuer.token(&issuer.claims_as("github-enterprise-cloud", GHEC, now()));
    assert_refused(
        &gw.exchange("acme+dotcom", &ghec_token).await,
        "issuer_not_configured",
        GHEC,
    );
    let mut ghes_claims = issuer.claims_as("github-enterprise-cloud", &ghes, now());
    ghes_claims["aud"] = json!("https://fedgate.example.com");
    assert_refused(
        &gw.exchange("acme+dotcom", &issuer.token(&ghes_claims))
            .await,
        "issuer_not_configured",
        "_services/token",
    );
    let dotcom_token = issuer.token(&issuer.claims_as("github-actions", GITHUB, now()));
    assert_refused(
        &gw.exchange("acme+enterprise", &dotcom_token).await,
        "issuer_not_configured",
        GITHUB,
    );
    // The same enterprise token does fit the github.com entry's claims: only the issuer differs.
    let mut as_dotcom = issuer.claims_as("github-enterprise-cloud", GITHUB, now());
    as_dotcom["aud"] = json!("https://fedgate.example.com");
    let reply = gw.exchange("acme+dotcom", &issuer.token(&as_dotcom)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

/// What GET returned, POSTed back, is accepted and changes nothing, before and after pins
/// were recorded.
async fn presets_round_trip(backend: Backend) {
    let issuer = Issuer::rsa().await;
    let (gw, token) = site(backend, &issuer).await;
    let path = "/api/v1/organization/acme/robots/ci/federation";
    robot(
        &gw,
        &token,
        "ci",
        json!([{"provider": "github", "repository": "octo-org/octo-repo",
                "ref": ["refs/heads/main", "refs/tags/v*"], "event_name": "workflow_dispatch",
                "audiences": ["https://github.com/octo-org"], "conditions": {"actor": "octocat"},
                "unknown_key": "dropped"},
               {"issuer": GITHUB, "subject": "repo:octo-org/other:*",
                "conditions": {"event_name": ["push", "release"]}}]),
    )
    .await;
    let shown = entries(&gw, &token, "ci").await;
    assert_eq!(
        shown[0],
        json!({"issuer": GITHUB, "subject": "*",
               "audiences": ["https://github.com/octo-org"],
               "conditions": {"actor": "octocat", "event_name": "workflow_dispatch",
                              "ref": ["refs/heads/main", "refs/tags/v*"],
                              "repository": "octo-org/octo-repo"},
               "provider": "github", "repository": "octo-org/octo-repo",
               "ref": ["refs/heads/main", "refs/tags/v*"], "event_name": "workflow_dispatch",
               "pinned_at": null, "pending_pins": ["repository_owner_id", "repository_id"]})
    );
    for round in ["pending", "pinned"] {
        let before = entries(&gw, &token, "ci").await;
        let back = gw
            .call("POST", path, Some(&token), Some(before.clone()))
            .await;
        assert_eq!(back.status, 200, "{round}: {}", back.text);
        assert_eq!(back.json(), before, "{round}: POST answers the same list");
        assert_eq!(
            entries(&gw, &token, "ci").await,
            before,
            "{round}: GET is unchanged"
        );
        let first = gw
            .exchange(
                "acme+ci",
                &issuer.token(&issuer.claims_as("github-actions", GITHUB, now())),
            )
            .await;
        assert_eq!(first.status, 200, "{round}: {}", first.text);
    }
    let pinned = entries(&gw, &token, "ci").await;
    assert!(pinned[0]["pinned_at"].is_string(), "{pinned}");
}

/// Entries that cannot work are 400 with a message naming the problem; the list is kept.
async fn malformed_presets_are_refused(backend: Backend) {
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting(backend, &issuer, Arc::new(SystemClock), |c| {
        c.federation.allowed_issuers = vec![GITHUB.into(), "https://gitlab.com".into()];
    })
    .await;
    let token = gw
        .federated_robot(
            "acme",
            "ci",
            json!([{"provider": "github", "repository": "acme/keep"}]),
        )
        .await;
    let path = "/api/v1/organization/acme/robots/ci/federation";
    for (entry, needle) in [
        (
            json!({"provider": "github", "repository": "acme"}),
            "repository must be OWNER/REPO",
        ),
        (
            json!({"provider": "github", "repository": "acme/app/extra"}),
            "repository must be OWNER/REPO",
        ),
        (
            json!({"provider": "github", "repository": "acme/app", "enterprise": "octo"}),
            "Issuer is not allowed by this gateway",
        ),
        (
            json!({"provider": "gitlab", "url": "https://gitlab.example.com", "project_path": "g/p"}),
            "Issuer is not allowed by this gateway",
        ),
        (
            json!({"provider": "github", "repository": "acme/app", "ref": "main"}),
            "pattern \"main\" can never match a github token: GitHub's ref is a full ref",
        ),
        (
            json!({"provider": "github", "repository": "acme/app", "ref": ["refs/heads/main", "dev"]}),
            "pattern \"dev\" can never match",
        ),
        (
            json!({"provider": "github", "repository": "acme/app", "repository_owner_id": "acme"}),
            "repository_owner_id must be a numeric ID",
        ),
        (
            json!({"issuer": GITHUB, "subject": "repo:acme/*", "conditions": {"repository_owner_id": "acme"}}),
            "conditions.repository_owner_id: pattern \"acme\" can never match",
        ),
        (
            json!({"issuer": "https://gitlab.com", "subject": "acme/app"}),
            "subject: pattern \"acme/app\" can never match a gitlab token",
        ),
        (
            json!({"provider": "gitlab", "project_path": "g/p", "ref": "refs/heads/main"}),
            "GitLab's ref is the bare branch or tag name",
        ),
        (
            json!({"provider": "gitlab", "project_path": "group/*"}),
            "give namespace_id",
        ),
        (
            json!({"provider": "github", "repository": "acme/app", "workflow": "release.yml"}),
            ".github/workflows/NAME.yml",
        ),
        (
            json!({"provider": "github", "repository": "acme/app", "issuer": "https://gitlab.com"}),
            "leave issuer out of a preset entry",
        ),
        (
            json!({"provider": "github", "repository": "acme/app", "conditions": {"repository": "acme/other"}}),
            "conditions.repository contradicts",
        ),
        (
            json!({"provider": "jenkins"}),
            "Unknown provider \"jenkins\"",
        ),
        (
            json!({"issuer": GITHUB, "subject": "repo:*", "conditions": {"event_name": []}}),
            "lists of 1 to 20",
        ),
    ] {
        let reply = gw
            .call("POST", path, Some(&token), Some(json!([entry.clone()])))
            .await;
        assert_eq!(reply.status, 400, "{entry}: {}", reply.text);
        assert!(
            reply.message().contains(needle),
            "{entry}: {}",
            reply.message()
        );
    }
    let kept = gw.call("GET", path, Some(&token), None).await.json();
    assert_eq!(kept[0]["repository"], "acme/keep", "{kept}");
}

on_both_databases!(
    every_preset_exchanges_its_platforms_token,
    a_resurrected_owner_is_refused,
    racing_first_exchanges_pin_one_value,
    a_reusable_workflow_mismatch_is_refused,
    enterprise_tokens_do_not_match_github_com,
    presets_round_trip,
    malformed_presets_are_refused,
);
