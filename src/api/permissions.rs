//! Repository permissions for robots, the Quay-compatible subset of
//! `/api/v1/repository/{ns}/{repo}/permissions/user/...`.
//!
//! fedgate records grants only; repositories need not exist (the registry stores images).
//! A robot may be granted roles on repositories of its own namespace only.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::audit;
use crate::http::auth::{Caller, repository_admin};
use crate::http::error::{AdminErrors, ApiError};
use crate::http::extract::{JsonBody, PathParams};
use crate::names::{self, NameKind};
use crate::store::{Robot, Role};

const TAG: &str = "permissions";

/// A robot's role on a repository.
#[derive(Debug, Serialize, ToSchema)]
pub struct PermissionView {
    /// `read`, `write` or `admin`.
    role: &'static str,
    /// The robot's full name.
    name: String,
    /// Always true: only robots are granted roles through fedgate.
    is_robot: bool,
}

impl PermissionView {
    fn new(name: String, role: Role) -> Self {
        Self {
            role: role.as_str(),
            name,
            is_robot: true,
        }
    }
}

/// `{"permissions": {"<robot>": {...}}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PermissionList {
    permissions: BTreeMap<String, PermissionView>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SetPermission {
    /// `read`, `write` or `admin`.
    role: String,
}

/// The path parameters of `.../permissions/user/{name}`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[expect(
    dead_code,
    reason = "describes the path for the OpenAPI document; handlers read PathParams"
)]
pub struct PermissionPath {
    /// The repository's namespace
    ns: String,
    /// The repository's name
    repo: String,
    /// The robot's full name (`<namespace>+<short name>`)
    name: String,
}

/// Checks access and the repository name; returns `(namespace, repository)`.
async fn repository(
    state: &AppState,
    caller: &Caller,
    params: &PathParams,
) -> Result<(String, String), ApiError> {
    let namespace = params.get("ns").to_string();
    repository_admin(state, caller, &namespace).await?;
    let repo = params.get("repo").to_string();
    names::check(NameKind::Repository, &repo).map_err(ApiError::bad_request)?;
    Ok((namespace, repo))
}

/// Resolves `{name}` to a robot of `namespace`.
async fn robot(state: &AppState, namespace: &str, full_name: &str) -> Result<Robot, ApiError> {
    let Some((robot_ns, short)) = names::split_robot_name(full_name) else {
        return Err(ApiError::bad_request(format!(
            "{full_name:?} is not a robot account name (namespace+name); only robots can be granted permissions here"
        )));
    };
    if robot_ns != namespace {
        return Err(ApiError::bad_request(format!(
            "Robot {full_name} may only be granted permissions on repositories in its own namespace ({robot_ns})"
        )));
    }
    names::robot_full_name(robot_ns, short).map_err(ApiError::bad_request)?;
    state
        .store
        .robot(namespace, short)
        .await?
        .ok_or_else(ApiError::robot_not_found)
}

/// List the robots' roles on a repository
#[utoipa::path(
    get,
    path = "/api/v1/repository/{ns}/{repo}/permissions/user/",
    operation_id = "listRepoUserPermissions",
    tag = TAG,
    security(("api_token" = ["repo:admin"])),
    params(
        ("ns" = String, Path, description = "The repository's namespace"),
        ("repo" = String, Path, description = "The repository's name"),
    ),
    responses((status = 200, description = "Every robot's role", body = PermissionList), AdminErrors),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: PathParams,
) -> Result<Json<PermissionList>, ApiError> {
    let (namespace, repo) = repository(&state, &caller, &params).await?;
    let permissions: BTreeMap<String, PermissionView> = state
        .store
        .repository_grants(&namespace, &repo)
        .await?
        .into_iter()
        .map(|g| {
            let name = format!("{namespace}+{}", g.robot_short_name);
            (name.clone(), PermissionView::new(name, g.role))
        })
        .collect();
    Ok(Json(PermissionList { permissions }))
}

/// Get a robot's role on a repository
#[utoipa::path(
    get,
    path = "/api/v1/repository/{ns}/{repo}/permissions/user/{name}",
    operation_id = "getUserPermissions",
    tag = TAG,
    security(("api_token" = ["repo:admin"])),
    params(PermissionPath),
    responses((status = 200, description = "The role", body = PermissionView), AdminErrors),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    params: PathParams,
) -> Result<Json<PermissionView>, ApiError> {
    let (namespace, repo) = repository(&state, &caller, &params).await?;
    let robot = robot(&state, &namespace, params.get("name")).await?;
    let role = state
        .store
        .permission(robot.id, &repo)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "{} has no permission on {namespace}/{repo}",
                robot.full_name()
            ))
        })?;
    Ok(Json(PermissionView::new(robot.full_name(), role)))
}

/// Grant a robot a role on a repository
///
/// The repository must be in the robot's own namespace; it need not exist.
#[utoipa::path(
    put,
    path = "/api/v1/repository/{ns}/{repo}/permissions/user/{name}",
    operation_id = "changeUserPermissions",
    tag = TAG,
    security(("api_token" = ["repo:admin"])),
    params(PermissionPath),
    request_body = SetPermission,
    responses((status = 200, description = "The role granted", body = PermissionView), AdminErrors),
)]
pub async fn set(
    State(state): State<AppState>,
    caller: Caller,
    params: PathParams,
    JsonBody(body): JsonBody<SetPermission>,
) -> Result<Json<PermissionView>, ApiError> {
    let (namespace, repo) = repository(&state, &caller, &params).await?;
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::bad_request(format!(
            "Invalid role {:?}: must be read, write or admin",
            body.role
        ))
    })?;
    let robot = robot(&state, &namespace, params.get("name")).await?;
    state
        .store
        .set_permission(robot.id, &repo, role)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Missing(_) => ApiError::robot_not_found(),
            other => other.into(),
        })?;
    state.robot_changed(&robot.full_name()).await;
    audit::admin_change(
        &caller,
        "permission.set",
        &format!("{}:{namespace}/{repo}:{}", robot.full_name(), role.as_str()),
    );
    Ok(Json(PermissionView::new(robot.full_name(), role)))
}

/// Revoke a robot's role on a repository
#[utoipa::path(
    delete,
    path = "/api/v1/repository/{ns}/{repo}/permissions/user/{name}",
    operation_id = "deleteUserPermissions",
    tag = TAG,
    security(("api_token" = ["repo:admin"])),
    params(PermissionPath),
    responses((status = 204, description = "Revoked"), AdminErrors),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    params: PathParams,
) -> Result<StatusCode, ApiError> {
    let (namespace, repo) = repository(&state, &caller, &params).await?;
    let robot = robot(&state, &namespace, params.get("name")).await?;
    if !state.store.delete_permission(robot.id, &repo).await? {
        return Err(ApiError::not_found(format!(
            "{} has no permission on {namespace}/{repo}",
            robot.full_name()
        )));
    }
    state.robot_changed(&robot.full_name()).await;
    audit::admin_change(
        &caller,
        "permission.delete",
        &format!("{}:{namespace}/{repo}", robot.full_name()),
    );
    Ok(StatusCode::NO_CONTENT)
}
