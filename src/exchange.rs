//! The token exchange (SPEC 7.3): from a robot name and an identity token to a minted robot
//! token. It sequences the checks of [`crate::oidc`] around the key cache, the robot cache, the
//! replay store and the rate limits; both HTTP forms (`api::exchange`, `api::sts`) call it.
//!
//! The warm path (robot cached in [`crate::robot_cache`], issuer keys cached) touches the
//! database once: the replay record.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::minted_cache::MintedCache;
use crate::oidc::jws;
use crate::oidc::policy::{FederationEntry, matching_entry};
use crate::oidc::trust::issuer_accepts;
use crate::oidc::verify::{self, Claims};
use crate::oidc::{Refusal, RefusalCode, issuer_allowed, same_issuer};
use crate::robot_cache::RobotPolicy;
use crate::shared::Admission;
use crate::shared::limits::Limited;

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

    // The robot's quota counts only identities it trusts, so nobody else can use it up
    // (garbage and other tenants' tokens count against their sender's address instead).
    // Checked before the replay record, so a refused exchange does not burn its token, and
    // counted after it, so replays of a used token do not count; exchanges in flight together
    // may pass the quota by their number.
    // Step 7: replay. A `(iss, jti)` pair is accepted once while the token can be valid:
    // until `exp + leeway`, the leeway the time checks allow, so a replay can never outlive
    // its record.
    check_jti(state, &claims)?;
    let record = claims
        .jti
        .as_deref()
        .filter(|_| config.federation.replay_protection)
        .map(|jti| (claims.iss.as_str(), jti, claims.exp.saturating_add(leeway)));
    let admission = state
        .shared
        .admit(
            &format!("robot:{robot_name}"),
            config.limits.exchanges_per_minute_per_robot,
            record,
        )
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "rate-limit or replay record failed");
            ExchangeError::Unavailable
        })?;
    match admission {
        Admission::Admitted => {}
        Admission::Limited(limited) => return Err(limited.into()),
        Admission::Replayed => {
            return Err(refuse(
                RefusalCode::Replayed,
                format!(
                    "the token with jti {:?} was already used",
                    claims.jti.as_deref().unwrap_or("")
                ),
            ));
        }
    }

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
        .get(
            state.store.as_ref(),
            state.shared.notices_live(),
            robot_name,
        )
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

/// Why a minted robot token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum MintedTokenError {
    /// The token is not (or no longer) good; the message says why, for the log.
    #[error("{0}")]
    Refused(String),
    /// Whether it is good cannot be told now: the robot could not be read (logged).
    #[error("the robot cannot be read right now")]
    Unavailable,
}

/// Checks a robot token fedgate minted: signature by a published key, `iss`, `aud`, time, and
/// that the robot still exists with the revision the token was minted under.
pub async fn verify_minted(
    state: &AppState,
    token: &str,
) -> Result<(Arc<RobotTokenClaims>, Arc<RobotPolicy>), MintedTokenError> {
    let refused = |why: String| MintedTokenError::Refused(why);
    let keyring = state.keyring();
    // A token whose signature this keyring already checked is not checked again.
    let digest = MintedCache::digest(token);
    let claims = match state.minted.get(&digest, &keyring) {
        Some(claims) => claims,
        None => {
            let compact = jws::decode(token).map_err(|e| refused(e.0.to_string()))?;
            let alg = verify::algorithm(&compact).map_err(|r| refused(r.message))?;
            verify::signature(&compact, alg, keyring.verifying_keys()).map_err(|r| {
                refused(r.map_or_else(
                    || "signed by a key fedgate does not publish".to_string(),
                    |r| r.message,
                ))
            })?;
            let claims: RobotTokenClaims =
                serde_json::from_value(serde_json::Value::Object(compact.payload))
                    .map_err(|_| refused("not a fedgate robot token".into()))?;
            if claims.iss != state.config.server.public_url || claims.aud != state.registry_service
            {
                return Err(refused("issued for another gateway or service".into()));
            }
            let claims = Arc::new(claims);
            state.minted.insert(digest, claims.clone(), &keyring);
            claims
        }
    };
    let now = state.clock.unix();
    let leeway = state.config.federation.leeway_seconds as i64;
    if now > claims.exp.saturating_add(leeway) || claims.nbf > now.saturating_add(leeway) {
        return Err(refused("expired or not yet valid".into()));
    }
    let policy = state
        .robots
        .get(
            state.store.as_ref(),
            state.shared.notices_live(),
            &claims.sub,
        )
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "robot lookup failed");
            MintedTokenError::Unavailable
        })?
        .ok_or_else(|| refused("the robot no longer exists".into()))?;
    if policy.revision != claims.rev {
        return Err(refused(
            "revoked: the robot or its federation configuration changed".into(),
        ));
    }
    Ok((claims, policy))
}
