//! Admin-API authentication (`Authorization: Bearer <api token>`) and the authorization rules
//! of SPEC section 3.
//!
//! Order of checks, so that answers leak nothing: credentials (401), then the token's scope
//! (403), then whether the namespace exists (404), then the caller's role in it (403).

use std::net::SocketAddr;

use axum::extract::FromRequestParts;
use http::header::AUTHORIZATION;
use http::request::Parts;

use super::ClientAddr;
use super::error::ApiError;
use crate::app::AppState;
use crate::names::{self, NameKind};
use crate::store::{NamespaceKind, OrgRole};
use crate::tokens::opaque::{self, TokenKind};

/// What an API token may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Manage robots in the user's own namespace.
    UserAdmin,
    /// Manage robots and federation of organizations the user administers.
    OrgAdmin,
    /// Grant robots repository permissions in namespaces the user administers.
    RepoAdmin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::UserAdmin, Scope::OrgAdmin, Scope::RepoAdmin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::UserAdmin => "user:admin",
            Scope::OrgAdmin => "org:admin",
            Scope::RepoAdmin => "repo:admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == s)
    }
}

/// An authenticated admin-API caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub username: String,
    pub scopes: Vec<Scope>,
    pub client: Option<SocketAddr>,
}

impl Caller {
    fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthenticated("Requires authentication"))?;
        let invalid = || ApiError::unauthenticated("Invalid or expired access token");
        let value = header.to_str().map_err(|_| invalid())?;
        let (scheme, token) = value.split_once(' ').ok_or_else(invalid)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || !opaque::is_well_formed(TokenKind::Api, token)
        {
            return Err(invalid());
        }
        let record = state
            .store
            .api_token(&state.at_rest.lookup_hash(token))
            .await?
            .ok_or_else(invalid)?;
        if record.expires_at.is_some_and(|at| at <= state.clock.unix()) {
            return Err(invalid());
        }
        Ok(Caller {
            username: record.username,
            scopes: record
                .scopes
                .split_whitespace()
                .filter_map(Scope::parse)
                .collect(),
            client: parts.extensions.get::<ClientAddr>().map(|c| c.0),
        })
    }
}

/// Whose robots a route addresses: the caller's own (`/user/robots`) or an organization's.
#[derive(Debug, Clone)]
pub enum Owner {
    User,
    Org(String),
}

/// What the caller wants to do with a namespace's robots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// List robots (organization members may, without secrets).
    List,
    /// Anything else: read tokens, create, delete, regenerate, federation.
    Admin,
}

/// The namespace a request may act on, and whether the caller administers it.
#[derive(Debug, Clone)]
pub struct NamespaceAccess {
    pub namespace: String,
    pub is_admin: bool,
}

/// Decides whether `caller` may do `need` with `owner`'s robots.
pub async fn robot_access(
    state: &AppState,
    caller: &Caller,
    owner: &Owner,
    need: Need,
) -> Result<NamespaceAccess, ApiError> {
    let org = match owner {
        Owner::User => {
            caller.require(Scope::UserAdmin)?;
            return Ok(NamespaceAccess {
                namespace: caller.username.clone(),
                is_admin: true,
            });
        }
        Owner::Org(org) => org,
    };
    caller.require(Scope::OrgAdmin)?;
    if names::check(NameKind::Namespace, org).is_err()
        || state.store.namespace_kind(org).await? != Some(NamespaceKind::Org)
    {
        return Err(ApiError::not_found(format!(
            "Organization not found: {org}"
        )));
    }
    let is_admin = match state.store.org_role(org, &caller.username).await? {
        Some(OrgRole::Admin) => true,
        Some(OrgRole::Member) if need == Need::List => false,
        _ => return Err(ApiError::forbidden()),
    };
    Ok(NamespaceAccess {
        namespace: org.clone(),
        is_admin,
    })
}

/// Decides whether `caller` may manage repository permissions in `namespace`
/// (its own user namespace, or an organization it administers, with the `repo:admin` scope).
pub async fn repository_admin(
    state: &AppState,
    caller: &Caller,
    namespace: &str,
) -> Result<(), ApiError> {
    caller.require(Scope::RepoAdmin)?;
    let kind = if names::check(NameKind::Namespace, namespace).is_ok() {
        state.store.namespace_kind(namespace).await?
    } else {
        None
    };
    let allowed = match kind {
        None => {
            return Err(ApiError::not_found(format!(
                "Namespace not found: {namespace}"
            )));
        }
        Some(NamespaceKind::User) => caller.username == namespace,
        Some(NamespaceKind::Org) => {
            state.store.org_role(namespace, &caller.username).await? == Some(OrgRole::Admin)
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::forbidden())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
        assert_eq!(Scope::parse("admin"), None);
    }
}
