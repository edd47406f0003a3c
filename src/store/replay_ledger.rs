//! Replay records of one node (SQLite): decided in memory, journaled to disk.
//!
//! Deciding in the database means a unique index on `(issuer, jti)`, and every record lands on
//! a random leaf of it: a 4 KiB page written to the WAL per record, more as the table outgrows
//! the page cache, and each exchange waits for a group commit on a database thread. Replay-on
//! throughput was 0.39-0.46 of replay off on a quiet machine (README, "Performance"). One
//! SQLite node is the only process that decides replays for its database, so the set of live
//! records lives in its memory instead, where the check is one hash-map insert under a lock
//! (atomic: of concurrent calls, exactly one inserts). Each new record is then appended to
//! the journal ([`super::replay_journal`]) before the exchange answers, so a crash forgets
//! nothing: the next start reads the live records back, with those that releases before the
//! journal left in the `replay_records` table.
//!
//! Memory: 50-100 bytes per live record (a record lives until its token's `exp` + leeway).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::{AnyPool, Row};

use super::replay_journal::Journal;
use super::{StoreError, StoreResult, Unix};

/// The memory is split so concurrent exchanges rarely wait for one another's lock.
const SHARDS: usize = 16;

/// A record's key: the first 16 bytes of [`replay_digest`]. 128 bits: no two tokens share one
/// in practice.
pub(super) type Key = u128;

/// SHA-256(issuer NUL jti NUL): a replay record's identity wherever it is kept (this ledger's
/// key, and the replica stack's Redis key `fedgate:replay:<hex>`).
pub(crate) fn replay_digest(issuer: &str, jti: &str) -> aws_lc_rs::digest::Digest {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in [issuer, jti] {
        ctx.update(part.as_bytes());
        ctx.update(&[0]);
    }
    ctx.finish()
}

fn key_of(issuer: &str, jti: &str) -> Key {
    let digest = replay_digest(issuer, jti);
    Key::from_be_bytes(digest.as_ref()[..16].try_into().expect("16 of 32 bytes"))
}

/// The live replay records of one SQLite database.
pub(super) struct ReplayLedger {
    /// Each key's expiry, sharded by the key's low bits.
    live: Box<[Mutex<HashMap<Key, Unix>>]>,
    /// `None` for an in-memory database, which dies with the process anyway.
    journal: Option<Arc<Journal>>,
}

impl std::fmt::Debug for ReplayLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The count, not the records: there may be millions.
        f.debug_struct("ReplayLedger")
            .field("live", &self.len())
            .finish_non_exhaustive()
    }
}

/// Why the ledger cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(
        "another fedgate process decides replays for this database (it holds {0}): one SQLite node per database; several replicas need PostgreSQL and Redis"
    )]
    Locked(PathBuf),
    #[error("replay journal {0}: {1}")]
    Journal(PathBuf, std::io::Error),
    #[error("cannot read the replay records: {0}")]
    Read(#[from] sqlx::Error),
}

impl From<LedgerError> for StoreError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Read(e) => StoreError::Backend(e),
            other => StoreError::Backend(sqlx::Error::Protocol(other.to_string())),
        }
    }
}

/// The journal beside `database`: `fedgate.db` keeps its records in `fedgate.db-replays/`.
pub(super) fn journal_dir(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-replays");
    PathBuf::from(name)
}

impl ReplayLedger {
    /// Opens the journal beside `database` (`None`: an in-memory database, no journal) and
    /// reads back the records still live at `now`, from it and from `replay_records`.
    pub(super) async fn open(
        pool: &AnyPool,
        database: Option<&Path>,
        now: Unix,
    ) -> Result<Self, LedgerError> {
        let live: Box<[_]> = (0..SHARDS).map(|_| Mutex::default()).collect();
        let mut ledger = Self {
            live,
            journal: None,
        };
        if let Some(database) = database {
            let dir = journal_dir(database);
            let opened = tokio::task::spawn_blocking(move || Journal::open(&dir, now))
                .await
                .expect("reading the replay journal panicked")?;
            let (journal, records) = opened;
            for (key, until) in records {
                ledger.remember(key, until);
            }
            let journal = Arc::new(journal);
            maintain_in_background(&journal);
            ledger.journal = Some(journal);
        }
        // Written by releases that decided in the database; honoured until they expire.
        let older = sqlx::query(
            "SELECT issuer, jti, expires_at FROM replay_records WHERE expires_at >= $1",
        )
        .bind(now)
        .fetch_all(pool)
        .await?;
        for row in older {
            let key = key_of(row.try_get(0)?, row.try_get(1)?);
            ledger.remember(key, row.try_get(2)?);
        }
        tracing::info!(records = ledger.len(), "live replay records read");
        Ok(ledger)
    }

    fn len(&self) -> usize {
        self.live
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.len()))
            .sum()
    }

    fn shard(&self, key: Key) -> &Mutex<HashMap<Key, Unix>> {
        &self.live[(key as usize) % SHARDS]
    }

    /// Adds `key` until `expires_at`, or later if it is there until later.
    fn remember(&self, key: Key, expires_at: Unix) {
        let mut live = self.shard(key).lock().expect("replay shard poisoned");
        let until = live.entry(key).or_insert(expires_at);
        *until = (*until).max(expires_at);
    }

    /// Records `(issuer, jti)` until `expires_at`: true the first time, once the record is in
    /// the journal; false while a live record (`expires_at >= now`) exists.
    pub(super) fn record_once(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: Unix,
        now: Unix,
    ) -> StoreResult<bool> {
        let key = key_of(issuer, jti);
        {
            let mut live = self.shard(key).lock().expect("replay shard poisoned");
            if live.get(&key).is_some_and(|until| *until >= now) {
                return Ok(false);
            }
            live.insert(key, expires_at);
        }
        let written = match &self.journal {
            Some(journal) => journal.append(key, expires_at, now),
            None => Ok(()),
        };
        if written.is_err() {
            // Not recorded, so not used: the exchange fails and the token stays usable.
            let mut live = self.shard(key).lock().expect("replay shard poisoned");
            if live.get(&key) == Some(&expires_at) {
                live.remove(&key);
            }
        }
        written
            .map(|()| true)
            .map_err(|e| StoreError::Backend(sqlx::Error::Io(e)))
    }

    /// Syncs the journal to disk (at shutdown).
    pub(super) fn sync(&self) -> std::io::Result<()> {
        self.journal
            .as_ref()
            .map_or(Ok(()), |journal| journal.sync())
    }

    /// Forgets the records expired before `now` (the tables are purged by the store).
    pub(super) fn forget_expired(&self, now: Unix) {
        if let Some(journal) = &self.journal {
            journal.observe(now);
        }
        for shard in &self.live {
            shard
                .lock()
                .expect("replay shard poisoned")
                .retain(|_, until| *until >= now);
        }
    }
}

/// Syncs the journal every second and lets its old segments go, until the ledger is dropped.
fn maintain_in_background(journal: &Arc<Journal>) {
    let journal = Arc::downgrade(journal);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(journal) = journal.upgrade() else {
                return;
            };
            let done = tokio::task::spawn_blocking(move || journal.maintain()).await;
            if let Ok(Err(e)) = done {
                tracing::warn!(error = %e, "cannot sync or trim the replay journal");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::journal_dir;
    use crate::config::DatabaseKind;
    use crate::store::{ReplayStore, SqlStore, Store};

    async fn store(dir: &std::path::Path) -> SqlStore {
        let url = format!("sqlite://{}/fedgate.db", dir.display());
        let store = SqlStore::connect(&url, DatabaseKind::Sqlite).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn of_concurrent_uses_exactly_one_is_new() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(store(dir.path()).await);
        let mut racers = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let store = store.clone();
            racers.spawn(async move { store.record_once("iss", "jti", 100, 1).await.unwrap() });
        }
        let new = racers.join_all().await.into_iter().filter(|n| *n).count();
        assert_eq!(new, 1);
    }

    #[tokio::test]
    async fn a_record_lives_until_its_expiry_and_per_issuer() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        assert!(store.record_once("a", "jti", 100, 1).await.unwrap());
        assert!(
            store.record_once("b", "jti", 100, 1).await.unwrap(),
            "another issuer"
        );
        assert!(
            !store.record_once("a", "jti", 200, 100).await.unwrap(),
            "live at 100"
        );
        assert!(
            store.record_once("a", "jti", 200, 101).await.unwrap(),
            "expired at 101"
        );
        // Purged from memory at 150: the record taken over at 101 lives until 200.
        store.purge_replay_records(150).await.unwrap();
        assert!(!store.record_once("a", "jti", 300, 150).await.unwrap());
        store.purge_replay_records(201).await.unwrap();
        assert!(store.record_once("a", "jti", 300, 201).await.unwrap());
    }

    #[tokio::test]
    async fn records_are_journaled_beside_the_database_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        assert!(store.record_once("iss", "jti-1", 100, 1).await.unwrap());
        assert!(
            journal_dir(&dir.path().join("fedgate.db"))
                .join("lock")
                .exists()
        );
        store.close().await;
        drop(store);
        let reopened = self::store(dir.path()).await;
        assert!(!reopened.record_once("iss", "jti-1", 100, 2).await.unwrap());
        assert!(reopened.record_once("iss", "jti-2", 100, 2).await.unwrap());
    }

    /// A record the journal cannot write fails the exchange (closed: never a `true`), and
    /// does not burn the token: once the disk is back, the same token is new.
    #[tokio::test]
    async fn a_record_the_journal_cannot_write_is_an_error_and_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let database = dir.path().join("fedgate.db");
        let ledger = super::ReplayLedger::open(&store.pool, None, 1)
            .await
            .unwrap();
        assert!(
            ledger.journal.is_none(),
            "an in-memory ledger has no journal"
        );
        drop(ledger);
        // A ledger of its own on a journal of its own: the store's is not opened.
        let ledger = super::ReplayLedger::open(&store.pool, Some(&database), 1)
            .await
            .unwrap();
        let journal = ledger.journal.as_ref().unwrap();
        let read_only = std::fs::File::open(journal_dir(&database).join("lock")).unwrap();
        let healthy = journal.replace_file(read_only);
        let failed = ledger.record_once("iss", "jti", 100, 1);
        assert!(failed.is_err(), "{failed:?}");
        journal.replace_file(healthy);
        assert!(ledger.record_once("iss", "jti", 100, 1).unwrap());
        assert!(!ledger.record_once("iss", "jti", 100, 1).unwrap());
    }

    #[tokio::test]
    async fn a_closed_store_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        assert!(store.record_once("iss", "jti-1", 100, 1).await.unwrap());
        assert!(!store.record_once("iss", "jti-1", 100, 1).await.unwrap());
        tokio::time::timeout(Duration::from_secs(30), store.close())
            .await
            .expect("closing the store waited");
        let closed = store.record_once("iss", "jti-2", 100, 1).await;
        assert!(closed.is_err(), "a closed store recorded {closed:?}");
    }
}
