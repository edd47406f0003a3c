//! Real Docker registries using fedgate as their token auth backend: Debian's
//! `docker-registry` (distribution 2.8), and distribution 3.1.1 when it can be built (an
//! optional test tool, see [`registry3`]); `skopeo` and `podman` as clients. `.ci/run`
//! installs the Debian packages.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{Gateway, free_port, run_tool};

/// `fedgate keys registry-cert` for the gateway's keys directory.
pub fn registry_cert(gw: &Gateway) -> String {
    keys_verb(gw, "registry-cert") + "\n"
}

/// Asserts that a client (skopeo, podman, ctr) failed because the registry refused it
/// (401/403, `denied`, `insufficient_scope`), not for another reason such as a crashed
/// registry or a refused connection.
pub fn assert_refused<T: std::fmt::Debug>(result: Result<T, String>, what: &str) {
    let err = match result {
        Ok(out) => panic!("{what}: it succeeded: {out:?}"),
        Err(err) => err,
    };
    let lower = err.to_lowercase();
    assert!(
        [
            "unauthorized",
            "denied",
            "authentication required",
            "insufficient_scope",
            "forbidden",
        ]
        .iter()
        .any(|w| lower.contains(w)),
        "{what}: failed, but not as a refusal: {err}"
    );
}

/// Runs `push`, which must be refused, and asserts the refusal as [`assert_refused`] does.
/// A transport failure is retried (three attempts in all): a registry answers 401 to a manifest
/// `PUT` and may close the connection while the client is still sending the body, so the
/// refusal can reach the client as a broken pipe instead of the registry's answer.
pub fn assert_push_refused<T: std::fmt::Debug>(
    mut push: impl FnMut() -> Result<T, String>,
    what: &str,
) {
    let transport = |err: &String| {
        let lower = err.to_lowercase();
        ["closed pipe", "broken pipe", "connection reset"]
            .iter()
            .any(|w| lower.contains(w))
    };
    let mut result = push();
    for _ in 1..3 {
        match &result {
            Err(err) if transport(err) => {
                eprintln!("{what}: a transport failure, pushing again: {err}");
                result = push();
            }
            _ => break,
        }
    }
    assert_refused(result, what);
}

/// `fedgate keys <verb>` for the gateway's keys directory; its stdout.
pub fn keys_verb(gw: &Gateway, verb: &str) -> String {
    super::replica::admin(&keys_env(gw), &["keys", verb])
}

/// The environment that points the CLI at the gateway's keys and database.
pub fn keys_env(gw: &Gateway) -> Vec<(String, String)> {
    [
        ("FEDGATE_KEYS_DIR", gw.config.keys.dir.display().to_string()),
        (
            "FEDGATE_KEYS_SIGNING_ALG",
            gw.config.keys.signing_alg.clone(),
        ),
        (
            "FEDGATE_STORAGE_DATABASE_URL",
            gw.config.storage.database_url.clone(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Writes a line straight to the test process's stderr, past libtest's output capture, so
/// that a skip shows in `cargo test`'s output even when the test passes.
pub fn note(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The registry binary of distribution 3.1.1, built once per test run by the optional tool
/// `../shared/tools/build-registry3` next to the repository (about 75 s the first time, then
/// cached under ~/.cache), or given as `FEDGATE_TEST_REGISTRY3=<path to a built registry>`.
/// None when neither is there, or the variable is set but empty: the 3.1.1 tests then skip,
/// saying so.
pub fn registry3() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            // Set but empty: run without 3.1.1.
            if let Some(path) = std::env::var_os("FEDGATE_TEST_REGISTRY3") {
                return (!path.is_empty()).then(|| PathBuf::from(path));
            }
            let tool =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/build-registry3");
            if !tool.exists() {
                return None;
            }
            let out = Command::new(&tool).output().expect("run build-registry3");
            assert!(
                out.status.success(),
                "{} failed: {}",
                tool.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            Some(PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()))
        })
        .as_deref()
}

/// [`registry3`], or a note that `test` skipped its distribution 3.1.1 part.
pub fn registry3_or_skip(test: &str) -> Option<&'static Path> {
    let found = registry3();
    if found.is_none() {
        note(&format!(
            "SKIPPED (distribution 3.1.1) {test}: no distribution 3.1.1 registry; set FEDGATE_TEST_REGISTRY3 to one, or provide ../shared/tools/build-registry3"
        ));
    }
    found
}

/// Which registry program runs.
#[derive(Debug, Clone)]
pub enum Distribution {
    /// Debian's `docker-registry` (distribution 2.8).
    Debian2,
    /// A distribution 3.x `registry` binary.
    V3(PathBuf),
}

impl Distribution {
    pub fn name(&self) -> &'static str {
        match self {
            Distribution::Debian2 => "distribution 2.8",
            Distribution::V3(_) => "distribution 3.1.1",
        }
    }
}

/// How the registry trusts fedgate's keys.
#[derive(Debug, Clone)]
pub enum Trust {
    /// `auth.token.rootcertbundle`: `fedgate keys registry-cert`.
    Bundle(String),
    /// `auth.token.jwks` (3.x): `fedgate keys registry-jwks`.
    Jwks(String),
}

/// Where the registry sends clients for tokens and whose tokens it accepts.
#[derive(Debug, Clone)]
pub struct TokenAuth {
    pub realm: String,
    pub service: String,
    pub issuer: String,
}

impl TokenAuth {
    pub fn of(gw: &Gateway) -> Self {
        Self {
            realm: format!("{}/v2/auth", gw.url),
            service: gw.config.registry_service(),
            issuer: gw.url.clone(),
        }
    }
}

pub struct Registry {
    /// `127.0.0.1:<port>`
    pub addr: String,
    pub distribution: Distribution,
    auth: TokenAuth,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Registry {
    /// Starts Debian's registry trusting the certificates in `bundle`, sending clients to `gw`.
    pub async fn start(gw: &Gateway, bundle: &str) -> Self {
        Self::start_with(
            Distribution::Debian2,
            TokenAuth::of(gw),
            Trust::Bundle(bundle.to_string()),
        )
        .await
    }

    pub async fn start_with(distribution: Distribution, auth: TokenAuth, trust: Trust) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut registry = Self {
            addr: format!("127.0.0.1:{}", free_port()),
            distribution,
            auth,
            dir,
            child: None,
        };
        registry.restart(trust).await;
        registry
    }

    /// (Re)starts with new trust (a new bundle after a rotation), keeping the stored images.
    pub async fn restart(&mut self, trust: Trust) {
        self.stop();
        // The operator's configuration from deploy/, with this test's addresses and paths.
        let config_path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/registry/config.yml");
        let log = std::fs::File::create(self.dir.path().join("registry.log")).unwrap();
        let mut command = match &self.distribution {
            Distribution::Debian2 => Command::new("docker-registry"),
            Distribution::V3(binary) => {
                let mut command = Command::new(binary);
                // No OpenTelemetry exporter trying to reach a collector.
                command.env("OTEL_TRACES_EXPORTER", "none");
                command
            }
        };
        command
            .arg("serve")
            .arg(config_path)
            .env("REGISTRY_LOG_LEVEL", "info")
            .env("REGISTRY_HTTP_ADDR", &self.addr)
            .env(
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                self.dir.path().join("storage"),
            )
            .env("REGISTRY_AUTH_TOKEN_REALM", &self.auth.realm)
            .env("REGISTRY_AUTH_TOKEN_SERVICE", &self.auth.service)
            .env("REGISTRY_AUTH_TOKEN_ISSUER", &self.auth.issuer);
        match trust {
            Trust::Bundle(pem) => {
                let path = self.dir.path().join("bundle.pem");
                std::fs::write(&path, pem).unwrap();
                command.env("REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE", path);
            }
            Trust::Jwks(jwks) => {
                let path = self.dir.path().join("jwks.json");
                std::fs::write(&path, jwks).unwrap();
                command
                    .env("REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE", "")
                    .env("REGISTRY_AUTH_TOKEN_JWKS", path);
            }
        }
        let child = command
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| match &self.distribution {
                Distribution::Debian2 => {
                    panic!("docker-registry is installed (apt-get install docker-registry): {e}")
                }
                Distribution::V3(binary) => panic!("{}: {e}", binary.display()),
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(format!("http://{}/v2/", self.addr)).await {
                assert_eq!(r.status(), 401, "the registry asks for a token");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not start: {}",
                self.distribution.name(),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `skopeo copy` from `src` to `dst`, as `user:password` on the registry side.
    pub fn skopeo_copy(
        &self,
        src: &str,
        dst: &str,
        user: &str,
        password: &str,
    ) -> Result<(), String> {
        let creds = format!("{user}:{password}");
        let (flag, tls) = if dst.starts_with("docker://") {
            ("--dest-creds", "--dest-tls-verify=false")
        } else {
            ("--src-creds", "--src-tls-verify=false")
        };
        run_tool(
            Command::new("skopeo")
                .args([
                    "--insecure-policy",
                    "copy",
                    "--retry-times",
                    "0",
                    tls,
                    flag,
                    &creds,
                    src,
                    dst,
                ])
                .env("HOME", self.dir.path()),
        )
    }

    /// `skopeo copy` from `src` to `dst` with only `authfile` for credentials, and of the
    /// environment only `env` (a credential helper's needs, such as PATH and HOME; HOME is an
    /// empty directory unless `env` names one).
    pub fn skopeo_copy_with_authfile(
        &self,
        src: &str,
        dst: &str,
        authfile: &Path,
        env: &[(String, String)],
    ) -> Result<(), String> {
        let home = tempfile::tempdir().unwrap();
        let (authfile_flag, tls) = if dst.starts_with("docker://") {
            ("--dest-authfile", "--dest-tls-verify=false")
        } else {
            ("--src-authfile", "--src-tls-verify=false")
        };
        run_tool(
            Command::new("skopeo")
                .args(["--insecure-policy", "copy", "--retry-times", "0", tls])
                .arg(authfile_flag)
                .arg(authfile)
                .args([src, dst])
                .env_clear()
                .env("HOME", home.path())
                .envs(env.iter().map(|(k, v)| (k, v))),
        )
    }

    /// `skopeo delete` of `image` (a `docker://` reference), as `user:password`.
    pub fn skopeo_delete(&self, image: &str, user: &str, password: &str) -> Result<(), String> {
        run_tool(
            Command::new("skopeo")
                .args([
                    "--insecure-policy",
                    "delete",
                    "--tls-verify=false",
                    "--creds",
                ])
                .arg(format!("{user}:{password}"))
                .arg(image)
                .env("HOME", self.dir.path()),
        )
    }

    pub fn image(&self, repository: &str, tag: &str) -> String {
        format!("docker://{}/{repository}:{tag}", self.addr)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `podman` with its own storage, configuration and credentials in a temporary directory (it
/// runs no container here: login, pull, push and image commands need none).
pub struct Podman {
    dir: PathBuf,
}

impl Default for Podman {
    fn default() -> Self {
        // All lowercase: podman names an image pulled from an OCI layout after its path.
        let dir = std::env::temp_dir().join(format!("fedgate-podman-{}", super::random_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        // podman reads REGISTRY_AUTH_FILE even before the first login.
        std::fs::write(dir.join("auth.json"), "{}").unwrap();
        Self { dir }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // vfs layers can be read-only; fall back to podman's own cleanup.
        if std::fs::remove_dir_all(&self.dir).is_err() {
            let _ = self.command(&["system", "reset", "--force"]).output();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Podman {
    fn command(&self, args: &[&str]) -> Command {
        let dir = self.dir.as_path();
        let mut command = Command::new("podman");
        command
            .arg("--root")
            .arg(dir.join("root"))
            .arg("--runroot")
            .arg(dir.join("run"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ])
            .args(args)
            .env("HOME", dir)
            .env("XDG_RUNTIME_DIR", dir.join("run"))
            .env("REGISTRY_AUTH_FILE", dir.join("auth.json"));
        command
    }

    /// Runs `podman <args>`; stdout, or stderr as the error.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .command(args)
            .output()
            .expect("podman is installed (apt-get install podman)");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `podman login` to `registry` (plain HTTP) as `user`, the password on stdin.
    pub fn login(&self, registry: &str, user: &str, password: &str) -> Result<(), String> {
        use std::process::Stdio;
        let mut child = self
            .command(&[
                "login",
                "--tls-verify=false",
                "--username",
                user,
                "--password-stdin",
                registry,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("podman is installed (apt-get install podman)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(password.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Loads a one-layer image holding `content` (see [`oci_image`]); returns its image ID.
    pub fn load_image(&self, content: &str) -> String {
        let layout = oci_image(&self.dir.join("image"), content);
        self.run(&["pull", "--quiet", &layout]).unwrap()
    }

    /// The image ID (config digest) of a local image.
    pub fn image_id(&self, image: &str) -> Result<String, String> {
        self.run(&["image", "inspect", "--format", "{{.Id}}", image])
    }
}

/// Writes a one-layer OCI image layout under `dir` and returns its `oci:<dir>:v1` reference.
pub fn oci_image(dir: &Path, content: &str) -> String {
    let layout = dir.join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello.txt"), content).unwrap();
    let tar = dir.join("layer.tar");
    let status = Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&src)
        .arg("hello.txt")
        .status()
        .unwrap();
    assert!(status.success());
    let layer = std::fs::read(&tar).unwrap();
    let blob = |bytes: &[u8]| -> (String, usize) {
        let digest = fedgate::tokens::sha256_hex(bytes);
        std::fs::write(blobs.join(&digest), bytes).unwrap();
        (format!("sha256:{digest}"), bytes.len())
    };
    let (layer_digest, layer_size) = blob(&layer);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    })
    .to_string();
    let (config_digest, config_size) = blob(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    })
    .to_string();
    let (manifest_digest, manifest_size) = blob(manifest.as_bytes());
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion": "1.0.0"}"#,
    )
    .unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": "v1"},
        }],
    });
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    format!("oci:{}:v1", layout.display())
}

/// Reads `hello.txt` back out of a pulled OCI layout (`oci:<dir>:<tag>`).
pub fn pulled_content(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let blob = |digest: &str| -> Vec<u8> {
        std::fs::read(
            layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let layer = blob(manifest["layers"][0]["digest"].as_str().unwrap());
    let tar_path: PathBuf = layout.join("layer-out.tar");
    std::fs::write(&tar_path, layer).unwrap();
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(&tar_path)
        .arg("hello.txt")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}
