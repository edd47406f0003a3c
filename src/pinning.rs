//! Pinning immutable IDs on first use: the exchange's side of `oidc::providers`' pins.
//!
//! A preset entry whose IDs (`repository_owner_id`, `project_id`, ...) the admin did not give
//! records them from the first token that passes every check; they are conditions from then
//! on. The write:
//!
//! - does not change the robot's revision, so no minted token is revoked by it;
//! - is one conditional `UPDATE` (the entry still unpinned, the list still the one matched),
//!   so two first exchanges racing, on one replica or several, cannot pin two values: the
//!   loser decides again against the list as it now is, pinned values included, and is
//!   refused unless its IDs are the ones that were pinned;
//! - is announced like any change, so every replica drops its cached copy at once.

use std::sync::Arc;

use crate::app::AppState;
use crate::exchange::{ExchangeError, robot_policy};
use crate::oidc::policy::matching_entry;
use crate::oidc::providers::{pins_from, with_pins};
use crate::oidc::verify::Claims;
use crate::oidc::{Refusal, RefusalCode};
use crate::robot_cache::RobotPolicy;

/// How often a lost race is decided again (each loss means the list changed under us).
const ATTEMPTS: usize = 3;

/// Records the pending pins of the entry at `matched`, if it has any, from `claims`, and
/// returns the policy to mint under (the same one, unless a lost race made us read it again).
pub async fn record_first_use(
    state: &AppState,
    robot_name: &str,
    mut policy: Arc<RobotPolicy>,
    mut matched: usize,
    claims: &Claims,
) -> Result<Arc<RobotPolicy>, ExchangeError> {
    for _ in 0..ATTEMPTS {
        let Some(entry) = policy.entries.get(matched) else {
            return Ok(policy);
        };
        let Some(preset) = entry
            .preset
            .as_deref()
            .filter(|p| !p.pending_pins.is_empty())
        else {
            return Ok(policy);
        };
        let pins = pins_from(preset, claims).map_err(|why| {
            ExchangeError::Refused(Refusal::new(
                RefusalCode::ClaimMismatch,
                format!("{why} (robot {robot_name})"),
            ))
        })?;
        let conditions = with_pins(&entry.conditions, &pins);
        let won = state
            .store
            .pin_federation_entry(
                policy.robot_id,
                matched,
                policy.revision,
                &conditions,
                state.clock.unix(),
            )
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "recording pins failed");
                ExchangeError::Unavailable
            })?;
        // Either way the cached copy is out of date (it still waits for pins).
        state.robot_changed(robot_name).await;
        if won {
            tracing::info!(
                target: "audit",
                kind = "federation.pin",
                robot = robot_name,
                entry = matched,
                pins = ?pins,
                "immutable IDs pinned by the first exchange"
            );
            return Ok(policy);
        }
        // Another exchange pinned first, or the list was replaced: decide again on the list
        // as it is now.
        policy = robot_policy(state, robot_name).await?;
        let entry = matching_entry(
            &policy.entries,
            claims,
            &state.default_audiences,
            robot_name,
        )?;
        matched = policy
            .entries
            .iter()
            .position(|e| std::ptr::eq(e, entry))
            .unwrap_or_default();
    }
    tracing::warn!(
        robot = robot_name,
        "the federation list kept changing while pinning"
    );
    Err(ExchangeError::Unavailable)
}
