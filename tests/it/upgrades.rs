//! The migration policy (docs/operations.md, "Upgrades and rollbacks"): only `fedgate migrate`
//! and `serve` (without `--no-migrate`) change the schema; admin verbs refuse an older schema
//! with the command that fixes it; a binary runs against the next release's (additive) schema.

use std::path::Path;
use std::process::Output;

use fedgate::clock::{Clock, SystemClock};
use serde_json::json;
use sqlx::migrate::Migrator;

use crate::harness::issuer::Issuer;
use crate::harness::replica::{Replica, acme_admin, run_to_exit};
use crate::harness::{Backend, database_url, send};
use crate::on_both_databases;

/// What the next release might add, following the additive rule: a nullable column on a
/// table this release writes, and a table it does not know.
const NEXT_RELEASE: &str = "ALTER TABLE robots ADD COLUMN owner_team TEXT;\n\
    CREATE TABLE robot_labels (robot_id BIGINT NOT NULL, label TEXT NOT NULL, \
    PRIMARY KEY (robot_id, label));\n";

/// This release's schema version: its newest migration.
fn latest() -> i64 {
    fedgate::store::schema::migrator()
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap()
}

/// Versions 1 to `last`, as `_sqlx_migrations` lists them.
fn up_to(last: i64) -> Vec<i64> {
    (1..=last).collect()
}

struct Site {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    database: String,
}

impl Site {
    async fn new(backend: Backend, issuer: &Issuer) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database = database_url(backend, dir.path()).await;
        let env = [
            (
                "FEDGATE_SERVER_PUBLIC_URL",
                "http://fedgate.test".to_string(),
            ),
            ("FEDGATE_STORAGE_DATABASE_URL", database.clone()),
            (
                "FEDGATE_KEYS_DIR",
                dir.path().join("keys").display().to_string(),
            ),
            (
                "FEDGATE_FEDERATION_EXTRA_CA_FILE",
                issuer.ca_file.display().to_string(),
            ),
            ("FEDGATE_FEDERATION_ALLOW_PRIVATE_NETWORKS", "true".into()),
            ("FEDGATE_SERVER_DRAIN_SECONDS", "0".into()),
            ("FEDGATE_SERVER_LISTEN", "127.0.0.1:0".into()),
            ("FEDGATE_SERVER_METRICS_LISTEN", String::new()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Self { dir, env, database }
    }

    fn run(&self, args: &[&str]) -> Output {
        run_to_exit(&self.env, args)
    }

    /// Applies the migrations found in `migrations` (a directory of `NNNN_name.sql`) as
    /// another fedgate release would.
    async fn migrate_with(&self, migrations: &Path) {
        sqlx::any::install_default_drivers();
        let url = if self.database.starts_with("sqlite:") {
            format!("{}?mode=rwc", self.database)
        } else {
            self.database.clone()
        };
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        Migrator::new(migrations)
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        pool.close().await;
    }

    /// This release's migrations up to `last` (inclusive), plus `extra` files.
    fn migrations(&self, name: &str, last: i64, extra: &[(&str, &str)]) -> std::path::PathBuf {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let ours = concat!(env!("CARGO_MANIFEST_DIR"), "/src/store/migrations");
        for entry in std::fs::read_dir(ours).unwrap() {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_str().unwrap().to_string();
            let version: Option<i64> = file.split('_').next().and_then(|v| v.parse().ok());
            if version.is_some_and(|v| v <= last) {
                std::fs::copy(&path, dir.join(&file)).unwrap();
            }
        }
        for (file, sql) in extra {
            std::fs::write(dir.join(file), sql).unwrap();
        }
        dir
    }

    async fn applied_versions(&self) -> Vec<i64> {
        let url = if self.database.starts_with("sqlite:") {
            format!("{}?mode=rwc", self.database)
        } else {
            self.database.clone()
        };
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        let versions =
            sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
        pool.close().await;
        versions
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Admin verbs and `serve --no-migrate` never migrate: on an empty database and on one a
/// migration behind they refuse, name the command that fixes it, and leave the schema as it was.
async fn verbs_never_migrate_unless_asked(backend: Backend) {
    let issuer = Issuer::rsa().await;
    let site = Site::new(backend, &issuer).await;

    for args in [
        &["user", "create", "alice"][..],
        &["serve", "--no-migrate"],
        &["token", "create", "alice", "--scope", "org:admin"],
    ] {
        let out = site.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("no fedgate schema yet: run `fedgate migrate`"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert!(site.applied_versions().await.is_empty(), "nothing migrated");

    // One migration behind (the previous release's schema).
    let (last, previous) = (latest(), latest() - 1);
    let migrations = site.migrations("previous", previous, &[]);
    site.migrate_with(&migrations).await;
    assert_eq!(site.applied_versions().await, up_to(previous));
    for args in [&["user", "create", "alice"][..], &["serve", "--no-migrate"]] {
        let out = site.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!(
                "at version {previous} and this fedgate needs version {last}: run `fedgate migrate`"
            )),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(
        site.applied_versions().await,
        up_to(previous),
        "still not migrated"
    );

    let migrated = site.run(&["migrate"]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    assert!(
        stderr(&migrated).contains(&format!("applied migration(s) {last}")),
        "{}",
        stderr(&migrated)
    );
    assert_eq!(site.applied_versions().await, up_to(last));
    let again = site.run(&["migrate"]);
    assert!(stderr(&again).contains("up to date"), "{}", stderr(&again));
    let created = site.run(&["user", "create", "alice"]);
    assert!(created.status.success(), "{}", stderr(&created));
}

/// `serve` on a new database migrates it before it listens (a first start on the embedded
/// defaults needs no other step), and then admin verbs work.
async fn serve_migrates_a_new_database(backend: Backend) {
    let issuer = Issuer::rsa().await;
    let site = Site::new(backend, &issuer).await;
    assert!(site.applied_versions().await.is_empty());
    let replica = Replica::start(&site.env, site.dir.path(), "first").await;
    let ready = send(reqwest::Client::new().get(format!("{}/readyz", replica.url))).await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(site.applied_versions().await, up_to(latest()));
    let created = site.run(&["user", "create", "alice"]);
    assert!(created.status.success(), "{}", stderr(&created));
}

/// A rollback, or an old replica mid-rollout: the next release migrated the database (an
/// additive migration after this release's); this binary still migrates (a no-op), serves,
/// and writes.
async fn this_binary_runs_on_the_next_releases_schema(backend: Backend) {
    let issuer = Issuer::rsa().await;
    let site = Site::new(backend, &issuer).await;
    let out = site.run(&["migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = acme_admin(&site.env);

    let next_file = format!("{:04}_next_release.sql", latest() + 1);
    let next = site.migrations("next", i64::MAX, &[(&next_file, NEXT_RELEASE)]);
    site.migrate_with(&next).await;
    assert_eq!(site.applied_versions().await, up_to(latest() + 1));

    let migrate = site.run(&["migrate"]);
    assert!(migrate.status.success(), "{}", stderr(&migrate));
    assert!(
        stderr(&migrate).contains(&format!(
            "newer than this fedgate's {}: nothing to apply",
            latest()
        )),
        "{}",
        stderr(&migrate)
    );
    let bob = site.run(&["user", "create", "bob"]);
    assert!(bob.status.success(), "{}", stderr(&bob));

    let replica = Replica::start(&site.env, site.dir.path(), "old").await;
    let client = reqwest::Client::new();
    let created = send(
        client
            .put(format!(
                "{}/api/v1/organization/acme/robots/ci",
                replica.url
            ))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let federated = send(
        client
            .post(format!(
                "{}/api/v1/organization/acme/robots/ci/federation",
                replica.url
            ))
            .bearer_auth(&token)
            .json(
                &json!([{"issuer": issuer.url, "subject": "repo:octo-org/octo-repo:*",
                           "audiences": ["https://github.com/octo-org"]}]),
            ),
    )
    .await;
    assert_eq!(federated.status, 200, "{}", federated.text);
    let jwt = issuer.token(&issuer.claims("github-actions", SystemClock.unix()));
    let exchanged = send(
        client
            .get(format!("{}/oauth2/federation/robot/token", replica.url))
            .basic_auth("acme+ci", Some(&jwt)),
    )
    .await;
    assert_eq!(exchanged.status, 200, "{}", exchanged.text);
    assert!(
        replica.logs().contains("newer than this fedgate knows"),
        "the rollback is visible in the log: {}",
        replica.logs()
    );
    assert_eq!(
        site.applied_versions().await,
        up_to(latest() + 1),
        "untouched"
    );
}

on_both_databases!(
    serve_migrates_a_new_database,
    verbs_never_migrate_unless_asked,
    this_binary_runs_on_the_next_releases_schema
);
