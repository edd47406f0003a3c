//! Persistence: one trait per aggregate, implemented by [`SqlStore`] for SQLite and PostgreSQL.
//!
//! Handlers depend on the [`Store`] trait object only. Every write that must be all-or-nothing
//! is a single statement or a single transaction inside the implementation, so a failed request
//! never leaves half a change behind.

mod changes;
mod checkpoint;
mod replay_batch;
mod replay_journal;
mod replay_ledger;
pub mod schema;
mod sql;

use async_trait::async_trait;

pub use crate::oidc::policy::{Conditions, FederationEntry};

pub use replay_ledger::LedgerError;
pub(crate) use replay_ledger::replay_digest;
pub use sql::SqlStore;

/// Seconds since the Unix epoch.
pub type Unix = i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A row with the same key exists (unique constraint).
    #[error("already exists")]
    Conflict,
    /// A row the write refers to does not exist.
    #[error("{0} not found")]
    Missing(&'static str),
    /// The database failed or is unreachable; callers answer 503/500, never a client error.
    #[error("database error: {0}")]
    Backend(#[from] sqlx::Error),
    /// A stored value could not be read back (corruption or a newer schema).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceKind {
    User,
    Org,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgRole {
    Admin,
    Member,
}

impl OrgRole {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgRole::Admin => "admin",
            OrgRole::Member => "member",
        }
    }
}

/// An admin-API access token as stored: never the token itself.
#[derive(Debug, Clone)]
pub struct ApiTokenRecord {
    pub username: String,
    /// Space-separated scopes.
    pub scopes: String,
    pub expires_at: Option<Unix>,
}

#[derive(Debug, Clone)]
pub struct Robot {
    pub id: i64,
    pub namespace: String,
    pub short_name: String,
    pub description: String,
    /// `unstructured_metadata`, as a serialized JSON object.
    pub metadata: String,
    /// The robot token, sealed with the at-rest key (see `tokens::at_rest`).
    pub token_sealed: String,
    /// Changes whenever minted tokens must stop working (regenerate, federation change).
    pub revision: i64,
    pub created_at: Unix,
    pub last_accessed: Option<Unix>,
}

impl Robot {
    pub fn full_name(&self) -> String {
        format!("{}+{}", self.namespace, self.short_name)
    }
}

/// Everything needed to insert a robot; the caller generates id, token and revision.
#[derive(Debug, Clone)]
pub struct NewRobot {
    pub id: i64,
    pub namespace: String,
    pub short_name: String,
    pub description: String,
    pub metadata: String,
    pub token_sealed: String,
    pub token_lookup: String,
    pub revision: i64,
    pub created_at: Unix,
}

/// A repository role, as Quay names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Read,
    Write,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Role::Read),
            "write" => Some(Role::Write),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// One robot's role on one repository of its namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub robot_short_name: String,
    pub repository: String,
    pub role: Role,
}

#[async_trait]
pub trait NamespaceStore {
    async fn create_user(&self, name: &str, now: Unix) -> StoreResult<()>;
    /// Creates the organization with `admin` (an existing user) as its first admin.
    async fn create_org(&self, name: &str, admin: &str, now: Unix) -> StoreResult<()>;
    /// Adds `user` to `org`, or changes the role of an existing member.
    async fn set_member(&self, org: &str, user: &str, role: OrgRole) -> StoreResult<()>;
    async fn namespace_kind(&self, name: &str) -> StoreResult<Option<NamespaceKind>>;
    async fn org_role(&self, org: &str, user: &str) -> StoreResult<Option<OrgRole>>;
    /// The organizations `user` belongs to, with the user's role in each, by name.
    async fn user_orgs(&self, user: &str) -> StoreResult<Vec<(String, OrgRole)>>;
}

#[async_trait]
pub trait ApiTokenStore {
    async fn insert_api_token(
        &self,
        lookup: &str,
        record: &ApiTokenRecord,
        now: Unix,
    ) -> StoreResult<()>;
    async fn api_token(&self, lookup: &str) -> StoreResult<Option<ApiTokenRecord>>;
}

#[async_trait]
pub trait RobotStore {
    async fn create_robot(&self, robot: &NewRobot) -> StoreResult<Robot>;
    async fn robot(&self, namespace: &str, short_name: &str) -> StoreResult<Option<Robot>>;
    /// Robots of a namespace by name, at most `limit` of them.
    async fn list_robots(&self, namespace: &str, limit: Option<u64>) -> StoreResult<Vec<Robot>>;
    /// Deletes the robot and, by cascade, its permissions (and later federation entries).
    async fn delete_robot(&self, namespace: &str, short_name: &str) -> StoreResult<bool>;
    /// Replaces the robot's token and revision; `None` when the robot does not exist.
    async fn replace_robot_token(
        &self,
        robot_id: i64,
        token_sealed: &str,
        token_lookup: &str,
        revision: i64,
    ) -> StoreResult<Option<Robot>>;
    async fn robot_by_token_lookup(&self, lookup: &str) -> StoreResult<Option<Robot>>;
    /// Sets `last_accessed` to `now` unless it is already within the last minute (so a busy
    /// robot costs at most one write a minute).
    async fn touch_robot(&self, robot_id: i64, now: Unix) -> StoreResult<()>;
}

#[async_trait]
pub trait PermissionStore {
    /// Grants or changes the robot's role on a repository of its namespace.
    async fn set_permission(&self, robot_id: i64, repository: &str, role: Role) -> StoreResult<()>;
    async fn delete_permission(&self, robot_id: i64, repository: &str) -> StoreResult<bool>;
    async fn permission(&self, robot_id: i64, repository: &str) -> StoreResult<Option<Role>>;
    /// Every robot's role on one repository of `namespace`.
    async fn repository_grants(&self, namespace: &str, repository: &str)
    -> StoreResult<Vec<Grant>>;
    /// Every grant held by robots of `namespace`.
    async fn namespace_grants(&self, namespace: &str) -> StoreResult<Vec<Grant>>;
    /// Every grant held by one robot.
    async fn robot_grants(&self, robot_id: i64) -> StoreResult<Vec<Grant>>;
}

#[async_trait]
pub trait FederationStore {
    /// The robot's entries, in the order they were given.
    async fn federation(&self, robot_id: i64) -> StoreResult<Vec<FederationEntry>>;
    /// Replaces the whole list and sets the robot's new revision, in one transaction, so
    /// tokens minted under the old list stop working. `Missing` when the robot is gone.
    async fn replace_federation(
        &self,
        robot_id: i64,
        entries: &[FederationEntry],
        revision: i64,
    ) -> StoreResult<()>;
    /// Records the pins of the entry at `position` (its conditions with the pinned values
    /// added), without changing the robot's revision: minted tokens stay valid. Atomic: true
    /// only if the entry was still waiting for its pins and the robot's list is still the one
    /// of `revision`; of racing calls, at most one gets true.
    async fn pin_federation_entry(
        &self,
        robot_id: i64,
        position: usize,
        revision: i64,
        conditions: &Conditions,
        now: Unix,
    ) -> StoreResult<bool>;
}

/// The log of changes to robots' cached state, in commit order (see `store::changes`).
#[async_trait]
pub trait ChangeStore {
    /// The number of the latest change (0 before the first).
    async fn latest_change(&self) -> StoreResult<i64>;
    /// Changes numbered above `generation`, oldest first, at most `limit`, as
    /// `(number, robot full name)`.
    async fn changes_since(&self, generation: i64, limit: i64) -> StoreResult<Vec<(i64, String)>>;
    /// Forgets all but the latest `keep` changes; returns how many were removed.
    async fn purge_changes(&self, keep: i64) -> StoreResult<u64>;
}

#[async_trait]
pub trait ReplayStore {
    /// Records `(issuer, jti)` until `expires_at`. True the first time; false while an
    /// unexpired record exists. Atomic: of concurrent calls, exactly one gets true.
    async fn record_once(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: Unix,
        now: Unix,
    ) -> StoreResult<bool>;
    /// Deletes expired records; returns how many.
    async fn purge_replay_records(&self, now: Unix) -> StoreResult<u64>;
}

/// Everything the gateway persists.
#[async_trait]
pub trait Store:
    NamespaceStore
    + ApiTokenStore
    + RobotStore
    + PermissionStore
    + FederationStore
    + ChangeStore
    + ReplayStore
    + Send
    + Sync
    + 'static
{
    /// Cheap liveness check for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;
    /// Closes connections at shutdown.
    async fn close(&self);
}
