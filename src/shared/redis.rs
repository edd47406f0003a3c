//! Redis for state replicas must share: replay records (`SET NX EX`), rate-limit windows
//! (`INCR` + `EXPIRE`), and change notices (pub/sub on [`CHANNEL`]).
//!
//! The connection manager reconnects by itself after Redis restarts; until it has, every
//! operation fails and the callers fail closed (503), so a replay can never slip through.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Robots whose configuration changed are announced here; `*` means "forget everything".
pub const CHANNEL: &str = "fedgate:robot-changed";
/// Operations give up after this long, so a dead Redis costs a request little.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
const RECONNECT_DELAY: Duration = Duration::from_millis(200);

/// [`RedisShared::admit`]: `KEYS[1]` the quota window (`""`: none), `KEYS[2]` the replay
/// record (`""`: none), `ARGV` the limit and the two TTLs. 1 admitted, 0 replayed, -1 over quota.
const ADMIT: &str = r#"
local quota, record = KEYS[1], KEYS[2]
local limit = tonumber(ARGV[1])
if quota ~= '' and limit > 0 and tonumber(redis.call('GET', quota) or '0') >= limit then
  return -1
end
if record ~= '' and not redis.call('SET', record, 1, 'NX', 'EX', ARGV[3]) then
  return 0
end
if quota ~= '' and limit > 0 then
  redis.call('INCR', quota)
  redis.call('EXPIRE', quota, ARGV[2])
end
return 1
"#;

/// What [`RedisShared::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    Yes,
    Replayed,
    OverQuota,
}

#[derive(Clone)]
pub struct RedisShared {
    client: redis::Client,
    manager: ConnectionManager,
    /// True while the change-notice subscription is up.
    subscribed: Arc<AtomicBool>,
}

impl std::fmt::Debug for RedisShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisShared").finish_non_exhaustive()
    }
}

impl RedisShared {
    /// Prepares the connection; nothing is dialled until the first operation. A `rediss://`
    /// URL is TLS, verified against `ca_pem` when given, else the Mozilla roots.
    pub fn new(url: &str, ca_pem: Option<Vec<u8>>) -> Result<Self, redis::RedisError> {
        let client = match ca_pem {
            None => redis::Client::open(url)?,
            Some(ca) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca),
                },
            )?,
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(RECONNECT_DELAY);
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self {
            client,
            manager,
            subscribed: Arc::new(AtomicBool::new(false)),
        })
    }

    pub fn subscribed(&self) -> bool {
        self.subscribed.load(Ordering::SeqCst)
    }

    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut conn = self.manager.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
    }

    /// Sets `key` for `ttl_seconds` unless it exists; true when this call set it.
    pub async fn set_once(&self, key: &str, ttl_seconds: u64) -> redis::RedisResult<bool> {
        let mut conn = self.manager.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(ttl_seconds.max(1))
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    /// Increments a counter that expires after `ttl_seconds`; returns the new count.
    pub async fn increment(&self, key: &str, ttl_seconds: u64) -> redis::RedisResult<u64> {
        let mut conn = self.manager.clone();
        let (count, _): (u64, bool) = redis::pipe()
            .atomic()
            .incr(key, 1)
            .expire(key, ttl_seconds as i64)
            .query_async(&mut conn)
            .await?;
        Ok(count)
    }

    /// An exchange's three steps in one round trip, atomically (a Lua script): refuse when
    /// `quota` (key, limit, TTL) already reached its limit, record `replay` (key, TTL) with
    /// `SET NX EX`, then count the exchange against `quota`. Either may be absent.
    pub async fn admit(
        &self,
        quota: Option<(&str, u32, u64)>,
        replay: Option<(&str, u64)>,
    ) -> redis::RedisResult<Admitted> {
        let mut conn = self.manager.clone();
        let (quota_key, limit, quota_ttl) = quota.unwrap_or(("", 0, 1));
        let (replay_key, replay_ttl) = replay.unwrap_or(("", 1));
        let answer: i64 = redis::cmd("EVAL")
            .arg(ADMIT)
            .arg(2)
            .arg(quota_key)
            .arg(replay_key)
            .arg(limit)
            .arg(quota_ttl.max(1))
            .arg(replay_ttl.max(1))
            .query_async(&mut conn)
            .await?;
        Ok(match answer {
            1 => Admitted::Yes,
            0 => Admitted::Replayed,
            _ => Admitted::OverQuota,
        })
    }

    pub async fn count(&self, key: &str) -> redis::RedisResult<u64> {
        let mut conn = self.manager.clone();
        let count: Option<u64> = conn.get(key).await?;
        Ok(count.unwrap_or(0))
    }

    pub async fn publish(&self, message: &str) -> redis::RedisResult<()> {
        let mut conn = self.manager.clone();
        conn.publish::<_, _, ()>(CHANNEL, message).await
    }

    /// Listens for change notices until `stop`, reconnecting as needed. `on_notice` gets each
    /// message; `on_gap` runs whenever the subscription (re)starts, since notices sent while it
    /// was down are lost.
    pub async fn subscribe(
        &self,
        on_notice: impl Fn(String) + Send,
        on_gap: impl Fn() + Send,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            let session = async {
                let mut pubsub = match self.client.get_async_pubsub().await {
                    Ok(pubsub) => pubsub,
                    Err(e) => {
                        tracing::debug!(error = %e, "redis subscription: connect failed");
                        return;
                    }
                };
                if let Err(e) = pubsub.subscribe(CHANNEL).await {
                    tracing::warn!(error = %e, "redis subscription failed");
                    return;
                }
                on_gap();
                self.subscribed.store(true, Ordering::SeqCst);
                tracing::info!("subscribed to robot change notices");
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    if let Ok(payload) = message.get_payload::<String>() {
                        on_notice(payload);
                    }
                }
                tracing::warn!("redis subscription lost; caches bypassed until it is back");
            };
            tokio::select! {
                () = &mut stop => return,
                () = session => {}
            }
            self.subscribed.store(false, Ordering::SeqCst);
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(RECONNECT_DELAY) => {}
            }
        }
    }
}
