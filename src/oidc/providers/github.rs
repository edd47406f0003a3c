//! GitHub Actions: github.com, GitHub Enterprise Cloud with a per-enterprise issuer, and
//! GitHub Enterprise Server.
//!
//! `{"provider": "github", "repository": "acme/app", "ref": "refs/heads/main",
//!   "environment": "prod", "workflow": ".github/workflows/release.yml"}`
//!
//! - The subject is `*`: subjects can be customised per repository or organisation (to start
//!   with `repository_owner:` for one), and newer repositories carry `repo:OWNER@ID/REPO@ID:...`;
//!   the claims below keep their shape, so the identity is checked there.
//! - `repository` is checked exactly, and the immutable `repository_owner_id` (and, for one
//!   repository, `repository_id`) are pinned: a deleted owner or repository name that
//!   someone registers again no longer matches.
//! - `workflow` checks `workflow_ref`, the workflow the run started from (in the repository
//!   itself); `job_workflow` checks `job_workflow_ref`, the workflow that runs the job (a
//!   reusable workflow, perhaps in another repository). They differ exactly when a reusable
//!   workflow runs the job; a preset says which one it means.
//! - `enterprise` (GHEC: `https://token.actions.githubusercontent.com/<slug>`) and `host`
//!   (GHES: `https://<host>/_services/token`) pick the issuer; issuers compare exactly, so an
//!   enterprise's tokens never match a github.com entry, nor the reverse.

use url::Url;

use super::{Expansion, Fields, Shape, Spec};
use crate::oidc::policy::Accepted;

pub const ISSUER: &str = "https://token.actions.githubusercontent.com";

pub const SPEC: Spec = Spec {
    name: "github",
    fields: &[
        "repository",
        "repository_id",
        "repository_owner_id",
        "ref",
        "environment",
        "workflow",
        "job_workflow",
        "event_name",
        "runner_environment",
        "enterprise",
        "host",
    ],
    pins: &[
        ("repository_owner_id", "repository_owner_id"),
        ("repository_id", "repository_id"),
    ],
    // No shape for the subject: a customised one need not start with `repo:`.
    shapes: &[
        (
            "ref",
            Shape::Prefix("refs/"),
            "GitHub's ref is a full ref such as refs/heads/main or refs/tags/v1",
        ),
        (
            "repository_id",
            Shape::Digits,
            "GitHub sends numeric IDs (gh api repos/OWNER/REPO --jq .id)",
        ),
        (
            "repository_owner_id",
            Shape::Digits,
            "GitHub sends numeric IDs (gh api users/OWNER --jq .id)",
        ),
        ("actor_id", Shape::Digits, "GitHub sends numeric IDs"),
        (
            "ref_protected",
            Shape::OneOf(&["true", "false"]),
            "GitHub sends \"true\" or \"false\"",
        ),
        (
            "ref_type",
            Shape::OneOf(&["branch", "tag"]),
            "GitHub sends branch or tag",
        ),
        (
            "runner_environment",
            Shape::OneOf(&["github-hosted", "self-hosted"]),
            "GitHub sends github-hosted or self-hosted",
        ),
        (
            "repository_visibility",
            Shape::OneOf(&["public", "private", "internal"]),
            "GitHub sends public, private or internal",
        ),
    ],
    issues: |issuer| {
        issuer == ISSUER
            || issuer
                .strip_prefix(ISSUER)
                .is_some_and(|slug| slug.starts_with('/') && !slug[1..].contains('/'))
            || issuer.ends_with("/_services/token")
    },
    expand,
};

/// GitHub account names: letters, digits, `-` (and `_` for managed users), at most 39
/// characters, plus room for an enterprise's shortcode.
fn is_owner(owner: &str) -> bool {
    (1..=100).contains(&owner.len())
        && owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !owner.starts_with('-')
}

/// Repository names: letters, digits, `.`, `-`, `_`; here `*` too (any of the owner's).
fn is_repository_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-*".contains(&b))
        && name != "."
        && name != ".."
}

fn expand(f: &Fields<'_>) -> Result<Expansion, String> {
    let repository = f.required("repository")?;
    let malformed = || {
        f.error(
            "repository",
            format!("must be OWNER/REPO (REPO may use *, OWNER may not), got {repository:?}"),
        )
    };
    let (owner, name) = repository.split_once('/').ok_or_else(malformed)?;
    if !is_owner(owner) || !is_repository_name(name) {
        return Err(malformed());
    }

    let issuer = match (f.text("enterprise")?, f.text("host")?) {
        (Some(_), Some(_)) => {
            return Err(f.error(
                "enterprise",
                "and host exclude each other (GitHub Enterprise Cloud or Server)",
            ));
        }
        (Some(slug), None) => {
            let ok = slug.len() <= 100
                && slug
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(f.error("enterprise", "must be the enterprise's slug"));
            }
            format!("{ISSUER}/{slug}")
        }
        (None, Some(host)) => {
            let url = Url::parse(&format!("https://{host}/"))
                .ok()
                .filter(|u| u.path() == "/" && u.username().is_empty() && u.query().is_none());
            if url.is_none() || host.contains(['/', '@', '?', '#']) {
                return Err(f.error(
                    "host",
                    "must be a GitHub Enterprise Server host name (and port)",
                ));
            }
            format!("https://{host}/_services/token")
        }
        (None, None) => ISSUER.to_string(),
    };

    let mut conditions = vec![("repository".to_string(), Accepted::from(repository))];
    let mut pinnable = vec!["repository_owner_id"];
    if !name.contains('*') {
        pinnable.push("repository_id");
    }
    for id in ["repository_owner_id", "repository_id"] {
        if let Some(value) = f.id(id)? {
            conditions.push((id.to_string(), Accepted::from(value.as_str())));
        }
    }
    for (field, claim) in [
        ("ref", "ref"),
        ("environment", "environment"),
        ("event_name", "event_name"),
        ("runner_environment", "runner_environment"),
    ] {
        if let Some(accepted) = f.accepted(field)? {
            conditions.push((claim.to_string(), accepted));
        }
    }
    if let Some(workflow) = f.text("workflow")? {
        let file = workflow.strip_prefix(".github/workflows/");
        if !file.is_some_and(is_workflow_file) {
            return Err(f.error(
                "workflow",
                format!(
                    "must be the path of a workflow in the repository, .github/workflows/NAME.yml (got {workflow:?}); a reusable workflow that runs the job is job_workflow"
                ),
            ));
        }
        conditions.push((
            "workflow_ref".to_string(),
            Accepted::from(format!("{repository}/{workflow}@*").as_str()),
        ));
    }
    if let Some(job_workflow) = f.text("job_workflow")? {
        let well_formed = job_workflow.split_once('@').is_some_and(|(path, git_ref)| {
            !git_ref.is_empty()
                && path
                    .split_once("/.github/workflows/")
                    .is_some_and(|(repo, file)| {
                        repo.split_once('/')
                            .is_some_and(|(o, r)| is_owner(o) && is_repository_name(r))
                            && is_workflow_file(file)
                    })
        });
        if !well_formed {
            return Err(f.error(
                "job_workflow",
                format!(
                    "must be OWNER/REPO/.github/workflows/NAME.yml@REF, REF a full ref or * (got {job_workflow:?})"
                ),
            ));
        }
        conditions.push(("job_workflow_ref".to_string(), Accepted::from(job_workflow)));
    }
    Ok(Expansion {
        issuer,
        subject: "*".to_string(),
        conditions,
        pinnable,
    })
}

fn is_workflow_file(file: &str) -> bool {
    !file.is_empty()
        && !file.contains('/')
        && (file.ends_with(".yml") || file.ends_with(".yaml") || file.ends_with('*'))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::oidc::providers::expand_entry;

    fn expand(v: Value) -> Result<Value, String> {
        expand_entry(v.as_object().unwrap()).map(|e| Value::Object(e.unwrap().0))
    }

    #[test]
    fn a_preset_expands_into_issuer_subject_and_conditions() {
        let plain = expand(json!({"provider": "github", "repository": "acme/app",
            "ref": "refs/heads/main", "environment": "prod",
            "workflow": ".github/workflows/release.yml",
            "job_workflow": "acme/shared/.github/workflows/build.yml@refs/heads/main",
            "event_name": ["push", "workflow_dispatch"], "repository_owner_id": 42}))
        .unwrap();
        assert_eq!(
            plain,
            json!({"issuer": ISSUER, "subject": "*", "conditions": {
                "repository": "acme/app", "ref": "refs/heads/main", "environment": "prod",
                "workflow_ref": "acme/app/.github/workflows/release.yml@*",
                "job_workflow_ref": "acme/shared/.github/workflows/build.yml@refs/heads/main",
                "event_name": ["push", "workflow_dispatch"], "repository_owner_id": "42"}})
        );
    }

    #[test]
    fn enterprise_issuers() {
        let ghec =
            expand(json!({"provider": "github", "repository": "a/b", "enterprise": "octo-corp"}))
                .unwrap();
        assert_eq!(ghec["issuer"], format!("{ISSUER}/octo-corp"));
        let ghes = expand(
            json!({"provider": "github", "repository": "a/b", "host": "github.acme.test:8443"}),
        )
        .unwrap();
        assert_eq!(
            ghes["issuer"],
            "https://github.acme.test:8443/_services/token"
        );
        for bad in [
            json!({"provider": "github", "repository": "a/b", "host": "h/x"}),
            json!({"provider": "github", "repository": "a/b", "host": "u@h"}),
            json!({"provider": "github", "repository": "a/b", "enterprise": "a/b"}),
            json!({"provider": "github", "repository": "a/b", "enterprise": "e", "host": "h"}),
        ] {
            assert!(expand(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn owners_take_letters_digits_dashes_and_underscores() {
        for owner in ["acme-corp", "acme_emu", "Acme2"] {
            assert!(is_owner(owner), "{owner}");
        }
        for owner in ["-acme", "acme.corp", "acme*", "", &"a".repeat(101)] {
            assert!(!is_owner(owner), "{owner}");
        }
    }

    /// Each fault of a workflow path, a reusable workflow reference or a GHES host is refused
    /// on its own, next to the same field well formed.
    #[test]
    fn each_fault_of_a_workflow_or_a_host_is_refused_alone() {
        let with = |field: &str, value: &str| {
            expand(json!({"provider": "github", "repository": "acme/app", field: value}))
        };
        for ok in [
            ".github/workflows/release.yml",
            ".github/workflows/r.yaml",
            ".github/workflows/*",
        ] {
            assert!(with("workflow", ok).is_ok(), "{ok}");
        }
        for bad in [
            ".github/workflows/",
            ".github/workflows/sub/r.yml",
            ".github/workflows/r.txt",
        ] {
            assert!(with("workflow", bad).is_err(), "{bad}");
        }
        let ok = "acme/tools/.github/workflows/build.yml@refs/heads/main";
        assert!(with("job_workflow", ok).is_ok());
        for bad in [
            "acme/tools/.github/workflows/build.yml@",
            "-acme/tools/.github/workflows/build.yml@refs/heads/main",
            "acme/../.github/workflows/build.yml@refs/heads/main",
            "acme/tools/.github/workflows/build.txt@refs/heads/main",
        ] {
            assert!(with("job_workflow", bad).is_err(), "{bad}");
        }
        assert!(with("host", "ghe.example:8443").is_ok());
        for bad in [
            "ghe example",
            "ghe.example#x",
            "ghe.example/x",
            "user@ghe.example",
            "ghe.example\\x",
        ] {
            assert!(with("host", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn malformed_fields_are_refused() {
        for (bad, needle) in [
            (json!({"provider": "github"}), "repository is required"),
            (
                json!({"provider": "github", "repository": "acme"}),
                "OWNER/REPO",
            ),
            (
                json!({"provider": "github", "repository": "*/app"}),
                "OWNER/REPO",
            ),
            (
                json!({"provider": "github", "repository": "acme/app/x"}),
                "OWNER/REPO",
            ),
            (
                json!({"provider": "github", "repository": "acme/.."}),
                "OWNER/REPO",
            ),
            (
                json!({"provider": "github", "repository": "a/b", "repository_id": "x1"}),
                "numeric ID",
            ),
            (
                json!({"provider": "github", "repository": "a/b", "workflow": "release.yml"}),
                ".github/workflows/",
            ),
            (
                json!({"provider": "github", "repository": "a/b", "job_workflow": "o/r/.github/workflows/x.yml"}),
                "@REF",
            ),
            (
                json!({"provider": "github", "repository": "a/b", "ref": []}),
                "list of 1 to 20",
            ),
            (
                json!({"provider": "github", "repository": "a/b", "ref": 5}),
                "pattern",
            ),
        ] {
            let err = expand(bad.clone()).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }
}
