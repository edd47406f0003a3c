//! `fedgate serve` as a separate process: the replicas of SPEC section 9.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_fedgate");

/// A `fedgate` command with exactly `env` as its FEDGATE_* environment.
pub fn fedgate(env: &[(String, String)], args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FEDGATE_") {
            cmd.env_remove(key);
        }
    }
    cmd.args(args).envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// Runs a verb to its end and returns what it printed; kills it after a minute (a `serve`
/// that should have refused to start) and fails the test.
pub fn run_to_exit(env: &[(String, String)], args: &[&str]) -> Output {
    let mut child = fedgate(env, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "fedgate {args:?} did not exit: {:?}",
                child.wait_with_output()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Runs an admin verb and returns its stdout.
pub fn admin(env: &[(String, String)], args: &[&str]) -> String {
    let out = fedgate(env, args).output().unwrap();
    assert!(
        out.status.success(),
        "fedgate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Creates user `alice` and organization `acme` with her as admin, through the CLI as an
/// operator would; returns her API token (scopes `org:admin`, `repo:admin`).
pub fn acme_admin(env: &[(String, String)]) -> String {
    admin(env, &["user", "create", "alice"]);
    admin(env, &["org", "create", "acme", "--admin", "alice"]);
    admin(
        env,
        &[
            "token",
            "create",
            "alice",
            "--scope",
            "org:admin",
            "--scope",
            "repo:admin",
        ],
    )
}

pub struct Replica {
    pub url: String,
    pub metrics_url: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Replica {
    /// Starts `fedgate serve` with `env` plus its own listen addresses, logging to `dir`, and
    /// waits until it answers `/healthz`.
    pub async fn start(env: &[(String, String)], dir: &Path, name: &str) -> Self {
        let (port, metrics_port) = (free_port(), free_port());
        let mut env = env.to_vec();
        env.push(("FEDGATE_SERVER_LISTEN".into(), format!("127.0.0.1:{port}")));
        env.push((
            "FEDGATE_SERVER_METRICS_LISTEN".into(),
            format!("127.0.0.1:{metrics_port}"),
        ));
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = fedgate(&env, &["serve"])
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        let replica = Self {
            url: format!("http://127.0.0.1:{port}"),
            metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
            log,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let health = reqwest::get(format!("{}/healthz", replica.url)).await;
            if health.is_ok_and(|r| r.status() == 200) {
                return replica;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not start: {}",
                replica.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        // Never 0: `kill 0` would signal the whole process group, the test runner included.
        self.child.as_ref().expect("the replica is running").id()
    }

    /// The value of a metric line of `/metrics` that starts with `series` (name and labels).
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let page = reqwest::get(&self.metrics_url)
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        page.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (`TERM`, `INT`...) without waiting.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Waits (up to 60 s) for the process to exit.
    pub async fn wait_exit(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit after the signal");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub async fn terminate(self) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit().await
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
