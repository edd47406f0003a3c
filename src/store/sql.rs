//! The sqlx implementation of every store trait, for SQLite and PostgreSQL alike.
//!
//! It runs on sqlx's `Any` driver: the schema and queries are written in the SQL both databases
//! share (`$n` placeholders, `ON CONFLICT`, `RETURNING`), so one implementation and one set of
//! migrations serve both, and the test suite runs every query against both.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::error::ErrorKind;
use sqlx::{AnyPool, Executor, Row};

use super::changes::{RobotRef, record_change};
use super::checkpoint;
use super::replay_batch::ReplayWriter;
use super::replay_ledger::{LedgerError, ReplayLedger};
use super::schema::{self, Migrated, SchemaError, SchemaState};
use super::{
    ApiTokenRecord, ApiTokenStore, FederationEntry, FederationStore, Grant, NamespaceKind,
    NamespaceStore, NewRobot, OrgRole, PermissionStore, ReplayStore, Robot, RobotStore, Role,
    Store, StoreError, StoreResult, Unix,
};
use crate::config::DatabaseKind;

const ROBOT_COLUMNS: &str = "id, namespace, short_name, description, metadata, token_sealed, \
                             revision, created_at, last_accessed";

#[derive(Debug, Clone)]
pub struct SqlStore {
    pub(super) pool: AnyPool,
    kind: DatabaseKind,
    /// PostgreSQL: replay records go through one writer, in groups (started on first use).
    replays: std::sync::OnceLock<ReplayWriter>,
    /// SQLite: replay records are decided in memory (opened on first use, or by
    /// [`Self::open_replay_ledger`]); shared by clones, since there must be one.
    ledger: Arc<tokio::sync::OnceCell<ReplayLedger>>,
    /// SQLite's database file; `None` in memory and for PostgreSQL.
    database_file: Option<PathBuf>,
}

impl SqlStore {
    /// Opens a pool. For SQLite the file (and its directory) is created when missing and the
    /// database is put in WAL mode, so readers never wait for the writer.
    pub async fn connect(url: &str, kind: DatabaseKind) -> Result<Self, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let (url, max_connections, database_file) = match kind {
            DatabaseKind::Sqlite => (sqlite_url_creating_dir(url)?, 8, sqlite_file(url)),
            DatabaseKind::Postgres => (url.to_string(), 16, None),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if kind == DatabaseKind::Sqlite {
                        // A commit survives a crash of fedgate as soon as it returns; the WAL
                        // is synced at each checkpoint (every second, `store::checkpoint`), so
                        // power loss can lose the last second, as Redis's `appendfsync
                        // everysec` on the replica stack. FULL (a sync per commit) cut
                        // replay-on throughput by 40 % (README, "Performance").
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        // 512 KiB of pages per connection instead of 2 MiB: fedgate reads by
                        // key, rows it then caches itself, and the kernel caches the file;
                        // eight default caches were 14 MiB at 100,000 robots (the scale bench).
                        conn.execute("PRAGMA cache_size = -512").await?;
                        // Checkpoints run in the background instead (`store::checkpoint`).
                        conn.execute("PRAGMA wal_autocheckpoint = 0").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        if kind == DatabaseKind::Sqlite {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
            checkpoint::start(pool.clone());
        }
        Ok(Self {
            pool,
            kind,
            replays: std::sync::OnceLock::new(),
            ledger: Arc::default(),
            database_file,
        })
    }

    /// SQLite: takes this database's replay records for this process and reads back the live
    /// ones, so a second `fedgate serve` on the same file is refused at start rather than at
    /// its first exchange. Nothing for PostgreSQL.
    pub async fn open_replay_ledger(&self, now: Unix) -> Result<(), LedgerError> {
        if self.kind == DatabaseKind::Sqlite {
            self.ledger(now).await?;
        }
        Ok(())
    }

    async fn ledger(&self, now: Unix) -> Result<&ReplayLedger, LedgerError> {
        self.ledger
            .get_or_try_init(|| ReplayLedger::open(&self.pool, self.database_file.as_deref(), now))
            .await
    }

    /// Where the schema stands against this binary's migrations (reads only).
    pub async fn schema(&self) -> Result<SchemaState, SchemaError> {
        schema::inspect(&self.pool, self.kind).await
    }

    /// Applies pending migrations (see [`schema`] for the policy).
    pub async fn migrate(&self) -> Result<Migrated, SchemaError> {
        schema::migrate(&self.pool, self.kind).await
    }
}

/// A `sqlite:` URL without its scheme, and that split into the file's path and the query:
/// `sqlite://data/fedgate.db?mode=rwc` → (`data/fedgate.db?mode=rwc`, `data/fedgate.db`,
/// `mode=rwc`).
fn sqlite_parts(url: &str) -> (&str, &str, &str) {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    (rest, path, query)
}

/// The database file a `sqlite:` URL names; `None` for an in-memory database.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let (_, path, query) = sqlite_parts(url);
    let in_memory = path.is_empty() || path == ":memory:" || query.contains("mode=memory");
    (!in_memory).then(|| PathBuf::from(path))
}

/// `sqlite://data/fedgate.db` → creates `data/` and asks sqlx to create the file.
fn sqlite_url_creating_dir(url: &str) -> Result<String, sqlx::Error> {
    let (rest, path, query) = sqlite_parts(url);
    let parent = Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent.filter(|_| path != ":memory:") {
        std::fs::create_dir_all(parent).map_err(sqlx::Error::Io)?;
    }
    let mode = if query.split('&').any(|kv| kv.starts_with("mode=")) {
        String::new()
    } else if query.is_empty() {
        "?mode=rwc".into()
    } else {
        "&mode=rwc".into()
    };
    Ok(format!("sqlite://{rest}{mode}"))
}

/// Maps constraint violations to what they mean; everything else is a backend failure.
fn classify(err: sqlx::Error, missing: &'static str) -> StoreError {
    if let sqlx::Error::Database(db) = &err {
        match db.kind() {
            ErrorKind::UniqueViolation => return StoreError::Conflict,
            ErrorKind::ForeignKeyViolation => return StoreError::Missing(missing),
            _ => {}
        }
    }
    StoreError::Backend(err)
}

fn robot_from_row(row: &AnyRow) -> StoreResult<Robot> {
    Ok(Robot {
        id: row.try_get("id")?,
        namespace: row.try_get("namespace")?,
        short_name: row.try_get("short_name")?,
        description: row.try_get("description")?,
        metadata: row.try_get("metadata")?,
        token_sealed: row.try_get("token_sealed")?,
        revision: row.try_get("revision")?,
        created_at: row.try_get("created_at")?,
        last_accessed: row.try_get("last_accessed")?,
    })
}

fn grant_from_row(row: &AnyRow) -> StoreResult<Grant> {
    let role: String = row.try_get("role")?;
    Ok(Grant {
        robot_short_name: row.try_get("short_name")?,
        repository: row.try_get("repository")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?,
    })
}

#[async_trait]
impl NamespaceStore for SqlStore {
    async fn create_user(&self, name: &str, now: Unix) -> StoreResult<()> {
        sqlx::query("INSERT INTO namespaces (name, kind, created_at) VALUES ($1, 'user', $2)")
            .bind(name)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(|e| classify(e, "namespace"))?;
        Ok(())
    }

    async fn create_org(&self, name: &str, admin: &str, now: Unix) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        // Write first: on SQLite this takes the write lock before any read, so a concurrent
        // writer makes us wait instead of failing the transaction.
        sqlx::query("INSERT INTO namespaces (name, kind, created_at) VALUES ($1, 'org', $2)")
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| classify(e, "namespace"))?;
        let admin_kind: Option<String> =
            sqlx::query_scalar("SELECT kind FROM namespaces WHERE name = $1")
                .bind(admin)
                .fetch_optional(&mut *tx)
                .await?;
        if admin_kind.as_deref() != Some("user") {
            return Err(StoreError::Missing("user"));
        }
        sqlx::query("INSERT INTO org_members (org, username, role) VALUES ($1, $2, 'admin')")
            .bind(name)
            .bind(admin)
            .execute(&mut *tx)
            .await
            .map_err(|e| classify(e, "user"))?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_member(&self, org: &str, user: &str, role: OrgRole) -> StoreResult<()> {
        if self.namespace_kind(org).await? != Some(NamespaceKind::Org) {
            return Err(StoreError::Missing("organization"));
        }
        if self.namespace_kind(user).await? != Some(NamespaceKind::User) {
            return Err(StoreError::Missing("user"));
        }
        sqlx::query(
            "INSERT INTO org_members (org, username, role) VALUES ($1, $2, $3) \
             ON CONFLICT (org, username) DO UPDATE SET role = excluded.role",
        )
        .bind(org)
        .bind(user)
        .bind(role.as_str())
        .execute(&self.pool)
        .await
        .map_err(|e| classify(e, "user"))?;
        Ok(())
    }

    async fn namespace_kind(&self, name: &str) -> StoreResult<Option<NamespaceKind>> {
        let kind: Option<String> =
            sqlx::query_scalar("SELECT kind FROM namespaces WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match kind.as_deref() {
            None => None,
            Some("user") => Some(NamespaceKind::User),
            Some("org") => Some(NamespaceKind::Org),
            Some(other) => return Err(StoreError::Corrupt(format!("namespace kind {other:?}"))),
        })
    }

    async fn org_role(&self, org: &str, user: &str) -> StoreResult<Option<OrgRole>> {
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM org_members WHERE org = $1 AND username = $2")
                .bind(org)
                .bind(user)
                .fetch_optional(&self.pool)
                .await?;
        role.as_deref().map(member_role).transpose()
    }

    async fn user_orgs(&self, user: &str) -> StoreResult<Vec<(String, OrgRole)>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT org, role FROM org_members WHERE username = $1 ORDER BY org")
                .bind(user)
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(org, role)| Ok((org, member_role(&role)?)))
            .collect()
    }
}

fn member_role(stored: &str) -> StoreResult<OrgRole> {
    match stored {
        "admin" => Ok(OrgRole::Admin),
        "member" => Ok(OrgRole::Member),
        other => Err(StoreError::Corrupt(format!("member role {other:?}"))),
    }
}

#[async_trait]
impl ApiTokenStore for SqlStore {
    async fn insert_api_token(
        &self,
        lookup: &str,
        record: &ApiTokenRecord,
        now: Unix,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_tokens (token_lookup, username, scopes, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(lookup)
        .bind(&record.username)
        .bind(&record.scopes)
        .bind(now)
        .bind(record.expires_at)
        .execute(&self.pool)
        .await
        .map_err(|e| classify(e, "user"))?;
        Ok(())
    }

    async fn api_token(&self, lookup: &str) -> StoreResult<Option<ApiTokenRecord>> {
        let row = sqlx::query(
            "SELECT username, scopes, expires_at FROM api_tokens WHERE token_lookup = $1",
        )
        .bind(lookup)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(ApiTokenRecord {
                username: row.try_get("username")?,
                scopes: row.try_get("scopes")?,
                expires_at: row.try_get("expires_at")?,
            })
        })
        .transpose()
    }
}

#[async_trait]
impl RobotStore for SqlStore {
    async fn create_robot(&self, robot: &NewRobot) -> StoreResult<Robot> {
        let sql = format!(
            "INSERT INTO robots (id, namespace, short_name, description, metadata, token_sealed, \
             token_lookup, revision, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             RETURNING {ROBOT_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(robot.id)
            .bind(&robot.namespace)
            .bind(&robot.short_name)
            .bind(&robot.description)
            .bind(&robot.metadata)
            .bind(&robot.token_sealed)
            .bind(&robot.token_lookup)
            .bind(robot.revision)
            .bind(robot.created_at)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| classify(e, "namespace"))?;
        robot_from_row(&row)
    }

    async fn robot(&self, namespace: &str, short_name: &str) -> StoreResult<Option<Robot>> {
        let sql =
            format!("SELECT {ROBOT_COLUMNS} FROM robots WHERE namespace = $1 AND short_name = $2");
        let row = sqlx::query(&sql)
            .bind(namespace)
            .bind(short_name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(robot_from_row).transpose()
    }

    async fn list_robots(&self, namespace: &str, limit: Option<u64>) -> StoreResult<Vec<Robot>> {
        let base =
            format!("SELECT {ROBOT_COLUMNS} FROM robots WHERE namespace = $1 ORDER BY short_name");
        let rows = match limit {
            Some(limit) => {
                sqlx::query(&format!("{base} LIMIT $2"))
                    .bind(namespace)
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(&base)
                    .bind(namespace)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(robot_from_row).collect()
    }

    async fn delete_robot(&self, namespace: &str, short_name: &str) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        // Recorded first: it takes SQLite's write lock before any read, and the robot's
        // name must still be there to read.
        if !record_change(&mut tx, RobotRef::Name(namespace, short_name)).await? {
            return Ok(false); // dropping the transaction rolls the counter back
        }
        sqlx::query("DELETE FROM robots WHERE namespace = $1 AND short_name = $2")
            .bind(namespace)
            .bind(short_name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn replace_robot_token(
        &self,
        robot_id: i64,
        token_sealed: &str,
        token_lookup: &str,
        revision: i64,
    ) -> StoreResult<Option<Robot>> {
        let mut tx = self.pool.begin().await?;
        if !record_change(&mut tx, RobotRef::Id(robot_id)).await? {
            return Ok(None);
        }
        let sql = format!(
            "UPDATE robots SET token_sealed = $1, token_lookup = $2, revision = $3 \
             WHERE id = $4 RETURNING {ROBOT_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(token_sealed)
            .bind(token_lookup)
            .bind(revision)
            .bind(robot_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| classify(e, "robot"))?;
        let robot = row.as_ref().map(robot_from_row).transpose()?;
        tx.commit().await?;
        Ok(robot)
    }

    async fn touch_robot(&self, robot_id: i64, now: Unix) -> StoreResult<()> {
        sqlx::query(
            "UPDATE robots SET last_accessed = $1 \
             WHERE id = $2 AND (last_accessed IS NULL OR last_accessed < $3)",
        )
        .bind(now)
        .bind(robot_id)
        .bind(now - 60)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn robot_by_token_lookup(&self, lookup: &str) -> StoreResult<Option<Robot>> {
        let sql = format!("SELECT {ROBOT_COLUMNS} FROM robots WHERE token_lookup = $1");
        let row = sqlx::query(&sql)
            .bind(lookup)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(robot_from_row).transpose()
    }
}

#[async_trait]
impl PermissionStore for SqlStore {
    async fn set_permission(&self, robot_id: i64, repository: &str, role: Role) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        // In the change log, so every replica drops its cached roles of the robot.
        if !record_change(&mut tx, RobotRef::Id(robot_id)).await? {
            return Err(StoreError::Missing("robot"));
        }
        sqlx::query(
            "INSERT INTO repository_permissions (robot_id, repository, role) VALUES ($1, $2, $3) \
             ON CONFLICT (robot_id, repository) DO UPDATE SET role = excluded.role",
        )
        .bind(robot_id)
        .bind(repository)
        .bind(role.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| classify(e, "robot"))?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_permission(&self, robot_id: i64, repository: &str) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        if !record_change(&mut tx, RobotRef::Id(robot_id)).await? {
            return Ok(false);
        }
        let done = sqlx::query(
            "DELETE FROM repository_permissions WHERE robot_id = $1 AND repository = $2",
        )
        .bind(robot_id)
        .bind(repository)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false); // nothing changed: dropping the transaction leaves no change
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn permission(&self, robot_id: i64, repository: &str) -> StoreResult<Option<Role>> {
        let role: Option<String> = sqlx::query_scalar(
            "SELECT role FROM repository_permissions WHERE robot_id = $1 AND repository = $2",
        )
        .bind(robot_id)
        .bind(repository)
        .fetch_optional(&self.pool)
        .await?;
        role.map(|r| Role::parse(&r).ok_or_else(|| StoreError::Corrupt(format!("role {r:?}"))))
            .transpose()
    }

    async fn repository_grants(
        &self,
        namespace: &str,
        repository: &str,
    ) -> StoreResult<Vec<Grant>> {
        let rows = sqlx::query(
            "SELECT r.short_name, p.repository, p.role FROM repository_permissions p \
             JOIN robots r ON r.id = p.robot_id \
             WHERE r.namespace = $1 AND p.repository = $2 ORDER BY r.short_name",
        )
        .bind(namespace)
        .bind(repository)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn namespace_grants(&self, namespace: &str) -> StoreResult<Vec<Grant>> {
        let rows = sqlx::query(
            "SELECT r.short_name, p.repository, p.role FROM repository_permissions p \
             JOIN robots r ON r.id = p.robot_id \
             WHERE r.namespace = $1 ORDER BY r.short_name, p.repository",
        )
        .bind(namespace)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn robot_grants(&self, robot_id: i64) -> StoreResult<Vec<Grant>> {
        let rows = sqlx::query(
            "SELECT r.short_name, p.repository, p.role FROM repository_permissions p \
             JOIN robots r ON r.id = p.robot_id WHERE r.id = $1 ORDER BY p.repository",
        )
        .bind(robot_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(grant_from_row).collect()
    }
}

#[async_trait]
impl FederationStore for SqlStore {
    async fn federation(&self, robot_id: i64) -> StoreResult<Vec<FederationEntry>> {
        let rows = sqlx::query(
            "SELECT issuer, subject, audiences, conditions, provider, pending_pins, pinned_at \
             FROM federation_entries WHERE robot_id = $1 ORDER BY position",
        )
        .bind(robot_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let audiences: String = row.try_get("audiences")?;
                let conditions: String = row.try_get("conditions")?;
                Ok(FederationEntry {
                    issuer: row.try_get::<String, _>("issuer")?.into(),
                    subject: row.try_get::<String, _>("subject")?.into(),
                    audiences: serde_json::from_str(&audiences)
                        .map_err(|e| StoreError::Corrupt(format!("audiences: {e}")))?,
                    conditions: serde_json::from_str(&conditions)
                        .map_err(|e| StoreError::Corrupt(format!("conditions: {e}")))?,
                    preset: preset_from_row(row)?.map(Box::new),
                })
            })
            .collect()
    }

    async fn replace_federation(
        &self,
        robot_id: i64,
        entries: &[FederationEntry],
        revision: i64,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        // The change record comes first: it takes SQLite's write lock before any read.
        if !record_change(&mut tx, RobotRef::Id(robot_id)).await? {
            return Err(StoreError::Missing("robot"));
        }
        let updated = sqlx::query("UPDATE robots SET revision = $1 WHERE id = $2")
            .bind(revision)
            .bind(robot_id)
            .execute(&mut *tx)
            .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::Missing("robot"));
        }
        sqlx::query("DELETE FROM federation_entries WHERE robot_id = $1")
            .bind(robot_id)
            .execute(&mut *tx)
            .await?;
        for (position, entry) in entries.iter().enumerate() {
            let preset = entry.preset.as_deref();
            sqlx::query(
                "INSERT INTO federation_entries \
                 (robot_id, position, issuer, subject, audiences, conditions, \
                  provider, pending_pins, pinned_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(robot_id)
            .bind(position as i64)
            .bind(&*entry.issuer)
            .bind(&*entry.subject)
            .bind(serde_json::to_string(&entry.audiences).unwrap_or_else(|_| "[]".into()))
            .bind(serde_json::to_string(&entry.conditions).unwrap_or_else(|_| "{}".into()))
            .bind(preset.map(|p| serde_json::Value::Object(p.fields.clone()).to_string()))
            .bind(
                preset
                    .filter(|p| !p.pending_pins.is_empty())
                    .and_then(|p| serde_json::to_string(&p.pending_pins).ok()),
            )
            .bind(preset.and_then(|p| p.pinned_at))
            .execute(&mut *tx)
            .await
            .map_err(|e| classify(e, "robot"))?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn pin_federation_entry(
        &self,
        robot_id: i64,
        position: usize,
        revision: i64,
        conditions: &super::Conditions,
        now: Unix,
    ) -> StoreResult<bool> {
        // One statement, so that of racing first exchanges (on any replica) exactly one pins:
        // the entry must still be unpinned, and the list still the one that was matched (any
        // replacement changes the robot's revision).
        let done = sqlx::query(
            "UPDATE federation_entries SET conditions = $1, pending_pins = NULL, pinned_at = $2 \
             WHERE robot_id = $3 AND position = $4 AND pending_pins IS NOT NULL \
             AND EXISTS (SELECT 1 FROM robots WHERE id = $3 AND revision = $5)",
        )
        .bind(serde_json::to_string(conditions).unwrap_or_else(|_| "{}".into()))
        .bind(now)
        .bind(robot_id)
        .bind(position as i64)
        .bind(revision)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// The preset columns of a `federation_entries` row (all NULL for a plain entry).
fn preset_from_row(row: &AnyRow) -> StoreResult<Option<crate::oidc::providers::Preset>> {
    let Some(provider) = row.try_get::<Option<String>, _>("provider")? else {
        return Ok(None);
    };
    let fields = match serde_json::from_str(&provider) {
        Ok(serde_json::Value::Object(fields)) => fields,
        _ => return Err(StoreError::Corrupt("provider is not a JSON object".into())),
    };
    let pending_pins = match row.try_get::<Option<String>, _>("pending_pins")? {
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("pending_pins: {e}")))?,
        None => Box::default(),
    };
    Ok(Some(crate::oidc::providers::Preset {
        fields,
        pending_pins,
        pinned_at: row.try_get("pinned_at")?,
    }))
}

#[async_trait]
impl ReplayStore for SqlStore {
    async fn record_once(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: Unix,
        now: Unix,
    ) -> StoreResult<bool> {
        match self.kind {
            DatabaseKind::Sqlite => {
                // Nothing is recorded after `close` (shutdown), as on PostgreSQL.
                if self.pool.is_closed() {
                    return Err(StoreError::Backend(sqlx::Error::PoolClosed));
                }
                let ledger = self.ledger(now).await?;
                ledger.record_once(issuer, jti, expires_at, now)
            }
            DatabaseKind::Postgres => {
                self.replays
                    .get_or_init(|| ReplayWriter::start(self.pool.clone()))
                    .record_once(issuer, jti, expires_at, now)
                    .await
            }
        }
    }

    async fn purge_replay_records(&self, now: Unix) -> StoreResult<u64> {
        if let Some(ledger) = self.ledger.get() {
            ledger.forget_expired(now);
        }
        // On SQLite, what releases before the ledger wrote (the journal trims itself).
        let done = sqlx::query("DELETE FROM replay_records WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        if let Some(ledger) = self.ledger.get()
            && let Err(e) = ledger.sync()
        {
            tracing::warn!(error = %e, "cannot sync the replay journal");
        }
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_get_create_mode_and_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sub/fed.db");
        let url = sqlite_url_creating_dir(&format!("sqlite://{}", db.display())).unwrap();
        assert!(url.ends_with("fed.db?mode=rwc"), "{url}");
        assert!(dir.path().join("sub").is_dir());
        let kept = sqlite_url_creating_dir("sqlite::memory:?mode=memory").unwrap();
        assert_eq!(kept, "sqlite://:memory:?mode=memory");
        // The replay journal goes beside a file, and nowhere for a database in memory.
        assert_eq!(sqlite_file(&format!("sqlite://{}", db.display())), Some(db));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("sqlite://file:x?mode=memory"), None);
    }
}
