//! A CI job's world for the client tests (`login`, `credential_helper`, `action`): a gateway
//! trusting the test issuer, with robot `acme+ci` allowed to push to `acme/app` from each
//! platform's identity; a stock registry behind it; the platforms' token endpoints; a work
//! directory for HOME and the auth files. The client runs as the real binary, with nothing in
//! its environment but what a test gives it, and skopeo and podman push and pull with nothing
//! but the auth file it wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use base64_simd::STANDARD as BASE64;
use fedgate::clock::{Clock, SystemClock};
use serde_json::{Value, json};

use super::issuer::Issuer;
use super::platforms::{Platforms, REQUEST_TOKEN};
use super::podman::Podman;
use super::registry::{Registry, oci_image, pulled_content, registry_cert};
use super::{Backend, Gateway};

pub const BIN: &str = env!("CARGO_BIN_EXE_fedgate");
pub const SYSTEM_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

/// A gateway trusting the test issuer, robot `acme+ci` allowed to push to `acme/app` from each
/// platform's identity, a registry behind fedgate, and the platforms' token endpoints.
pub struct Site {
    pub issuer: Issuer,
    pub gw: Gateway,
    pub registry: Registry,
    pub platforms: Platforms,
    /// API token of acme's admin.
    pub admin: String,
    pub work: tempfile::TempDir,
    /// The `fedgate` binary the job runs: this build, or the client-only one.
    pub bin: PathBuf,
}

impl Site {
    pub async fn start() -> Self {
        let issuer = Issuer::rsa().await;
        let gw = Gateway::trusting(Backend::Sqlite, &issuer, Arc::new(SystemClock), |_| {}).await;
        // No `audiences`: each entry accepts the gateway's own URL, the client's default audience.
        let entries = json!([
            {"issuer": issuer.url, "subject": "repo:octo-org/octo-repo:*"},
            {"issuer": issuer.url, "subject": "project_path:my-group/my-project:ref_type:branch:ref:main"},
            {"issuer": issuer.url, "subject": "system:serviceaccount:ci:builder"},
            {"issuer": issuer.url, "subject": "112233445566778899000"},
        ]);
        let admin = gw.federated_robot("acme", "ci", entries).await;
        let grant = gw
            .call(
                "PUT",
                "/api/v1/repository/acme/app/permissions/user/acme+ci",
                Some(&admin),
                Some(json!({"role": "write"})),
            )
            .await;
        assert_eq!(grant.status, 200, "{}", grant.text);
        let registry = Registry::start(&gw, &registry_cert(&gw)).await;
        let platforms = Platforms::start(&issuer).await;
        let work = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(work.path().join("home")).unwrap();
        Self {
            issuer,
            gw,
            registry,
            platforms,
            admin,
            work,
            bin: PathBuf::from(BIN),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.work.path().join(rel)
    }

    /// What every job sets: the gateway, the robot, the registry.
    pub fn job_vars(&self) -> Vec<(String, String)> {
        vars(&[
            ("FEDGATE_LOGIN_URL", &self.gw.url),
            ("FEDGATE_LOGIN_ROBOT", "acme+ci"),
            ("FEDGATE_LOGIN_REGISTRY", &self.registry.addr),
        ])
    }

    pub fn github_vars(&self) -> Vec<(String, String)> {
        vars(&[
            ("GITHUB_ACTIONS", "true"),
            (
                "ACTIONS_ID_TOKEN_REQUEST_URL",
                &self.platforms.github_request_url(),
            ),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN),
        ])
    }

    /// A token of the `fixture` platform for the gateway's audience.
    pub fn token(&self, fixture: &str) -> String {
        let mut claims = self.issuer.claims(fixture, SystemClock.unix());
        claims["aud"] = if fixture == "kubernetes-serviceaccount" {
            json!([self.gw.url])
        } else {
            json!(self.gw.url)
        };
        self.issuer.token(&claims)
    }

    /// `fedgate <args>` with exactly `env` (plus HOME and a system PATH unless `env` sets them).
    pub fn fedgate(&self, args: &[&str], env: &[(String, String)]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env_clear()
            .env("HOME", self.path("home"))
            .env("PATH", SYSTEM_PATH)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        cmd
    }

    pub fn login(&self, args: &[&str], env: &[(String, String)]) -> Output {
        let mut all = vec!["login"];
        all.extend_from_slice(args);
        self.fedgate(&all, env).output().unwrap()
    }

    /// skopeo pushes a fresh image as `<tag>-skopeo`, podman pulls it and pushes it as
    /// `<tag>-podman`, skopeo pulls that back: both tools push and pull, with `authfile` alone
    /// and `env` (what a credential helper needs; just PATH otherwise).
    pub fn push_and_pull(&self, authfile: &Path, tag: &str, env: &[(String, String)]) {
        let content = format!("hello from {tag}");
        let src = self.work.path().join(format!("image-{tag}"));
        let image = oci_image(&src, &content);
        let by_skopeo = self.registry.image("acme/app", &format!("{tag}-skopeo"));
        self.registry
            .skopeo_copy_with_authfile(&image, &by_skopeo, authfile, env)
            .unwrap_or_else(|e| panic!("skopeo push: {e}\nregistry: {}", self.registry.log()));
        let podman = Podman::new();
        podman
            .pull(&by_skopeo, authfile, env)
            .unwrap_or_else(|e| panic!("podman pull: {e}"));
        let by_podman = self.registry.image("acme/app", &format!("{tag}-podman"));
        podman
            .push(
                by_skopeo.trim_start_matches("docker://"),
                &by_podman,
                authfile,
                env,
            )
            .unwrap_or_else(|e| panic!("podman push: {e}"));
        let pulled = self.work.path().join(format!("pulled-{tag}"));
        self.registry
            .skopeo_copy_with_authfile(
                &by_podman,
                &format!("oci:{}:x", pulled.display()),
                authfile,
                env,
            )
            .unwrap_or_else(|e| panic!("skopeo pull: {e}"));
        assert_eq!(pulled_content(&pulled), content);
    }
}

/// The tools' environment when they need nothing but the auth file.
pub fn plain() -> Vec<(String, String)> {
    vars(&[("PATH", SYSTEM_PATH)])
}

pub fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exited")
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The robot token stored for `registry` in an auth file, after checking the user name.
pub fn stored_token(authfile: &Path, registry: &str) -> String {
    let auth = read_json(authfile)["auths"][registry]["auth"]
        .as_str()
        .unwrap_or_else(|| panic!("no entry for {registry} in {}", authfile.display()))
        .to_string();
    let decoded = String::from_utf8(BASE64.decode_to_vec(auth).unwrap()).unwrap();
    let (user, token) = decoded.split_once(':').unwrap();
    assert_eq!(user, "acme+ci");
    token.to_string()
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Exit 0, else the reason.
pub fn assert_ok(out: &Output) {
    assert_eq!(code(out), 0, "{}", stderr(out));
}

/// Logged in: nothing on stdout, no token anywhere in the output.
pub fn assert_logged_in(out: &Output, token: &str) {
    assert_ok(out);
    assert!(out.stdout.is_empty(), "login prints nothing on stdout");
    assert!(!stderr(out).contains(token), "the token is never printed");
    assert!(stderr(out).contains("logged in to"), "{}", stderr(out));
}

/// A directory holding `docker-credential-fedgate` (a link to the binary, as installed), and
/// the PATH that finds it.
pub fn helper_path(site: &Site) -> String {
    let bin = site.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(&site.bin, bin.join("docker-credential-fedgate")).unwrap();
    format!("{}:{SYSTEM_PATH}", bin.display())
}

/// Runs `docker-credential-fedgate <action>` with `input` on stdin.
pub fn helper(site: &Site, action: &str, input: &str, env: &[(String, String)]) -> Output {
    use std::io::Write;
    let mut child = Command::new(site.path("bin/docker-credential-fedgate"))
        .arg(action)
        .env_clear()
        .env("HOME", site.path("home"))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The credential-helper answer for `get`.
pub fn secret_of(out: &Output, server_url: &str) -> String {
    assert_eq!(code(out), 0, "{}{}", stdout(out), stderr(out));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["ServerURL"], server_url);
    assert_eq!(answer["Username"], "acme+ci");
    answer["Secret"].as_str().unwrap().to_string()
}

/// The helper's one cached-token file.
pub fn cached_token_file(site: &Site) -> PathBuf {
    let dir = site.path("home/.cache/fedgate/tokens");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

/// Makes the cached token due for refresh, as time passing would.
pub fn age_cached_token(site: &Site) {
    let file = cached_token_file(site);
    let mut cached = read_json(&file);
    cached["refresh_at"] = json!(0);
    std::fs::write(&file, cached.to_string()).unwrap();
}

pub async fn registry_accepts(site: &Site, secret: &str) -> bool {
    let reply = site
        .gw
        .client
        .get(format!(
            "{}/v2/auth?service={}&scope=repository:acme/app:pull",
            site.gw.url,
            site.gw.config.registry_service()
        ))
        .basic_auth("acme+ci", Some(secret))
        .send()
        .await
        .unwrap();
    reply.status() == 200
}
