//! Several replicas on a shared PostgreSQL and Redis (SPEC 9), faults, and draining on SIGTERM.

use std::time::{Duration, Instant};

use fedgate::clock::{Clock, SystemClock};
use serde_json::{Value, json};

use crate::harness::issuer::{Issuer, Mode};
use crate::harness::postgres::{self, PgServer};
use crate::harness::redis::RedisServer;
use crate::harness::replica::{Replica, acme_admin, admin};
use crate::harness::{Reply, send};

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

async fn exchange(url: &str, robot: &str, jwt: &str) -> Reply {
    send(
        reqwest::Client::new()
            .get(format!("{url}/oauth2/federation/robot/token"))
            .basic_auth(robot, Some(jwt)),
    )
    .await
}

fn github(issuer: &Issuer) -> String {
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
    admin(&env, &["migrate"]);
    let a = Replica::start(&env, dir.path(), "a").await;
    let b = Replica::start(&env, dir.path(), "b").await;
    let token = acme(&env, &a, &issuer).await;

    // A token used at A is a replay at B.
    let jwt = github(&issuer);
    assert_eq!(exchange(&a.url, "acme+ci", &jwt).await.status, 200);
    let replay = exchange(&b.url, "acme+ci", &jwt).await;
    assert_eq!(
        (replay.status, replay.json()["error_code"].clone()),
        (401, json!("replayed"))
    );

    // B has the robot cached; a federation change through A is enforced by B within a second.
    assert_eq!(
        exchange(&b.url, "acme+ci", &github(&issuer)).await.status,
        200
    );
    let changed = call(
        &a.url,
        "POST",
        "/api/v1/organization/acme/robots/ci/federation",
        &token,
        Some(entries(&issuer, "repo:someone/else:*")),
    )
    .await;
    assert_eq!(changed.status, 200);
    let took = eventually(Duration::from_secs(1), async || {
        exchange(&b.url, "acme+ci", &github(&issuer)).await.json()["error_code"]
            == "subject_mismatch"
    })
    .await;
    assert!(
        took.is_some(),
        "B still honours the old federation list after 1 s"
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
    let took = eventually(Duration::from_secs(1), async || {
        exchange(&b.url, "acme+ci", &github(&issuer)).await.json()["error_code"] == "unknown_robot"
    })
    .await;
    assert!(took.is_some(), "B still knows the deleted robot after 1 s");

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_is_counted_across_replicas() {
    let issuer = Issuer::rsa().await;
    let redis = RedisServer::start();
    let database = postgres::server().fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = deployment(
        &database,
        Some(&redis.url()),
        &issuer,
        &dir.path().join("keys"),
    );
    env.push((
        "FEDGATE_LIMITS_EXCHANGES_PER_MINUTE_PER_ROBOT".into(),
        "4".into(),
    ));
    admin(&env, &["migrate"]);
    let a = Replica::start(&env, dir.path(), "a").await;
    let b = Replica::start(&env, dir.path(), "b").await;
    acme(&env, &a, &issuer).await;
    let window = || SystemClock.unix() / 60;
    let first_window = window();
    let mut statuses = Vec::new();
    for replica in [&a, &b, &a, &b, &a, &b] {
        statuses.push(
            exchange(&replica.url, "acme+ci", &github(&issuer))
                .await
                .status,
        );
    }
    if window() == first_window {
        assert_eq!(
            statuses,
            [200, 200, 200, 200, 429, 429],
            "4 a minute, counted at both replicas"
        );
    } else {
        // The minute turned during the run: each window allows 4.
        assert!(
            statuses.iter().filter(|s| **s == 200).count() <= 8,
            "{statuses:?}"
        );
    }
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
    let ready = send(reqwest::Client::new().get(format!("{}/readyz", a.url))).await;
    assert_eq!(
        (ready.status, ready.json()["redis"].clone()),
        (503, json!("unreachable"))
    );

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
    admin(&env, &["migrate"]);
    let a = Replica::start(&env, dir.path(), "a").await;
    acme(&env, &a, &issuer).await;

    // An exchange that waits 1.5 s on the stalled issuer is in flight when SIGTERM arrives.
    let url = a.url.clone();
    let jwt = github(&issuer);
    let in_flight = tokio::spawn(async move { exchange(&url, "acme+ci", &jwt).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
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
        started.elapsed() >= Duration::from_millis(900),
        "it waited for the request"
    );
    assert!(
        reqwest::get(format!("{url}/healthz")).await.is_err(),
        "no longer accepting"
    );
}
