//! The token exchange (SPEC 7.3): from a robot name and an identity token to a minted robot
//! token. It sequences the checks of [`crate::oidc`] around the key cache, the robot cache, the
//! replay store and the rate limits; both HTTP forms (`api::exchange`, `api::sts`) call it.
//!
//! The warm path (robot cached, issuer keys cached) touches the database once: the replay record.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::names;
use crate::oidc::jws;
use crate::oidc::policy::{FederationEntry, Interner, matching_entry};
use crate::oidc::trust::issuer_accepts;
use crate::oidc::verify::{self, Claims};
use crate::oidc::{Refusal, RefusalCode, issuer_allowed, same_issuer};
use crate::shared::limits::Limited;
use crate::store::StoreError;

/// How long a robot's federation policy may be served from memory without a change
/// notification (a safety net; changes made through this gateway invalidate at once).
const ROBOT_CACHE_TTL: Duration = Duration::from_secs(60);
const ROBOT_CACHE_CAPACITY: usize = 200_000;

/// What the exchange needs to know about a robot, cached in memory. Kept small: at 100,000
/// robots every byte here is 100 kB of resident memory (README, "Performance").
#[derive(Debug)]
pub struct RobotPolicy {
    pub robot_id: i64,
    pub revision: i64,
    pub entries: Box<[FederationEntry]>,
}

/// A cached policy and when it was read from the store.
#[derive(Debug, Clone)]
struct Cached {
    loaded: Instant,
    policy: Arc<RobotPolicy>,
}

/// Robots' policies by full name. quick_cache rather than moka: a hit is one shard read lock,
/// and an entry costs about a third of a moka entry; the TTL is checked on read instead.
pub struct RobotCache {
    robots: quick_cache::sync::Cache<Box<str>, Cached>,
    /// Bumped by every invalidation; a load that began before one is not kept, since it may
    /// have read the rows as they were before the change.
    generation: AtomicU64,
    strings: Interner,
}

impl std::fmt::Debug for RobotCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RobotCache")
            .field("entries", &self.robots.len())
            .finish()
    }
}

impl Default for RobotCache {
    fn default() -> Self {
        Self {
            robots: quick_cache::sync::Cache::new(ROBOT_CACHE_CAPACITY),
            generation: AtomicU64::new(0),
            strings: Interner::default(),
        }
    }
}

impl RobotCache {
    /// Forgets a robot after it changed (deleted, regenerated, federation replaced).
    pub fn invalidate(&self, full_name: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.robots.remove(full_name);
    }

    /// Forgets everything (change notices may have been missed).
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.robots.clear();
    }

    /// The robot's policy, from memory or from the store. Concurrent misses on one robot each
    /// read the store (two indexed reads); coalescing them would make every waiter sit out the
    /// first one's timeout when the database is down.
    pub async fn get(
        &self,
        state: &AppState,
        full_name: &str,
    ) -> Result<Option<Arc<RobotPolicy>>, StoreError> {
        if !state.shared.notices_live() {
            // Change notices from other replicas may be missed right now: read through.
            return load_policy(state, full_name, &self.strings).await;
        }
        if let Some(cached) = self.robots.get(full_name)
            && cached.loaded.elapsed() < ROBOT_CACHE_TTL
        {
            return Ok(Some(cached.policy)); // the warm path
        }
        let generation = self.generation.load(Ordering::Acquire);
        let loaded = Instant::now();
        // Unknown robots are not cached: the cache then holds only robots that exist, and a
        // client guessing names pays a read per guess, bounded by the failed-exchange limit.
        let Some(policy) = load_policy(state, full_name, &self.strings).await? else {
            return Ok(None);
        };
        let cached = Cached {
            loaded,
            policy: policy.clone(),
        };
        self.robots.insert(full_name.into(), cached);
        // Checked after inserting, so an invalidation at any point during the load wins.
        if self.generation.load(Ordering::Acquire) != generation {
            self.robots.remove(full_name);
        }
        Ok(Some(policy))
    }
}

async fn load_policy(
    state: &AppState,
    full_name: &str,
    strings: &Interner,
) -> Result<Option<Arc<RobotPolicy>>, StoreError> {
    // A name too long to exist is answered without asking the database.
    let Some((namespace, short)) =
        names::split_robot_name(full_name).filter(|_| full_name.len() <= names::MAX_NAME_LEN)
    else {
        return Ok(None);
    };
    let Some(robot) = state.store.robot(namespace, short).await? else {
        return Ok(None);
    };
    let entries = state.store.federation(robot.id).await?;
    Ok(Some(Arc::new(RobotPolicy {
        robot_id: robot.id,
        revision: robot.revision,
        entries: entries.into_iter().map(|e| e.interned(strings)).collect(),
    })))
}

/// The `fed` claim: the identity a robot token was exchanged for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FedClaim {
    pub iss: String,
    pub sub: String,
}

/// Claims of a minted robot token (SPEC 7.4).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RobotTokenClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
    pub fed: FedClaim,
    /// The robot's revision when minted; any change to the robot or its federation list
    /// changes it, which revokes the token.
    pub rev: i64,
}

/// A successful exchange.
#[derive(Debug)]
pub struct Minted {
    pub token: SecretString,
    pub expires_in: u64,
}

#[derive(Debug)]
pub enum ExchangeError {
    Refused(Refusal),
    RateLimited(Limited),
    /// The database is unreachable; logged where it happened. Retry later.
    Unavailable,
    /// Our failure (signing); logged where it happened.
    Internal,
}

impl From<Refusal> for ExchangeError {
    fn from(r: Refusal) -> Self {
        ExchangeError::Refused(r)
    }
}

impl From<Limited> for ExchangeError {
    fn from(l: Limited) -> Self {
        ExchangeError::RateLimited(l)
    }
}

fn refuse(code: RefusalCode, message: impl Into<String>) -> ExchangeError {
    ExchangeError::Refused(Refusal::new(code, message))
}

/// What the audit line records about an exchange.
#[derive(Debug, Default)]
struct Audit {
    issuer: Option<String>,
    subject: Option<String>,
    jti: Option<String>,
}

/// Runs one exchange and records it (metrics, audit line, failure count for the rate limit).
/// `credentials` is `Err` when the HTTP layer could not read them (missing or malformed).
pub async fn exchange(
    state: &AppState,
    credentials: Result<(&str, &str), Refusal>,
    client: Option<IpAddr>,
) -> Result<Minted, ExchangeError> {
    let started = Instant::now();
    let limits = &state.config.limits;
    let ip_key = client.map(|ip| format!("failed-ip:{ip}"));
    let mut audit = Audit::default();
    let robot_name = credentials.as_ref().ok().map(|(robot, _)| *robot);

    let ip_check = match &ip_key {
        Some(key) => {
            state
                .shared
                .limit_check(key, limits.failed_exchanges_per_minute_per_ip)
                .await
        }
        None => Ok(Ok(())),
    };
    let result = match ip_check {
        Err(e) => {
            tracing::error!(error = %e, "rate-limit check failed");
            Err(ExchangeError::Unavailable)
        }
        Ok(Err(limited)) => Err(ExchangeError::RateLimited(limited)),
        Ok(Ok(())) => match credentials {
            Err(refusal) => Err(ExchangeError::Refused(refusal)),
            Ok((robot, jwt)) => run(state, robot, jwt, &mut audit).await,
        },
    };

    let outcome = match &result {
        Ok(_) => "ok",
        Err(ExchangeError::Refused(r)) => r.code.as_str(),
        Err(ExchangeError::RateLimited(_)) => "rate_limited",
        Err(ExchangeError::Unavailable) => "unavailable",
        Err(ExchangeError::Internal) => "internal_error",
    };
    // Failures count against the client's address; an unreachable issuer is not its fault.
    let client_failed = matches!(&result, Err(ExchangeError::Refused(r)) if r.code != RefusalCode::IssuerUnavailable);
    if let Some(key) = ip_key.as_deref().filter(|_| client_failed) {
        let counted = state
            .shared
            .limit_hit(key, limits.failed_exchanges_per_minute_per_ip)
            .await;
        if let Err(e) = counted {
            tracing::warn!(error = %e, "cannot count a failed exchange");
        }
    }
    let metrics = &state.metrics;
    metrics.exchanges.with_label_values(&[outcome]).inc();
    metrics
        .exchange_duration
        .with_label_values(&[if result.is_ok() { "ok" } else { "refused" }])
        .observe(started.elapsed().as_secs_f64());
    // Field values are evaluated only when the audit line is enabled, so the hash is too.
    let token_sha256 = || {
        result.as_ref().ok().map_or_else(String::new, |m| {
            crate::tokens::sha256_hex(m.token.expose_secret().as_bytes())
        })
    };
    tracing::info!(
        target: "audit",
        kind = "exchange",
        robot = robot_name.unwrap_or(""),
        issuer = audit.issuer.as_deref().unwrap_or(""),
        subject = audit.subject.as_deref().unwrap_or(""),
        jti = audit.jti.as_deref().unwrap_or(""),
        result = if result.is_ok() { "ok" } else { "refused" },
        error_code = if result.is_ok() { "" } else { outcome },
        client = %client.map(|c| c.to_string()).unwrap_or_default(),
        token_sha256 = token_sha256(),
    );
    result
}

async fn run(
    state: &AppState,
    robot_name: &str,
    jwt: &str,
    audit: &mut Audit,
) -> Result<Minted, ExchangeError> {
    let config = &state.config;
    let policy = robot_policy(state, robot_name).await?;
    if policy.entries.is_empty() {
        return Err(refuse(
            RefusalCode::NoFederation,
            format!("robot {robot_name} has no federation configuration"),
        ));
    }
    state
        .shared
        .limit_hit(
            &format!("robot:{robot_name}"),
            config.limits.exchanges_per_minute_per_robot,
        )
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "rate-limit count failed");
            ExchangeError::Unavailable
        })??;

    let (compact, claims) = decode(jwt)?;
    audit.issuer = Some(claims.iss.clone());
    audit.subject = Some(claims.sub.clone());
    audit.jti = claims.jti.clone();

    // Steps 1-5: issuer, keys, signature, time.
    check_identity(state, robot_name, &policy.entries, &compact, &claims).await?;

    // Step 6: audience, subject, conditions.
    let now = state.clock.unix();
    let leeway = config.federation.leeway_seconds as i64;
    let matched = matching_entry(
        &policy.entries,
        &claims,
        &state.default_audiences,
        robot_name,
    )?;
    let matched = policy
        .entries
        .iter()
        .position(|e| std::ptr::eq(e, matched))
        .unwrap_or_default();

    // Step 7: replay.
    replay_check(state, &claims, leeway).await?;

    // Immutable IDs a preset entry waits for are recorded now (without revoking anything).
    let policy =
        crate::pinning::record_first_use(state, robot_name, policy, matched, &claims).await?;

    // Step 8: mint.
    mint(state, robot_name, &policy, &claims, now)
}

/// The robot's policy (cached), or why the exchange cannot go on without it.
pub(crate) async fn robot_policy(
    state: &AppState,
    robot_name: &str,
) -> Result<Arc<RobotPolicy>, ExchangeError> {
    state
        .robots
        .get(state, robot_name)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "robot lookup failed");
            ExchangeError::Unavailable
        })?
        .ok_or_else(|| {
            refuse(
                RefusalCode::UnknownRobot,
                format!("no robot named {robot_name:?}"),
            )
        })
}

/// Reads an identity token's compact form and claims, unverified. The exchange and the
/// admin dry run (`api::federation_test`) both start here.
pub fn decode(jwt: &str) -> Result<(jws::Compact<'_>, Claims), Refusal> {
    let mut compact =
        jws::decode(jwt).map_err(|e| Refusal::new(RefusalCode::MalformedToken, e.0))?;
    let claims = verify::claims(std::mem::take(&mut compact.payload))?;
    Ok((compact, claims))
}

/// The checks of the token itself against a robot's `entries` (SPEC 7.3 steps 1-5): an entry
/// for its issuer and the issuer allowed, before any network I/O; then the algorithm, the
/// issuer's keys (cached, one refetch per cooldown for an unknown kid), the signature, and
/// the time claims. The exchange and the admin dry run both decide through this.
pub async fn check_identity(
    state: &AppState,
    robot_name: &str,
    entries: &[FederationEntry],
    compact: &jws::Compact<'_>,
    claims: &Claims,
) -> Result<(), Refusal> {
    let config = &state.config;
    // The issuer whose keys verify the token: its own, or the `{tenantid}` template of an
    // entry that accepts it (one key set for every tenant: `oidc::trust`).
    let key_issuer = if entries.iter().any(|e| same_issuer(&e.issuer, &claims.iss)) {
        Some(claims.iss.as_str())
    } else {
        entries
            .iter()
            .find(|e| issuer_accepts(&e.issuer, claims))
            .map(|e| &*e.issuer)
    };
    let Some(key_issuer) = key_issuer else {
        return Err(Refusal::new(
            RefusalCode::IssuerNotConfigured,
            format!(
                "robot {robot_name} has no federation entry for issuer {:?}",
                claims.iss
            ),
        ));
    };
    if !issuer_allowed(&config.federation.allowed_issuers, key_issuer) {
        return Err(Refusal::new(
            RefusalCode::IssuerNotAllowed,
            format!("issuer {:?} is not allowed by this gateway", claims.iss),
        ));
    }
    let alg = verify::algorithm(compact)?;

    let keys = state.key_cache.keys(key_issuer).await?;
    match verify::signature(compact, alg, &keys.keys) {
        Ok(()) => {}
        Err(Some(refusal)) => return Err(refusal),
        Err(None) => {
            let unknown = || {
                Refusal::new(
                    RefusalCode::UnknownKey,
                    format!(
                        "issuer {:?} publishes no key with the token's kid {:?}",
                        claims.iss,
                        compact.header.kid.as_deref().unwrap_or("")
                    ),
                )
            };
            let fresh = state
                .key_cache
                .refetch_for_unknown_kid(key_issuer, &keys)
                .await
                .ok_or_else(unknown)?;
            match verify::signature(compact, alg, &fresh.keys) {
                Ok(()) => {}
                Err(Some(refusal)) => return Err(refusal),
                Err(None) => return Err(unknown()),
            }
        }
    }
    verify::times(
        claims,
        state.clock.unix(),
        config.federation.leeway_seconds as i64,
    )
}

/// `federation.require_jti`: a token without `jti` cannot be tracked for replays.
pub fn check_jti(state: &AppState, claims: &Claims) -> Result<(), Refusal> {
    if claims.jti.is_none() && state.config.federation.require_jti {
        return Err(Refusal::new(
            RefusalCode::MalformedToken,
            "the token has no jti, which this gateway requires",
        ));
    }
    Ok(())
}

/// A `(iss, jti)` pair is accepted once while the token can be valid: until `exp + leeway`,
/// the same leeway the time checks allow, so a replay can never outlive its record.
async fn replay_check(state: &AppState, claims: &Claims, leeway: i64) -> Result<(), ExchangeError> {
    let federation = &state.config.federation;
    check_jti(state, claims)?;
    let Some(jti) = &claims.jti else {
        return Ok(());
    };
    if !federation.replay_protection {
        return Ok(());
    }
    let first_use = state
        .shared
        .record_once(&claims.iss, jti, claims.exp.saturating_add(leeway))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "replay record failed");
            ExchangeError::Unavailable
        })?;
    if first_use {
        Ok(())
    } else {
        Err(refuse(
            RefusalCode::Replayed,
            format!("the token with jti {jti:?} was already used"),
        ))
    }
}

fn mint(
    state: &AppState,
    robot_name: &str,
    policy: &RobotPolicy,
    claims: &Claims,
    now: i64,
) -> Result<Minted, ExchangeError> {
    let ttl = state.config.federation.token_ttl_seconds;
    let mut jti = [0u8; 16];
    state.rng.fill(&mut jti).map_err(|e| {
        tracing::error!(error = %e, "random source failed");
        ExchangeError::Internal
    })?;
    let minted = RobotTokenClaims {
        iss: state.config.server.public_url.clone(),
        aud: state.registry_service.clone(),
        sub: robot_name.to_string(),
        iat: now,
        nbf: now,
        exp: now.saturating_add(ttl as i64),
        jti: data_encoding::HEXLOWER.encode(&jti),
        fed: FedClaim {
            iss: claims.iss.clone(),
            sub: claims.sub.clone(),
        },
        rev: policy.revision,
    };
    let token = state
        .keyring()
        .signing_key(now)
        .sign_jwt(&minted)
        .map_err(|e| {
            tracing::error!(error = %e, "signing a robot token failed");
            ExchangeError::Internal
        })?;
    Ok(Minted {
        token: SecretString::from(token),
        expires_in: ttl,
    })
}

/// Checks a robot token fedgate minted: signature by a published key, `iss`, `aud`, time, and
/// that the robot still exists with the revision the token was minted under.
pub async fn verify_minted(
    state: &AppState,
    token: &str,
) -> Result<(RobotTokenClaims, Arc<RobotPolicy>), String> {
    let compact = jws::decode(token).map_err(|e| e.0.to_string())?;
    let alg = verify::algorithm(&compact).map_err(|r| r.message)?;
    let keyring = state.keyring();
    verify::signature(&compact, alg, keyring.verifying_keys()).map_err(|r| {
        r.map_or_else(
            || "signed by a key fedgate does not publish".to_string(),
            |r| r.message,
        )
    })?;
    let claims: RobotTokenClaims =
        serde_json::from_value(serde_json::Value::Object(compact.payload))
            .map_err(|_| "not a fedgate robot token".to_string())?;
    if claims.iss != state.config.server.public_url || claims.aud != state.registry_service {
        return Err("issued for another gateway or service".into());
    }
    let now = state.clock.unix();
    let leeway = state.config.federation.leeway_seconds as i64;
    if now > claims.exp.saturating_add(leeway) || claims.nbf > now.saturating_add(leeway) {
        return Err("expired or not yet valid".into());
    }
    let policy = state
        .robots
        .get(state, &claims.sub)
        .await
        .map_err(|e| format!("robot lookup failed: {e}"))?
        .ok_or_else(|| "the robot no longer exists".to_string())?;
    if policy.revision != claims.rev {
        return Err("revoked: the robot or its federation configuration changed".into());
    }
    Ok((claims, policy))
}
