//! The schema policy that keeps rolling upgrades and rollbacks safe.
//!
//! - Only `fedgate migrate` and `fedgate serve` change the schema (`serve --no-migrate` does
//!   not: deployments that migrate as their own step use it). Every admin verb reads where the
//!   schema stands and refuses to run on one older than it needs, naming the command that
//!   fixes it, so an admin with a newer CLI never migrates production by accident. `serve`
//!   migrates before it binds its ports, so a long migration never meets a liveness probe.
//! - A binary runs against a schema newer than it knows (the next release already migrated:
//!   a rollback, or old replicas still running mid-rollout). sqlx's migrator is told to ignore
//!   applied migrations it does not know, and `migrate` from the older binary is then a no-op.
//! - That only works because **every migration is additive**: new tables, new nullable
//!   columns or columns with a default, new indexes. A release never drops, renames or
//!   retypes what the previous release reads or writes, and never adds a `NOT NULL` column
//!   without a default (the previous release's inserts would fail). Removing something takes
//!   two releases: stop using it, then drop it once no binary that uses it can run.
//!   `migrations_are_additive` below checks the statements it can.

use std::fmt;

use sqlx::AnyPool;
use sqlx::migrate::{Migrate, MigrateError, Migrator};

use crate::config::DatabaseKind;

/// Where the database's schema stands against this binary's migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaState {
    /// No fedgate schema at all (a new database).
    Empty,
    /// Migrations this binary needs are not applied: `fedgate migrate` applies them.
    Behind { version: i64, needed: i64 },
    /// Exactly the migrations this binary knows.
    Current { version: i64 },
    /// Migrations of a newer fedgate are applied too: usable, since they are additive.
    Newer { version: i64, known: i64 },
}

/// Why the schema cannot be used (or migrated) as it is.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "the database has no fedgate schema yet: run `fedgate migrate` (or `fedgate serve`) first"
    )]
    Empty,
    #[error(
        "the database schema is at version {version} and this fedgate needs version {needed}: run `fedgate migrate` (of this release) first"
    )]
    Behind { version: i64, needed: i64 },
    #[error(
        "migration {0} failed part-way on this database and is marked dirty: repair it by hand before going on"
    )]
    Dirty(i64),
    #[error(
        "migration {0} as applied to the database differs from this fedgate's copy: the database was migrated by another build"
    )]
    Modified(i64),
    #[error("cannot read or change the schema: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot migrate the database: {0}")]
    Migrate(MigrateError),
}

impl From<MigrateError> for SchemaError {
    fn from(e: MigrateError) -> Self {
        match e {
            MigrateError::Dirty(v) => SchemaError::Dirty(v),
            MigrateError::VersionMismatch(v) => SchemaError::Modified(v),
            MigrateError::Execute(e) => SchemaError::Database(e),
            other => SchemaError::Migrate(other),
        }
    }
}

/// What `fedgate migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    pub applied: Vec<i64>,
    pub state: SchemaState,
}

impl fmt::Display for Migrated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let applied: Vec<String> = self.applied.iter().map(i64::to_string).collect();
        match (&self.state, applied.is_empty()) {
            (SchemaState::Newer { version, known }, _) => write!(
                f,
                "the database schema is at version {version}, newer than this fedgate's {known}: nothing to apply (it runs against the newer schema)"
            ),
            (state, true) => write!(f, "the database is up to date ({})", describe(state)),
            (state, false) => write!(
                f,
                "applied migration(s) {}; {}",
                applied.join(", "),
                describe(state)
            ),
        }
    }
}

fn describe(state: &SchemaState) -> String {
    match state {
        SchemaState::Empty => "no schema".into(),
        SchemaState::Behind { version, .. }
        | SchemaState::Current { version }
        | SchemaState::Newer { version, .. } => format!("schema version {version}"),
    }
}

/// This binary's migrations, with applied migrations it does not know (a newer release's)
/// ignored instead of refused.
pub fn migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("src/store/migrations");
    migrator.set_ignore_missing(true);
    migrator
}

/// Reads where the schema stands, changing nothing.
pub async fn inspect(pool: &AnyPool, kind: DatabaseKind) -> Result<SchemaState, SchemaError> {
    if !has_migrations_table(pool, kind).await? {
        return Ok(SchemaState::Empty);
    }
    let mut conn = pool.acquire().await?;
    if let Some(version) = conn.dirty_version().await? {
        return Err(SchemaError::Dirty(version));
    }
    let applied = conn.list_applied_migrations().await?;
    if applied.is_empty() {
        return Ok(SchemaState::Empty);
    }
    let migrator = migrator();
    let mut missing = false;
    for known in migrator.iter() {
        match applied.iter().find(|a| a.version == known.version) {
            Some(done) if done.checksum != known.checksum => {
                return Err(SchemaError::Modified(known.version));
            }
            Some(_) => {}
            None => missing = true,
        }
    }
    let known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    let version = applied.iter().map(|a| a.version).max().unwrap_or(0);
    Ok(if missing {
        SchemaState::Behind {
            version,
            needed: known,
        }
    } else if version > known {
        SchemaState::Newer { version, known }
    } else {
        SchemaState::Current { version }
    })
}

/// Refuses a schema this binary cannot run on; a newer one is accepted with a warning.
pub fn require(state: &SchemaState) -> Result<(), SchemaError> {
    match *state {
        SchemaState::Empty => Err(SchemaError::Empty),
        SchemaState::Behind { version, needed } => Err(SchemaError::Behind { version, needed }),
        SchemaState::Current { .. } => Ok(()),
        SchemaState::Newer { version, known } => {
            tracing::warn!(
                schema_version = version,
                known_version = known,
                "the database schema is newer than this fedgate knows; running against it (migrations are additive). Finish the upgrade or the rollback"
            );
            Ok(())
        }
    }
}

/// Applies the migrations this binary knows and the database lacks (safe to run from several
/// processes: PostgreSQL takes an advisory lock). Against a newer schema it applies nothing.
pub async fn migrate(pool: &AnyPool, kind: DatabaseKind) -> Result<Migrated, SchemaError> {
    let before = applied_versions(pool, kind).await?;
    migrator().run(pool).await?;
    let after = applied_versions(pool, kind).await?;
    Ok(Migrated {
        applied: after.into_iter().filter(|v| !before.contains(v)).collect(),
        state: inspect(pool, kind).await?,
    })
}

async fn has_migrations_table(pool: &AnyPool, kind: DatabaseKind) -> Result<bool, SchemaError> {
    let sql = match kind {
        DatabaseKind::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
        }
        DatabaseKind::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_name = '_sqlx_migrations' AND table_schema = current_schema()"
        }
    };
    let tables: i64 = sqlx::query_scalar(sql).fetch_one(pool).await?;
    Ok(tables > 0)
}

async fn applied_versions(pool: &AnyPool, kind: DatabaseKind) -> Result<Vec<i64>, SchemaError> {
    if !has_migrations_table(pool, kind).await? {
        return Ok(Vec::new());
    }
    let mut conn = pool.acquire().await?;
    let applied = conn.list_applied_migrations().await?;
    Ok(applied.iter().map(|a| a.version).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule above, for what a statement can show: no DROP, RENAME or ALTER COLUMN, and
    /// no NOT NULL column added without a default.
    #[test]
    fn migrations_are_additive() {
        for migration in migrator().iter() {
            let sql: String = migration
                .sql
                .lines()
                .map(|l| l.split("--").next().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n")
                .to_uppercase();
            for statement in sql.split(';') {
                let words = statement.split_whitespace().collect::<Vec<_>>().join(" ");
                for forbidden in ["DROP ", " RENAME ", "ALTER COLUMN", "TRUNCATE "] {
                    assert!(
                        !format!(" {words}").contains(forbidden),
                        "migration {} is not additive ({forbidden:?}): {words}",
                        migration.version
                    );
                }
                if words.contains("ADD COLUMN") {
                    assert!(
                        !words.contains("NOT NULL") || words.contains("DEFAULT"),
                        "migration {} adds a NOT NULL column without a default: {words}",
                        migration.version
                    );
                }
            }
        }
    }
}
