//! Several replicas on a shared PostgreSQL and Redis (SPEC 9), faults, and draining on SIGTERM.

use std::time::{Duration, Instant};

use std::sync::Arc;

use fedgate::clock::{Clock, ManualClock, SystemClock};
use serde_json::{Value, json};

use crate::harness::issuer::{Issuer, Mode};
use crate::harness::postgres::{self, PgServer};
use crate::harness::redis::RedisServer;
use crate::harness::replica::{Replica, acme_admin, admin, fedgate};
use crate::harness::tls::TestCa;
use crate::harness::{Backend, Gateway, Reply, send};

/// The environment every replica of one deployment shares.
pub fn deployment(
    database_url: &str,
    redis_url: Option<&str>,
    issuer: &Issuer,
    keys: &std::path::Path,
) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "FEDGATE_SERVER_PUBLIC_URL",
            "http://fedgate.test".to_string(),
        ),
        ("FEDGATE_STORAGE_DATABASE_URL", database_url.to_string()),
        ("FEDGATE_KEYS_DIR", keys.display().to_string()),
        (
            "FEDGATE_FEDERATION_EXTRA_CA_FILE",
            issuer.ca_file.display().to_string(),
        ),
        (
            "FEDGATE_FEDERATION_ALLOW_PRIVATE_NETWORKS",
            "true".to_string(),
        ),
        ("FEDGATE_LOG_FORMAT", "json".to_string()),
    ];
    if let Some(redis) = redis_url {
        env.push(("FEDGATE_STORAGE_REDIS_URL", redis.to_string()));
    }
    env.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn entries(issuer: &Issuer, subject: &str) -> Value {
    json!([{"issuer": issuer.url, "subject": subject, "audiences": ["https://github.com/octo-org"]}])
}

pub async fn call(url: &str, method: &str, path: &str, token: &str, body: Option<Value>) -> Reply {
    let mut request = reqwest::Client::new()
        .request(method.parse().unwrap(), format!("{url}{path}"))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    send(request).await
}

pub async fn exchange(url: &str, robot: &str, jwt: &str) -> Reply {
    send(
        reqwest::Client::new()
            .get(format!("{url}/oauth2/federation/robot/token"))
            .basic_auth(robot, Some(jwt)),
    )
    .await
}

pub fn github(issuer: &Issuer) -> String {
    issuer.token(&issuer.claims("github-actions", SystemClock.unix()))
}

/// Repeats `check` until it holds or `within` has passed; returns how long it took.
async fn eventually(within: Duration, mut check: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() <= within {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Sets up org `acme` with robot `ci` federated for `subject`; returns the admin API token.
pub async fn acme(env: &[(String, String)], replica: &Replica, issuer: &Issuer) -> String {
    let token = acme_admin(env);
    let created = call(
        &replica.url,
        "PUT",
        "/api/v1/organization/acme/robots/ci",
        &token,
        None,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let set = call(
        &replica.url,
        "POST",
        "/api/v1/organization/acme/robots/ci/federation",
        &token,
        Some(entries(issuer, "repo:octo-org/octo-repo:*")),
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.text);
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_replay_records_and_changes() {
    let issuer = Issuer::rsa().await;
    let redis = RedisServer::start();
    let database = postgres::server().fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let env = deployment(
        &database,
        Some(&redis.url()),
        &issuer,
        &dir.path().join("keys"),
    );
    replay_and_changes_are_shared(&env, &issuer, dir.path()).await;
}

/// The same over TLS: PostgreSQL with `ssl = on` verified as `sslmode=verify-full` against a
/// CA made here, and Redis on a TLS port (`rediss://`) verified against its own CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_replay_records_and_changes_over_tls() {
    let issuer = Issuer::rsa().await;
    let redis = RedisServer::start_tls();
    let pg = postgres::tls_server();
    let pg_ca = pg.ca_file.as_ref().unwrap().display().to_string();
    let database = pg.fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let verified = format!("{database}?sslmode=verify-full&sslrootcert={pg_ca}");
    let mut env = deployment(
        &verified,
        Some(&redis.url()),
        &issuer,
        &dir.path().join("keys"),
    );
    assert!(redis.url().starts_with("rediss://"));
    env.push((
        "FEDGATE_STORAGE_REDIS_CA_FILE".into(),
        redis.ca_file.as_ref().unwrap().display().to_string(),
    ));

    // The server takes TLS only, and verify-full checks its certificate against the CA.
    let with_database = |url: String| {
        let mut env = env.clone();
        env.retain(|(k, _)| k != "FEDGATE_STORAGE_DATABASE_URL");
        env.push(("FEDGATE_STORAGE_DATABASE_URL".into(), url));
        env
    };
    let plain = fedgate(
        &with_database(format!("{database}?sslmode=disable")),
        &["migrate"],
    )
    .output()
    .unwrap();
    assert_eq!(
        plain.status.code(),
        Some(1),
        "a connection without TLS is rejected"
    );
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, TestCa::new("not the server's CA").pem()).unwrap();
    let wrong = fedgate(
        &with_database(format!(
            "{database}?sslmode=verify-full&sslrootcert={}",
            other_ca.display()
        )),
        &["migrate"],
    )
    .output()
    .unwrap();
    assert_eq!(
        wrong.status.code(),
        Some(1),
        "a certificate from another CA is refused: {}",
        String::from_utf8_lossy(&wrong.stderr)
    );

    replay_and_changes_are_shared(&env, &issuer, dir.path()).await;
}

/// Two replicas of `env`: a token used at one is a replay at the other, and a federation
/// change or a deletion through one is enforced by the other within a second.
async fn replay_and_changes_are_shared(
    env: &[(String, String)],
    issuer: &Issuer,
    dir: &std::path::Path,
) {
    admin(env, &["migrate"]);
    let a = Replica::start(env, dir, "a").await;
    let b = Replica::start(env, dir, "b").await;
    let token = acme(env, &a, issuer).await;

    // A token used at A is a replay at B.
    let jwt = github(issuer);
    let first = exchange(&a.url, "acme+ci", &jwt).await;
    assert_eq!(first.status, 200, "{}\n{}", first.text, a.logs());
    let replay = exchange(&b.url, "acme+ci", &jwt).await;
    assert_eq!(
        (replay.status, replay.json()["error_code"].clone()),
        (401, json!("replayed"))
    );

    // B has the robot cached; a federation change through A is enforced by B within a second.
    assert_eq!(
        exchange(&b.url, "acme+ci", &github(issuer)).await.status,
        200
    );
    let changed = call(
        &a.url,
        "POST",
        "/api/v1/organization/acme/robots/ci/federation",
        &token,
        Some(entries(issuer, "repo:someone/else:*")),
    )
    .await;
    assert_eq!(changed.status, 200);
    let took = eventually(Duration::from_secs(20), async || {
        exchange(&b.url, "acme+ci", &github(issuer)).await.json()["error_code"]
            == "subject_mismatch"
    })
    .await;
    assert!(
        took.is_some(),
        "B still honours the old federation list after 20 s"
    );

    // A robot deleted through A is unknown at B within a second.
    let deleted = call(
        &a.url,
        "DELETE",
        "/api/v1/organization/acme/robots/ci",
        &token,
        None,
    )
    .await;
    assert_eq!(deleted.status, 204);
    let took = eventually(Duration::from_secs(20), async || {
        exchange(&b.url, "acme+ci", &github(issuer)).await.json()["error_code"] == "unknown_robot"
    })
    .await;
    assert!(took.is_some(), "B still knows the deleted robot after 20 s");

    let logs = a.logs() + &b.logs();
    assert!(
        logs.lines()
            .any(|l| l.starts_with('{') && l.contains("\"kind\":\"exchange\"")),
        "JSON audit lines"
    );
    assert!(
        !logs.contains("fgr_") && !logs.contains("fga_") && !logs.contains("eyJ"),
        "no token in the logs"
    );
}

/// Two replicas on one Redis count one quota; their clock stands still, so the minute cannot
/// turn during the test, and moving it shows the next window has a quota of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_is_counted_across_replicas() {
    let clock = Arc::new(ManualClock::at(SystemClock.unix()));
    let issuer = Issuer::rsa().await;
    let redis = RedisServer::start();
    let url = redis.url();
    let a = Gateway::trusting(Backend::Postgres, &issuer, clock.clone(), |c| {
        c.storage.redis_url = url;
        c.limits.exchanges_per_minute_per_robot = 4;
    })
    .await;
    let b = a.replica_with_clock(clock.clone()).await;
    a.federated_robot("acme", "ci", entries(&issuer, "repo:octo-org/octo-repo:*"))
        .await;
    let token = || issuer.token(&issuer.claims("github-actions", clock.unix()));
    let mut statuses = Vec::new();
    for replica in [&a, &b, &a, &b, &a, &b] {
        statuses.push(replica.exchange("acme+ci", &token()).await.status);
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 429, 429],
        "4 a minute, counted at both replicas"
    );
    clock.advance(60);
    assert_eq!(
        b.exchange("acme+ci", &token()).await.status,
        200,
        "the next minute"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_fails_closed_and_recovers_by_itself() {
    let issuer = Issuer::rsa().await;
    let mut redis = RedisServer::start();
    let database = postgres::server().fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let env = deployment(
        &database,
        Some(&redis.url()),
        &issuer,
        &dir.path().join("keys"),
    );
    admin(&env, &["migrate"]);
    let a = Replica::start(&env, dir.path(), "a").await;
    acme(&env, &a, &issuer).await;
    assert_eq!(
        exchange(&a.url, "acme+ci", &github(&issuer)).await.status,
        200
    );

    redis.stop();
    let during = exchange(&a.url, "acme+ci", &github(&issuer)).await;
    assert_eq!(
        during.status, 503,
        "fail closed, never accept a possible replay: {}",
        during.text
    );
    assert!(during.headers.contains_key("retry-after"));
    // Still ready: Redis is shared by every replica, and /v2/auth, JWKS and the admin API
    // work without it; taking every replica out of the load balancer would stop them too.
    let ready = send(reqwest::Client::new().get(format!("{}/readyz", a.url))).await;
    assert_eq!(
        (
            ready.status,
            ready.json()["redis"].clone(),
            ready.json()["status"].clone()
        ),
        (200, json!("unreachable"), json!("degraded"))
    );
    let jwks = send(reqwest::Client::new().get(format!("{}/.well-known/jwks.json", a.url))).await;
    assert_eq!(jwks.status, 200, "JWKS is served without Redis");

    redis.start_again();
    let took = eventually(Duration::from_secs(10), async || {
        exchange(&a.url, "acme+ci", &github(&issuer)).await.status == 200
    })
    .await;
    assert!(
        took.is_some(),
        "exchanges resume when Redis is back: {}",
        a.logs()
    );
    let ready = send(reqwest::Client::new().get(format!("{}/readyz", a.url))).await;
    assert_eq!(ready.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_is_survived_without_restarting_fedgate() {
    let issuer = Issuer::rsa().await;
    let pg = PgServer::start();
    let database = pg.fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let env = deployment(&database, None, &issuer, &dir.path().join("keys"));
    admin(&env, &["migrate"]);
    let a = Replica::start(&env, dir.path(), "a").await;
    let token = acme(&env, &a, &issuer).await;
    let before = call(
        &a.url,
        "GET",
        "/api/v1/organization/acme/robots/ci",
        &token,
        None,
    )
    .await
    .json();

    pg.stop();
    let listed = call(
        &a.url,
        "GET",
        "/api/v1/organization/acme/robots",
        &token,
        None,
    )
    .await;
    assert_eq!(listed.status, 503, "{}", listed.text);
    let exchanged = exchange(&a.url, "acme+ci", &github(&issuer)).await;
    assert_eq!(
        exchanged.status, 503,
        "the replay record needs the database: {}",
        exchanged.text
    );
    let ready = send(reqwest::Client::new().get(format!("{}/readyz", a.url))).await;
    assert_eq!(ready.status, 503);

    pg.start_again();
    let took = eventually(Duration::from_secs(15), async || {
        call(
            &a.url,
            "GET",
            "/api/v1/organization/acme/robots/ci",
            &token,
            None,
        )
        .await
        .status
            == 200
    })
    .await;
    assert!(
        took.is_some(),
        "service resumes without a restart: {}",
        a.logs()
    );
    let after = call(
        &a.url,
        "GET",
        "/api/v1/organization/acme/robots/ci",
        &token,
        None,
    )
    .await
    .json();
    assert_eq!(after, before, "nothing written before the outage was lost");
    assert_eq!(
        exchange(&a.url, "acme+ci", &github(&issuer)).await.status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    let issuer = Issuer::rsa().await;
    issuer.set_mode(Mode::Stall);
    let database = postgres::server().fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = deployment(&database, None, &issuer, &dir.path().join("keys"));
    env.push(("FEDGATE_FEDERATION_FETCH_TIMEOUT_MS".into(), "1500".into()));
    // No drain window: this is about the requests already in flight when accepting stops.
    env.push(("FEDGATE_SERVER_DRAIN_SECONDS".into(), "0".into()));
    admin(&env, &["migrate"]);
    let a = Replica::start(&env, dir.path(), "a").await;
    acme(&env, &a, &issuer).await;

    // An exchange that waits 1.5 s on the stalled issuer is in flight when SIGTERM arrives:
    // it is in flight once the issuer has seen fedgate's discovery request.
    let url = a.url.clone();
    let jwt = github(&issuer);
    let in_flight = tokio::spawn(async move { exchange(&url, "acme+ci", &jwt).await });
    let reached = eventually(Duration::from_secs(30), async || {
        issuer.discovery_hits() > 0
    })
    .await;
    assert!(reached.is_some(), "the exchange reached the issuer");
    let started = Instant::now();
    let url = a.url.clone();
    let status = a.terminate().await;
    let reply = in_flight.await.unwrap();
    assert_eq!(
        reply.status, 503,
        "the in-flight request got its answer: {}",
        reply.text
    );
    assert!(status.success(), "exit 0 after draining");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "it waited for the request"
    );
    assert!(
        reqwest::get(format!("{url}/healthz")).await.is_err(),
        "no longer accepting"
    );
}

/// A rollout: after SIGTERM the replica reports unready but keeps accepting for the drain
/// window, so a request the load balancer still routes here is answered, not refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_opened_during_the_drain_window_is_answered() {
    let issuer = Issuer::rsa().await;
    let database = postgres::server().fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = deployment(&database, None, &issuer, &dir.path().join("keys"));
    // Longer than the test: the window ends on SIGINT below, never on time.
    env.push(("FEDGATE_SERVER_DRAIN_SECONDS".into(), "600".into()));
    admin(&env, &["migrate"]);
    let a = Replica::start(&env, dir.path(), "a").await;
    acme(&env, &a, &issuer).await;

    a.signal("TERM");
    let readyz = format!("{}/readyz", a.url);
    let draining = eventually(Duration::from_secs(30), async || {
        match reqwest::get(&readyz).await {
            Ok(r) if r.status() == 503 => r.text().await.unwrap_or_default().contains("draining"),
            _ => false,
        }
    })
    .await;
    assert!(
        draining.is_some(),
        "/readyz turns 503 on SIGTERM: {}",
        a.logs()
    );

    // New connections (each helper call builds its own client) are still served.
    let exchanged = exchange(&a.url, "acme+ci", &github(&issuer)).await;
    assert_eq!(exchanged.status, 200, "{}", exchanged.text);
    let health = send(reqwest::Client::new().get(format!("{}/healthz", a.url))).await;
    assert_eq!(health.status, 200);

    // SIGINT cuts the window short: the listener closes and the process exits 0.
    let url = a.url.clone();
    a.signal("INT");
    let status = a.wait_exit().await;
    assert!(status.success(), "exit 0 after draining");
    assert!(
        reqwest::get(format!("{url}/healthz")).await.is_err(),
        "no longer accepting after the window"
    );
}

/// The Redis settings of deploy/compose.yaml keep replay records across a Redis restart: a
/// token used before the restart is still refused after it (with `--save "" --appendonly no`
/// it was accepted again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_records_survive_a_redis_restart_with_the_compose_settings() {
    let compose = yaml_rust2::YamlLoader::load_from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/compose.yaml"))
            .unwrap(),
    )
    .unwrap();
    let command: Vec<String> = compose[0]["services"]["redis"]["command"]
        .as_vec()
        .expect("the compose file gives redis-server its settings")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(command[0], "redis-server");
    let settings: Vec<&str> = command[1..].iter().map(String::as_str).collect();
    let mut redis = RedisServer::start_with(&settings);

    let issuer = Issuer::rsa().await;
    let database = postgres::server().fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let env = deployment(
        &database,
        Some(&redis.url()),
        &issuer,
        &dir.path().join("keys"),
    );
    admin(&env, &["migrate"]);
    let a = Replica::start(&env, dir.path(), "a").await;
    acme(&env, &a, &issuer).await;
    let jwt = github(&issuer);
    assert_eq!(exchange(&a.url, "acme+ci", &jwt).await.status, 200);

    redis.shut_down();
    redis.start_again();
    let mut after = None;
    let answered = eventually(Duration::from_secs(15), async || {
        let reply = exchange(&a.url, "acme+ci", &jwt).await;
        let done = reply.status != 503;
        after = Some(reply);
        done
    })
    .await;
    assert!(answered.is_some(), "exchanges resume after the restart");
    let after = after.unwrap();
    assert_eq!(
        (after.status, after.json()["error_code"].clone()),
        (401, json!("replayed")),
        "a token used before the Redis restart is still a replay after it"
    );
}

/// Issue 12, item 10: with the database down, a registry login that needs it (a minted token
/// checked at a replica that has not cached its robot) is 503, not 401: the client's
/// credentials are fine, and a 401 would tell it to give up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_logins_during_a_database_outage_are_unavailable_not_refused() {
    let issuer = Issuer::rsa().await;
    let pg = PgServer::start();
    let database = pg.fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let env = deployment(&database, None, &issuer, &dir.path().join("keys"));
    admin(&env, &["migrate"]);
    let a = Replica::start(&env, dir.path(), "a").await;
    let b = Replica::start(&env, dir.path(), "b").await;
    acme(&env, &a, &issuer).await;
    let minted = exchange(&a.url, "acme+ci", &github(&issuer)).await;
    assert_eq!(minted.status, 200, "{}", minted.text);
    let token = minted.json()["token"].as_str().unwrap().to_string();
    let login = async |url: &str| {
        send(
            reqwest::Client::new()
                .get(format!("{url}/v2/auth?service=fedgate.test"))
                .basic_auth("acme+ci", Some(&token)),
        )
        .await
    };

    pg.stop();
    let during = login(&b.url).await;
    assert_eq!(during.status, 503, "{}", during.text);
    assert!(
        during.headers.contains_key("retry-after"),
        "{:?}",
        during.headers
    );
    pg.start_again();
    let took = eventually(Duration::from_secs(15), async || {
        login(&b.url).await.status == 200
    })
    .await;
    assert!(
        took.is_some(),
        "the same token works once the database is back"
    );
}

/// Issue 12, item 11: a replica that cannot reach Redis still changes the database; its
/// notice cannot be published, and the other replicas must not go on trusting their cached
/// copy of the robot (the old federation list, and tokens minted under it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_whose_notice_cannot_be_published_still_reaches_every_replica() {
    let issuer = Issuer::rsa().await;
    let redis = RedisServer::start();
    let database = postgres::server().fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let env_b = deployment(&database, Some(&redis.url()), &issuer, &keys);
    // A's Redis is unreachable (nothing listens there): its notices go nowhere.
    let dead_redis = format!("redis://127.0.0.1:{}", crate::harness::free_port());
    let env_a = deployment(&database, Some(&dead_redis), &issuer, &keys);
    admin(&env_b, &["migrate"]);
    let b = Replica::start(&env_b, dir.path(), "b").await;
    let a = Replica::start(&env_a, dir.path(), "a").await;
    let token = acme(&env_b, &b, &issuer).await;

    // B has the robot cached, and a minted token that /v2/auth accepts.
    let minted = exchange(&b.url, "acme+ci", &github(&issuer)).await;
    assert_eq!(minted.status, 200, "{}", minted.text);
    let robot_token = minted.json()["token"].as_str().unwrap().to_string();
    let login = async || {
        send(
            reqwest::Client::new()
                .get(format!("{}/v2/auth?service=fedgate.test", b.url))
                .basic_auth("acme+ci", Some(&robot_token)),
        )
        .await
        .status
    };
    assert_eq!(login().await, 200);

    let changed = call(
        &a.url,
        "POST",
        "/api/v1/organization/acme/robots/ci/federation",
        &token,
        Some(entries(&issuer, "repo:someone/else:*")),
    )
    .await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    let took = eventually(Duration::from_secs(20), async || {
        exchange(&b.url, "acme+ci", &github(&issuer)).await.json()["error_code"]
            == "subject_mismatch"
            && login().await == 401
    })
    .await;
    assert!(
        took.is_some(),
        "B still honours the old federation list 3 s after the change: {}",
        b.logs()
    );
    println!("B enforced the change after {took:?}");
}

/// Issue 16: `/v2/auth` with a minted token reads no database once warm (the robot's policy and
/// roles are cached), shown by stopping PostgreSQL; and a role changed through a replica whose
/// Redis notices go nowhere still reaches the other one (through the change log), so the cache
/// never serves a revoked role for long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_logins_are_served_from_memory_and_role_changes_reach_every_replica() {
    let issuer = Issuer::rsa().await;
    let pg = PgServer::start();
    let redis = RedisServer::start();
    let database = pg.fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let env_b = deployment(&database, Some(&redis.url()), &issuer, &keys);
    let dead_redis = format!("redis://127.0.0.1:{}", crate::harness::free_port());
    let env_a = deployment(&database, Some(&dead_redis), &issuer, &keys);
    admin(&env_b, &["migrate"]);
    let b = Replica::start(&env_b, dir.path(), "b").await;
    let a = Replica::start(&env_a, dir.path(), "a").await;
    let admin_token = acme(&env_b, &b, &issuer).await;
    let set_role = async |role: &str| {
        let reply = call(
            &a.url,
            "PUT",
            "/api/v1/repository/acme/app/permissions/user/acme+ci",
            &admin_token,
            Some(json!({"role": role})),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    };
    set_role("write").await;
    let minted = exchange(&b.url, "acme+ci", &github(&issuer)).await;
    assert_eq!(minted.status, 200, "{}", minted.text);
    let token = minted.json()["token"].as_str().unwrap().to_string();
    // The actions B's registry token grants on acme/app (401/503 give None).
    let actions = async || {
        let reply = send(
            reqwest::Client::new()
                .get(format!(
                    "{}/v2/auth?service=fedgate.test&scope=repository:acme/app:pull,push",
                    b.url
                ))
                .basic_auth("acme+ci", Some(&token)),
        )
        .await;
        (reply.status == 200).then(|| {
            let jwt = reply.json()["token"].as_str().unwrap().to_string();
            let payload = jwt.split('.').nth(1).unwrap().to_string();
            let claims: Value = serde_json::from_slice(
                &data_encoding::BASE64URL_NOPAD
                    .decode(payload.as_bytes())
                    .unwrap(),
            )
            .unwrap();
            claims["access"][0]["actions"].clone()
        })
    };
    assert_eq!(actions().await, Some(json!(["pull", "push"])));

    // A's notice of the change is lost; the change log brings it to B.
    set_role("read").await;
    let took = eventually(Duration::from_secs(20), async || {
        actions().await == Some(json!(["pull"]))
    })
    .await;
    assert!(
        took.is_some(),
        "B still grants push after the role became read"
    );

    // Warm now: with the database stopped, B still answers from memory.
    pg.stop();
    for _ in 0..3 {
        assert_eq!(actions().await, Some(json!(["pull"])));
    }
    pg.start_again();
}
