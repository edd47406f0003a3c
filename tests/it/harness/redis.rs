//! A throwaway Redis (`redis-server` from Debian) on a free port, which tests can stop and
//! start again on the same port with the same settings: plain, on a TLS port, or with the
//! persistence settings of a deploy file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;
use super::tls::TestCa;

pub struct RedisServer {
    pub port: u16,
    /// With TLS: the CA that signed the server's certificate.
    pub ca_file: Option<PathBuf>,
    args: Vec<String>,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl RedisServer {
    /// No persistence, plain TCP.
    pub fn start() -> Self {
        Self::start_with(&["--save", "", "--appendonly", "no"])
    }

    /// Plain TCP with `settings` (e.g. the persistence flags of a deploy file); its data
    /// directory is a fresh one that outlives restarts.
    pub fn start_with(settings: &[&str]) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["--port".to_string(), port.to_string()];
        args.extend(settings.iter().map(|s| s.to_string()));
        args.extend(["--dir".to_string(), dir.path().display().to_string()]);
        Self::spawn(port, None, args, Some(dir))
    }

    /// TLS only (`--port 0`), with a certificate for 127.0.0.1 from a CA made here; clients
    /// need no certificate of their own.
    pub fn start_tls() -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) =
            TestCa::new("fedgate test Redis CA").write_into(dir.path(), &["127.0.0.1"]);
        let path = |p: &Path| p.display().to_string();
        let args = [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &path(&cert),
            "--tls-key-file",
            &path(&key),
            "--tls-ca-cert-file",
            &path(&ca),
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .map(String::from)
        .to_vec();
        Self::spawn(port, Some(ca), args, Some(dir))
    }

    fn spawn(
        port: u16,
        ca_file: Option<PathBuf>,
        mut args: Vec<String>,
        dir: Option<tempfile::TempDir>,
    ) -> Self {
        args.extend(["--bind".to_string(), "127.0.0.1".to_string()]);
        let mut server = Self {
            port,
            ca_file,
            args,
            child: None,
            _dir: dir,
        };
        server.start_again();
        server
    }

    pub fn url(&self) -> String {
        let scheme = if self.ca_file.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn start_again(&mut self) {
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL: nothing is flushed on the way out).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server as an operator or orchestrator does (SIGTERM: Redis saves what its
    /// persistence settings say it keeps, then exits).
    pub fn shut_down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
