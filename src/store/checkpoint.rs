//! SQLite's WAL checkpoints, off the write path. By default the commit that fills the WAL past
//! 1,000 pages copies them into the database file before it returns; with replay records
//! written in groups by one writer ([`super::replay_batch`]), every exchange waiting for that
//! group waited for the copy too (the replay-on tail). Here a background task checkpoints
//! instead (`PASSIVE`: it never blocks writers or readers), on its own connection.

use std::time::Duration;

use sqlx::AnyPool;

/// How often the WAL is copied into the database file. At ~10,000 records a second it grows
/// by a few MiB in between.
const EVERY: Duration = Duration::from_secs(1);

/// Checkpoints `pool`'s database every [`EVERY`] until the pool is closed.
pub(super) fn start(pool: AnyPool) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !pool.is_closed() {
            tick.tick().await;
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                tracing::debug!(error = %e, "WAL checkpoint failed");
            }
        }
    });
}
