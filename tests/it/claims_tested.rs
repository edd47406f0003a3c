//! Issue 19, item 6: what the README promises about the exchange and the keys, each shown
//! against the real gateway, with the case that differs by the one setting or fact in question
//! alongside, so the test fails if the promise stops holding.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fedgate::clock::{Clock, ManualClock, SystemClock};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::harness::issuer::{Issuer, Mode, TestKey};
use crate::harness::registry::{Registry, assert_refused, keys_verb, oci_image, registry_cert};
use crate::harness::{Backend, Gateway, Reply};

const SUBJECT: &str = "repo:octo-org/octo-repo:*";

fn entry(issuer: &Issuer) -> Value {
    json!([{"issuer": issuer.url, "subject": SUBJECT,
            "audiences": ["https://github.com/octo-org"]}])
}

fn code(reply: &Reply) -> String {
    reply.json()["error_code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Polls `check` (generously: the machine may be busy) until it holds.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An entry without `audiences` accepts `federation.audiences`, else the gateway's
/// `server.public_url`, and nothing else.
#[tokio::test]
async fn an_entry_without_audiences_accepts_the_gateway_defaults() {
    let issuer = Issuer::rsa().await;
    for configured in [None, Some("https://registry.example.com")] {
        let gw = Gateway::trusting(Backend::Sqlite, &issuer, Arc::new(SystemClock), |c| {
            c.federation.audiences = configured.iter().map(|a| a.to_string()).collect();
        })
        .await;
        gw.federated_robot(
            "acme",
            "ci",
            json!([{"issuer": issuer.url, "subject": SUBJECT}]),
        )
        .await;
        let default = configured.map_or(gw.url.clone(), str::to_string);
        let other = match configured {
            None => "https://registry.example.com".to_string(),
            Some(_) => gw.url.clone(),
        };
        for (aud, accepted) in [
            (default.as_str(), true),
            (other.as_str(), false),
            ("https://github.com/octo-org", false),
        ] {
            let mut claims = issuer.claims("github-actions", SystemClock.unix());
            claims["aud"] = json!(aud);
            let reply = gw.exchange("acme+ci", &issuer.token(&claims)).await;
            if accepted {
                assert_eq!(reply.status, 200, "{configured:?} {aud}: {}", reply.text);
            } else {
                assert_eq!(code(&reply), "audience_mismatch", "{configured:?} {aud}");
            }
        }
    }
}

/// `require_jti` refuses a token without `jti`; without it such a token is exchanged, and, not
/// being trackable, may be exchanged again. `replay_protection = false` accepts a replay.
#[tokio::test]
async fn require_jti_and_replay_protection_do_what_they_say() {
    let issuer = Issuer::rsa().await;
    let now = SystemClock.unix();
    let mut without_jti = issuer.claims("github-actions", now);
    without_jti.as_object_mut().unwrap().remove("jti");
    let without_jti = issuer.token(&without_jti);
    let with_jti = issuer.token(&issuer.claims("github-actions", now));
    for (require_jti, replay_protection) in [(false, true), (true, true), (false, false)] {
        let gw = Gateway::trusting(Backend::Sqlite, &issuer, Arc::new(SystemClock), |c| {
            c.federation.require_jti = require_jti;
            c.federation.replay_protection = replay_protection;
        })
        .await;
        gw.federated_robot("acme", "ci", entry(&issuer)).await;
        let case = format!("require_jti {require_jti}, replay_protection {replay_protection}");
        for _ in 0..2 {
            let reply = gw.exchange("acme+ci", &without_jti).await;
            if require_jti {
                assert_eq!(code(&reply), "malformed_token", "{case}: {}", reply.text);
                assert!(reply.text.contains("no jti"), "{case}: {}", reply.text);
            } else {
                assert_eq!(reply.status, 200, "{case}: {}", reply.text);
            }
        }
        let first = gw.exchange("acme+ci", &with_jti).await;
        assert_eq!(first.status, 200, "{case}: {}", first.text);
        let again = gw.exchange("acme+ci", &with_jti).await;
        if replay_protection {
            assert_eq!(code(&again), "replayed", "{case}");
        } else {
            assert_eq!(again.status, 200, "{case}: {}", again.text);
        }
    }
}

/// The replay record lasts until `exp + leeway_seconds`: up to the last instant the time checks
/// accept the token, a replay is refused as a replay (not let through by an expired record).
async fn the_replay_record_outlives_the_token(backend: Backend) {
    let clock = Arc::new(ManualClock::at(SystemClock.unix()));
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting(backend, &issuer, clock.clone(), |_| {}).await;
    gw.federated_robot("acme", "ci", entry(&issuer)).await;
    let claims = issuer.claims("github-actions", clock.unix());
    let token = issuer.token(&claims);
    assert_eq!(gw.exchange("acme+ci", &token).await.status, 200);
    let leeway = gw.config.federation.leeway_seconds as i64;
    let exp = claims["exp"].as_i64().unwrap();
    clock.advance(exp + leeway - clock.unix());
    assert_eq!(
        code(&gw.exchange("acme+ci", &token).await),
        "replayed",
        "at exp + leeway"
    );
    clock.advance(1);
    assert_eq!(
        code(&gw.exchange("acme+ci", &token).await),
        "expired",
        "after exp + leeway the time check refuses it"
    );
}

crate::on_both_databases!(the_replay_record_outlives_the_token);

/// Key sets older than five minutes are refreshed in the background: a key the issuer adds
/// is picked up by the refresh, not by an unknown-kid refetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_sets_are_refreshed_in_the_background() {
    let clock = Arc::new(ManualClock::at(SystemClock.unix()));
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting(Backend::Sqlite, &issuer, clock.clone(), |_| {}).await;
    gw.federated_robot("acme", "ci", entry(&issuer)).await;
    let token = || issuer.token(&issuer.claims("github-actions", clock.unix()));
    assert_eq!(gw.exchange("acme+ci", &token()).await.status, 200);
    let hits = issuer.jwks_hits();

    clock.advance(200);
    assert_eq!(gw.exchange("acme+ci", &token()).await.status, 200);
    assert_eq!(issuer.jwks_hits(), hits, "a fresh set is not refetched");

    clock.advance(101); // 301 s old
    let reply = gw.exchange("acme+ci", &token()).await;
    assert_eq!(
        reply.status, 200,
        "served from the cached set: {}",
        reply.text
    );
    eventually("the background refresh", async || issuer.jwks_hits() > hits).await;
}

/// A failed first fetch is not retried within `jwks_refresh_cooldown_seconds`, and is after
/// it; an unreachable issuer does not count against the client's failed-exchange limit.
#[tokio::test]
async fn a_failed_first_fetch_is_retried_after_the_cooldown_without_counting_against_the_client() {
    let clock = Arc::new(ManualClock::at(SystemClock.unix()));
    let issuer = Issuer::rsa().await;
    issuer.set_mode(Mode::Down);
    let gw = Gateway::trusting(Backend::Sqlite, &issuer, clock.clone(), |c| {
        c.federation.jwks_refresh_cooldown_seconds = 30;
        c.limits.failed_exchanges_per_minute_per_ip = 2;
    })
    .await;
    gw.federated_robot("acme", "ci", entry(&issuer)).await;
    let token = || issuer.token(&issuer.claims("github-actions", clock.unix()));
    for _ in 0..4 {
        let reply = gw.exchange("acme+ci", &token()).await;
        assert_eq!(reply.status, 503, "{}", reply.text);
        assert_eq!(code(&reply), "issuer_unavailable");
    }
    let hits = issuer.discovery_hits();
    assert_eq!(hits, 1, "one fetch, then the cooldown");
    issuer.set_mode(Mode::Normal);
    clock.advance(29);
    assert_eq!(
        code(&gw.exchange("acme+ci", &token()).await),
        "issuer_unavailable"
    );
    assert_eq!(
        issuer.discovery_hits(),
        hits,
        "not retried within the cooldown"
    );
    clock.advance(2);
    let reply = gw.exchange("acme+ci", &token()).await;
    assert_eq!(
        reply.status, 200,
        "retried after the cooldown: {}",
        reply.text
    );

    // The limit itself is live: two refused tokens use it up.
    for _ in 0..2 {
        assert_eq!(gw.exchange("acme+ci", "garbage").await.status, 401);
    }
    assert_eq!(gw.exchange("acme+ci", &token()).await.status, 429);
}

/// Every algorithm on the allow-list verifies, keys without `kid` in the token work when the
/// issuer publishes one key, and a `crit` header is refused.
#[tokio::test]
async fn every_allowed_algorithm_verifies() {
    let keys = vec![
        TestKey::rsa_for("rs384", Algorithm::RS384),
        TestKey::rsa_for("rs512", Algorithm::RS512),
        TestKey::rsa_for("ps256", Algorithm::PS256),
        TestKey::rsa_for("ps384", Algorithm::PS384),
        TestKey::rsa_for("ps512", Algorithm::PS512),
        TestKey::ec("es256"),
        TestKey::ec384("es384"),
        TestKey::ed25519("eddsa"),
    ];
    let issuer = Issuer::start(keys.clone()).await;
    let gw = Gateway::trusting(Backend::Sqlite, &issuer, Arc::new(SystemClock), |_| {}).await;
    gw.federated_robot("acme", "ci", entry(&issuer)).await;
    let claims = || issuer.claims("github-actions", SystemClock.unix());
    for key in &keys {
        let reply = gw.exchange("acme+ci", &key.sign(&claims())).await;
        assert_eq!(reply.status, 200, "{:?}: {}", key.alg, reply.text);
        // The same claims under another key's kid do not verify.
        let other = keys.iter().find(|k| k.kid != key.kid && k.alg == key.alg);
        if let Some(other) = other {
            let forged = key.sign_as(Some(&other.kid), &claims());
            assert_eq!(
                code(&gw.exchange("acme+ci", &forged).await),
                "bad_signature"
            );
        }
    }
    let header = json!({"alg": "RS384", "kid": "rs384", "crit": ["exp"]});
    let reply = gw
        .exchange("acme+ci", &keys[0].sign_with_header(&header, &claims()))
        .await;
    assert_eq!(code(&reply), "malformed_token", "{}", reply.text);
    assert!(reply.text.contains("critical"), "{}", reply.text);
    let header = json!({"alg": "RS384", "kid": "rs384"});
    let reply = gw
        .exchange("acme+ci", &keys[0].sign_with_header(&header, &claims()))
        .await;
    assert_eq!(reply.status, 200, "the same without crit: {}", reply.text);

    // One key published: a token without kid is checked against it.
    let single = Issuer::start(vec![TestKey::ec384("only")]).await;
    let gw = Gateway::trusting(Backend::Sqlite, &single, Arc::new(SystemClock), |_| {}).await;
    gw.federated_robot("acme", "ci", entry(&single)).await;
    let key = single.key(0);
    let reply = gw
        .exchange(
            "acme+ci",
            &key.sign_as(None, &single.claims("github-actions", SystemClock.unix())),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let stranger = TestKey::ec384("only");
    let reply = gw
        .exchange(
            "acme+ci",
            &stranger.sign_as(None, &single.claims("github-actions", SystemClock.unix())),
        )
        .await;
    assert_eq!(code(&reply), "bad_signature", "{}", reply.text);
}

/// Robot and API tokens are stored under a hash keyed by `storage.key`: the stored value is
/// neither the token nor its plain SHA-256, and a database copied next to another
/// `storage.key` does not find the token.
#[tokio::test]
async fn token_lookups_are_keyed_by_the_storage_key() {
    let gw = Gateway::start(Backend::Sqlite).await;
    let admin = gw.admin("alice").await;
    let created = gw
        .call("PUT", "/api/v1/user/robots/ci", Some(&admin), None)
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let token = created.json()["token"].as_str().unwrap().to_string();
    let pool = gw.database().await;
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_lookup FROM robots")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    let plain = fedgate::tokens::sha256_hex(token.as_bytes());
    assert_eq!(stored, [gw.state.at_rest.lookup_hash(&token)]);
    assert_ne!(
        stored[0], plain,
        "a plain SHA-256 would let a copy test guesses"
    );
    assert!(!stored[0].contains(&token));
    let other_key = fedgate::tokens::at_rest::AtRestKeys::from_master(&[7u8; 32]);
    assert_ne!(other_key.lookup_hash(&token), stored[0], "keyed");
}

/// The keyring watcher (every 5 s) picks up `keys rotate` and `keys activate` by itself, and a
/// robot token minted before the rotation is still accepted at `/v2/auth` after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyring_watcher_rotates_without_losing_minted_tokens() {
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting(Backend::Sqlite, &issuer, Arc::new(SystemClock), |_| {}).await;
    gw.federated_robot("acme", "ci", entry(&issuer)).await;
    let minted = || async {
        let reply = gw
            .exchange(
                "acme+ci",
                &issuer.token(&issuer.claims("github-actions", SystemClock.unix())),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json()["token"].as_str().unwrap().to_string()
    };
    let kid = |token: &str| jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let before = minted().await;
    let first_kid = kid(&before);

    keys_verb(&gw, "rotate");
    eventually("the staged key to be published", async || {
        gw.state.keyring().published().len() == 2
    })
    .await;
    keys_verb(&gw, "activate");
    eventually("the new key to sign", async || {
        kid(&minted().await) != first_kid
    })
    .await;
    let service = gw.config.registry_service();
    let reply = crate::harness::send(
        gw.client
            .get(format!(
                "{}/v2/auth?service={service}&scope=repository:acme/app:pull",
                gw.url
            ))
            .basic_auth("acme+ci", Some(&before)),
    )
    .await;
    assert_eq!(
        reply.status, 200,
        "minted before the rotation: {}",
        reply.text
    );
}

/// The admin role may delete through the registry; the write role may not (a stock
/// `docker-registry` with deletes enabled, as `deploy/registry/config.yml` has it, and skopeo).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_role_deletes_through_the_registry_and_write_does_not() {
    let issuer = Issuer::rsa().await;
    let gw = Gateway::trusting(Backend::Sqlite, &issuer, Arc::new(SystemClock), |_| {}).await;
    let admin = crate::registry::acme(&gw, &issuer).await;
    let registry = Registry::start(&gw, &registry_cert(&gw)).await;
    let work = tempfile::tempdir().unwrap();
    let image = oci_image(work.path(), "to be deleted");
    let tag = registry.image("acme/app", "doomed");
    let writer = crate::registry::robot_token(&gw, &admin, "writer").await;
    registry
        .skopeo_copy(&image, &tag, "acme+writer", &writer)
        .unwrap_or_else(|e| panic!("push: {e}\nregistry: {}", registry.log()));

    assert_refused(
        registry.skopeo_delete(&tag, "acme+writer", &writer),
        "the write role deletes",
    );
    let granted = gw
        .call(
            "PUT",
            "/api/v1/repository/acme/app/permissions/user/acme+writer",
            Some(&admin),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(granted.status, 200, "{}", granted.text);
    registry
        .skopeo_delete(&tag, "acme+writer", &writer)
        .unwrap_or_else(|e| panic!("the admin role deletes: {e}\nregistry: {}", registry.log()));
    let pulled = work.path().join("pulled");
    let gone = registry.skopeo_copy(
        &tag,
        &format!("oci:{}:copy", pulled.display()),
        "acme+writer",
        &writer,
    );
    let err = gone.expect_err("the deleted manifest is gone");
    assert!(err.to_lowercase().contains("manifest unknown"), "{err}");
}
