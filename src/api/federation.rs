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
/// Sizes are bounded in bytes, which is what memory and matching time are counted in whatever
/// the characters (docs/security.md, "Limits"): a robot's list costs at most about
/// `MAX_LIST_BYTES` in the robot cache, and one match of a pattern is linear in it.
const MAX_ISSUER_BYTES: usize = 512;
/// `subject` and condition values.
const MAX_PATTERN_BYTES: usize = 1024;
const MAX_AUDIENCES: usize = 20;
const MAX_AUDIENCE_BYTES: usize = 512;
const MAX_CONDITIONS: usize = 20;
const MAX_CLAIM_NAME_BYTES: usize = 128;
/// The whole list, as JSON.
const MAX_LIST_BYTES: usize = 64 * 1024;

const MISSING_FIELDS: &str = "Missing one or more required fields (issuer, subject)";
const CONDITIONS_SHAPE: &str = "conditions must map claim names to string patterns of at most \
     1024 bytes, or to lists of 1 to 20 of them";

fn text_field<'a>(
    item: &'a serde_json::Map<String, Value>,
    name: &str,
    max_bytes: usize,
) -> Result<Option<&'a str>, ApiError> {
    match item.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s.len() > max_bytes => Err(ApiError::bad_request(format!(
            "{name} may be at most {max_bytes} bytes"
        ))),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_request(format!("{name} must be a string"))),
    }
}

/// A condition's claim name: a dotted name or a JSON Pointer (see `oidc::policy::claim`).
fn check_claim_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > MAX_CLAIM_NAME_BYTES {
        return Err(ApiError::bad_request(format!(
            "condition names must be 1 to {MAX_CLAIM_NAME_BYTES} bytes"
        )));
    }
    if name.starts_with('/') && !crate::oidc::policy::is_json_pointer(name) {
        return Err(ApiError::bad_request(format!(
            "condition name {name:?} is not a JSON Pointer (~ must be followed by 0 or 1)"
        )));
    }
    Ok(())
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
        let (Some(issuer), Some(subject)) = (
            text_field(item, "issuer", MAX_ISSUER_BYTES)?,
            text_field(item, "subject", MAX_PATTERN_BYTES)?,
        ) else {
            return Err(ApiError::bad_request(MISSING_FIELDS));
        };
        trust::check_issuer(issuer, federation.allow_http_issuers)
            .map_err(ApiError::bad_request)?;
        if !issuer_allowed(&federation.allowed_issuers, issuer) {
            return Err(ApiError::bad_request(
                "Issuer is not allowed by this gateway",
            ));
        }
        let audiences_error = || {
            ApiError::bad_request(format!(
                "audiences must be a list of non-empty strings of at most {MAX_AUDIENCE_BYTES} bytes"
            ))
        };
        let audiences = match item.get("audiences") {
            None | Some(Value::Null) => Box::default(),
            Some(Value::Array(list)) => list
                .iter()
                .map(|a| {
                    a.as_str()
                        .filter(|a| !a.is_empty() && a.len() <= MAX_AUDIENCE_BYTES)
                        .map(Into::into)
                })
                .collect::<Option<_>>()
                .ok_or_else(audiences_error)?,
            Some(_) => return Err(audiences_error()),
        };
        let conditions = match item.get("conditions") {
            None | Some(Value::Null) => Default::default(),
            Some(Value::Object(map)) => {
                for claim in map.keys() {
                    check_claim_name(claim)?;
                }
                map.iter()
                    .map(|(claim, accepted)| {
                        Accepted::from_json(accepted, MAX_PATTERN_BYTES).map(|a| (claim.clone(), a))
                    })
                    .collect::<Option<_>>()
                    .ok_or_else(|| ApiError::bad_request(CONDITIONS_SHAPE))?
            }
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
    let size = serde_json::to_vec(&entries).map_or(usize::MAX, |json| json.len());
    if size > MAX_LIST_BYTES {
        return Err(ApiError::bad_request(format!(
            "A robot's federation entries may take at most {} KiB as JSON (these take {} KiB)",
            MAX_LIST_BYTES / 1024,
            size.div_ceil(1024)
        )));
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
