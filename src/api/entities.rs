//! `GET /api/v1/entities/{prefix}`: Quay's entity search (`endpoints/api/search.py`), which
//! clients use to ask whether a user exists (the Ansible collection does before it touches a
//! user's robots).
//!
//! fedgate answers exact matches only, as Quay does with `FEATURE_PARTIAL_USER_AUTOCOMPLETE`
//! off, so a token cannot list users by guessing prefixes; and users only (no robots, teams
//! or organizations: `includeOrgs`, `includeTeams` and `namespace` are accepted and ignored).
//! Any valid API token may ask; Quay answers anonymous callers too.

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
use crate::store::NamespaceKind;

/// `{"results": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntityResults {
    results: Vec<Entity>,
}

/// A user that matched.
#[derive(Debug, Serialize, ToSchema)]
pub struct Entity {
    name: String,
    /// Always `user`.
    kind: &'static str,
    /// Always false.
    is_robot: bool,
    avatar: Avatar,
}

/// Find a user by name
///
/// The user whose name is `prefix` (lowercased, spaces removed, as Quay does), or no result.
#[utoipa::path(
    get,
    path = "/api/v1/entities/{prefix}",
    operation_id = "getMatchingEntities",
    tag = "user",
    security(("api_token" = [])),
    params(
        ("prefix" = String, Path, description = "The user name"),
        ("includeOrgs" = Option<bool>, Query, description = "Ignored: organizations are not searched"),
        ("includeTeams" = Option<bool>, Query, description = "Ignored: fedgate has no teams"),
        ("namespace" = Option<String>, Query, description = "Ignored: robots are not searched"),
    ),
    responses((status = 200, description = "The matching user, if any", body = EntityResults), AdminErrors),
)]
pub async fn search(
    State(state): State<AppState>,
    _caller: Caller,
    params: PathParams,
) -> Result<Json<EntityResults>, ApiError> {
    let name: String = params
        .get("prefix")
        .chars()
        .filter(|c| *c != ' ')
        .collect::<String>()
        .to_lowercase();
    let is_user = names::check(NameKind::Namespace, &name).is_ok()
        && state.store.namespace_kind(&name).await? == Some(NamespaceKind::User);
    let results = if is_user {
        vec![Entity {
            avatar: Avatar::new(&name, AvatarKind::User),
            name,
            kind: "user",
            is_robot: false,
        }]
    } else {
        Vec::new()
    };
    Ok(Json(EntityResults { results }))
}
