//! The robot API, wire-compatible with Quay's (`endpoints/api/robot.py`), for user robots
//! (`/api/v1/user/robots/...`) and organization robots (`/api/v1/organization/{org}/robots/...`).
//! One handler serves both: the path decides the [`Owner`].

use std::collections::HashMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::audit;
use crate::clock::quay_date;
use crate::http::auth::{Caller, NamespaceAccess, Need, Owner, robot_access};
use crate::http::error::{AdminErrors, ApiError};
use crate::http::extract::{JsonBody, PathParams, query_pairs, truthy};
use crate::names;
use crate::store::{NewRobot, Robot, StoreError};
use crate::tokens::opaque::{self, TokenKind};

/// Longest `description`, in characters (Quay's schema).
const MAX_DESCRIPTION_CHARS: usize = 255;
/// Largest `unstructured_metadata`, serialized.
const MAX_METADATA_BYTES: usize = 64 * 1024;

/// Tag and security requirement of the robot API's operations.
const TAG: &str = "robots";

/// A single robot, as GET and PUT answer (and regenerate, without `unstructured_metadata`).
#[derive(Debug, Serialize, ToSchema)]
pub struct RobotView {
    /// The full name, `<namespace>+<short name>`.
    name: String,
    /// RFC 2822, as Quay writes dates.
    created: Option<String>,
    last_accessed: Option<String>,
    description: String,
    /// The robot's password for `/v2/auth`.
    token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    unstructured_metadata: Option<serde_json::Value>,
}

/// One entry of a robot list. Absent keys are absent, not null, as in Quay.
#[derive(Debug, Serialize, ToSchema)]
pub struct RobotListEntry {
    name: String,
    created: Option<String>,
    last_accessed: Option<String>,
    description: String,
    /// Admins only, unless `token=false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    /// With `permissions=true`: always empty (fedgate has no teams).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    teams: Option<Vec<serde_json::Value>>,
    /// With `permissions=true`: the repositories the robot has a role on.
    #[serde(skip_serializing_if = "Option::is_none")]
    repositories: Option<Vec<String>>,
}

/// `{"robots": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RobotList {
    robots: Vec<RobotListEntry>,
}

/// The optional PUT body.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CreateRobot {
    /// At most 255 characters.
    #[serde(default)]
    description: Option<String>,
    /// Any JSON object, at most 64 KiB serialized.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    unstructured_metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A robot's repository role, as `.../robots/{short}/permissions` lists it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RobotPermission {
    repository: RobotPermissionRepository,
    /// `read`, `write` or `admin`.
    role: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RobotPermissionRepository {
    name: String,
    /// Always false: fedgate knows no public repositories.
    is_public: bool,
}

/// `{"permissions": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RobotPermissions {
    permissions: Vec<RobotPermission>,
}

/// The path parameters of `.../organization/{org}/robots/{short}` (the `org` one is dropped
/// where the route serves the caller's own robots).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[expect(
    dead_code,
    reason = "describes the path for the OpenAPI document; handlers read PathParams"
)]
pub struct RobotPath {
    /// The organization
    org: String,
    /// The robot's short name, without the namespace
    short: String,
}

fn owner(params: &PathParams) -> Owner {
    if params.has("org") {
        Owner::Org(params.get("org").to_string())
    } else {
        Owner::User
    }
}

/// Checks access, then the short name, and returns the namespace and short name.
pub(crate) async fn target(
    state: &AppState,
    caller: &Caller,
    params: &PathParams,
) -> Result<(NamespaceAccess, String), ApiError> {
    let access = robot_access(state, caller, &owner(params), Need::Admin).await?;
    let short = params.get("short").to_string();
    names::robot_full_name(&access.namespace, &short).map_err(ApiError::bad_request)?;
    Ok((access, short))
}

/// The robot a `.../robots/{short}/...` route names, once the caller may administer it.
pub(crate) async fn administered_robot(
    state: &AppState,
    caller: &Caller,
    params: &PathParams,
) -> Result<Robot, ApiError> {
    let (access, short) = target(state, caller, params).await?;
    let namespace = &access.namespace;
    state
        .store
        .robot(namespace, &short)
        .await?
        .ok_or_else(ApiError::robot_not_found)
}

fn reveal_token(state: &AppState, robot: &Robot) -> Result<SecretString, ApiError> {
    state
        .at_rest
        .open(&robot.token_sealed, &robot.id.to_be_bytes())
        .map_err(|e| ApiError::internal("opening a robot token", e))
}

fn view(state: &AppState, robot: &Robot, with_metadata: bool) -> Result<RobotView, ApiError> {
    let metadata = if with_metadata {
        Some(
            serde_json::from_str(&robot.metadata)
                .map_err(|e| ApiError::internal("robot metadata", e))?,
        )
    } else {
        None
    };
    Ok(RobotView {
        name: robot.full_name(),
        created: Some(quay_date(robot.created_at)),
        last_accessed: robot.last_accessed.map(quay_date),
        description: robot.description.clone(),
        token: reveal_token(state, robot)?.expose_secret().to_string(),
        unstructured_metadata: metadata,
    })
}

/// A fresh robot token, sealed for `robot_id`, with its lookup hash.
fn new_token(state: &AppState, robot_id: i64) -> Result<(String, String), ApiError> {
    let token = opaque::generate(TokenKind::Robot, state.rng.as_ref())
        .map_err(|e| ApiError::internal("generating a robot token", e))?;
    let sealed = state
        .at_rest
        .seal(&token, &robot_id.to_be_bytes(), state.rng.as_ref())
        .map_err(|e| ApiError::internal("sealing a robot token", e))?;
    Ok((sealed, state.at_rest.lookup_hash(token.expose_secret())))
}

pub(crate) fn random_i64(state: &AppState) -> Result<i64, ApiError> {
    state
        .rng
        .positive_i64()
        .map_err(|e| ApiError::internal("random id", e))
}

/// List the namespace's robots
///
/// Admins see tokens (unless `token=false`) and, with `permissions=true`, `teams` and
/// `repositories`; organization members see names and descriptions only.
#[utoipa::path(
    get,
    path = "/api/v1/organization/{org}/robots",
    operation_id = "getOrgRobots",
    tag = TAG,
    security(("api_token" = ["org:admin"])),
    params(
        ("org" = String, Path, description = "The organization"),
        ("limit" = Option<u64>, Query, description = "At most this many robots"),
        ("token" = Option<bool>, Query, description = "Include tokens (default true)"),
        ("permissions" = Option<bool>, Query, description = "Include teams and repositories (default false)"),
    ),
    responses((status = 200, description = "The robots", body = RobotList), AdminErrors),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: PathParams,
    RawQuery(query): RawQuery,
) -> Result<Json<RobotList>, ApiError> {
    let access = robot_access(&state, &caller, &owner(&params), Need::List).await?;
    let mut limit = None;
    let mut include_token = true;
    let mut include_permissions = false;
    for (key, value) in query_pairs(query.as_deref()) {
        match key.as_str() {
            "limit" => {
                limit = Some(value.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "limit must be a whole number ≥ 0, got {value:?}"
                    ))
                })?);
            }
            "token" => include_token = truthy(&value),
            "permissions" => include_permissions = truthy(&value),
            _ => {}
        }
    }
    // Members see names and descriptions only.
    let include_token = include_token && access.is_admin;
    let include_permissions = include_permissions && access.is_admin;

    let robots = state.store.list_robots(&access.namespace, limit).await?;
    let mut repositories: HashMap<String, Vec<String>> = HashMap::new();
    if include_permissions {
        for grant in state.store.namespace_grants(&access.namespace).await? {
            repositories
                .entry(grant.robot_short_name)
                .or_default()
                .push(grant.repository);
        }
    }
    let mut entries = Vec::with_capacity(robots.len());
    for robot in &robots {
        entries.push(RobotListEntry {
            name: robot.full_name(),
            created: Some(quay_date(robot.created_at)),
            last_accessed: robot.last_accessed.map(quay_date),
            description: robot.description.clone(),
            token: if include_token {
                Some(reveal_token(&state, robot)?.expose_secret().to_string())
            } else {
                None
            },
            teams: include_permissions.then(Vec::new),
            repositories: include_permissions
                .then(|| repositories.remove(&robot.short_name).unwrap_or_default()),
        });
    }
    Ok(Json(RobotList { robots: entries }))
}

/// Get a robot, with its token
#[utoipa::path(
    get,
    path = "/api/v1/organization/{org}/robots/{short}",
    operation_id = "getOrgRobot",
    tag = TAG,
    security(("api_token" = ["org:admin"])),
    params(RobotPath),
    responses((status = 200, description = "The robot", body = RobotView), AdminErrors),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    params: PathParams,
) -> Result<Json<RobotView>, ApiError> {
    let robot = administered_robot(&state, &caller, &params).await?;
    Ok(Json(view(&state, &robot, true)?))
}

/// Create a robot
///
/// The body is optional. An existing name is 400 `Existing robot with name: <full name>`.
#[utoipa::path(
    put,
    path = "/api/v1/organization/{org}/robots/{short}",
    operation_id = "createOrgRobot",
    tag = TAG,
    security(("api_token" = ["org:admin"])),
    params(RobotPath),
    request_body(content = Option<CreateRobot>, description = "Optional description and metadata"),
    responses((status = 201, description = "The new robot, with its token", body = RobotView), AdminErrors),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    params: PathParams,
    JsonBody(body): JsonBody<Option<CreateRobot>>,
) -> Result<Response, ApiError> {
    let (access, short) = target(&state, &caller, &params).await?;
    let body = body.unwrap_or_default();
    let description = body.description.unwrap_or_default();
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(ApiError::bad_request(format!(
            "description may be at most {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    let metadata =
        serde_json::Value::Object(body.unstructured_metadata.unwrap_or_default()).to_string();
    if metadata.len() > MAX_METADATA_BYTES {
        return Err(ApiError::bad_request(format!(
            "unstructured_metadata may be at most 64 KiB ({MAX_METADATA_BYTES} bytes) serialized"
        )));
    }
    let id = random_i64(&state)?;
    let (token_sealed, token_lookup) = new_token(&state, id)?;
    let new = NewRobot {
        id,
        namespace: access.namespace.clone(),
        short_name: short,
        description,
        metadata,
        token_sealed,
        token_lookup,
        revision: random_i64(&state)?,
        created_at: state.clock.unix(),
    };
    let robot = match state.store.create_robot(&new).await {
        Ok(robot) => robot,
        Err(StoreError::Conflict) => {
            return Err(ApiError::bad_request(format!(
                "Existing robot with name: {}+{}",
                new.namespace, new.short_name
            )));
        }
        Err(StoreError::Missing(_)) => {
            return Err(ApiError::not_found(format!(
                "Namespace not found: {}",
                new.namespace
            )));
        }
        Err(e) => return Err(e.into()),
    };
    state.robot_changed(&robot.full_name()).await;
    audit::admin_change(&caller, "robot.create", &robot.full_name());
    Ok((StatusCode::CREATED, Json(view(&state, &robot, true)?)).into_response())
}

/// Delete a robot
///
/// Its token, permissions and federation entries go with it, and every token minted for it
/// stops working.
#[utoipa::path(
    delete,
    path = "/api/v1/organization/{org}/robots/{short}",
    operation_id = "deleteOrgRobot",
    tag = TAG,
    security(("api_token" = ["org:admin"])),
    params(RobotPath),
    responses((status = 204, description = "Deleted"), AdminErrors),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    params: PathParams,
) -> Result<StatusCode, ApiError> {
    let (access, short) = target(&state, &caller, &params).await?;
    if !state.store.delete_robot(&access.namespace, &short).await? {
        return Err(ApiError::robot_not_found());
    }
    let full_name = format!("{}+{short}", access.namespace);
    state.robot_changed(&full_name).await;
    audit::admin_change(&caller, "robot.delete", &full_name);
    Ok(StatusCode::NO_CONTENT)
}

/// Regenerate a robot's token
///
/// The old token, and every token minted for the robot, stop working at once.
#[utoipa::path(
    post,
    path = "/api/v1/organization/{org}/robots/{short}/regenerate",
    operation_id = "regenerateOrgRobotToken",
    tag = TAG,
    security(("api_token" = ["org:admin"])),
    params(RobotPath),
    responses((status = 200, description = "The robot with its new token (no `unstructured_metadata`)", body = RobotView), AdminErrors),
)]
pub async fn regenerate(
    State(state): State<AppState>,
    caller: Caller,
    params: PathParams,
) -> Result<Json<RobotView>, ApiError> {
    let robot = administered_robot(&state, &caller, &params).await?;
    let (sealed, lookup) = new_token(&state, robot.id)?;
    let robot = state
        .store
        .replace_robot_token(robot.id, &sealed, &lookup, random_i64(&state)?)
        .await?
        .ok_or_else(ApiError::robot_not_found)?;

    state.robot_changed(&robot.full_name()).await;
    audit::admin_change(&caller, "robot.regenerate", &robot.full_name());
    Ok(Json(view(&state, &robot, false)?))
}

/// List a robot's repository roles
#[utoipa::path(
    get,
    path = "/api/v1/organization/{org}/robots/{short}/permissions",
    operation_id = "getOrgRobotPermissions",
    tag = TAG,
    security(("api_token" = ["org:admin"])),
    params(RobotPath),
    responses((status = 200, description = "The robot's roles", body = RobotPermissions), AdminErrors),
)]
pub async fn permissions(
    State(state): State<AppState>,
    caller: Caller,
    params: PathParams,
) -> Result<Json<RobotPermissions>, ApiError> {
    let robot = administered_robot(&state, &caller, &params).await?;
    let permissions = state
        .store
        .robot_grants(robot.id)
        .await?
        .into_iter()
        .map(|g| RobotPermission {
            repository: RobotPermissionRepository {
                name: g.repository,
                is_public: false,
            },
            role: g.role.as_str(),
        })
        .collect();
    Ok(Json(RobotPermissions { permissions }))
}
