//! Following the change log (`store::changes`), so that every replica drops its cached copy of
//! a changed robot within a second even when the change's Redis notice never came: the replica
//! that made it could not reach Redis, or the notice was lost on the way.
//!
//! Redis notices stay the fast path (milliseconds); this is the guarantee. A replica that falls
//! more changes behind than the log keeps (or reads a gap) forgets its whole cache.

use std::future::Future;
use std::time::Duration;

use crate::app::AppState;

/// How often the log is read: with the time a read takes, a change reaches every replica
/// within a second (SPEC 9).
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Changes read at once; more than this behind, the whole cache is dropped instead.
const BATCH: i64 = 1000;
/// Changes the log keeps (older ones are purged by the server's upkeep).
pub const KEEP: i64 = 10_000;

/// Reads the change log every [`POLL_INTERVAL`] until `stop`, dropping the changed robots from
/// this replica's cache.
pub async fn follow(state: AppState, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen: Option<i64> = None;
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => {}
        }
        seen = match seen {
            // Starting: whatever changed before is not in this replica's (empty) cache.
            None => state.store.latest_change().await.ok(),
            Some(seen) => Some(catch_up(&state, seen).await),
        };
        if let Some(seen) = seen {
            state
                .changes_applied
                .store(seen, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// Applies the changes after `seen`; returns the latest one applied.
async fn catch_up(state: &AppState, seen: i64) -> i64 {
    let changes = match state.store.changes_since(seen, BATCH).await {
        Ok(changes) => changes,
        Err(e) => {
            // The database is down for this replica: nothing can change through it either,
            // and notices from the others still arrive through Redis.
            tracing::debug!(error = %e, "cannot read the change log");
            return seen;
        }
    };
    let Some(&(latest, _)) = changes.last() else {
        return seen;
    };
    let contiguous = changes.first().is_some_and(|(first, _)| *first == seen + 1);
    if !contiguous || changes.len() as i64 >= BATCH {
        tracing::info!(
            seen,
            latest,
            "fell behind the change log; dropping the robot cache"
        );
        state.robots.clear();
        return match state.store.latest_change().await {
            Ok(newest) => newest.max(latest),
            Err(_) => latest,
        };
    }
    for (_, robot) in &changes {
        state.robots.invalidate(robot);
    }
    latest
}
