//! A throwaway PostgreSQL 15 server for the whole test binary, started on first use.
//!
//! PostgreSQL refuses to run as root, so as root (CI) it runs through `runuser -u postgres`.
//! A watchdog shell stops it and removes its directory once this test process has exited.

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{free_port, is_root};

const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct PgServer {
    port: u16,
    /// The watchdog shell; it outlives this process on purpose, to clean up after it.
    _watchdog: std::process::Child,
}

static SERVER: OnceLock<PgServer> = OnceLock::new();

/// The shared server (started once, blocking the first caller for a second or two).
pub fn server() -> &'static PgServer {
    SERVER.get_or_init(PgServer::start)
}

impl PgServer {
    fn start() -> Self {
        let bin = std::env::var("PG_BIN").unwrap_or_else(|_| DEFAULT_BIN.to_string());
        assert!(
            std::path::Path::new(&format!("{bin}/postgres")).exists(),
            "PostgreSQL binaries not found in {bin} (set PG_BIN); the PostgreSQL tests need a real server"
        );
        let dir = tempfile::Builder::new()
            .prefix("fedgate-pg-")
            .tempdir()
            .unwrap()
            .keep();
        let root = is_root();
        if root {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir));
        }
        let as_pg = |program: &str| {
            let mut cmd = if root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--", program]);
                c
            } else {
                Command::new(program)
            };
            cmd.current_dir(&dir);
            cmd
        };
        let data = dir.join("data");
        run(as_pg(&format!("{bin}/initdb"))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data));
        let port = free_port();
        let script = format!(
            r#"{bin}/postgres -D "{data}" -p {port} -k "{dir}" -c listen_addresses=127.0.0.1 \
                -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 &
               pg=$!
               while [ -d /proc/{parent} ] && kill -0 $pg 2>/dev/null; do sleep 0.5; done
               kill -INT $pg 2>/dev/null; wait $pg; rm -rf "{dir}""#,
            data = data.display(),
            dir = dir.display(),
            parent = std::process::id(),
        );
        let watchdog = as_pg("sh")
            .args(["-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "postgres did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            port,
            _watchdog: watchdog,
        }
    }

    /// A fresh, empty database and its URL.
    pub async fn fresh_database(&self) -> String {
        use sqlx::Connection;
        let name = format!("t{}", super::random_suffix());
        let admin_url = format!("postgres://postgres@127.0.0.1:{}/postgres", self.port);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut conn = loop {
            match sqlx::PgConnection::connect(&admin_url).await {
                Ok(conn) => break conn,
                // Accepting TCP before it accepts logins ("the database system is starting up").
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot reach test postgres: {e}"),
            }
        };
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
