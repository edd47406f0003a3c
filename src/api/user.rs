//! `GET /api/v1/user/`: who the API token belongs to, in the shape of Quay's `user_view`
//! (`endpoints/api/user.py`), with the fields fedgate has and clients read: `username` (the
//! Ansible collection asks it before anything else), `anonymous`, `avatar`, `is_me` and
//! `organizations`.
//!
//! Any valid API token may ask, whatever its scopes: the answer is about the token's own user.
//! Quay wants `user:read` (or a session); fedgate has no such scope.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::avatar::{Avatar, AvatarKind};
use crate::app::AppState;
use crate::http::auth::Caller;
use crate::http::error::{AdminErrors, ApiError};
use crate::store::OrgRole;

/// The token's user.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// Always false: the request carried a valid token.
    anonymous: bool,
    username: String,
    avatar: Avatar,
    /// Always true: the user is the token's own.
    is_me: bool,
    /// The organizations the user belongs to.
    organizations: Vec<UserOrganization>,
}

/// One organization of the user, as Quay lists it in `organizations`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserOrganization {
    name: String,
    avatar: Avatar,
    /// Whether the user administers it.
    is_org_admin: bool,
    /// Always false: fedgate has no public namespaces.
    public: bool,
}

/// Who am I
///
/// The API token's user and the organizations it belongs to.
#[utoipa::path(
    get,
    path = "/api/v1/user/",
    operation_id = "getLoggedInUser",
    tag = "user",
    security(("api_token" = [])),
    responses((status = 200, description = "The token's user", body = UserView), AdminErrors),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<UserView>, ApiError> {
    let organizations = state
        .store
        .user_orgs(&caller.username)
        .await?
        .into_iter()
        .map(|(name, role)| UserOrganization {
            avatar: Avatar::new(&name, AvatarKind::Org),
            name,
            is_org_admin: role == OrgRole::Admin,
            public: false,
        })
        .collect();
    Ok(Json(UserView {
        anonymous: false,
        avatar: Avatar::new(&caller.username, AvatarKind::User),
        username: caller.username,
        is_me: true,
        organizations,
    }))
}
