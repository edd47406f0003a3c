//! Docker registry token claims (distribution `docs/spec/auth/jwt.md`): parsing requested
//! scopes and granting what a robot's repository roles allow.
//!
//! read → pull; write → pull, push; admin → pull, push, delete. Scopes a robot may not have
//! are dropped, not refused: the registry then answers the client's push or pull with its own
//! 401/403, as with any token server.

use serde::{Deserialize, Serialize};

use crate::store::Role;

/// One `type:name:actions` scope as a client asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// One entry of the token's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Access {
    /// The entry as a scope, `type:name:actions` (the OAuth2 form's `scope` answer).
    pub fn scope(&self) -> String {
        format!("{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

/// Claims of a registry token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistryClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    pub access: Vec<Access>,
}

/// Parses `scope` parameters; each may hold several space-separated scopes. Malformed ones
/// are skipped. The name may itself contain `:` (e.g. a registry host with a port), so the
/// type ends at the first `:` and the actions start after the last.
pub fn parse_scopes<'a>(params: impl IntoIterator<Item = &'a str>) -> Vec<Scope> {
    params
        .into_iter()
        .flat_map(str::split_whitespace)
        .filter_map(|scope| {
            let (kind, rest) = scope.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            if kind.is_empty() || name.is_empty() {
                return None;
            }
            Some(Scope {
                kind: kind.to_string(),
                name: name.to_string(),
                actions: actions
                    .split(',')
                    .filter(|a| !a.is_empty())
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect()
}

/// The actions a role allows.
pub fn allowed_actions(role: Role) -> &'static [&'static str] {
    match role {
        Role::Read => &["pull"],
        Role::Write => &["pull", "push"],
        Role::Admin => &["pull", "push", "delete"],
    }
}

/// The repository (within `namespace`) a scope names, when it is a repository scope in the
/// robot's own namespace.
pub fn repository_in<'a>(scope: &'a Scope, namespace: &str) -> Option<&'a str> {
    if scope.kind != "repository" {
        return None;
    }
    let (ns, repo) = scope.name.split_once('/')?;
    (ns == namespace && !repo.is_empty() && !repo.contains('/')).then_some(repo)
}

/// Grants the requested actions `role` allows; `*` asks for all of them.
pub fn grant(scope: &Scope, role: Role) -> Option<Access> {
    let allowed = allowed_actions(role);
    let mut actions: Vec<String> = Vec::new();
    for requested in &scope.actions {
        let granted: Vec<&str> = if requested == "*" {
            allowed.to_vec()
        } else {
            allowed.iter().copied().filter(|a| a == requested).collect()
        };
        for action in granted {
            if !actions.iter().any(|a| a == action) {
                actions.push(action.to_string());
            }
        }
    }
    (!actions.is_empty()).then(|| Access {
        kind: scope.kind.clone(),
        name: scope.name.clone(),
        actions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_like_docker_sends_them() {
        let scopes = parse_scopes([
            "repository:acme/app:pull,push",
            "repository:acme/web:pull repository:other/x:push",
            "registry:catalog:*",
            "garbage",
            "repository:127.0.0.1:5000/acme/app:pull",
        ]);
        assert_eq!(scopes.len(), 5);
        assert_eq!(scopes[0].actions, ["pull", "push"]);
        assert_eq!(scopes[2].name, "other/x");
        assert_eq!(scopes[3].kind, "registry");
        assert_eq!(scopes[4].name, "127.0.0.1:5000/acme/app");
    }

    #[test]
    fn odd_scopes_are_skipped_or_narrowed() {
        let parsed = parse_scopes([":acme/app:pull repository::pull repository:acme/app"]);
        assert_eq!(parsed, [], "no type, no name, no actions part");
        let scope = parse_scopes(["repository:acme/app:pull,,push,"]).remove(0);
        assert_eq!(scope.actions, ["pull", "push"], "empty actions are dropped");
        let granted = grant(&scope, Role::Write).unwrap();
        assert_eq!(granted.scope(), "repository:acme/app:pull,push");
        let twice = parse_scopes(["repository:acme/app:pull,*,pull"]).remove(0);
        assert_eq!(grant(&twice, Role::Read).unwrap().actions, ["pull"]);
        for not_a_repository in ["registry:acme/app:*", "repository:acme/:pull"] {
            let scope = parse_scopes([not_a_repository]).remove(0);
            assert_eq!(repository_in(&scope, "acme"), None, "{not_a_repository}");
        }
    }

    #[test]
    fn roles_grant_only_their_actions() {
        let scope = |actions: &str| {
            parse_scopes([format!("repository:acme/app:{actions}").as_str()]).remove(0)
        };
        assert_eq!(
            grant(&scope("pull,push"), Role::Read).unwrap().actions,
            ["pull"]
        );
        assert_eq!(
            grant(&scope("pull,push"), Role::Write).unwrap().actions,
            ["pull", "push"]
        );
        assert_eq!(
            grant(&scope("*"), Role::Admin).unwrap().actions,
            ["pull", "push", "delete"]
        );
        assert_eq!(grant(&scope("delete"), Role::Write), None);
        assert_eq!(repository_in(&scope("pull"), "acme"), Some("app"));
        assert_eq!(repository_in(&scope("pull"), "other"), None);
        let nested = parse_scopes(["repository:acme/a/b:pull"]).remove(0);
        assert_eq!(repository_in(&nested, "acme"), None);
    }
}
