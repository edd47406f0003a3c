//! `GET /api/v1/organization/{org}`: an organization the caller belongs to, in the shape of
//! Quay's `org_view` (`endpoints/api/organization.py`): `name`, `email`, `avatar`, `is_admin`,
//! `is_member`, and for members `teams` and `ordered_teams` (empty: fedgate has no teams).
//! Clients ask it to tell an organization from a user namespace (404).
//!
//! Any valid API token may ask, whatever its scopes. Quay shows any organization to anyone
//! (without its teams); fedgate answers members only, in the admin API's order: no such
//! organization 404, not a member 403.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::avatar::{Avatar, AvatarKind};
use crate::app::AppState;
use crate::http::auth::Caller;
use crate::http::error::{AdminErrors, ApiError};
use crate::http::extract::PathParams;
use crate::names::{self, NameKind};
use crate::store::{NamespaceKind, OrgRole};

/// An organization, as its members see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationView {
    name: String,
    /// Always empty: fedgate keeps no e-mail addresses.
    email: String,
    avatar: Avatar,
    /// Whether the caller administers it.
    is_admin: bool,
    /// Always true (only members are answered).
    is_member: bool,
    /// Always empty: fedgate has no teams.
    #[schema(value_type = Object)]
    teams: BTreeMap<String, serde_json::Value>,
    /// Always empty.
    ordered_teams: Vec<String>,
}

/// Get an organization
#[utoipa::path(
    get,
    path = "/api/v1/organization/{org}",
    operation_id = "getOrganization",
    tag = "organization",
    security(("api_token" = [])),
    params(("org" = String, Path, description = "The organization")),
    responses((status = 200, description = "The organization", body = OrganizationView), AdminErrors),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    params: PathParams,
) -> Result<Json<OrganizationView>, ApiError> {
    let org = params.get("org");
    let not_found = || ApiError::not_found(format!("Organization not found: {org}"));
    if names::check(NameKind::Namespace, org).is_err() {
        return Err(not_found());
    }
    if state.store.namespace_kind(org).await? != Some(NamespaceKind::Org) {
        return Err(not_found());
    }
    let role = state
        .store
        .org_role(org, &caller.username)
        .await?
        .ok_or_else(ApiError::forbidden)?;
    Ok(Json(OrganizationView {
        name: org.to_string(),
        email: String::new(),
        // Quay draws an organization's own page with a user's avatar kind.
        avatar: Avatar::new(org, AvatarKind::User),
        is_admin: role == OrgRole::Admin,
        is_member: true,
        teams: BTreeMap::new(),
        ordered_teams: Vec::new(),
    }))
}
