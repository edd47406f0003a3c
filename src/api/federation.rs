//! A robot's federation entries (SPEC 6), Quay's `.../robots/{short}/federation`:
//! GET the list, POST a new whole list, DELETE it. Any change revokes the robot's minted tokens.
//! An entry may name a provider preset instead of raw claims (`oidc::providers`): it is
//! expanded here, and shown expanded, with its fields and pins, by GET.

use axum::Json;
use axum::extract::State;
use http::StatusCode;
use serde_json::Value;

use crate::app::AppState;
use crate::audit;
use crate::http::auth::Caller;
use crate::http::error::{AdminErrors, ApiError};
use crate::http::extract::{JsonBody, PathParams};
use crate::oidc::policy::{Accepted, FederationEntry};
use crate::oidc::{issuer_allowed, providers, same_issuer, trust};
use crate::store::{Robot, StoreError};

use super::robots::{RobotPath, administered_robot, random_i64};

const TAG: &str = "federation";

/// At most this many entries per robot.
pub const MAX_ENTRIES: usize = 50;
const MAX_FIELD_CHARS: usize = 1024;
const MAX_AUDIENCES: usize = 20;
const MAX_CONDITIONS: usize = 20;

const MISSING_FIELDS: &str = "Missing one or more required fields (issuer, subject)";
const CONDITIONS_SHAPE: &str =
    "conditions must map claim names to string patterns, or to lists of 1 to 20 of them";

fn text_field<'a>(
    item: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, ApiError> {
    match item.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s.chars().count() > MAX_FIELD_CHARS => {
            Err(ApiError::bad_request(format!(
                "{name} may be at most {MAX_FIELD_CHARS} characters"
            )))
        }
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_request(format!("{name} must be a string"))),
    }
}

/// Validates the POST body into entries; unknown keys are dropped, as Quay does.
fn parse_entries(state: &AppState, body: &Value) -> Result<Vec<FederationEntry>, ApiError> {
    let items = body.as_array().ok_or_else(|| {
        ApiError::bad_request("The body must be a JSON array of federation entries")
    })?;
    if items.len() > MAX_ENTRIES {
        return Err(ApiError::bad_request(format!(
            "At most {MAX_ENTRIES} federation entries per robot (got {})",
            items.len()
        )));
    }
    let federation = &state.config.federation;
    let mut entries: Vec<FederationEntry> = Vec::with_capacity(items.len());
    for item in items {
        let item = item
            .as_object()
            .ok_or_else(|| ApiError::bad_request(MISSING_FIELDS))?;
        let (expanded, preset) = match providers::expand_entry(item) {
            Ok(Some((expanded, preset))) => (Some(expanded), Some(Box::new(preset))),
            Ok(None) => (None, None),
            Err(message) => return Err(ApiError::bad_request(message)),
        };
        let item = expanded.as_ref().unwrap_or(item);
        let (Some(issuer), Some(subject)) =
            (text_field(item, "issuer")?, text_field(item, "subject")?)
        else {
            return Err(ApiError::bad_request(MISSING_FIELDS));
        };
        trust::check_issuer(issuer, federation.allow_http_issuers)
            .map_err(ApiError::bad_request)?;
        if !issuer_allowed(&federation.allowed_issuers, issuer) {
            return Err(ApiError::bad_request(
                "Issuer is not allowed by this gateway",
            ));
        }
        let audiences = match item.get("audiences") {
            None | Some(Value::Null) => Box::default(),
            Some(Value::Array(list)) => list
                .iter()
                .map(|a| {
                    a.as_str()
                        .filter(|a| !a.is_empty() && a.len() <= MAX_FIELD_CHARS)
                        .map(Into::into)
                })
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    ApiError::bad_request("audiences must be a list of non-empty strings")
                })?,
            Some(_) => {
                return Err(ApiError::bad_request(
                    "audiences must be a list of non-empty strings",
                ));
            }
        };
        let conditions = match item.get("conditions") {
            None | Some(Value::Null) => Default::default(),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(claim, accepted)| {
                    Accepted::from_json(accepted, MAX_FIELD_CHARS)
                        .filter(|_| !claim.is_empty())
                        .map(|a| (claim.clone(), a))
                })
                .collect::<Option<_>>()
                .ok_or_else(|| ApiError::bad_request(CONDITIONS_SHAPE))?,
            Some(_) => return Err(ApiError::bad_request(CONDITIONS_SHAPE)),
        };
        let entry = FederationEntry {
            issuer: issuer.into(),
            subject: subject.into(),
            audiences,
            conditions,
            preset,
        };
        providers::check_entry(&entry).map_err(ApiError::bad_request)?;
        if entry.audiences.len() > MAX_AUDIENCES || entry.conditions.len() > MAX_CONDITIONS {
            return Err(ApiError::bad_request(format!(
                "An entry may have at most {MAX_AUDIENCES} audiences and {MAX_CONDITIONS} conditions"
            )));
        }
        let duplicate = entries.iter().any(|e| {
            same_issuer(&e.issuer, &entry.issuer)
                && e.subject == entry.subject
                && e.audiences == entry.audiences
                && e.conditions == entry.conditions
        });
        if duplicate {
            return Err(ApiError::bad_request("Duplicate federation config entry"));
        }
        entries.push(entry);
    }
    Ok(entries)
}

async fn replace(
    state: &AppState,
    caller: &Caller,
    robot: &Robot,
    entries: &[FederationEntry],
    action: &'static str,
) -> Result<(), ApiError> {
    let revision = random_i64(state)?;
    match state
        .store
        .replace_federation(robot.id, entries, revision)
        .await
    {
        Ok(()) => {}
        Err(StoreError::Missing(_)) => return Err(ApiError::robot_not_found()),
        Err(e) => return Err(e.into()),
    }
    state.robot_changed(&robot.full_name()).await;
    audit::admin_change(caller, action, &robot.full_name());
    Ok(())
}

/// The list as GET and POST answer it: presets shown with their fields and pins.
fn views(entries: &[FederationEntry]) -> Json<Vec<Value>> {
    Json(entries.iter().map(providers::view).collect())
}

/// Get a robot's federation entries
///
/// `[]` if it has none. A preset entry is shown expanded, with its fields and pinned IDs.
#[utoipa::path(
    get,
    path = "/api/v1/organization/{org}/robots/{short}/federation",
    operation_id = "getOrgRobotFederation",
    tag = TAG,
    security(("api_token" = ["org:admin"])),
    params(RobotPath),
    responses((status = 200, description = "The entries", body = Vec<FederationEntry>), AdminErrors),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: PathParams,
) -> Result<Json<Vec<Value>>, ApiError> {
    let robot = administered_robot(&state, &caller, &params).await?;
    Ok(views(&state.store.federation(robot.id).await?))
}

/// Replace a robot's federation entries
///
/// The body is the whole new list (at most 50 entries; `[]` clears it); unknown keys are
/// dropped. An entry may name a provider preset (`"provider": "github"`, docs/providers.md)
/// instead of raw claims. Tokens minted under the old list stop working.
#[utoipa::path(
    post,
    path = "/api/v1/organization/{org}/robots/{short}/federation",
    operation_id = "createOrgRobotFederation",
    tag = TAG,
    security(("api_token" = ["org:admin"])),
    params(RobotPath),
    request_body = Vec<FederationEntry>,
    responses((status = 200, description = "The entries as stored", body = Vec<FederationEntry>), AdminErrors),
)]
pub async fn set(
    State(state): State<AppState>,
    caller: Caller,
    params: PathParams,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let robot = administered_robot(&state, &caller, &params).await?;
    let entries = parse_entries(&state, &body)?;
    replace(&state, &caller, &robot, &entries, "federation.set").await?;
    Ok(views(&entries))
}

/// Clear a robot's federation entries
///
/// Tokens minted under the old list stop working.
#[utoipa::path(
    delete,
    path = "/api/v1/organization/{org}/robots/{short}/federation",
    operation_id = "deleteOrgRobotFederation",
    tag = TAG,
    security(("api_token" = ["org:admin"])),
    params(RobotPath),
    responses((status = 204, description = "Cleared"), AdminErrors),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    params: PathParams,
) -> Result<StatusCode, ApiError> {
    let robot = administered_robot(&state, &caller, &params).await?;
    replace(&state, &caller, &robot, &[], "federation.delete").await?;
    Ok(StatusCode::NO_CONTENT)
}
