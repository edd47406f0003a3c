//! The state every handler shares, and how it is opened from a [`Config`].

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::http::client_ip::TrustedProxies;
use crate::metrics::Metrics;
use crate::minted_cache::MintedCache;
use crate::oidc::keys::{JwksSource, KeyCache, KeyCacheSettings};
use crate::oidc::trust::TrustedSource;
use crate::rng::{Rng, SystemRng};
use crate::robot_cache::RobotCache;
use crate::shared::Shared;
use crate::shared::limits::RateLimiter;
use crate::shared::redis::RedisShared;
use crate::store::schema::SchemaError;
use crate::store::{SqlStore, Store};
use crate::tokens::at_rest::AtRestKeys;
use crate::tokens::signing::{self, Keyring, KeyringError, SigningAlg};

/// Cheap to clone: one `Arc` around everything.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    /// [`Config::registry_service`], derived once: the minted tokens' `aud` (hot path).
    pub registry_service: String,
    /// `server.trusted_proxies`, parsed once: who may name the client in a forwarded header.
    pub trusted_proxies: TrustedProxies,
    /// The audiences an identity token must carry when a federation entry lists none:
    /// `federation.audiences`, or `[server.public_url]` when that is empty.
    pub default_audiences: Vec<String>,
    pub store: Arc<dyn Store>,
    pub at_rest: AtRestKeys,
    pub clock: Arc<dyn Clock>,
    pub rng: Arc<dyn Rng>,
    pub metrics: Metrics,
    /// Swapped whole when the keys directory changes (see [`AppState::reload_keyring`]).
    keyring: RwLock<Arc<Keyring>>,
    /// Identity issuers' keys.
    pub key_cache: KeyCache,
    /// Robots' federation policies, for the exchange's warm path.
    pub robots: RobotCache,
    /// Minted tokens whose signature was checked (`/v2/auth`).
    pub minted: MintedCache,
    /// Replay records, rate limits and change notices (database and memory, or Redis).
    pub shared: Shared,
    /// Robots whose `last_accessed` this replica wrote this minute. The column is only
    /// written when a minute old anyway; skipping the statement for the rest of the minute
    /// saves a write per login (SQLite serializes writes), for a lag under two minutes.
    pub recent_access: RateLimiter,
    /// Set once shutdown starts: `/readyz` answers 503 so load balancers route elsewhere.
    draining: AtomicBool,
    /// The latest change-log entry this replica has applied to its caches (`shared::changes`;
    /// -1 until the first read): a readiness signal for whoever must know a change has
    /// reached this replica's caches, such as tests that need a warm cache to stay warm.
    pub changes_applied: AtomicI64,
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Why the gateway could not open its state.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Keys(#[from] crate::tokens::at_rest::AtRestError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error("{0}")]
    Fetcher(String),
    #[error("storage.redis_url: {0}")]
    Redis(String),
    #[error(transparent)]
    Replays(#[from] crate::store::LedgerError),
}

impl AppState {
    /// Connects to the database (migrating it only when `schema` says so), loads or creates
    /// the keys, with the real clock and random source.
    pub async fn open(config: Config, schema: SchemaPolicy) -> Result<Self, OpenError> {
        let store = open_store(&config, schema).await?;
        if config.federation.replay_protection && config.storage.redis_url.is_empty() {
            // Before the port opens: a second node on the same SQLite file stops here.
            store.open_replay_ledger(SystemClock.unix()).await?;
        }
        Self::with_parts(
            config,
            Arc::new(store),
            Arc::new(SystemClock),
            Arc::new(SystemRng::default()),
        )
    }

    /// Assembles state from parts (tests pass their own clock or random source).
    pub fn with_parts(
        config: Config,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        rng: Arc<dyn Rng>,
    ) -> Result<Self, OpenError> {
        // Discovery over the one outbound client, or what `[[federation.issuers]]` says.
        let source = TrustedSource::new(&config.federation).map_err(OpenError::Fetcher)?;
        Self::with_jwks_source(config, store, clock, rng, Arc::new(source))
    }

    /// As [`with_parts`](Self::with_parts), with identity issuers' keys from `source` instead
    /// of the network (benchmarks).
    pub fn with_jwks_source(
        config: Config,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        rng: Arc<dyn Rng>,
        source: Arc<dyn JwksSource>,
    ) -> Result<Self, OpenError> {
        let at_rest = AtRestKeys::load_or_create(&config.keys.dir, rng.as_ref())?;
        ensure_signing_key(&config, clock.unix())?;
        let keyring = load_keyring(&config, clock.unix())?;
        let redis = match config.storage.redis_url.as_str() {
            "" => None,
            url => Some(open_redis(url, &config.storage.redis_ca_file)?),
        };
        let metrics = Metrics::new();
        let key_cache = KeyCache::new(
            source,
            clock.clone(),
            KeyCacheSettings {
                cooldown_seconds: config.federation.jwks_refresh_cooldown_seconds as i64,
                max_stale_seconds: config.federation.jwks_max_stale_seconds as i64,
                budget_bytes: config.limits.jwks_cache_bytes,
            },
            metrics.clone(),
        );
        let default_audiences = match config.federation.audiences.as_slice() {
            [] => vec![config.server.public_url.clone()],
            configured => configured.to_vec(),
        };
        let robots = RobotCache::new(config.limits.robot_cache_bytes);
        Ok(Self(Arc::new(Inner {
            shared: Shared::new(store.clone(), clock.clone(), redis),
            recent_access: RateLimiter::new(clock.clone()),
            registry_service: config.registry_service(),
            trusted_proxies: config.server.proxies(),
            default_audiences,
            config,
            store,
            at_rest,
            clock,
            rng,
            metrics,
            keyring: RwLock::new(Arc::new(keyring)),
            key_cache,
            robots,
            minted: MintedCache::default(),
            draining: AtomicBool::new(false),
            changes_applied: AtomicI64::new(-1),
        })))
    }

    /// A robot changed (created, deleted, regenerated, federation replaced): forget its cached
    /// policy here and tell the other replicas.
    pub async fn robot_changed(&self, full_name: &str) {
        self.robots.invalidate(full_name);
        self.shared.announce_change(full_name).await;
    }

    /// Shutdown has started: stop advertising readiness.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// The current signing keyring.
    pub fn keyring(&self) -> Arc<Keyring> {
        match self.keyring.read() {
            Ok(ring) => ring.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reloads the keyring when key files changed on disk (`keys rotate`, `keys activate`) or
    /// an old key is due to retire; otherwise costs a directory listing and reading the small
    /// key sidecars. Called every few seconds by the server. It never creates a key: replicas
    /// configured differently would otherwise take turns adding keys.
    pub fn reload_keyring(&self) -> Result<(), KeyringError> {
        let now = self.clock.unix();
        if !self.keyring().out_of_date(&self.config.keys.dir, now) {
            return Ok(());
        }
        let reloaded = load_keyring(&self.config, now)?;
        let signing = reloaded.signing_key(now);
        let next = reloaded.published().last().filter(|k| k.activates_at > now);
        tracing::info!(
            signing_kid = %signing.kid,
            next_kid = next.map(|k| k.kid.as_str()),
            next_activates_at = next.map(|k| k.activates_at),
            published = reloaded.published().len(),
            "signing keyring reloaded"
        );
        match self.keyring.write() {
            Ok(mut ring) => *ring = Arc::new(reloaded),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(reloaded),
        }
        Ok(())
    }
}

fn open_redis(url: &str, ca_file: &str) -> Result<RedisShared, OpenError> {
    let ca = match ca_file {
        "" => None,
        path => Some(
            std::fs::read(path)
                .map_err(|e| OpenError::Redis(format!("storage.redis_ca_file {path}: {e}")))?,
        ),
    };
    RedisShared::new(url, ca).map_err(|e| OpenError::Redis(e.to_string()))
}

/// How long a superseded signing key stays published: as long as any token it signed can be
/// accepted (the longer of the two token lifetimes, plus the leeway).
pub fn key_retirement_seconds(config: &Config) -> i64 {
    let longest = config
        .federation
        .token_ttl_seconds
        .max(config.registry.token_ttl_seconds);
    (longest + config.federation.leeway_seconds) as i64
}

/// The configured signing algorithm (validated by [`Config::validate`]).
pub fn signing_alg(config: &Config) -> SigningAlg {
    SigningAlg::parse(&config.keys.signing_alg).unwrap_or(SigningAlg::ES256)
}

/// On start: creates the first signing key, or stages one when `keys.signing_alg` changed.
pub fn ensure_signing_key(config: &Config, now: i64) -> Result<(), KeyringError> {
    let delay = i64::try_from(config.keys.activation_delay_seconds).unwrap_or(i64::MAX);
    if let Some(made) = signing::ensure_key(&config.keys.dir, signing_alg(config), delay, now)? {
        tracing::info!(key = %made.name, activates_at = made.activates_at(), "signing key created");
    }
    Ok(())
}

/// Loads the signing keyring of `keys.dir`.
pub fn load_keyring(config: &Config, now: i64) -> Result<Keyring, KeyringError> {
    Keyring::load(&config.keys.dir, key_retirement_seconds(config), now)
}

/// What opening the database may do to its schema (the policy is in [`crate::store::schema`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaPolicy {
    /// Apply pending migrations first: `fedgate migrate`, `serve`, tests.
    Migrate,
    /// Change nothing; refuse a schema older than this binary needs.
    Require,
}

/// Opens the configured database and applies `schema`.
pub async fn open_store(config: &Config, schema: SchemaPolicy) -> Result<SqlStore, OpenError> {
    let store = SqlStore::connect(&config.storage.database_url, config.database_kind()?).await?;
    match schema {
        SchemaPolicy::Migrate => {
            let migrated = store.migrate().await?;
            tracing::info!(applied = ?migrated.applied, "{migrated}");
            crate::store::schema::require(&migrated.state)?;
        }
        SchemaPolicy::Require => crate::store::schema::require(&store.schema().await?)?,
    }
    Ok(store)
}
