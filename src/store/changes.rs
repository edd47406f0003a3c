//! The change log: every change to what the robot cache holds, numbered in commit order
//! (migration 0004). Each change is recorded in the transaction that makes it, so a committed
//! change is always in the log; replicas read the log (`shared::changes`), so it reaches them
//! whether or not its Redis notice did.

use async_trait::async_trait;
use sqlx::{Any, Row, Transaction};

use super::sql::SqlStore;
use super::{ChangeStore, StoreResult};

/// The robot a change is about.
pub(super) enum RobotRef<'a> {
    Id(i64),
    /// Namespace and short name.
    Name(&'a str, &'a str),
}

/// Records a change to `robot` in `tx`; false (and nothing recorded once `tx` is dropped)
/// when there is no such robot. Call it first in the transaction: updating the counter row
/// takes the write lock, which orders changes by number.
pub(super) async fn record_change(
    tx: &mut Transaction<'static, Any>,
    robot: RobotRef<'_>,
) -> StoreResult<bool> {
    let generation: i64 = sqlx::query_scalar(
        "UPDATE change_counter SET generation = generation + 1 WHERE id = 1 RETURNING generation",
    )
    .fetch_one(&mut **tx)
    .await?;
    let insert = "INSERT INTO robot_changes (generation, robot) \
                  SELECT $1, namespace || '+' || short_name FROM robots WHERE ";
    let done = match robot {
        RobotRef::Id(id) => {
            sqlx::query(&format!("{insert}id = $2"))
                .bind(generation)
                .bind(id)
                .execute(&mut **tx)
                .await?
        }
        RobotRef::Name(namespace, short) => {
            sqlx::query(&format!("{insert}namespace = $2 AND short_name = $3"))
                .bind(generation)
                .bind(namespace)
                .bind(short)
                .execute(&mut **tx)
                .await?
        }
    };
    Ok(done.rows_affected() > 0)
}

#[async_trait]
impl ChangeStore for SqlStore {
    async fn latest_change(&self) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT generation FROM change_counter WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn changes_since(&self, generation: i64, limit: i64) -> StoreResult<Vec<(i64, String)>> {
        let rows = sqlx::query(
            "SELECT generation, robot FROM robot_changes WHERE generation > $1 \
             ORDER BY generation LIMIT $2",
        )
        .bind(generation)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    async fn purge_changes(&self, keep: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM robot_changes WHERE generation <= \
             (SELECT generation FROM change_counter WHERE id = 1) - $1",
        )
        .bind(keep)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
