//! The per-issuer JWKS cache (SPEC 7.3 step 3), built on moka.
//!
//! - One fetch serves every concurrent request for an issuer (moka's `try_get_with`).
//! - A token with an unknown `kid` triggers at most one refetch per issuer per
//!   `jwks_refresh_cooldown_seconds`, however many such tokens arrive.
//! - Key sets older than [`REFRESH_AFTER_SECONDS`] are refreshed in the background; while the
//!   issuer fails, the last good set keeps serving for `jwks_max_stale_seconds`.
//! - The cache is bounded in bytes (`limits.jwks_cache_bytes`, each key set weighed by its
//!   parsed keys), and the issuers under one host may take a quarter of it ([`HostShares`]).
//! - A failed first fetch is remembered for the cooldown, so an unreachable issuer is not
//!   hammered by every request. Keys older than `jwks_max_stale_seconds` are refetched under
//!   the same cooldown, by one request at a time; the others fail at once (503).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::fetch::FetchError;
use super::host_shares::HostShares;
use super::jws::{KeySet, parse_jwks};
use super::{Refusal, RefusalCode};
use crate::clock::Clock;
use crate::metrics::Metrics;

/// Age after which a key set is refreshed in the background.
pub const REFRESH_AFTER_SECONDS: i64 = 300;
/// Issuers whose failed fetch is remembered at once.
const MAX_REMEMBERED_FAILURES: u64 = 10_000;
/// The part of the cache's budget the issuers under one host may take (see [`HostShares`]).
const HOST_SHARE_DIVISOR: u64 = 4;

/// Where key sets come from: in production `oidc::trust::TrustedSource` (discovery and the
/// JWKS over HTTP, or an issuer's own trust settings).
#[async_trait]
pub trait JwksSource: Send + Sync + 'static {
    async fn fetch(&self, issuer: &str) -> Result<KeySet, FetchError>;

    /// Keys the source holds itself rather than fetches (static keys of `oidc::trust`, which
    /// it re-reads when their file changes): served as they are, never cached or refetched.
    fn local_keys(&self, _issuer: &str) -> Option<Arc<CachedKeys>> {
        None
    }
}

/// A fixed JWKS document, as if fetched (benchmarks and tests that need no network).
#[derive(Debug, Clone)]
pub struct StaticJwksSource(pub Vec<u8>);

#[async_trait]
impl JwksSource for StaticJwksSource {
    async fn fetch(&self, _issuer: &str) -> Result<KeySet, FetchError> {
        parse_jwks(&self.0).map_err(FetchError::Unreachable)
    }
}

/// A key set and when it was fetched.
pub struct CachedKeys {
    pub keys: KeySet,
    /// What the cache weighs it at: the parsed keys' bytes, roughly.
    weight: u32,
    fetched_at: i64,
    /// Last refetch attempt, successful or not (drives the cooldown).
    attempted_at: AtomicI64,
    /// Held while this issuer is being refetched: one refetch at a time.
    refetching: tokio::sync::Mutex<()>,
}

impl CachedKeys {
    pub fn new(keys: KeySet, now: i64) -> Self {
        Self {
            weight: u32::try_from(keys.weight()).unwrap_or(u32::MAX),
            keys,
            fetched_at: now,
            attempted_at: AtomicI64::new(now),
            refetching: tokio::sync::Mutex::new(()),
        }
    }
}

impl std::fmt::Debug for CachedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedKeys")
            .field("fetched_at", &self.fetched_at)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct KeyCacheSettings {
    pub cooldown_seconds: i64,
    pub max_stale_seconds: i64,
    /// Bytes the cached key sets may take (`limits.jwks_cache_bytes`).
    pub budget_bytes: u64,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct KeyCache(Arc<Inner>);

struct Inner {
    source: Arc<dyn JwksSource>,
    entries: moka::future::Cache<String, Arc<CachedKeys>>,
    /// Issuers whose last fetch failed: the reason, and when (by `clock`: the cooldown is
    /// measured on the injected clock; moka's own expiry only bounds how long it is held).
    failures: moka::future::Cache<String, (String, i64)>,
    hosts: Arc<HostShares>,
    clock: Arc<dyn Clock>,
    settings: KeyCacheSettings,
    metrics: Metrics,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("issuers", &self.0.entries.entry_count())
            .finish()
    }
}

fn unavailable(issuer: &str, why: &str) -> Refusal {
    Refusal::new(
        RefusalCode::IssuerUnavailable,
        format!("the keys of issuer {issuer} cannot be fetched right now ({why})"),
    )
}

impl KeyCache {
    pub fn new(
        source: Arc<dyn JwksSource>,
        clock: Arc<dyn Clock>,
        settings: KeyCacheSettings,
        metrics: Metrics,
    ) -> Self {
        let cooldown = Duration::from_secs(settings.cooldown_seconds.max(1) as u64);
        let hosts = Arc::new(HostShares::new(settings.budget_bytes / HOST_SHARE_DIVISOR));
        let evicted = hosts.clone();
        Self(Arc::new(Inner {
            source,
            entries: moka::future::Cache::builder()
                .max_capacity(settings.budget_bytes)
                .weigher(|_issuer, keys: &Arc<CachedKeys>| keys.weight)
                .eviction_listener(move |issuer: Arc<String>, _, cause| {
                    // Replacements and our own removals are counted where they happen.
                    if cause.was_evicted() {
                        evicted.forget(&issuer);
                    }
                })
                .build(),
            failures: moka::future::Cache::builder()
                .max_capacity(MAX_REMEMBERED_FAILURES)
                .time_to_live(cooldown)
                .build(),
            hosts,
            clock,
            settings,
            metrics,
        }))
    }

    async fn fetch(&self, issuer: &str) -> Result<Arc<CachedKeys>, String> {
        let result = self.0.source.fetch(issuer).await;
        let label = if result.is_ok() { "ok" } else { "error" };
        self.0
            .metrics
            .jwks_fetches
            .with_label_values(&[label])
            .inc();
        match result {
            Ok(keys) => {
                self.0.failures.invalidate(issuer).await;
                let fetched = Arc::new(CachedKeys::new(keys, self.0.clock.unix()));
                // The issuer's host keeps to its share: its oldest other issuers make room.
                for dropped in self.0.hosts.admit(issuer, u64::from(fetched.weight)) {
                    self.0.entries.invalidate(&dropped).await;
                }
                Ok(fetched)
            }
            Err(e) => {
                tracing::warn!(issuer, error = %e, "JWKS fetch failed");
                let why = e.to_string();
                self.0
                    .failures
                    .insert(issuer.to_string(), (why.clone(), self.0.clock.unix()))
                    .await;
                Err(why)
            }
        }
    }

    /// Bytes of key sets held now, as weighed.
    pub fn weight(&self) -> u64 {
        self.0.entries.weighted_size()
    }

    /// The issuer's keys: cached, or fetched once for all concurrent callers.
    pub async fn keys(&self, issuer: &str) -> Result<Arc<CachedKeys>, Refusal> {
        if let Some(local) = self.0.source.local_keys(issuer) {
            return Ok(local);
        }
        let now = self.0.clock.unix();
        if let Some(cached) = self.0.entries.get(issuer).await {
            let age = now - cached.fetched_at;
            if age <= self.0.settings.max_stale_seconds {
                if age >= REFRESH_AFTER_SECONDS {
                    self.refresh_in_background(issuer, &cached);
                }
                return Ok(cached);
            }
            // Too stale to trust: refetch, but like any refetch at most once per cooldown,
            // and without queueing behind one in progress. During an outage every other
            // request fails at once instead of holding its connection for its own fetch.
            if let Some(fresh) = self.refetch(issuer, &cached, now, Wait::No).await {
                return Ok(fresh);
            }
            let why = self.0.failures.get(issuer).await.map_or_else(
                || "the cached keys are older than jwks_max_stale_seconds".to_string(),
                |(why, _)| why,
            );
            return Err(unavailable(issuer, &why));
        }
        if let Some((why, failed_at)) = self.0.failures.get(issuer).await
            && now - failed_at < self.0.settings.cooldown_seconds
        {
            return Err(unavailable(issuer, &why));
        }
        self.0
            .entries
            .try_get_with(issuer.to_string(), self.fetch(issuer))
            .await
            .map_err(|why| unavailable(issuer, &why))
    }

    /// For a token whose `kid` is not in `seen`: a newer key set if one could be had within the
    /// cooldown (fetched now, or by a concurrent request), else `None`.
    pub async fn refetch_for_unknown_kid(
        &self,
        issuer: &str,
        seen: &Arc<CachedKeys>,
    ) -> Option<Arc<CachedKeys>> {
        if let Some(local) = self.0.source.local_keys(issuer) {
            return (!Arc::ptr_eq(&local, seen)).then_some(local);
        }
        self.refetch(
            issuer,
            seen,
            self.0.clock.unix(),
            Wait::ForRefetchInProgress,
        )
        .await
    }

    /// A newer key set than `seen`: one a concurrent refetch got, or one fetched now if the
    /// cooldown since the last attempt has passed; `None` otherwise.
    async fn refetch(
        &self,
        issuer: &str,
        seen: &Arc<CachedKeys>,
        now: i64,
        wait: Wait,
    ) -> Option<Arc<CachedKeys>> {
        let _guard = match wait {
            Wait::ForRefetchInProgress => seen.refetching.lock().await,
            Wait::No => seen.refetching.try_lock().ok()?,
        };
        let current = self.0.entries.get(issuer).await;
        if let Some(current) = current.filter(|c| !Arc::ptr_eq(c, seen)) {
            return Some(current); // someone refetched while we waited
        }
        if now - seen.attempted_at.load(Ordering::SeqCst) < self.0.settings.cooldown_seconds {
            return None;
        }
        seen.attempted_at.store(now, Ordering::SeqCst);
        let fresh = self.fetch(issuer).await.ok()?;
        self.0
            .entries
            .insert(issuer.to_string(), fresh.clone())
            .await;
        Some(fresh)
    }

    fn refresh_in_background(&self, issuer: &str, seen: &Arc<CachedKeys>) {
        let now = self.0.clock.unix();
        if now - seen.attempted_at.load(Ordering::SeqCst) < self.0.settings.cooldown_seconds
            || seen.refetching.try_lock().is_err()
        {
            return;
        }
        let (cache, issuer, seen) = (self.clone(), issuer.to_string(), seen.clone());
        tokio::spawn(async move {
            cache.refetch(&issuer, &seen, now, Wait::No).await;
        });
    }
}

/// Whether a refetch waits for one already in progress (and then uses its result).
#[derive(Debug, Clone, Copy)]
enum Wait {
    /// For a token with an unknown `kid`: a rotation's new key is worth the wait, and all
    /// such requests share one fetch.
    ForRefetchInProgress,
    /// For keys too stale to use, and background refreshes: fail fast instead.
    No,
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use base64_simd::URL_SAFE_NO_PAD as B64;

    use super::*;
    use crate::clock::ManualClock;

    /// A JWKS document with one fresh Ed25519 key.
    fn jwks() -> Vec<u8> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k",
            "x": B64.encode_to_string(pair.public_key().as_ref())}]})
        .to_string()
        .into_bytes()
    }

    /// An issuer that serves `document` (or fails with it) and counts its fetches.
    struct Issuer {
        document: Mutex<Result<Vec<u8>, String>>,
        fetches: AtomicUsize,
    }

    impl Issuer {
        fn serving(document: Result<Vec<u8>, String>) -> Arc<Self> {
            Arc::new(Self {
                document: Mutex::new(document),
                fetches: AtomicUsize::new(0),
            })
        }

        fn up() -> Arc<Self> {
            Self::serving(Ok(jwks()))
        }

        fn serve(&self, document: Result<Vec<u8>, String>) {
            *self.document.lock().unwrap() = document;
        }

        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl JwksSource for Issuer {
        async fn fetch(&self, _issuer: &str) -> Result<KeySet, FetchError> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let document = self.document.lock().unwrap().clone();
            parse_jwks(&document.map_err(FetchError::Unreachable)?).map_err(FetchError::Unreachable)
        }
    }

    const COOLDOWN: i64 = 30;

    fn cache(issuer: &Arc<Issuer>, clock: &Arc<ManualClock>, max_stale: i64) -> KeyCache {
        cache_within(issuer, clock, max_stale, 1 << 20)
    }

    fn cache_within(
        issuer: &Arc<Issuer>,
        clock: &Arc<ManualClock>,
        max_stale: i64,
        budget_bytes: u64,
    ) -> KeyCache {
        let settings = KeyCacheSettings {
            cooldown_seconds: COOLDOWN,
            max_stale_seconds: max_stale,
            budget_bytes,
        };
        KeyCache::new(issuer.clone(), clock.clone(), settings, Metrics::default())
    }

    const I: &str = "https://issuer.example";

    /// Keys the source holds itself (a static JWKS file): served as they are, and a token
    /// with an unknown kid gets them again only once they changed.
    #[tokio::test]
    async fn local_keys_are_served_as_they_are_and_refetched_only_when_changed() {
        struct Local(Mutex<Arc<CachedKeys>>);
        #[async_trait]
        impl JwksSource for Local {
            async fn fetch(&self, _issuer: &str) -> Result<KeySet, FetchError> {
                Err(FetchError::Unreachable(
                    "local keys are never fetched".into(),
                ))
            }
            fn local_keys(&self, _issuer: &str) -> Option<Arc<CachedKeys>> {
                Some(self.0.lock().unwrap().clone())
            }
        }
        let local_keys = || Arc::new(CachedKeys::new(parse_jwks(&jwks()).unwrap(), 0));
        let source = Arc::new(Local(Mutex::new(local_keys())));
        let settings = KeyCacheSettings {
            cooldown_seconds: COOLDOWN,
            max_stale_seconds: 100,
            budget_bytes: 1 << 20,
        };
        let clock = Arc::new(ManualClock::at(1000));
        let keys = KeyCache::new(source.clone(), clock, settings, Metrics::default());
        let first = keys.keys(I).await.unwrap();
        assert!(Arc::ptr_eq(&first, &source.0.lock().unwrap()));
        assert!(keys.refetch_for_unknown_kid(I, &first).await.is_none());
        *source.0.lock().unwrap() = local_keys();
        let changed = keys.refetch_for_unknown_kid(I, &first).await.unwrap();
        assert!(Arc::ptr_eq(&changed, &source.0.lock().unwrap()));
    }

    #[tokio::test]
    async fn a_static_source_serves_its_document() {
        let set = StaticJwksSource(jwks()).fetch(I).await.unwrap();
        assert_eq!(set.jwk_count, 1);
        assert!(StaticJwksSource(b"{}".to_vec()).fetch(I).await.is_err());
    }

    #[tokio::test]
    async fn a_failed_first_fetch_is_remembered_for_the_cooldown_exactly() {
        let issuer = Issuer::serving(Err("connection refused".into()));
        let clock = Arc::new(ManualClock::at(1000));
        let keys = cache(&issuer, &clock, 3600);
        let refusal = keys.keys(I).await.unwrap_err();
        assert_eq!(refusal.code, RefusalCode::IssuerUnavailable);
        assert!(refusal.message.contains("connection refused"), "{refusal}");
        issuer.serve(Ok(jwks()));
        clock.advance(COOLDOWN - 1);
        let refusal = keys.keys(I).await.unwrap_err();
        assert!(refusal.message.contains("connection refused"), "{refusal}");
        assert_eq!(issuer.fetches(), 1, "not fetched again within the cooldown");
        clock.advance(1);
        keys.keys(I).await.unwrap();
        assert_eq!(
            issuer.fetches(),
            2,
            "fetched again once the cooldown is over"
        );
        keys.keys(I).await.unwrap();
        assert_eq!(issuer.fetches(), 2, "and cached");
    }

    #[tokio::test]
    async fn keys_past_max_stale_are_refetched_at_most_once_per_cooldown() {
        let (issuer, clock) = (Issuer::up(), Arc::new(ManualClock::at(1000)));
        let keys = cache(&issuer, &clock, 100);
        let first = keys.keys(I).await.unwrap();
        clock.advance(100);
        assert!(
            Arc::ptr_eq(&first, &keys.keys(I).await.unwrap()),
            "max_stale old: served"
        );
        assert_eq!(issuer.fetches(), 1);
        clock.advance(1);
        let second = keys.keys(I).await.unwrap();
        assert!(!Arc::ptr_eq(&first, &second), "one second older: refetched");
        assert_eq!(issuer.fetches(), 2);

        issuer.serve(Err("issuer down".into()));
        clock.advance(101);
        let refusal = keys.keys(I).await.unwrap_err();
        assert_eq!(refusal.code, RefusalCode::IssuerUnavailable);
        assert!(refusal.message.contains("issuer down"), "{refusal}");
        assert_eq!(issuer.fetches(), 3);
        issuer.serve(Ok(jwks()));
        clock.advance(COOLDOWN - 1);
        assert!(
            keys.keys(I).await.is_err(),
            "within the cooldown: no refetch"
        );
        assert_eq!(issuer.fetches(), 3);
        clock.advance(1);
        keys.keys(I).await.unwrap();
        assert_eq!(issuer.fetches(), 4);
    }

    #[tokio::test]
    async fn keys_are_refreshed_in_the_background_from_refresh_after_seconds() {
        let (issuer, clock) = (Issuer::up(), Arc::new(ManualClock::at(1000)));
        let keys = cache(&issuer, &clock, 3600);
        let first = keys.keys(I).await.unwrap();
        clock.advance(REFRESH_AFTER_SECONDS - 1);
        assert!(Arc::ptr_eq(&first, &keys.keys(I).await.unwrap()));
        tokio::task::yield_now().await;
        assert_eq!(issuer.fetches(), 1, "young keys are not refreshed");
        clock.advance(1);
        assert!(
            Arc::ptr_eq(&first, &keys.keys(I).await.unwrap()),
            "the old keys serve while the refresh runs"
        );
        // Up to a minute: the budget only bounds a failure.
        for _ in 0..6000 {
            if issuer.fetches() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(issuer.fetches(), 2, "refreshed once");
        let mut refreshed = keys.keys(I).await.unwrap();
        for _ in 0..6000 {
            if !Arc::ptr_eq(&first, &refreshed) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            refreshed = keys.keys(I).await.unwrap();
        }
        assert!(!Arc::ptr_eq(&first, &refreshed), "the refreshed keys serve");
        assert_eq!(issuer.fetches(), 2, "fresh keys are not refreshed again");
    }

    #[tokio::test]
    async fn an_unknown_kid_refetches_at_most_once_per_cooldown() {
        let (issuer, clock) = (Issuer::up(), Arc::new(ManualClock::at(1000)));
        let keys = cache(&issuer, &clock, 3600);
        let first = keys.keys(I).await.unwrap();
        clock.advance(COOLDOWN - 1);
        assert!(keys.refetch_for_unknown_kid(I, &first).await.is_none());
        assert_eq!(
            issuer.fetches(),
            1,
            "within the cooldown of the first fetch"
        );
        clock.advance(1);
        let second = keys.refetch_for_unknown_kid(I, &first).await.unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(issuer.fetches(), 2);
        assert!(
            Arc::ptr_eq(&second, &keys.keys(I).await.unwrap()),
            "and cached"
        );
        let again = keys.refetch_for_unknown_kid(I, &first).await.unwrap();
        assert!(
            Arc::ptr_eq(&second, &again),
            "a request that saw the old keys gets the new ones, without a fetch"
        );
        assert_eq!(issuer.fetches(), 2);
    }

    #[tokio::test]
    async fn one_hosts_issuers_keep_to_a_quarter_of_the_budget() {
        let (issuer, clock) = (Issuer::up(), Arc::new(ManualClock::at(1000)));
        let weight = parse_jwks(&jwks()).unwrap().weight() as u64;
        // A quarter of the budget holds one key set, not two.
        let keys = cache_within(&issuer, &clock, 3600, HOST_SHARE_DIVISOR * (weight * 3 / 2));
        let (a, b, other) = (
            "https://h.example/a",
            "https://h.example/b",
            "https://o.example/",
        );
        keys.keys(a).await.unwrap();
        keys.keys(other).await.unwrap();
        keys.keys(b).await.unwrap();
        assert_eq!(issuer.fetches(), 3);
        keys.keys(b).await.unwrap();
        keys.keys(other).await.unwrap();
        assert_eq!(
            issuer.fetches(),
            3,
            "b and another host's issuer stay cached"
        );
        keys.0.entries.run_pending_tasks().await;
        assert_eq!(
            keys.weight(),
            2 * weight,
            "what the cache holds, for its gauge"
        );
        keys.keys(a).await.unwrap();
        assert_eq!(
            issuer.fetches(),
            4,
            "a made room for b, its host's newer issuer"
        );
    }
}
