//! Claim sets of more platforms (tests/fixtures/claims/), exchanged against raw entries the
//! way their documentation says to trust them: Buildkite (one issuer for every organization,
//! so the organization is a condition), CircleCI (claim names with dots and slashes), and
//! AWS IAM outbound identity federation (claims nested under `https://sts.amazonaws.com/`).
//! GitHub Enterprise Cloud and GitLab self-managed are exchanged in `providers.rs`, Azure's
//! v1 and v2 tokens in `trust.rs`.

use std::sync::Arc;

use fedgate::clock::{Clock, SystemClock};
use serde_json::json;

use crate::harness::issuer::Issuer;
use crate::harness::{Backend, Gateway};

const AUD: &str = "https://fedgate.example.com";
const CIRCLE_ORG: &str = "3a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
const CIRCLE_PROJECT: &str = "6f7e8d9c-0b1a-4c2d-9e3f-4a5b6c7d8e9f";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buildkite_circleci_and_aws_tokens_exchange() {
    let issuer = Issuer::rsa().await;
    let buildkite = issuer.serve_issuer("/buildkite/agent");
    let circleci = issuer.serve_issuer(&format!("/org/{CIRCLE_ORG}"));
    let aws = issuer.serve_issuer("/tokens/3f2b1c0d-9e8a-4b7c-8d6e-5f4a3b2c1d0e");
    let gw = Gateway::trusting(Backend::Sqlite, &issuer, Arc::new(SystemClock), |_| {}).await;
    gw.federated_robot(
        "acme",
        "ci",
        json!([
            {"issuer": buildkite, "audiences": [AUD],
             "subject": "organization:acme-inc:pipeline:super-duper-app:ref:refs/heads/main:*",
             "conditions": {"organization_id": "0184990a-1234-4abc-8def-0123456789ab",
                            "build_branch": ["main", "release/*"]}},
            {"issuer": circleci, "audiences": [CIRCLE_ORG],
             "subject": format!("org/{CIRCLE_ORG}/project/{CIRCLE_PROJECT}/*"),
             "conditions": {"oidc.circleci.com/project-id": CIRCLE_PROJECT,
                            "oidc.circleci.com/vcs-ref": "refs/heads/main",
                            "oidc.circleci.com/ssh-rerun": "false"}},
            {"issuer": aws, "audiences": [AUD],
             "subject": "arn:aws:iam::123456789012:role/ci-*",
             "conditions": {"https://sts.amazonaws.com/.aws_account": "123456789012",
                            "https://sts.amazonaws.com/.org_id": "o-abc1234567",
                            "https://sts.amazonaws.com/.principal_tags.team": ["platform", "release"]}},
        ]),
    )
    .await;
    let now = SystemClock.unix();
    let claims = |fixture: &str, iss: &str| {
        let mut claims = issuer.claims_as(fixture, iss, now);
        if fixture != "aws-outbound" {
            claims.as_object_mut().unwrap().remove("jti"); // neither sends one
        }
        claims
    };
    for (fixture, iss) in [
        ("buildkite", &buildkite),
        ("circleci", &circleci),
        ("aws-outbound", &aws),
    ] {
        let reply = gw
            .exchange("acme+ci", &issuer.token(&claims(fixture, iss)))
            .await;
        assert_eq!(reply.status, 200, "{fixture}: {}", reply.text);
    }

    // What each platform's own trap looks like when it is sprung.
    let mut other_org = claims("buildkite", &buildkite);
    other_org["sub"] = json!(
        "organization:evil-inc:pipeline:super-duper-app:ref:refs/heads/main:commit:0:step:build"
    );
    let mut ssh_rerun = claims("circleci", &circleci);
    ssh_rerun["oidc.circleci.com/ssh-rerun"] = json!(true);
    let mut other_account = claims("aws-outbound", &aws);
    other_account["https://sts.amazonaws.com/"]["aws_account"] = json!("210987654321");
    for (what, claims, code, needle) in [
        (
            "another organization",
            other_org,
            "subject_mismatch",
            "evil-inc",
        ),
        (
            "an SSH re-run",
            ssh_rerun,
            "claim_mismatch",
            "oidc.circleci.com/ssh-rerun",
        ),
        (
            "another account",
            other_account,
            "claim_mismatch",
            "aws_account",
        ),
    ] {
        let reply = gw.exchange("acme+ci", &issuer.token(&claims)).await;
        assert_eq!(reply.status, 401, "{what}: {}", reply.text);
        assert_eq!(reply.json()["error_code"], code, "{what}: {}", reply.text);
        assert!(reply.text.contains(needle), "{what}: {}", reply.text);
    }
}
