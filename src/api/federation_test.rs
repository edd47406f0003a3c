//! `POST .../robots/{short}/federation/test`: "why was I refused", for the robot's admins.
//!
//! A refused exchange tells its (possibly anonymous) caller the code and the token's value
//! that failed, never the policy. This dry run tells the robot's administrators, for an
//! identity token they send as `{"token": "<jwt>"}`, what the exchange would answer and, for
//! each federation entry, whether it matched and the first check that failed, with the
//! expected pattern and the received value.
//!
//! It decides through the exchange's own functions ([`exchange::decode`],
//! [`exchange::check_identity`], [`policy::evaluate`] and [`policy::matching_entry`]), and it
//! mints nothing, records no replay, counts against no rate limit and pins nothing. The token
//! is never echoed back (its claims `iss`, `sub`, `aud`, `exp`, `jti` are).

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};

use crate::app::AppState;
use crate::exchange;
use crate::http::auth::Caller;
use crate::http::error::{AdminErrors, ApiError};
use crate::http::extract::{JsonBody, PathParams};
use crate::oidc::policy::{self, FederationEntry, Mismatch};
use crate::oidc::providers::{pinned_claims, pins_from};
use crate::oidc::verify::Claims;
use crate::oidc::{Refusal, RefusalCode};

use super::robots::{RobotPath, administered_robot};

const BODY_SHAPE: &str = "The body must be {\"token\": \"<identity token>\"}";

/// The dry run's body (read by hand, so that a bad one gets [`BODY_SHAPE`]).
#[derive(Debug, utoipa::ToSchema)]
pub struct FederationTestRequest {
    /// An identity token, as a workload would present it to the exchange.
    #[expect(dead_code, reason = "documents the body in the OpenAPI document")]
    token: String,
}

/// Dry-run an identity token against a robot's federation entries
///
/// For the robot's admins: what the exchange would answer (`result`, `error_code`, `error`)
/// and, for each entry, whether it matched or the first check it failed (`issuer`,
/// `audience`, `subject`, `condition`) with the expected pattern and the received value.
/// Nothing is minted, recorded, counted or pinned; the token is never echoed.
#[utoipa::path(
    post,
    path = "/api/v1/organization/{org}/robots/{short}/federation/test",
    operation_id = "testOrgRobotFederation",
    tag = "federation",
    security(("api_token" = ["org:admin"])),
    params(RobotPath),
    request_body = FederationTestRequest,
    responses((status = 200, description = "The verdict, whatever it is", body = serde_json::Value), AdminErrors),
)]
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    params: PathParams,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>, ApiError> {
    let robot = administered_robot(&state, &caller, &params).await?;
    let jwt = body
        .get("token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::bad_request(BODY_SHAPE))?;
    let name = robot.full_name();
    let policy = state
        .robots
        .get(state.store.as_ref(), state.shared.notices_live(), &name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Robot not found: {name}")))?;
    Ok(Json(dry_run(&state, &name, &policy.entries, jwt).await))
}

async fn dry_run(state: &AppState, robot: &str, entries: &[FederationEntry], jwt: &str) -> Value {
    let mut answer = Map::new();
    answer.insert("robot".into(), json!(robot));
    if entries.is_empty() {
        let refusal = Refusal::new(
            RefusalCode::NoFederation,
            format!("robot {robot} has no federation configuration"),
        );
        return verdict(answer, Err(refusal), Vec::new());
    }
    let (compact, claims) = match exchange::decode(jwt) {
        Ok(decoded) => decoded,
        Err(refusal) => return verdict(answer, Err(refusal), Vec::new()),
    };
    answer.insert(
        "identity".into(),
        json!({"iss": claims.iss, "sub": claims.sub, "aud": claims.aud, "exp": claims.exp,
               "jti": claims.jti}),
    );
    let reports = entries
        .iter()
        .enumerate()
        .map(|(index, entry)| report(index, entry, &claims, &state.default_audiences))
        .collect();
    // The exchange's order: the token itself, then the entries, then what it would record.
    let outcome = async {
        exchange::check_identity(state, robot, entries, &compact, &claims).await?;
        let matched = policy::matching_entry(entries, &claims, &state.default_audiences, robot)?;
        exchange::check_jti(state, &claims)?;
        if let Some(preset) = &matched.preset {
            pins_from(preset, &claims)
                .map_err(|why| Refusal::new(RefusalCode::ClaimMismatch, why))?;
        }
        Ok(())
    }
    .await;
    verdict(answer, outcome, reports)
}

fn verdict(
    mut answer: Map<String, Value>,
    outcome: Result<(), Refusal>,
    entries: Vec<Value>,
) -> Value {
    match outcome {
        Ok(()) => {
            answer.insert("result".into(), json!("accepted"));
        }
        Err(refusal) => {
            answer.insert("result".into(), json!("refused"));
            answer.insert("error_code".into(), json!(refusal.code.as_str()));
            answer.insert("error".into(), json!(refusal.message));
        }
    }
    answer.insert("entries".into(), Value::Array(entries));
    answer.insert(
        "replay".into(),
        json!("not checked: a dry run records nothing"),
    );
    Value::Object(answer)
}

/// One entry's verdict: matched (and what it would pin), or the first check that failed.
fn report(index: usize, entry: &FederationEntry, claims: &Claims, defaults: &[String]) -> Value {
    let mut shown = json!({"index": index, "issuer": entry.issuer, "subject": entry.subject});
    let failed = match policy::evaluate(entry, claims, defaults) {
        Ok(()) => {
            shown["matched"] = json!(true);
            if let Some(preset) = entry
                .preset
                .as_deref()
                .filter(|p| !p.pending_pins.is_empty())
            {
                shown["would_pin"] = match pins_from(preset, claims) {
                    Ok(pins) => pins.into_iter().map(|(c, v)| (c, json!(v))).collect(),
                    Err(why) => json!({"error": why}),
                };
            }
            return shown;
        }
        Err(Mismatch::Issuer { expected }) => {
            json!({"check": "issuer", "expected": expected, "received": claims.iss})
        }
        Err(Mismatch::Audience { expected: [] }) => {
            json!({"check": "audience", "expected": defaults, "received": claims.aud})
        }
        Err(Mismatch::Audience { expected }) => {
            json!({"check": "audience", "expected": expected, "received": claims.aud})
        }
        Err(Mismatch::Subject { expected }) => {
            json!({"check": "subject", "expected": expected, "received": claims.sub})
        }
        Err(Mismatch::Condition {
            claim,
            expected,
            received,
            ambiguous,
        }) => {
            let mut failed = json!({"check": "condition", "claim": claim, "expected": expected,
                                    "received": received,
                                    "pinned": pinned_claims(entry).contains(&claim)});
            if ambiguous {
                // The token holds the claim more than one way (oidc::policy::claim).
                failed["ambiguous"] = json!(true);
            }
            failed
        }
    };
    shown["matched"] = json!(false);
    shown["failed"] = failed;
    shown
}
