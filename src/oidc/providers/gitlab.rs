//! GitLab CI/CD ID tokens, gitlab.com or a self-managed instance (its URL is the issuer).
//!
//! `{"provider": "gitlab", "url": "https://gitlab.example.com", "project_path": "group/app",
//!   "ref": "main", "ref_type": "branch", "ref_protected": true}`
//!
//! - The subject is `project_path:<project_path>:*` (GitLab may add components after the
//!   path, never before); `project_path` is also checked exactly.
//! - `project_id` and `namespace_id` are pinned: a group or project path someone deletes and
//!   someone else registers no longer matches. A `project_path` with `*` covers many projects
//!   whose IDs cannot be recorded from one token, so it needs `namespace_id` from the admin.
//! - GitLab's `ref` is the bare branch or tag name (`main`); `refs/heads/main` is `ref_path`.
//! - `ci_config` checks `ci_config_ref_uri`, the pipeline definition that ran the job.

use url::Url;

use super::{Expansion, Fields, Shape, Spec};
use crate::oidc::policy::Accepted;

pub const GITLAB_COM: &str = "https://gitlab.com";

pub const SPEC: Spec = Spec {
    name: "gitlab",
    fields: &[
        "url",
        "project_path",
        "project_id",
        "namespace_id",
        "ref",
        "ref_type",
        "ref_protected",
        "environment",
        "ci_config",
        "pipeline_source",
    ],
    pins: &[
        ("project_id", "project_id"),
        ("namespace_id", "namespace_id"),
    ],
    shapes: &[
        (
            "sub",
            Shape::Prefix("project_path:"),
            "GitLab subjects start with project_path:",
        ),
        (
            "ref",
            Shape::NotPrefix("refs/"),
            "GitLab's ref is the bare branch or tag name (main); refs/heads/main is its ref_path",
        ),
        (
            "ref_path",
            Shape::Prefix("refs/"),
            "GitLab's ref_path is a full ref such as refs/heads/main",
        ),
        ("project_id", Shape::Digits, "GitLab sends numeric IDs"),
        ("namespace_id", Shape::Digits, "GitLab sends numeric IDs"),
        ("user_id", Shape::Digits, "GitLab sends numeric IDs"),
        (
            "ref_type",
            Shape::OneOf(&["branch", "tag"]),
            "GitLab sends branch or tag",
        ),
        (
            "ref_protected",
            Shape::OneOf(&["true", "false"]),
            "GitLab sends \"true\" or \"false\"",
        ),
    ],
    issues: |issuer| issuer == GITLAB_COM,
    expand,
};

fn is_path_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= 255
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-*".contains(&b))
        && !segment.starts_with(['-', '.'])
}

fn expand(f: &Fields<'_>) -> Result<Expansion, String> {
    let url = f.text("url")?.unwrap_or(GITLAB_COM);
    let url = url.strip_suffix('/').unwrap_or(url);
    let parsed =
        Url::parse(url).map_err(|_| f.error("url", "must be the GitLab instance's URL"))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| f.error("url", "must be the GitLab instance's URL"))?;

    let project_path = f.required("project_path")?;
    let segments: Vec<&str> = project_path.split('/').collect();
    let (namespace, _) = project_path.rsplit_once('/').unwrap_or_default();
    if segments.len() < 2 || !segments.iter().all(|s| is_path_segment(s)) || namespace.contains('*')
    {
        return Err(f.error(
            "project_path",
            format!(
                "must be GROUP/PROJECT (subgroups allowed; only the last segment may use *), got {project_path:?}"
            ),
        ));
    }
    let exact = !project_path.contains('*');

    let mut conditions = vec![("project_path".to_string(), Accepted::from(project_path))];
    for id in ["project_id", "namespace_id"] {
        if let Some(value) = f.id(id)? {
            conditions.push((id.to_string(), Accepted::from(value.as_str())));
        }
    }
    if !exact && !conditions.iter().any(|(c, _)| c == "namespace_id") {
        return Err(f.error(
            "project_path",
            "with * covers projects whose IDs cannot be pinned from one token: give namespace_id (the group's ID) too",
        ));
    }
    for field in ["ref", "environment", "pipeline_source"] {
        if let Some(accepted) = f.accepted(field)? {
            conditions.push((field.to_string(), accepted));
        }
    }
    if let Some(ref_type) = f.text("ref_type")? {
        if !matches!(ref_type, "branch" | "tag") {
            return Err(f.error("ref_type", "must be branch or tag"));
        }
        conditions.push(("ref_type".to_string(), Accepted::from(ref_type)));
    }
    if let Some(protected) = f.boolean("ref_protected")? {
        let text = if protected { "true" } else { "false" };
        conditions.push(("ref_protected".to_string(), Accepted::from(text)));
    }
    if let Some(ci_config) = f.text("ci_config")? {
        if ci_config.starts_with('/') || ci_config.contains("//") || ci_config.contains('@') {
            return Err(f.error(
                "ci_config",
                "must be the path of the CI configuration in the project, e.g. .gitlab-ci.yml",
            ));
        }
        let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
        let base = parsed.path().trim_end_matches('/');
        conditions.push((
            "ci_config_ref_uri".to_string(),
            Accepted::from(format!("{host}{port}{base}/{project_path}//{ci_config}@*").as_str()),
        ));
    }
    Ok(Expansion {
        issuer: url.to_string(),
        subject: format!("project_path:{project_path}:*"),
        conditions,
        pinnable: if exact {
            vec!["project_id", "namespace_id"]
        } else {
            Vec::new()
        },
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::oidc::providers::expand_entry;

    fn expand(v: Value) -> Result<(Value, Vec<String>), String> {
        expand_entry(v.as_object().unwrap()).map(|e| {
            let (plain, preset) = e.unwrap();
            let pending = preset.pending_pins.iter().map(|p| p.to_string()).collect();
            (Value::Object(plain), pending)
        })
    }

    #[test]
    fn self_managed_instances_are_their_own_issuer() {
        let (plain, pending) = expand(json!({"provider": "gitlab",
            "url": "https://gitlab.example.com:8443/gitlab/", "project_path": "group/sub/app",
            "ref": "main", "ref_type": "branch", "ref_protected": true,
            "ci_config": ".gitlab-ci.yml"}))
        .unwrap();
        assert_eq!(
            plain,
            json!({"issuer": "https://gitlab.example.com:8443/gitlab",
                   "subject": "project_path:group/sub/app:*",
                   "conditions": {"project_path": "group/sub/app", "ref": "main",
                       "ref_type": "branch", "ref_protected": "true",
                       "ci_config_ref_uri": "gitlab.example.com:8443/gitlab/group/sub/app//.gitlab-ci.yml@*"}})
        );
        assert_eq!(pending, ["project_id", "namespace_id"]);
        let (plain, _) = expand(json!({"provider": "gitlab", "project_path": "g/p"})).unwrap();
        assert_eq!(plain["issuer"], "https://gitlab.com");
    }

    #[test]
    fn wildcards_need_the_namespace_id() {
        let err = expand(json!({"provider": "gitlab", "project_path": "group/*"})).unwrap_err();
        assert!(err.contains("give namespace_id"), "{err}");
        let (_, pending) = expand(json!({"provider": "gitlab", "project_path": "group/*",
                                          "namespace_id": "72"}))
        .unwrap();
        assert!(pending.is_empty());
        for bad in ["group", "*/p", "g/-p", "g//p"] {
            let err = expand(json!({"provider": "gitlab", "project_path": bad})).unwrap_err();
            assert!(err.contains("GROUP/PROJECT"), "{bad}: {err}");
        }
    }

    #[test]
    fn each_fault_of_a_ci_config_path_is_refused_alone() {
        for ci_config in ["/.gitlab-ci.yml", "ci//main.yml", "ci.yml@main"] {
            let err = expand(json!({"provider": "gitlab", "project_path": "g/p",
                                    "ci_config": ci_config}))
            .unwrap_err();
            assert!(err.contains("ci_config"), "{ci_config}: {err}");
        }
    }
}
