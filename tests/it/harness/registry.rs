//! A real Docker registry (Debian's `docker-registry`, distribution 2.8) using fedgate as its
//! token auth backend, and `skopeo` as the client. `.ci/run` installs both.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::{Gateway, free_port, run_tool};

/// `fedgate keys registry-cert` for the gateway's keys directory.
pub fn registry_cert(gw: &Gateway) -> String {
    super::replica::admin(&keys_env(gw), &["keys", "registry-cert"]) + "\n"
}

/// `fedgate keys rotate` for the gateway's keys directory.
pub fn rotate_keys(gw: &Gateway) {
    super::replica::admin(&keys_env(gw), &["keys", "rotate"]);
}

/// The environment that points the CLI at the gateway's keys and database.
fn keys_env(gw: &Gateway) -> Vec<(String, String)> {
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

pub struct Registry {
    /// `127.0.0.1:<port>`
    pub addr: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Registry {
    /// Starts a registry that trusts the certificates in `bundle` and sends clients to `gw`.
    pub async fn start(gw: &Gateway, bundle: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut registry = Self {
            addr: format!("127.0.0.1:{}", free_port()),
            dir,
            child: None,
        };
        registry.restart(gw, bundle).await;
        registry
    }

    /// (Re)starts with a new certificate bundle, keeping the stored images.
    pub async fn restart(&mut self, gw: &Gateway, bundle: &str) {
        self.stop();
        let bundle_path = self.dir.path().join("bundle.pem");
        std::fs::write(&bundle_path, bundle).unwrap();
        // The operator's configuration from deploy/, with this test's addresses and paths.
        let config_path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/registry/config.yml");
        let log = std::fs::File::create(self.dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(config_path)
            .env("REGISTRY_LOG_LEVEL", "warn")
            .env("REGISTRY_HTTP_ADDR", &self.addr)
            .env(
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                self.dir.path().join("storage"),
            )
            .env("REGISTRY_AUTH_TOKEN_REALM", format!("{}/v2/auth", gw.url))
            .env("REGISTRY_AUTH_TOKEN_SERVICE", gw.config.registry_service())
            .env("REGISTRY_AUTH_TOKEN_ISSUER", &gw.url)
            .env("REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE", &bundle_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry is installed (apt-get install docker-registry)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(format!("http://{}/v2/", self.addr)).await {
                assert_eq!(r.status(), 401, "the registry asks for a token");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start: {}",
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

    pub fn image(&self, repository: &str, tag: &str) -> String {
        format!("docker://{}/{repository}:{tag}", self.addr)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
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
