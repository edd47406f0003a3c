//! A key rotation under load, the way the docs tell an operator to do it: stage a key, give
//! the registry the new bundle and restart it, activate the key. Two replicas (the real
//! binary) behind a load balancer share PostgreSQL, Redis and the keys directory; exchanges,
//! logins and pushes run without pause the whole time, and none may fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fedgate::clock::{Clock, SystemClock};
use serde_json::{Value, json};
use tokio::sync::{Mutex, RwLock};

use crate::harness::balancer::Balancer;
use crate::harness::issuer::Issuer;
use crate::harness::postgres;
use crate::harness::redis::RedisServer;
use crate::harness::registry::{Distribution, Registry, TokenAuth, Trust, oci_image};
use crate::harness::replica::{Replica, admin};
use crate::harness::{Reply, send};
use crate::replicas::{acme, call, deployment};

/// A client that opens a new connection per request, so the balancer spreads them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn exchange(url: &str, issuer: &Issuer) -> Reply {
    let jwt = issuer.token(&issuer.claims("github-actions", SystemClock.unix()));
    send(
        client()
            .get(format!("{url}/oauth2/federation/robot/token"))
            .basic_auth("acme+ci", Some(jwt)),
    )
    .await
}

/// The `kid` in a JWT's header.
fn kid(token: &str) -> String {
    let header = token.split('.').next().unwrap_or_default();
    let bytes = data_encoding::BASE64URL_NOPAD
        .decode(header.as_bytes())
        .unwrap_or_default();
    serde_json::from_slice::<Value>(&bytes).unwrap_or_default()["kid"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// What the load saw.
#[derive(Default)]
struct Seen {
    failures: Mutex<Vec<String>>,
    /// `(replica, kid)` of every registry token the replicas issued.
    kids: Mutex<Vec<(usize, String)>>,
    exchanges: AtomicUsize,
    pushes: AtomicUsize,
}

impl Seen {
    async fn fail(&self, what: String) {
        self.failures.lock().await.push(what);
    }

    /// Panics with the first failure, if any, naming the phase it was seen by.
    async fn assert_none_failed(&self, phase: &str) {
        let failures = self.failures.lock().await;
        assert!(
            failures.is_empty(),
            "{phase}: {} failures, first: {}",
            failures.len(),
            failures[0]
        );
    }
}

/// Exchanges at one replica and logs in with the minted token at the other, by GET and by
/// POST: every minted-token check crosses replicas.
async fn exchanges_and_logins(
    replicas: [String; 2],
    issuer: Arc<Issuer>,
    service: String,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
) {
    let mut round = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let (at, other) = (round % 2, (round + 1) % 2);
        round += 1;
        let minted = exchange(&replicas[at], &issuer).await;
        if minted.status != 200 {
            seen.fail(format!(
                "exchange at replica {at}: {} {}",
                minted.status, minted.text
            ))
            .await;
            continue;
        }
        seen.exchanges.fetch_add(1, Ordering::SeqCst);
        let token = minted.json()["token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let scope = "repository:acme/app:pull,push";
        let get = send(
            client()
                .get(format!(
                    "{}/v2/auth?service={service}&scope={scope}",
                    replicas[other]
                ))
                .basic_auth("acme+ci", Some(&token)),
        )
        .await;
        let post = send(
            client()
                .post(format!("{}/v2/auth", replicas[other]))
                .form(&[
                    ("grant_type", "password"),
                    ("username", "acme+ci"),
                    ("password", &token),
                    ("service", &service),
                    ("client_id", "rotation-test"),
                    ("scope", scope),
                ]),
        )
        .await;
        for (form, reply, field) in [("GET", &get, "token"), ("POST", &post, "access_token")] {
            if reply.status == 200 {
                let issued = reply.json()[field].as_str().unwrap_or_default().to_string();
                seen.kids.lock().await.push((other, kid(&issued)));
            } else {
                seen.fail(format!(
                    "{form} /v2/auth at replica {other} with a token minted at {at}: {} {}",
                    reply.status, reply.text
                ))
                .await;
            }
        }
    }
}

/// Pushes a new tag with skopeo, each with a fresh minted token, through the registry whose
/// realm is the balancer. A push waits while the registry restarts (the restart is the
/// operator's, not what this test is about), never while keys change.
async fn pushes(
    balancer: String,
    registry: Arc<RwLock<Registry>>,
    image: String,
    issuer: Arc<Issuer>,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
) {
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let minted = exchange(&balancer, &issuer).await;
        if minted.status != 200 {
            seen.fail(format!(
                "exchange for a push: {} {}",
                minted.status, minted.text
            ))
            .await;
            continue;
        }
        let token = minted.json()["token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let registry = registry.read().await;
        let target = registry.image("acme/app", &format!("push-{n}"));
        // skopeo blocks; let the runtime move the balancer and the other tasks elsewhere.
        let pushed = tokio::task::block_in_place(|| {
            registry.skopeo_copy(&image, &target, "acme+ci", &token)
        });
        match pushed {
            Ok(()) => {
                seen.pushes.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => {
                seen.fail(format!("push {n}: {e}\nregistry: {}", registry.log()))
                    .await
            }
        }
    }
}

/// Waits until `check` holds, up to `within`.
async fn until(within: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn published_kids(url: &str) -> Vec<String> {
    let jwks = send(client().get(format!("{url}/.well-known/jwks.json"))).await;
    jwks.json()["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .filter_map(|k| k["kid"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_rotation_under_load_refuses_nothing() {
    let issuer = Arc::new(Issuer::rsa().await);
    let redis = RedisServer::start();
    let database = postgres::server().fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = deployment(
        &database,
        Some(&redis.url()),
        &issuer,
        &dir.path().join("keys"),
    );
    // The load makes more exchanges than the default per-robot limit allows.
    env.push((
        "FEDGATE_LIMITS_EXCHANGES_PER_MINUTE_PER_ROBOT".into(),
        "0".into(),
    ));
    admin(&env, &["migrate"]);
    admin(&env, &["keys", "rotate"]);
    let first_kid = admin(&env, &["keys", "list"]);
    let first_kid = first_kid.split_whitespace().next().unwrap().to_string();
    let a = Replica::start(&env, dir.path(), "a").await;
    let b = Replica::start(&env, dir.path(), "b").await;
    let balancer = Balancer::start(
        [&a.url, &b.url]
            .map(|u| u.trim_start_matches("http://").to_string())
            .to_vec(),
    )
    .await;
    let api = acme(&env, &a, &issuer).await;
    let grant = call(
        &a.url,
        "PUT",
        "/api/v1/repository/acme/app/permissions/user/acme+ci",
        &api,
        Some(json!({"role": "write"})),
    )
    .await;
    assert_eq!(grant.status, 200, "{}", grant.text);
    let service = "fedgate.test".to_string();
    let registry = Arc::new(RwLock::new(
        Registry::start_with(
            Distribution::Debian2,
            TokenAuth {
                realm: format!("{}/v2/auth", balancer.url),
                service: service.clone(),
                issuer: "http://fedgate.test".into(),
            },
            Trust::Bundle(admin(&env, &["keys", "registry-cert"]) + "\n"),
        )
        .await,
    ));
    let work = tempfile::tempdir().unwrap();
    let image = oci_image(work.path(), "pushed during a rotation");

    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let logins = tokio::spawn(exchanges_and_logins(
        [a.url.clone(), b.url.clone()],
        issuer.clone(),
        service,
        seen.clone(),
        stop.clone(),
    ));
    let pusher = tokio::spawn(pushes(
        balancer.url.clone(),
        registry.clone(),
        image,
        issuer.clone(),
        seen.clone(),
        stop.clone(),
    ));
    until(
        Duration::from_secs(60),
        "load with the first key",
        async || {
            seen.pushes.load(Ordering::SeqCst) >= 1 && seen.exchanges.load(Ordering::SeqCst) >= 5
        },
    )
    .await;

    // 1. Stage: both replicas publish the new key within their reload interval.
    admin(&env, &["keys", "rotate"]);
    until(
        Duration::from_secs(30),
        "both replicas to publish the staged key",
        async || published_kids(&a.url).await.len() == 2 && published_kids(&b.url).await.len() == 2,
    )
    .await;
    let new_kid = published_kids(&a.url)
        .await
        .into_iter()
        .find(|k| *k != first_kid)
        .unwrap();
    seen.assert_none_failed("staged").await;
    // 2. The registry gets the bundle with both certificates and restarts.
    let bundle = admin(&env, &["keys", "registry-cert"]) + "\n";
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2);
    registry.write().await.restart(Trust::Bundle(bundle)).await;
    let pushes_before = seen.pushes.load(Ordering::SeqCst);
    until(
        Duration::from_secs(60),
        "a push through the restarted registry",
        async || seen.pushes.load(Ordering::SeqCst) > pushes_before,
    )
    .await;
    seen.assert_none_failed("registry restarted with the new bundle")
        .await;
    // 3. Activate: both replicas sign with the new key from one instant on.
    admin(&env, &["keys", "activate"]);
    until(
        Duration::from_secs(60),
        "both replicas to sign with the new key",
        async || {
            let kids = seen.kids.lock().await;
            (0..2).all(|r| kids.iter().any(|(at, kid)| *at == r && *kid == new_kid))
        },
    )
    .await;
    let pushes_after_activation = seen.pushes.load(Ordering::SeqCst);
    until(
        Duration::from_secs(60),
        "pushes with the new key",
        async || seen.pushes.load(Ordering::SeqCst) >= pushes_after_activation + 2,
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    logins.await.unwrap();
    pusher.await.unwrap();

    seen.assert_none_failed("activated").await;
    let kids = seen.kids.lock().await;
    for kid in [&first_kid, &new_kid] {
        assert!(
            kids.iter().any(|(_, k)| k == kid),
            "no token signed by {kid}"
        );
    }
    // Once a replica signed with the new key, it never went back.
    for r in 0..2 {
        let from = kids
            .iter()
            .position(|(at, k)| *at == r && *k == new_kid)
            .unwrap();
        assert!(
            kids[from..].iter().all(|(at, k)| *at != r || *k == new_kid),
            "replica {r} signed with the old key after the new one"
        );
    }
    crate::harness::registry::note(&format!(
        "rotation under load: {} exchanges, {} logins, {} pushes, no failure",
        seen.exchanges.load(Ordering::SeqCst),
        kids.len(),
        seen.pushes.load(Ordering::SeqCst)
    ));
}
