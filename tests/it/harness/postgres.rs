//! Throwaway PostgreSQL 15 servers: one shared by the whole test binary (started on first use),
//! and dedicated ones for tests that stop and restart the database.
//!
//! PostgreSQL refuses to run as root, so as root (CI) every command runs through
//! `runuser -u postgres`. A watchdog shell stops the server and removes its directory once this
//! test process has exited.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{free_port, is_root};

const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct PgServer {
    port: u16,
    bin: String,
    dir: PathBuf,
    /// With TLS: the CA that signed the server's certificate (for `sslrootcert=`).
    pub ca_file: Option<PathBuf>,
    /// The watchdog shell; it outlives this process on purpose, to clean up after it.
    _watchdog: Option<std::process::Child>,
}

static SERVER: OnceLock<PgServer> = OnceLock::new();
static TLS_SERVER: OnceLock<PgServer> = OnceLock::new();

/// The shared server (started once, blocking the first caller for a second or two).
pub fn server() -> &'static PgServer {
    SERVER.get_or_init(PgServer::start)
}

/// A shared server with `ssl = on` that refuses connections without TLS.
pub fn tls_server() -> &'static PgServer {
    TLS_SERVER.get_or_init(PgServer::start_tls)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PgServer {
    /// Starts a new server of its own on a free port.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// A server with `ssl = on` and a certificate for 127.0.0.1 from a CA made here, whose
    /// `pg_hba.conf` rejects every TCP connection without TLS.
    pub fn start_tls() -> Self {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Self {
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
        let ca_file = tls.then(|| {
            let ca = super::tls::TestCa::new("fedgate test PostgreSQL CA");
            // ca.pem, cert.pem, key.pem (0600) in the server's directory.
            ca.write_into(&dir, &["127.0.0.1", "localhost"]).0
        });
        if is_root() {
            // Owned by the server's user (PostgreSQL reads its key only when it owns it).
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir));
        }
        let mut server = Self {
            port: free_port(),
            bin,
            dir,
            ca_file,
            _watchdog: None,
        };
        run(server
            .as_pg(&format!("{}/initdb", server.bin))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(server.dir.join("data")));
        if tls {
            let hba = server.dir.join("data/pg_hba.conf");
            let rules = std::fs::read_to_string(&hba).unwrap();
            std::fs::write(&hba, format!("hostnossl all all all reject\n{rules}")).unwrap();
        }
        server.start_again();
        let script = format!(
            "while [ -d /proc/{parent} ]; do sleep 0.5; done; {bin}/pg_ctl -D \"{data}\" -m immediate stop; rm -rf \"{dir}\"",
            parent = std::process::id(),
            bin = server.bin,
            data = server.dir.join("data").display(),
            dir = server.dir.display(),
        );
        server._watchdog = Some(
            server
                .as_pg("sh")
                .args(["-c", &script])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the watchdog"),
        );
        server
    }

    fn as_pg(&self, program: &str) -> Command {
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", program]);
            c
        } else {
            Command::new(program)
        };
        cmd.current_dir(&self.dir);
        cmd
    }

    /// Starts the (stopped) server again on the same port and data.
    pub fn start_again(&self) {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300",
            self.port,
            self.dir.display()
        );
        if self.ca_file.is_some() {
            options += &format!(
                " -c ssl=on -c ssl_cert_file={dir}/cert.pem -c ssl_key_file={dir}/key.pem",
                dir = self.dir.display()
            );
        }
        run(self
            .as_pg(&format!("{}/pg_ctl", self.bin))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-o", &options, "-l"])
            .arg(self.dir.join("server.log"))
            .args(["-w", "start"]));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "postgres did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (fast shutdown: open connections are closed).
    pub fn stop(&self) {
        run(self
            .as_pg(&format!("{}/pg_ctl", self.bin))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"]));
    }

    /// A fresh, empty database and its URL.
    pub async fn fresh_database(&self) -> String {
        use sqlx::Connection;
        let name = format!("t{}", super::random_suffix());
        let admin_url = format!("postgres://postgres@127.0.0.1:{}/postgres", self.port);
        // sqlx's default (`sslmode=prefer`) uses TLS where the server offers it.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut conn = loop {
            match sqlx::PgConnection::connect(&admin_url).await {
                Ok(conn) => break conn,
                // Accepting TCP before it accepts logins ("the database system is starting up").
                Err(_) if Instant::now() < deadline => {
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
