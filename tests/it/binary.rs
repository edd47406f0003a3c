//! The `fedgate` binary as an operator runs it: admin verbs, exit codes, `serve` on the embedded
//! defaults, SIGTERM, and a restart that loses nothing.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Backend, database_url, free_port, send};
use crate::on_both_databases;

const BIN: &str = env!("CARGO_BIN_EXE_fedgate");

/// A working directory and the environment `fedgate` runs with there.
struct Site {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    url: String,
    metrics_url: String,
}

impl Site {
    async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (port, metrics_port) = (free_port(), free_port());
        let mut env = vec![
            (
                "FEDGATE_SERVER_LISTEN".to_string(),
                format!("127.0.0.1:{port}"),
            ),
            (
                "FEDGATE_SERVER_PUBLIC_URL".to_string(),
                format!("http://127.0.0.1:{port}"),
            ),
            (
                "FEDGATE_SERVER_METRICS_LISTEN".to_string(),
                format!("127.0.0.1:{metrics_port}"),
            ),
            // Nobody routes around these: stop accepting at once on SIGTERM.
            ("FEDGATE_SERVER_DRAIN_SECONDS".to_string(), "0".to_string()),
        ];
        if backend == Backend::Postgres {
            // SQLite stays on the embedded default (./data/fedgate.db in the working directory).
            let url = database_url(backend, dir.path()).await;
            env.push(("FEDGATE_STORAGE_DATABASE_URL".to_string(), url));
        }
        Self {
            dir,
            env,
            url: format!("http://127.0.0.1:{port}"),
            metrics_url: format!("http://127.0.0.1:{metrics_port}"),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args).current_dir(self.dir.path());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("FEDGATE_") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Starts `fedgate serve`, logging to `log`, and waits until it answers `/healthz`.
    async fn serve(&self, log: &Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut child = self
            .command(&["serve"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let health = reqwest::get(format!("{}/healthz", self.url)).await;
            if health.is_ok_and(|r| r.status() == 200) {
                return child;
            }
            assert!(child.try_wait().unwrap().is_none(), "serve exited early");
            assert!(Instant::now() < deadline, "serve did not become healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Sends SIGTERM and expects a clean exit.
async fn terminate(mut child: Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0), "serve exits 0 on SIGTERM");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn admin_verbs_serve_and_restart_lose_nothing(backend: Backend) {
    let site = Site::new(backend).await;
    let log = site.dir.path().join("serve.log");

    let migrated = site.run(&["migrate"]);
    assert_eq!(code(&migrated), 0, "{}", stderr(&migrated));
    assert_eq!(code(&site.run(&["user", "create", "alice"])), 0);
    let again = site.run(&["user", "create", "alice"]);
    assert_eq!(code(&again), 1, "{}", stderr(&again));
    assert!(stderr(&again).contains("already exists"));
    assert_eq!(code(&site.run(&["user", "create", "Not Valid"])), 64);
    assert_eq!(
        code(&site.run(&["org", "create", "acme", "--admin", "alice"])),
        0
    );
    let orphan = site.run(&["org", "create", "globex", "--admin", "nobody"]);
    assert_eq!(code(&orphan), 1);
    assert!(
        stderr(&orphan).contains("no user named nobody"),
        "{}",
        stderr(&orphan)
    );
    let bad_scope = site.run(&["token", "create", "alice", "--scope", "root"]);
    assert_eq!(code(&bad_scope), 64);
    assert!(bad_scope.stdout.is_empty());
    let bad_expiry = site.run(&[
        "token",
        "create",
        "alice",
        "--scope",
        "user:admin",
        "--expires-in",
        "soon",
    ]);
    assert_eq!(code(&bad_expiry), 64);

    let created = site.run(&[
        "token",
        "create",
        "alice",
        "--scope",
        "user:admin",
        "--scope",
        "org:admin",
        "--scope",
        "repo:admin",
        "--expires-in",
        "30d",
    ]);
    assert_eq!(code(&created), 0, "{}", stderr(&created));
    let stdout = String::from_utf8(created.stdout).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "the token alone on stdout: {stdout:?}"
    );
    let api_token = stdout.trim().to_string();
    assert!(api_token.starts_with("fga_"));

    let server = site.serve(&log).await;
    let client = reqwest::Client::new();
    let call = |method: &str, path: &str, body: Option<serde_json::Value>| {
        let mut request = client
            .request(method.parse().unwrap(), format!("{}{path}", site.url))
            .bearer_auth(&api_token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        send(request)
    };
    let robot = call(
        "PUT",
        "/api/v1/organization/acme/robots/ci",
        Some(json!({"description": "CI"})),
    )
    .await;
    assert_eq!(robot.status, 201, "{}", robot.text);
    let robot = robot.json();
    let grant = call(
        "PUT",
        "/api/v1/repository/acme/app/permissions/user/acme+ci",
        Some(json!({"role": "write"})),
    )
    .await;
    assert_eq!(grant.status, 200);
    // Admin verbs work against the same database while serve runs.
    assert_eq!(code(&site.run(&["user", "create", "bob"])), 0);
    assert_eq!(code(&site.run(&["org", "add-member", "acme", "bob"])), 0);

    let metrics = reqwest::get(format!("{}/metrics", site.metrics_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"fedgate_http_requests_total{method="PUT",route="/api/v1/organization/{org}/robots/{short}",status="201"} 1"#),
        "{metrics}"
    );
    let not_public = reqwest::get(format!("{}/metrics", site.url)).await.unwrap();
    assert_eq!(
        not_public.status(),
        404,
        "metrics are not served on the public listener"
    );
    terminate(server).await;

    let server = site.serve(&log).await;
    let after = call("GET", "/api/v1/organization/acme/robots/ci", None).await;
    assert_eq!(after.status, 200, "the API token survives a restart");
    assert_eq!(after.json(), robot, "robot and its token survive a restart");
    let grant = call(
        "GET",
        "/api/v1/repository/acme/app/permissions/user/acme+ci",
        None,
    )
    .await;
    assert_eq!(grant.json()["role"], "write");
    let bob_token = site.run(&["token", "create", "bob", "--scope", "org:admin"]);
    let bob_token = String::from_utf8(bob_token.stdout).unwrap();
    let members_view = send(
        client
            .get(format!("{}/api/v1/organization/acme/robots", site.url))
            .bearer_auth(bob_token.trim()),
    )
    .await;
    assert_eq!(members_view.json()["robots"][0]["name"], "acme+ci");
    terminate(server).await;

    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("fedgate is serving"), "{logs}");
    assert!(
        !logs.contains('\u{1b}'),
        "no ANSI colour codes when stderr is not a terminal (journald, files): {logs:?}"
    );
    assert!(
        logs.contains("robot.create"),
        "audit line for the change: {logs}"
    );
    for secret in ["fgr_", "fga_", api_token.as_str()] {
        assert!(!logs.contains(secret), "a token reached the log: {secret}");
    }
}

#[tokio::test]
async fn invalid_configuration_exits_64_with_one_line() {
    let site = Site::new(Backend::Sqlite).await;
    let config = site.dir.path().join("fedgate.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:1\"\nfrobnicate = true\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    for (args, extra_env, needle) in [
        (
            vec!["--config", config, "config", "check"],
            None,
            "server.frobnicate",
        ),
        (
            vec!["--config", "/nonexistent.toml", "serve"],
            None,
            "cannot read",
        ),
        (
            vec!["config", "check"],
            Some(("FEDGATE_SERVER_LISEN", "x")),
            "FEDGATE_SERVER_LISEN",
        ),
        (
            vec!["config", "check"],
            Some(("FEDGATE_KEYS_SIGNING_ALG", "none")),
            "signing_alg",
        ),
        (vec!["frobnicate"], None, "unrecognized subcommand"),
    ] {
        let mut cmd = site.command(&args);
        if let Some((k, v)) = extra_env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert_eq!(code(&out), 64, "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let check = site
        .command(&["config", "check"])
        .env(
            "FEDGATE_STORAGE_DATABASE_URL",
            "postgres://fed:hunter2@db.internal/fedgate",
        )
        .output()
        .unwrap();
    assert_eq!(code(&check), 0, "{}", stderr(&check));
    let shown = String::from_utf8(check.stdout).unwrap();
    assert!(
        shown.contains("postgres://fed:****@db.internal/fedgate"),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"));
}

on_both_databases!(admin_verbs_serve_and_restart_lose_nothing);

#[test]
fn the_example_configuration_is_valid_and_documents_the_defaults() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/fedgate.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let example = fedgate::config::Config::from_toml(&text).unwrap();
    let defaults = fedgate::config::Config::default();
    assert_eq!(
        toml::to_string(&example).unwrap(),
        toml::to_string(&defaults).unwrap(),
        "config/fedgate.toml shows every default as it is"
    );
}
