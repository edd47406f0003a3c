//! Robots' federation policies in memory, for the exchange's warm path and for checking minted
//! tokens, and their repository roles, for `/v2/auth` ([`roles`]): read from the store once,
//! then served from here until the robot changes.
//!
//! Bounded in bytes, not in count: each entry weighs what its strings and slices take
//! ([`RobotPolicy::weight`]), and the cache keeps at most `limits.robot_cache_bytes` of them,
//! evicting the least used. A robot's federation list is itself bounded (64 KiB as JSON, see
//! `api::federation`), so no single robot can take much of the budget. Entries are dropped
//! when their robot changes here, on another replica (Redis notice, or the change log within a
//! second), and after [`ROBOT_CACHE_TTL`] at the latest.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub mod roles;

use self::roles::RobotRoles;
use crate::names;
use crate::oidc::policy::{Accepted, FederationEntry, Interner};
use crate::oidc::providers::Preset;
use crate::store::{Store, StoreError};

/// How long a robot's federation policy may be served from memory without a change
/// notification (a safety net; changes made through this gateway invalidate at once).
const ROBOT_CACHE_TTL: Duration = Duration::from_secs(60);
/// A sizing hint for the cache's table, not a limit (the byte budget is).
const EXPECTED_ROBOTS: usize = 100_000;

/// What the exchange needs to know about a robot, cached in memory. Kept small: at 100,000
/// robots every byte here is 100 kB of resident memory (README, "Performance").
#[derive(Debug)]
pub struct RobotPolicy {
    pub robot_id: i64,
    pub revision: i64,
    pub entries: Box<[FederationEntry]>,
}

impl RobotPolicy {
    /// Bytes this policy holds, as the cache weighs it: the structs, every string and slice
    /// (shared strings counted in full, so it errs high), and what each allocation costs the
    /// allocator.
    pub fn weight(&self, name: &str) -> u64 {
        const ALLOCATION: usize = 16;
        // The cache's own slot, the key and the `Arc<RobotPolicy>`.
        let mut bytes = 64 + name.len() + ALLOCATION + size_of::<Self>() + 2 * ALLOCATION;
        for entry in &self.entries {
            bytes += size_of::<FederationEntry>()
                + (entry.issuer.len() + 16 + ALLOCATION)
                + (entry.subject.len() + ALLOCATION)
                + ALLOCATION;
            for audience in &entry.audiences {
                bytes += size_of::<Arc<str>>() + audience.len() + 16 + ALLOCATION;
            }
            for (claim, accepted) in entry.conditions.iter() {
                bytes += size_of::<(Arc<str>, Accepted)>() + claim.len() + 16 + ALLOCATION;
                for pattern in accepted.patterns() {
                    bytes += 16 + pattern.len() + ALLOCATION;
                }
            }
            if let Some(preset) = &entry.preset {
                // A JSON map costs a few times its text; presets are rare and small.
                let text = serde_json::to_vec(&preset.fields).map_or(0, |t| t.len());
                bytes += size_of::<Preset>() + 3 * text + ALLOCATION;
            }
        }
        bytes as u64
    }
}

/// A cached value (policy or roles), when it was read from the store, and its weight
/// (computed once).
#[derive(Debug)]
struct Cached<T> {
    loaded: Instant,
    value: Arc<T>,
    weight: u64,
}

impl<T> Clone for Cached<T> {
    fn clone(&self) -> Self {
        Self {
            loaded: self.loaded,
            value: self.value.clone(),
            weight: self.weight,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct ByWeight;

impl<T> quick_cache::Weighter<Box<str>, Cached<T>> for ByWeight {
    fn weight(&self, _name: &Box<str>, cached: &Cached<T>) -> u64 {
        cached.weight
    }
}

/// Roles may take `limits.robot_cache_bytes / ROLES_SHARE`, beside the policies' budget.
const ROLES_SHARE: u64 = 4;

/// Robots' policies by full name. quick_cache rather than moka: a hit is one shard read lock,
/// and an entry costs about a third of a moka entry; the TTL is checked on read instead.
pub struct RobotCache {
    robots: quick_cache::sync::Cache<Box<str>, Cached<RobotPolicy>, ByWeight>,
    /// Robots' repository roles by full name, dropped together with their policy.
    roles: quick_cache::sync::Cache<Box<str>, Cached<RobotRoles>, ByWeight>,
    /// Bumped by every invalidation; a load that began before one is not kept, since it may
    /// have read the rows as they were before the change.
    generation: AtomicU64,
    strings: Interner,
}

impl std::fmt::Debug for RobotCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RobotCache")
            .field("entries", &self.robots.len())
            .field("bytes", &self.weight())
            .finish()
    }
}

impl RobotCache {
    /// A cache holding at most `budget` bytes of policies (`limits.robot_cache_bytes`) and a
    /// quarter of that again of roles.
    pub fn new(budget: u64) -> Self {
        Self {
            robots: quick_cache::sync::Cache::with_weighter(EXPECTED_ROBOTS, budget, ByWeight),
            // Only robots that log in to a registry have roles cached: a smaller table.
            roles: quick_cache::sync::Cache::with_weighter(
                EXPECTED_ROBOTS / 4,
                budget / ROLES_SHARE,
                ByWeight,
            ),
            generation: AtomicU64::new(0),
            strings: Interner::default(),
        }
    }

    /// Bytes of policies and roles held now, as weighed.
    pub fn weight(&self) -> u64 {
        self.robots.weight() + self.roles.weight()
    }

    /// Forgets a robot after it changed (deleted, regenerated, federation replaced, a role
    /// granted, changed or revoked).
    pub fn invalidate(&self, full_name: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.robots.remove(full_name);
        self.roles.remove(full_name);
    }

    /// Forgets everything (change notices may have been missed).
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.robots.clear();
        self.roles.clear();
    }

    /// The robot's policy, from memory or from `store`. `notices_live` is false while changes
    /// made on other replicas might not reach this one; then every call reads the store.
    /// Concurrent misses on one robot each read the store (two indexed reads); coalescing them
    /// would make every waiter sit out the first one's timeout when the database is down.
    pub async fn get(
        &self,
        store: &dyn Store,
        notices_live: bool,
        full_name: &str,
    ) -> Result<Option<Arc<RobotPolicy>>, StoreError> {
        if !notices_live {
            return load_policy(store, full_name, &self.strings).await;
        }
        if let Some(cached) = self.robots.get(full_name)
            && cached.loaded.elapsed() < ROBOT_CACHE_TTL
        {
            return Ok(Some(cached.value)); // the warm path
        }
        let generation = self.generation.load(Ordering::Acquire);
        let loaded = Instant::now();
        // Unknown robots are not cached: the cache then holds only robots that exist, and a
        // client guessing names pays a read per guess, bounded by the failed-exchange limit.
        let Some(policy) = load_policy(store, full_name, &self.strings).await? else {
            return Ok(None);
        };
        let weight = policy.weight(full_name);
        self.keep(&self.robots, full_name, generation, loaded, &policy, weight);
        Ok(Some(policy))
    }

    /// The repository roles of robot `robot_id`, named `full_name`, from memory or from
    /// `store`; like [`Self::get`], every call reads the store while `notices_live` is false.
    pub async fn roles(
        &self,
        store: &dyn Store,
        notices_live: bool,
        full_name: &str,
        robot_id: i64,
    ) -> Result<Arc<RobotRoles>, StoreError> {
        if !notices_live {
            return Ok(Arc::new(RobotRoles::load(store, robot_id).await?));
        }
        if let Some(cached) = self.roles.get(full_name)
            && cached.value.robot_id == robot_id
            && cached.loaded.elapsed() < ROBOT_CACHE_TTL
        {
            return Ok(cached.value); // the warm path
        }
        let generation = self.generation.load(Ordering::Acquire);
        let loaded = Instant::now();
        let roles = Arc::new(RobotRoles::load(store, robot_id).await?);
        let weight = roles.weight(full_name);
        self.keep(&self.roles, full_name, generation, loaded, &roles, weight);
        Ok(roles)
    }

    /// Caches `value`, read from the store since `generation`, in `table`. Checked after
    /// inserting, so an invalidation at any point during the load wins.
    fn keep<T>(
        &self,
        table: &quick_cache::sync::Cache<Box<str>, Cached<T>, ByWeight>,
        full_name: &str,
        generation: u64,
        loaded: Instant,
        value: &Arc<T>,
        weight: u64,
    ) {
        let cached = Cached {
            loaded,
            weight,
            value: value.clone(),
        };
        table.insert(full_name.into(), cached);
        if self.generation.load(Ordering::Acquire) != generation {
            table.remove(full_name);
        }
    }
}

async fn load_policy(
    store: &dyn Store,
    full_name: &str,
    strings: &Interner,
) -> Result<Option<Arc<RobotPolicy>>, StoreError> {
    // A name too long to exist is answered without asking the database.
    let Some((namespace, short)) =
        names::split_robot_name(full_name).filter(|_| full_name.len() <= names::MAX_NAME_LEN)
    else {
        return Ok(None);
    };
    let Some(robot) = store.robot(namespace, short).await? else {
        return Ok(None);
    };
    let entries = store.federation(robot.id).await?;
    Ok(Some(Arc::new(RobotPolicy {
        robot_id: robot.id,
        revision: robot.revision,
        entries: entries.into_iter().map(|e| e.interned(strings)).collect(),
    })))
}
