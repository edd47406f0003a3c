//! Kubernetes service-account tokens (projected volumes), from any cluster.
//!
//! `{"provider": "kubernetes", "issuer": "https://kubernetes.default.svc.cluster.local",
//!   "namespace": "ci", "service_account": "builder"}`
//!
//! - The issuer is the cluster's `--service-account-issuer`; a cluster whose issuer nobody
//!   can reach is trusted through `[[federation.issuers]]` (static keys, or `jwks_uri` with
//!   the API server's CA and a bearer token): see `oidc::trust`.
//! - The subject is `system:serviceaccount:<namespace>:<service_account>`, and the namespace
//!   is checked again in the nested `kubernetes.io` claim.
//! - `service_account_uid` pins the account: one deleted and created again under the same
//!   name (by whoever may create accounts in the namespace) no longer matches. It is not
//!   recorded on first use, since recreating service accounts is routine (every redeploy of
//!   some charts); give it when accounts in the namespace are not all equally trusted.

use super::{Expansion, Fields, Shape, Spec};
use crate::oidc::policy::Accepted;

pub const SPEC: Spec = Spec {
    name: "kubernetes",
    fields: &[
        "issuer",
        "namespace",
        "service_account",
        "service_account_uid",
    ],
    pins: &[],
    shapes: &[(
        "sub",
        Shape::Prefix("system:serviceaccount:"),
        "service-account subjects start with system:serviceaccount:",
    )],
    issues: |_| false,
    expand,
};

/// A DNS-1123 label: what namespace names are.
fn is_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// A DNS-1123 subdomain (service-account names), here with `*` allowed.
fn is_subdomain_pattern(name: &str) -> bool {
    (1..=253).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.*".contains(&b))
}

fn expand(f: &Fields<'_>) -> Result<Expansion, String> {
    let issuer = f.required("issuer")?;
    let namespace = f.required("namespace")?;
    if !is_label(namespace) {
        return Err(f.error(
            "namespace",
            format!("must be a namespace name (a DNS label, no *), got {namespace:?}"),
        ));
    }
    let account = f.required("service_account")?;
    if !is_subdomain_pattern(account) {
        return Err(f.error(
            "service_account",
            format!("must be a service-account name (lower case, digits, - and .; * allowed), got {account:?}"),
        ));
    }
    let mut conditions = vec![(
        "kubernetes.io.namespace".to_string(),
        Accepted::from(namespace),
    )];
    if let Some(uid) = f.text("service_account_uid")? {
        if account.contains('*')
            || uid.len() != 36
            || !uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        {
            return Err(f.error(
                "service_account_uid",
                "must be the account's UID (kubectl get sa NAME -o jsonpath='{.metadata.uid}'), for one account",
            ));
        }
        conditions.push((
            "kubernetes.io.serviceaccount.uid".to_string(),
            Accepted::from(uid),
        ));
    }
    Ok(Expansion {
        issuer: issuer.strip_suffix('/').unwrap_or(issuer).to_string(),
        subject: format!("system:serviceaccount:{namespace}:{account}"),
        conditions,
        pinnable: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::oidc::providers::expand_entry;

    fn expand(v: Value) -> Result<Value, String> {
        expand_entry(v.as_object().unwrap()).map(|e| Value::Object(e.unwrap().0))
    }

    #[test]
    fn a_service_account_expands_into_its_subject() {
        let plain = expand(json!({"provider": "kubernetes",
            "issuer": "https://kubernetes.default.svc.cluster.local/", "namespace": "ci",
            "service_account": "builder",
            "service_account_uid": "14ee3fa4-a7e2-420f-9f9a-dbc4507c3798"}))
        .unwrap();
        assert_eq!(
            plain,
            json!({"issuer": "https://kubernetes.default.svc.cluster.local",
                   "subject": "system:serviceaccount:ci:builder",
                   "conditions": {"kubernetes.io.namespace": "ci",
                       "kubernetes.io.serviceaccount.uid": "14ee3fa4-a7e2-420f-9f9a-dbc4507c3798"}})
        );
        for (bad, needle) in [
            (
                json!({"provider": "kubernetes", "namespace": "ci", "service_account": "b"}),
                "issuer is required",
            ),
            (
                json!({"provider": "kubernetes", "issuer": "https://k", "namespace": "C*", "service_account": "b"}),
                "namespace",
            ),
            (
                json!({"provider": "kubernetes", "issuer": "https://k", "namespace": "ci", "service_account": "B"}),
                "service_account",
            ),
            (
                json!({"provider": "kubernetes", "issuer": "https://k", "namespace": "ci", "service_account": "*",
                    "service_account_uid": "14ee3fa4-a7e2-420f-9f9a-dbc4507c3798"}),
                "for one account",
            ),
        ] {
            let err = expand(bad.clone()).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn labels_take_digits_and_dashes_and_each_uid_fault_is_refused_alone() {
        assert!(
            expand(json!({"provider": "kubernetes", "issuer": "https://k",
                "namespace": "team-1", "service_account": "builder-2"}))
            .is_ok()
        );
        for uid in ["14ee3fa4", "14ee3fa4-a7e2-420f-9f9a-dbc4507c379z"] {
            let refused = expand(json!({"provider": "kubernetes", "issuer": "https://k",
                "namespace": "ci", "service_account": "b", "service_account_uid": uid}));
            assert!(refused.is_err(), "{uid}: {refused:?}");
        }
    }
}
