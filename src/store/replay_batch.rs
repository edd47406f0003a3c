//! Replay records of PostgreSQL without Redis, written in groups (group commit). SQLite decides
//! them in memory instead ([`super::replay_ledger`]). Written one statement each, concurrent
//! exchanges queue for the table's locks and each commit is its own round trip. Here one task
//! writes them instead: the records that arrived while the previous group was being written go
//! in together, as one `INSERT ... ON CONFLICT ... RETURNING` statement (atomic: all or none),
//! and each waiting exchange is answered only after that statement has committed.
//!
//! The decision is the same as one statement per record: a record is new when the statement
//! inserted it, or took over an expired one. Two requests for the same record in one group are
//! one insert: the first is answered by the database, the others are replays.
//!
//! The writer keeps one connection of the pool for itself, with the statements of every group
//! size prepared on it. It lets go of the connection when the pool closes, so nothing is
//! written after `Store::close`.

use std::collections::HashSet;

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Row};
use tokio::sync::{mpsc, oneshot};

use super::{StoreError, StoreResult, Unix};

/// Records written by one statement at most (three parameters each).
const MAX_GROUP: usize = 128;
/// Records waiting for the writer at most; past it, callers wait to queue.
const QUEUE: usize = 4096;

struct Pending {
    issuer: String,
    jti: String,
    expires_at: Unix,
    now: Unix,
    answer: oneshot::Sender<StoreResult<bool>>,
}

/// The queue to the writer task, which runs until the last handle is dropped.
#[derive(Debug, Clone)]
pub(super) struct ReplayWriter {
    queue: mpsc::Sender<Pending>,
}

impl ReplayWriter {
    /// Starts the writer on the current Tokio runtime.
    pub(super) fn start(pool: AnyPool) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE);
        tokio::spawn(write_groups(pool, pending));
        Self { queue }
    }

    /// Records `(issuer, jti)` until `expires_at`, answering once it is committed: true the
    /// first time, false for a replay.
    pub(super) async fn record_once(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: Unix,
        now: Unix,
    ) -> StoreResult<bool> {
        let (answer, answered) = oneshot::channel();
        let pending = Pending {
            issuer: issuer.to_string(),
            jti: jti.to_string(),
            expires_at,
            now,
            answer,
        };
        let stopped = || StoreError::Backend(sqlx::Error::WorkerCrashed);
        self.queue.send(pending).await.map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

async fn write_groups(pool: AnyPool, mut pending: mpsc::Receiver<Pending>) {
    let closed = pool.close_event();
    tokio::pin!(closed);
    let mut group = Vec::with_capacity(MAX_GROUP);
    let mut writer: Option<PoolConnection<Any>> = None;
    loop {
        tokio::select! {
            biased;
            () = &mut closed => break,
            received = pending.recv_many(&mut group, MAX_GROUP) => if received == 0 { break },
        }
        let group = std::mem::take(&mut group);
        let connection = match writer.as_mut() {
            Some(connection) => connection,
            None => match pool.acquire().await {
                Ok(connection) => writer.insert(connection),
                Err(e) => {
                    answer_error(group, e);
                    continue;
                }
            },
        };
        if write_group(connection, group).await.is_err() {
            // Back to the pool, which checks it before anyone uses it again.
            writer = None;
        }
    }
    // Dropping the connection returns it to the pool; queued requests see the writer stopped.
}

/// Writes one group and answers its requests; `Err` when the database failed.
async fn write_group(connection: &mut AnyConnection, group: Vec<Pending>) -> Result<(), ()> {
    // The first request for each record goes to the database; repeats in the group are replays.
    let mut seen = HashSet::with_capacity(group.len());
    let (first, repeats): (Vec<_>, Vec<_>) = group
        .into_iter()
        .partition(|p| seen.insert((p.issuer.clone(), p.jti.clone())));
    let now = first.iter().map(|p| p.now).max().unwrap_or_default();
    let mut sql = String::from("INSERT INTO replay_records (issuer, jti, expires_at) VALUES ");
    for i in 0..first.len() {
        let n = 3 * i;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("(${}, ${}, ${})", n + 1, n + 2, n + 3));
    }
    // Inserts, or takes over an expired record; a live record is left alone and not returned.
    sql.push_str(&format!(
        " ON CONFLICT (issuer, jti) DO UPDATE SET expires_at = excluded.expires_at \
         WHERE replay_records.expires_at < ${} RETURNING issuer, jti",
        3 * first.len() + 1
    ));
    let mut query = sqlx::query(&sql);
    for p in &first {
        query = query.bind(&p.issuer).bind(&p.jti).bind(p.expires_at);
    }
    let written = query
        .bind(now)
        .fetch_all(connection)
        .await
        .and_then(|rows| {
            rows.iter()
                .map(|row| Ok((row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?)))
                .collect::<Result<HashSet<_>, sqlx::Error>>()
        });
    match written {
        Ok(new) => {
            for p in first {
                let fresh = new.contains(&(p.issuer, p.jti));
                let _ = p.answer.send(Ok(fresh));
            }
            for p in repeats {
                let _ = p.answer.send(Ok(false));
            }
            Ok(())
        }
        Err(e) => {
            answer_error(first.into_iter().chain(repeats), e);
            Err(())
        }
    }
}

/// Answers every request of a group that could not be written with the database's error.
fn answer_error(group: impl IntoIterator<Item = Pending>, error: sqlx::Error) {
    // The group's first request carries the error itself; the others, what it said.
    let message = error.to_string();
    let mut error = Some(error);
    for p in group {
        let e = error
            .take()
            .unwrap_or_else(|| sqlx::Error::Protocol(message.clone()));
        let _ = p.answer.send(Err(StoreError::Backend(e)));
    }
}
