//! State that replicas must agree on: replay records, rate-limit counters and notices that a
//! robot changed. One node: the database and memory. Several (`storage.redis_url` set): Redis,
//! so a token replayed at another replica is refused and a change made through one replica is
//! seen by every other within a second (SPEC 9).
//!
//! Every operation against Redis either succeeds or returns [`Unavailable`]; callers fail
//! closed (503) rather than accept a possible replay. Change notices are the fast path only:
//! [`changes`] follows the database's change log, which every change is written to.

pub mod changes;
pub mod limits;
pub mod redis;

use std::sync::Arc;

use self::limits::{Limited, RateLimiter, WINDOW_SECONDS};
use self::redis::{Admitted, RedisShared};
use crate::clock::Clock;
use crate::store::{Store, Unix};

/// The shared state cannot be reached (Redis down, database down).
#[derive(Debug, Clone, thiserror::Error)]
#[error("shared state unavailable: {0}")]
pub struct Unavailable(pub String);

/// Replay records, rate limits and change notices, on the database and memory or on Redis.
#[derive(Clone)]
pub struct Shared {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    local_limits: RateLimiter,
    redis: Option<RedisShared>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("redis", &self.redis.is_some())
            .finish_non_exhaustive()
    }
}

/// Where Redis keeps the replay record of `(issuer, jti)`.
fn replay_key(issuer: &str, jti: &str) -> String {
    let digest = crate::store::replay_digest(issuer, jti);
    format!(
        "fedgate:replay:{}",
        data_encoding::HEXLOWER.encode(digest.as_ref())
    )
}

/// What [`Shared::admit`] decided about an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// The token was used before.
    Replayed,
    /// The robot's quota for this minute is used up.
    Limited(Limited),
}

impl Shared {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, redis: Option<RedisShared>) -> Self {
        Self {
            local_limits: RateLimiter::new(clock.clone()),
            store,
            clock,
            redis,
        }
    }

    pub fn redis(&self) -> Option<&RedisShared> {
        self.redis.as_ref()
    }

    /// Records `(issuer, jti)` until `expires_at`; true the first time, false for a replay.
    pub async fn record_once(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: Unix,
    ) -> Result<bool, Unavailable> {
        let now = self.clock.unix();
        match &self.redis {
            Some(redis) => {
                let key = replay_key(issuer, jti);
                let ttl = u64::try_from(expires_at - now).unwrap_or(0).max(1);
                redis
                    .set_once(&key, ttl)
                    .await
                    .map_err(|e| Unavailable(e.to_string()))
            }
            None => self
                .store
                .record_once(issuer, jti, expires_at, now)
                .await
                .map_err(|e| Unavailable(e.to_string())),
        }
    }

    fn window_key(&self, key: &str) -> (String, u64) {
        let (window, retry_after) = limits::window_at(self.clock.unix());
        (format!("fedgate:limit:{key}:{window}"), retry_after)
    }

    /// Counts one event for `key`; `Ok(Err(Limited))` past `limit` this minute (0: unlimited).
    pub async fn limit_hit(
        &self,
        key: &str,
        limit: u32,
    ) -> Result<Result<(), Limited>, Unavailable> {
        let Some(redis) = self.redis.as_ref().filter(|_| limit > 0) else {
            return Ok(self.local_limits.hit(key, limit));
        };
        let (window_key, retry_after) = self.window_key(key);
        let count = redis
            .increment(&window_key, 2 * WINDOW_SECONDS as u64)
            .await
            .map_err(|e| Unavailable(e.to_string()))?;
        Ok(if count > u64::from(limit) {
            Err(Limited { retry_after })
        } else {
            Ok(())
        })
    }

    /// Refuses when `key` already reached `limit` this minute, without counting.
    pub async fn limit_check(
        &self,
        key: &str,
        limit: u32,
    ) -> Result<Result<(), Limited>, Unavailable> {
        let Some(redis) = self.redis.as_ref().filter(|_| limit > 0) else {
            return Ok(self.local_limits.check(key, limit));
        };
        let (window_key, retry_after) = self.window_key(key);
        let count = redis
            .count(&window_key)
            .await
            .map_err(|e| Unavailable(e.to_string()))?;
        Ok(if count >= u64::from(limit) {
            Err(Limited { retry_after })
        } else {
            Ok(())
        })
    }

    /// An exchange's shared-state steps, in order: refused when `quota_key` already reached
    /// `limit` this minute (0: unlimited), so a refused exchange does not burn its token; then
    /// `record` (issuer, jti, until) kept once ([`Self::record_once`]); then counted against
    /// the quota, so replays of a used token do not count. With Redis, one round trip.
    pub async fn admit(
        &self,
        quota_key: &str,
        limit: u32,
        record: Option<(&str, &str, Unix)>,
    ) -> Result<Admission, Unavailable> {
        let Some(redis) = self.redis.as_ref() else {
            if let Err(limited) = self.limit_check(quota_key, limit).await? {
                return Ok(Admission::Limited(limited));
            }
            if let Some((issuer, jti, until)) = record
                && !self.record_once(issuer, jti, until).await?
            {
                return Ok(Admission::Replayed);
            }
            let _past_quota = self.limit_hit(quota_key, limit).await?;
            return Ok(Admission::Admitted);
        };
        let (window_key, retry_after) = self.window_key(quota_key);
        let quota = (limit > 0).then_some((window_key.as_str(), limit, 2 * WINDOW_SECONDS as u64));
        let now = self.clock.unix();
        let record_key = record.map(|(issuer, jti, until)| {
            let ttl = u64::try_from(until - now).unwrap_or(0).max(1);
            (replay_key(issuer, jti), ttl)
        });
        let replay = record_key.as_ref().map(|(key, ttl)| (key.as_str(), *ttl));
        let admitted = redis
            .admit(quota, replay)
            .await
            .map_err(|e| Unavailable(e.to_string()))?;
        Ok(match admitted {
            Admitted::Yes => Admission::Admitted,
            Admitted::Replayed => Admission::Replayed,
            Admitted::OverQuota => Admission::Limited(Limited { retry_after }),
        })
    }

    /// Tells the other replicas that `robot` changed, at once. Best effort: a notice that does
    /// not arrive is made up for by the change log within a second ([`changes`]).
    pub async fn announce_change(&self, robot: &str) {
        let Some(redis) = &self.redis else {
            return;
        };
        if let Err(e) = redis.publish(robot).await {
            tracing::warn!(error = %e, robot, "cannot announce a robot change to other replicas");
        }
    }

    /// True when caches may be trusted: always on one node; with Redis, while subscribed.
    pub fn notices_live(&self) -> bool {
        self.redis.as_ref().is_none_or(RedisShared::subscribed)
    }
}
