//! Replay records of one node on SQLite (`src/store/replay_ledger.rs`): decided in memory and
//! journaled beside the database, so they survive a crash of `fedgate serve`, a second `serve`
//! on the same database is refused at start, and records an older release wrote in the
//! `replay_records` table still count after the upgrade.

use fedgate::clock::{Clock, SystemClock};

use crate::harness::free_port;
use crate::harness::issuer::Issuer;
use crate::harness::replica::{Replica, admin, run_to_exit};
use crate::replicas::{acme, deployment, exchange};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_token_stays_used_after_a_crash_and_only_one_node_decides() {
    let issuer = Issuer::rsa().await;
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("fedgate.db");
    let url = format!("sqlite://{}", database.display());
    let env = deployment(&url, None, &issuer, &dir.path().join("keys"));
    admin(&env, &["migrate"]);
    let first = Replica::start(&env, dir.path(), "first").await;
    acme(&env, &first, &issuer).await;

    let token = |jti: &str| {
        let mut claims = issuer.claims("github-actions", SystemClock.unix());
        claims["jti"] = serde_json::json!(jti);
        issuer.token(&claims)
    };
    let used = token("used-before-the-crash");
    assert_eq!(exchange(&first.url, "acme+ci", &used).await.status, 200);

    // A second node on the same file would keep a second set of records: it must not start.
    let mut second_env = env.clone();
    second_env.push((
        "FEDGATE_SERVER_LISTEN".into(),
        format!("127.0.0.1:{}", free_port()),
    ));
    second_env.push((
        "FEDGATE_SERVER_METRICS_LISTEN".into(),
        format!("127.0.0.1:{}", free_port()),
    ));
    let second = run_to_exit(&second_env, &["serve"]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(
        stderr.contains("another fedgate process decides replays for this database"),
        "{stderr}"
    );

    // A record left by a release that decided replays in the `replay_records` table.
    let older = token("used-under-the-previous-release");
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    sqlx::query("INSERT INTO replay_records (issuer, jti, expires_at) VALUES ($1, $2, $3)")
        .bind(&issuer.url)
        .bind("used-under-the-previous-release")
        .bind(SystemClock.unix() + 3600)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    // kill -9: nothing is flushed or synced on the way out.
    drop(first);
    let again = Replica::start(&env, dir.path(), "again").await;
    for (what, jwt) in [
        ("before the crash", &used),
        ("by the older release", &older),
    ] {
        let replayed = exchange(&again.url, "acme+ci", jwt).await;
        assert_eq!(
            replayed.status, 401,
            "a token used {what}: {}",
            replayed.text
        );
        assert_eq!(replayed.json()["error_code"], "replayed");
    }
    let fresh = token("fresh-after-the-restart");
    assert_eq!(exchange(&again.url, "acme+ci", &fresh).await.status, 200);
    assert_eq!(exchange(&again.url, "acme+ci", &fresh).await.status, 401);
}
