//! Google-signed ID tokens of a service account (the metadata server of a VM, Cloud Run,
//! GKE workload identity, or `gcloud auth print-identity-token`).
//!
//! `{"provider": "google", "email": "builder@my-project.iam.gserviceaccount.com"}`
//!
//! - `email` is checked with `email_verified`.
//! - A service-account email is a name: an account deleted and created again under it is
//!   another account. Its `sub` is the account's unique numeric ID, which is pinned: given as
//!   `unique_id`, or recorded on the first exchange when `email` names one account. The
//!   subject stays `*` so that pinning is a condition like every other.
//! - Google ID tokens carry no `jti`: replay protection cannot track them (see
//!   `federation.require_jti`).

use super::{Expansion, Fields, Shape, Spec};
use crate::oidc::policy::Accepted;

pub const ISSUER: &str = "https://accounts.google.com";

pub const SPEC: Spec = Spec {
    name: "google",
    fields: &["email", "unique_id"],
    pins: &[("unique_id", "sub")],
    shapes: &[
        (
            "sub",
            Shape::Digits,
            "Google's sub is the account's numeric unique ID",
        ),
        (
            "email_verified",
            Shape::OneOf(&["true", "false"]),
            "Google sends true or false",
        ),
    ],
    issues: |issuer| issuer == ISSUER,
    expand,
};

fn expand(f: &Fields<'_>) -> Result<Expansion, String> {
    let email = f.text("email")?;
    let unique_id = f.id("unique_id")?;
    if email.is_none() && unique_id.is_none() {
        return Err(f.error("email", "or unique_id is required"));
    }
    let mut conditions = Vec::new();
    let mut pinnable = Vec::new();
    if let Some(email) = email {
        let well_formed = email
            .split_once('@')
            .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'))
            && !email.contains(char::is_whitespace);
        if !well_formed {
            return Err(f.error(
                "email",
                format!("must be a service account's email (* allowed), got {email:?}"),
            ));
        }
        conditions.push(("email".to_string(), Accepted::from(email)));
        conditions.push(("email_verified".to_string(), Accepted::from("true")));
        if !email.contains('*') {
            pinnable.push("sub");
        }
    }
    if let Some(id) = unique_id {
        conditions.push(("sub".to_string(), Accepted::from(id.as_str())));
    }
    Ok(Expansion {
        issuer: ISSUER.to_string(),
        subject: "*".to_string(),
        conditions,
        pinnable,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::oidc::providers::expand_entry;

    #[test]
    fn the_unique_id_is_pinned_as_sub() {
        let (plain, preset) = expand_entry(
            json!({"provider": "google", "email": "b@p.iam.gserviceaccount.com"})
                .as_object()
                .unwrap(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(plain["conditions"]["email_verified"], "true");
        assert_eq!(preset.pending_pins.as_ref(), [Box::from("sub")]);
        let (plain, preset) = expand_entry(
            json!({"provider": "google", "email": "b@p.iam.gserviceaccount.com",
                   "unique_id": "112233445566778899000"})
            .as_object()
            .unwrap(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(plain["conditions"]["sub"], "112233445566778899000");
        assert!(preset.pending_pins.is_empty());
        assert!(
            expand_entry(json!({"provider": "google"}).as_object().unwrap())
                .unwrap_err()
                .contains("email or unique_id is required")
        );
    }

    #[test]
    fn each_fault_of_an_email_is_refused_alone() {
        for email in [
            "@p.iam.gserviceaccount.com",
            "b@localhost",
            "a b@p.iam.gserviceaccount.com",
        ] {
            let refused = expand_entry(
                json!({"provider": "google", "email": email})
                    .as_object()
                    .unwrap(),
            );
            assert!(refused.is_err(), "{email}: {refused:?}");
        }
    }
}
