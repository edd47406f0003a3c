//! `fedgate login` and `docker-credential-fedgate` as a CI job runs them: the real binary, with
//! nothing in its environment but what the platform would set, each platform's token source
//! emulated on loopback, and then skopeo and podman pushing and pulling through a stock
//! `docker-registry` and fedgate with nothing but the auth file the client wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use base64_simd::STANDARD as BASE64;
use fedgate::clock::{Clock, SystemClock};
use serde_json::{Value, json};

use crate::harness::issuer::{Issuer, Mode};
use crate::harness::platforms::{Platforms, REQUEST_TOKEN};
use crate::harness::podman::Podman;
use crate::harness::registry::{Registry, oci_image, pulled_content, registry_cert};
use crate::harness::{Backend, Gateway, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_fedgate");
const SYSTEM_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

/// A gateway trusting the test issuer, robot `acme+ci` allowed to push to `acme/app` from each
/// platform's identity, a registry behind fedgate, and the platforms' token endpoints.
struct Site {
    issuer: Issuer,
    gw: Gateway,
    registry: Registry,
    platforms: Platforms,
    /// API token of acme's admin.
    admin: String,
    work: tempfile::TempDir,
    /// The `fedgate` binary the job runs: this build, or the client-only one.
    bin: PathBuf,
}

impl Site {
    async fn start() -> Self {
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

    fn path(&self, rel: &str) -> PathBuf {
        self.work.path().join(rel)
    }

    /// What every job sets: the gateway, the robot, the registry.
    fn job_vars(&self) -> Vec<(String, String)> {
        vars(&[
            ("FEDGATE_LOGIN_URL", &self.gw.url),
            ("FEDGATE_LOGIN_ROBOT", "acme+ci"),
            ("FEDGATE_LOGIN_REGISTRY", &self.registry.addr),
        ])
    }

    fn github_vars(&self) -> Vec<(String, String)> {
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
    fn token(&self, fixture: &str) -> String {
        let mut claims = self.issuer.claims(fixture, SystemClock.unix());
        claims["aud"] = if fixture == "kubernetes-serviceaccount" {
            json!([self.gw.url])
        } else {
            json!(self.gw.url)
        };
        self.issuer.token(&claims)
    }

    /// `fedgate <args>` with exactly `env` (plus HOME and a system PATH unless `env` sets them).
    fn fedgate(&self, args: &[&str], env: &[(String, String)]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env_clear()
            .env("HOME", self.path("home"))
            .env("PATH", SYSTEM_PATH)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        cmd
    }

    fn login(&self, args: &[&str], env: &[(String, String)]) -> Output {
        let mut all = vec!["login"];
        all.extend_from_slice(args);
        self.fedgate(&all, env).output().unwrap()
    }

    /// skopeo pushes a fresh image as `<tag>-skopeo`, podman pulls it and pushes it as
    /// `<tag>-podman`, skopeo pulls that back: both tools push and pull, with `authfile` alone
    /// and `env` (what a credential helper needs; just PATH otherwise).
    fn push_and_pull(&self, authfile: &Path, tag: &str, env: &[(String, String)]) {
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
fn plain() -> Vec<(String, String)> {
    vars(&[("PATH", SYSTEM_PATH)])
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The robot token stored for `registry` in an auth file, after checking the user name.
fn stored_token(authfile: &Path, registry: &str) -> String {
    let auth = read_json(authfile)["auths"][registry]["auth"]
        .as_str()
        .unwrap_or_else(|| panic!("no entry for {registry} in {}", authfile.display()))
        .to_string();
    let decoded = String::from_utf8(BASE64.decode_to_vec(auth).unwrap()).unwrap();
    let (user, token) = decoded.split_once(':').unwrap();
    assert_eq!(user, "acme+ci");
    token.to_string()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Exit 0, else the reason.
fn assert_ok(out: &Output) {
    assert_eq!(code(out), 0, "{}", stderr(out));
}

/// Logged in: nothing on stdout, no token anywhere in the output.
fn assert_logged_in(out: &Output, token: &str) {
    assert_ok(out);
    assert!(out.stdout.is_empty(), "login prints nothing on stdout");
    assert!(!stderr(out).contains(token), "the token is never printed");
    assert!(stderr(out).contains("logged in to"), "{}", stderr(out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_actions_job_logs_in_and_pushes_with_skopeo_and_podman() {
    let site = Site::start().await;
    let run = site.path("run");
    // Before logging in, the registry refuses the push.
    let empty = site.path("empty.json");
    std::fs::write(&empty, "{}").unwrap();
    let image = oci_image(&site.path("before"), "before login");
    let refused = site.registry.skopeo_copy_with_authfile(
        &image,
        &site.registry.image("acme/app", "before"),
        &empty,
        &plain(),
    );
    assert!(refused.is_err(), "anonymous pushes are refused");

    let mut env = site.job_vars();
    env.extend(site.github_vars());
    env.extend(vars(&[("XDG_RUNTIME_DIR", run.to_str().unwrap())]));
    let out = site.login(&[], &env);
    assert_ok(&out);
    let containers = run.join("containers/auth.json");
    let docker = site.path("home/.docker/config.json");
    let token = stored_token(&containers, &site.registry.addr);
    assert_logged_in(&out, &token);
    assert!(stderr(&out).contains("GitHub Actions"), "{}", stderr(&out));
    // The token was asked for with the bearer GitHub gave the job and fedgate as audience.
    assert_eq!(site.platforms.audiences(), [site.gw.url.as_str()]);
    assert_eq!(stored_token(&docker, &site.registry.addr), token);
    assert_eq!((mode(&containers), mode(&docker)), (0o600, 0o600));

    site.push_and_pull(&containers, "github", &plain());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitlab_job_logs_in_with_its_id_tokens_variable_keeping_the_docker_config() {
    let site = Site::start().await;
    let docker_dir = site.path("docker");
    std::fs::create_dir_all(&docker_dir).unwrap();
    let config = docker_dir.join("config.json");
    let before = json!({
        "auths": {"other.example.com": {"auth": "b3RoZXI6c2VjcmV0"},
                  site.registry.addr.clone(): {"auth": "c3RhbGU6c3RhbGU=", "identitytoken": "stale"}},
        "credHelpers": {"gcr.io": "gcloud"},
        "HttpHeaders": {"X-Meta": "kept"},
        "detachKeys": "ctrl-e,e"
    });
    std::fs::write(&config, serde_json::to_string_pretty(&before).unwrap()).unwrap();
    let mut env = site.job_vars();
    env.extend(vars(&[
        ("GITLAB_CI", "true"),
        ("FEDGATE_LOGIN_ID_TOKEN", &site.token("gitlab-ci")),
        ("FEDGATE_LOGIN_FORM", "rfc8693"),
        ("DOCKER_CONFIG", docker_dir.to_str().unwrap()),
    ]));
    let out = site.login(&[], &env);
    assert_ok(&out);
    let token = stored_token(&config, &site.registry.addr);
    assert_logged_in(&out, &token);
    assert!(
        stderr(&out).contains("GitLab CI (variable FEDGATE_LOGIN_ID_TOKEN)"),
        "{}",
        stderr(&out)
    );
    // Every other entry and key is as it was; the registry's entry is replaced whole.
    let mut expected = before.clone();
    expected["auths"][site.registry.addr.as_str()] =
        json!({"auth": BASE64.encode_to_string(format!("acme+ci:{token}"))});
    assert_eq!(read_json(&config), expected);
    assert_eq!(mode(&config), 0o600);
    assert!(
        !site.path("home/.docker").exists(),
        "DOCKER_CONFIG is honoured"
    );

    site.push_and_pull(&config, "gitlab", &plain());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_pod_logs_in_with_its_projected_token() {
    let site = Site::start().await;
    let projected = site.path("projected/token");
    std::fs::create_dir_all(projected.parent().unwrap()).unwrap();
    std::fs::write(&projected, site.token("kubernetes-serviceaccount") + "\n").unwrap();
    let authfile = site.path("auth.json");
    let mut env = site.job_vars();
    env.extend(vars(&[
        ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
        ("FEDGATE_LOGIN_TOKEN_FILE", projected.to_str().unwrap()),
        ("REGISTRY_AUTH_FILE", authfile.to_str().unwrap()),
    ]));
    let out = site.login(&[], &env);
    assert_ok(&out);
    let token = stored_token(&authfile, &site.registry.addr);
    assert_logged_in(&out, &token);
    assert!(
        stderr(&out).contains("Kubernetes (projected token"),
        "{}",
        stderr(&out)
    );

    site.push_and_pull(&authfile, "kubernetes", &plain());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_google_cloud_workload_logs_in_through_the_metadata_server() {
    let site = Site::start().await;
    // The emulated metadata server answers only requests that say they expect it.
    let bare = reqwest::get(format!(
        "http://{}/computeMetadata/v1/instance/service-accounts/default/identity?audience=x",
        site.platforms.addr
    ))
    .await
    .unwrap();
    assert_eq!(bare.status(), 403);

    let authfile = site.path("gcp/auth.json");
    let mut env = site.job_vars();
    env.extend(vars(&[(
        "GCE_METADATA_HOST",
        &site.platforms.gce_metadata_host(),
    )]));
    let out = site.login(&["--auth-file", authfile.to_str().unwrap()], &env);
    assert_ok(&out);
    let token = stored_token(&authfile, &site.registry.addr);
    assert_logged_in(&out, &token);
    assert_eq!(site.platforms.gcp_hits(), 1);
    assert_eq!(site.platforms.audiences(), [site.gw.url.as_str()]);
    assert!(
        !site.path("home/.docker").exists(),
        "--auth-file is the only file written"
    );

    site.push_and_pull(&authfile, "gcp", &plain());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_prints_the_gateways_reason_and_writes_nothing() {
    let site = Site::start().await;
    let authfile = site.path("auth.json");
    let mut env = site.job_vars();
    env.extend(site.github_vars());
    env.extend(vars(&[("REGISTRY_AUTH_FILE", authfile.to_str().unwrap())]));

    // An audience the robot does not accept, in both forms: fedgate's code and message.
    for form in ["quay", "rfc8693"] {
        let out = site.login(
            &["--audience", "https://elsewhere.example", "--form", form],
            &env,
        );
        assert_eq!(code(&out), 77, "{form}: {}", stderr(&out));
        let text = stderr(&out);
        eprintln!("{form}: {text}");
        assert_eq!(text.lines().count(), 1, "one line: {text}");
        assert!(
            text.contains("the gateway refused the identity token from GitHub Actions for acme+ci"),
            "{text}"
        );
        assert!(text.contains("audience_mismatch"), "{form}: {text}");
        assert!(text.contains("https://elsewhere.example"), "{form}: {text}");
        if form == "rfc8693" {
            assert!(
                text.contains("invalid_request: audience_mismatch"),
                "{text}"
            );
        }
    }
    // A robot that does not exist.
    let out = site.login(&["--robot", "acme+nobody"], &env);
    assert_eq!(code(&out), 77, "{}", stderr(&out));
    assert!(stderr(&out).contains("unknown_robot"), "{}", stderr(&out));
    assert!(!authfile.exists(), "nothing is written after a refusal");
    assert!(!site.path("home/.docker").exists());

    // An issuer that is down, whose keys the gateway has never seen: the gateway's 503, with
    // a retryable exit code.
    let down = Issuer::rsa().await;
    down.set_mode(Mode::Down);
    let entries = json!([{"issuer": down.url, "subject": "repo:octo-org/octo-repo:*"}]);
    let set = site
        .gw
        .call(
            "POST",
            "/api/v1/organization/acme/robots/ci/federation",
            Some(&site.admin),
            Some(entries),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text);
    let mut claims = down.claims("github-actions", SystemClock.unix());
    claims["aud"] = json!(site.gw.url);
    let token_file = site.path("down-token");
    std::fs::write(&token_file, down.token(&claims)).unwrap();
    let out = site.login(&["--token-file", token_file.to_str().unwrap()], &env);
    assert_eq!(code(&out), 69, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("issuer_unavailable"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("retry after"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_identity_token_says_where_it_was_looked_for() {
    let site = Site::start().await;
    let job = site.job_vars();
    let with = |extra: &[(&str, &str)]| {
        let mut env = job.clone();
        env.extend(vars(extra));
        env
    };
    let mut wrong_bearer = site.github_vars();
    wrong_bearer[2].1 = "not-the-request-token".into();
    let mut github_wrong_bearer = job.clone();
    github_wrong_bearer.extend(wrong_bearer);
    type Case<'a> = (Vec<(String, String)>, Vec<&'a str>, &'a str);
    let cases: Vec<Case> = vec![
        // GitLab without the id_tokens variable.
        (
            with(&[("GITLAB_CI", "true")]),
            vec![],
            "the variable FEDGATE_LOGIN_ID_TOKEN is not set",
        ),
        (
            with(&[("GITLAB_CI", "true")]),
            vec!["--token-env", "VAULT_ID_TOKEN"],
            "the variable VAULT_ID_TOKEN is not set",
        ),
        // GitHub without `permissions: id-token: write`.
        (
            with(&[("GITHUB_ACTIONS", "true")]),
            vec![],
            "ACTIONS_ID_TOKEN_REQUEST_URL is not set; give the job `permissions: id-token: write`",
        ),
        (
            github_wrong_bearer,
            vec![],
            "ACTIONS_ID_TOKEN_REQUEST_URL answered 401",
        ),
        // Kubernetes without a projected token at the default path.
        (
            with(&[("KUBERNETES_SERVICE_HOST", "10.96.0.1")]),
            vec![],
            "/var/run/secrets/fedgate/token",
        ),
        (
            with(&[]),
            vec!["--token-file", "/nonexistent/id-token"],
            "the file /nonexistent/id-token",
        ),
        (
            with(&[("GCE_METADATA_HOST", &format!("127.0.0.1:{}", free_port()))]),
            vec![],
            "Google Cloud metadata server 127.0.0.1:",
        ),
        (
            with(&[("MY_TOKEN", "not a jwt")]),
            vec!["--token-env", "MY_TOKEN"],
            "the variable MY_TOKEN does not hold a JWT",
        ),
        // Nowhere to look.
        (
            with(&[]),
            vec![],
            "this is not GitHub Actions (ACTIONS_ID_TOKEN_REQUEST_URL unset), GitLab CI (GITLAB_CI unset)",
        ),
    ];
    for (env, args, needle) in cases {
        let out = site.login(&args, &env);
        eprintln!("{args:?}: {}", stderr(&out));
        assert_eq!(code(&out), 66, "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(needle),
            "{needle:?} in {}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains(REQUEST_TOKEN));
    }
    assert!(!site.path("home/.docker").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_say_which_side_failed() {
    let site = Site::start().await;
    let mut env = site.job_vars();
    env.extend(site.github_vars());
    let run = |args: &[&str], extra: &[(&str, &str)]| {
        let mut env = env.clone();
        env.extend(vars(extra));
        site.login(args, &env)
    };

    // Usage: 64, before any request.
    for (args, extra, needle) in [
        (
            vec![],
            vec![("FEDGATE_LOGIN_ROBOTT", "acme+ci")],
            "FEDGATE_LOGIN_ROBOTT is not a fedgate login variable",
        ),
        (vec!["--robot", "ci"], vec![], "<namespace>+<name>"),
        (vec!["--form", "soap"], vec![], "soap"),
        (vec!["--url", "ftp://x"], vec![], "https://"),
        (
            vec!["--credential-helper", "--token-file", "-"],
            vec![],
            "standard input",
        ),
    ] {
        let out = run(&args, &extra);
        assert_eq!(code(&out), 64, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{needle}: {}", stderr(&out));
    }
    assert_eq!(site.platforms.github_hits(), 0, "no token is asked for");

    // The gateway cannot be reached: 69.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let out = run(&["--url", &closed, "--audience", &site.gw.url], &[]);
    assert_eq!(code(&out), 69, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("the gateway {closed} cannot be reached")),
        "{}",
        stderr(&out)
    );

    // The auth file cannot be written: 73.
    let blocker = site.path("blocker");
    std::fs::write(&blocker, "a file, not a directory").unwrap();
    let inside = blocker.join("config.json");
    let out = run(&["--auth-file", inside.to_str().unwrap()], &[]);
    assert_eq!(code(&out), 73, "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot update"), "{}", stderr(&out));

    // The server's configuration is neither needed nor read: a broken one does not matter,
    // and the client's variables do not break the server's verbs.
    let out = run(
        &["--print"],
        &[
            ("FEDGATE_CONFIG", "/nonexistent/fedgate.toml"),
            ("FEDGATE_SERVER_LISEN", "nonsense"),
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let check = site.fedgate(&["config", "check"], &env).output().unwrap();
    assert_eq!(code(&check), 0, "{}", stderr(&check));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn print_writes_no_file_and_prints_the_token_alone() {
    let site = Site::start().await;
    let mut env = site.job_vars();
    env.extend(site.github_vars());
    env.extend(vars(&[(
        "XDG_RUNTIME_DIR",
        site.path("run").to_str().unwrap(),
    )]));
    let out = site.login(&["--print"], &env);
    assert_ok(&out);
    let token = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(token.lines().count(), 1);
    let token = token.trim();
    assert!(!stderr(&out).contains(token));
    assert!(!site.path("home/.docker").exists() && !site.path("run").exists());
    // It is a working robot token for the registry.
    let image = oci_image(&site.path("src"), "printed");
    site.registry
        .skopeo_copy(
            &image,
            &site.registry.image("acme/app", "printed"),
            "acme+ci",
            token,
        )
        .unwrap();
}

/// A directory holding `docker-credential-fedgate` (a link to the binary, as installed), and
/// the PATH that finds it.
fn helper_path(site: &Site) -> String {
    let bin = site.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(&site.bin, bin.join("docker-credential-fedgate")).unwrap();
    format!("{}:{SYSTEM_PATH}", bin.display())
}

/// Runs `docker-credential-fedgate <action>` with `input` on stdin.
fn helper(site: &Site, action: &str, input: &str, env: &[(String, String)]) -> Output {
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

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The credential-helper answer for `get`.
fn secret_of(out: &Output, server_url: &str) -> String {
    assert_eq!(code(out), 0, "{}{}", stdout(out), stderr(out));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["ServerURL"], server_url);
    assert_eq!(answer["Username"], "acme+ci");
    answer["Secret"].as_str().unwrap().to_string()
}

/// The helper's one cached-token file.
fn cached_token_file(site: &Site) -> PathBuf {
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
fn age_cached_token(site: &Site) {
    let file = cached_token_file(site);
    let mut cached = read_json(&file);
    cached["refresh_at"] = json!(0);
    std::fs::write(&file, cached.to_string()).unwrap();
}

async fn registry_accepts(site: &Site, secret: &str) -> bool {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credential_helper_speaks_the_protocol_and_serves_skopeo_and_podman() {
    let site = Site::start().await;
    let path = helper_path(&site);
    let registry = site.registry.addr.clone();
    let authfile = site.path("auth.json");
    // The job's environment: GitHub's variables stay for later steps, which the helper needs
    // to ask for a fresh identity token.
    let mut job = site.github_vars();
    job.extend(vars(&[("PATH", &path)]));
    let mut env = site.job_vars();
    env.extend(job.clone());
    env.extend(vars(&[("REGISTRY_AUTH_FILE", authfile.to_str().unwrap())]));
    let out = site.login(&["--credential-helper"], &env);
    assert_ok(&out);
    assert!(
        stderr(&out).contains("docker-credential-fedgate now answers for"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("not on PATH"), "{}", stderr(&out));
    assert_eq!(
        read_json(&authfile),
        json!({"credHelpers": {registry.clone(): "fedgate"}}),
        "no token in the auth file, only the helper"
    );
    assert_eq!(
        site.platforms.github_hits(),
        1,
        "login checks the set-up once"
    );

    // get: the token login cached, for the server URL as asked.
    let first = secret_of(&helper(&site, "get", &registry, &job), &registry);
    assert_eq!(site.platforms.github_hits(), 1, "served from the cache");
    assert!(registry_accepts(&site, &first).await);
    let as_url = format!("https://{registry}/v2/");
    assert_eq!(
        secret_of(&helper(&site, "get", &as_url, &job), &as_url),
        first
    );
    let verb = site
        .fedgate(&["credential-helper", "get"], &job)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut child = verb;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(registry.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            secret_of(&out, &registry),
            first,
            "the verb is the same helper"
        );
    }
    let mode_of_cache = mode(&cached_token_file(&site));
    assert_eq!(mode_of_cache, 0o600);

    // A registry fedgate was not set up for: the protocol's "not found".
    let other = helper(&site, "get", "registry.example.com", &job);
    assert_eq!(code(&other), 1);
    assert_eq!(
        stdout(&other).trim(),
        "credentials not found in native keychain"
    );
    let empty = helper(&site, "get", "\n", &job);
    assert_eq!(stdout(&empty).trim(), "no credentials server URL");
    // list, store, version.
    let list = helper(&site, "list", "", &job);
    assert_eq!(code(&list), 0);
    assert_eq!(
        serde_json::from_slice::<Value>(&list.stdout).unwrap(),
        json!({registry.clone(): "acme+ci"})
    );
    let store = helper(
        &site,
        "store",
        &json!({"ServerURL": registry, "Username": "someone", "Secret": "pw"}).to_string(),
        &job,
    );
    assert_eq!(code(&store), 1);
    assert!(
        stdout(&store).contains("fedgate login --credential-helper"),
        "{}",
        stdout(&store)
    );
    let version = helper(&site, "version", "", &job);
    assert!(stdout(&version).starts_with("docker-credential-fedgate (fedgate) "));

    // Near expiry, the next get exchanges again.
    age_cached_token(&site);
    let second = secret_of(&helper(&site, "get", &registry, &job), &registry);
    assert_ne!(second, first);
    assert_eq!(site.platforms.github_hits(), 2);
    assert!(registry_accepts(&site, &second).await);

    // Real clients find the helper through the auth file's credHelpers and PATH; it runs with
    // the job's environment (HOME, where `login` saved its settings, and GitHub's variables).
    let mut step = job.clone();
    step.extend(vars(&[("HOME", site.path("home").to_str().unwrap())]));
    site.push_and_pull(&authfile, "helper", &step);
    assert_eq!(
        site.platforms.github_hits(),
        2,
        "the clients used the cache"
    );

    // erase (docker logout): fedgate forgets the registry; the clients have no credentials.
    let erase = helper(&site, "erase", &registry, &job);
    assert_eq!(code(&erase), 0, "{}", stdout(&erase));
    let gone = helper(&site, "get", &registry, &job);
    assert_eq!(
        stdout(&gone).trim(),
        "credentials not found in native keychain"
    );
    let image = oci_image(&site.path("after-erase"), "after erase");
    assert!(
        site.registry
            .skopeo_copy_with_authfile(
                &image,
                &site.registry.image("acme/app", "after-erase"),
                &authfile,
                &step
            )
            .is_err()
    );

    // Without saved settings, the job's FEDGATE_LOGIN_* variables set the helper up.
    let mut from_env = site.job_vars();
    from_env.extend(job.clone());
    let third = secret_of(&helper(&site, "get", &registry, &from_env), &registry);
    assert!(registry_accepts(&site, &third).await);
    assert_eq!(site.platforms.github_hits(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_helper_calls_exchange_a_file_token_once() {
    let site = Site::start().await;
    let path = helper_path(&site);
    let registry = site.registry.addr.clone();
    let projected = site.path("projected/token");
    std::fs::create_dir_all(projected.parent().unwrap()).unwrap();
    std::fs::write(&projected, site.token("kubernetes-serviceaccount")).unwrap();
    let pod = vars(&[("KUBERNETES_SERVICE_HOST", "10.96.0.1"), ("PATH", &path)]);
    let mut env = site.job_vars();
    env.extend(pod.clone());
    env.extend(vars(&[
        ("FEDGATE_LOGIN_TOKEN_FILE", projected.to_str().unwrap()),
        (
            "REGISTRY_AUTH_FILE",
            site.path("auth.json").to_str().unwrap(),
        ),
    ]));
    let out = site.login(&["--credential-helper"], &env);
    assert_ok(&out);

    // kubelet rotates the projected token; the cached robot token nears expiry; then several
    // tools ask at once. The gateway accepts each identity token once (replay protection),
    // so only one of them may exchange it; the others must wait and use its result.
    std::fs::write(&projected, site.token("kubernetes-serviceaccount")).unwrap();
    age_cached_token(&site);
    let children: Vec<_> = (0..4)
        .map(|_| {
            let mut child = Command::new(site.path("bin/docker-credential-fedgate"))
                .arg("get")
                .env_clear()
                .env("HOME", site.path("home"))
                .envs(pod.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(registry.as_bytes()).unwrap();
            drop(stdin);
            child
        })
        .collect();
    let secrets: Vec<String> = children
        .into_iter()
        .map(|child| secret_of(&child.wait_with_output().unwrap(), &registry))
        .collect();
    assert!(
        secrets.iter().all(|s| s == &secrets[0]),
        "one exchange served all"
    );
    assert!(registry_accepts(&site, &secrets[0]).await);
}

/// `action.yml`, parsed.
fn action() -> yaml_rust2::Yaml {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/action.yml");
    let text = std::fs::read_to_string(path).unwrap();
    yaml_rust2::YamlLoader::load_from_str(&text)
        .unwrap()
        .remove(0)
}

/// Runs the action's step `id` as the runner does (`bash -eo pipefail` on its script, its
/// `env:` with `${{ inputs.* }}` replaced by `inputs` or the defaults), with `job` as the job's
/// environment. Returns the step's output and what it wrote to GITHUB_OUTPUT and GITHUB_PATH.
fn run_action_step(
    site: &Site,
    id: &str,
    inputs: &[(&str, &str)],
    job: &[(String, String)],
) -> (Output, String, String) {
    let action = action();
    let step = action["runs"]["steps"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|s| s["id"].as_str() == Some(id))
        .unwrap_or_else(|| panic!("no step {id}"));
    let input = |name: &str| -> String {
        inputs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
            .or_else(|| {
                action["inputs"][name]["default"]
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| panic!("input {name} has no value"))
    };
    let mut env: Vec<(String, String)> = Vec::new();
    if let Some(map) = step["env"].as_hash() {
        for (k, v) in map {
            let value = v.as_str().unwrap().trim();
            let name = value
                .strip_prefix("${{ inputs.")
                .and_then(|rest| rest.strip_suffix(" }}"))
                .unwrap_or_else(|| panic!("unsupported expression {value}"));
            env.push((k.as_str().unwrap().to_string(), input(name)));
        }
    }
    let (outputs, paths) = (
        site.path(&format!("{id}.out")),
        site.path(&format!("{id}.path")),
    );
    std::fs::write(&outputs, "").unwrap();
    std::fs::write(&paths, "").unwrap();
    let script = site.path(&format!("{id}.sh"));
    std::fs::write(&script, step["run"].as_str().unwrap()).unwrap();
    let out = Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail"])
        .arg(&script)
        .env_clear()
        .env("HOME", site.path("home"))
        .env("GITHUB_ACTION_PATH", env!("CARGO_MANIFEST_DIR"))
        .env("GITHUB_OUTPUT", &outputs)
        .env("GITHUB_PATH", &paths)
        .env("RUNNER_OS", "Linux")
        .env("RUNNER_ARCH", "X64")
        .envs(job.iter().map(|(k, v)| (k, v)))
        .envs(env)
        .output()
        .unwrap();
    (
        out,
        std::fs::read_to_string(&outputs).unwrap(),
        std::fs::read_to_string(&paths).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_github_action_logs_a_job_in_in_one_step() {
    let site = Site::start().await;
    let bin = site.path("runner-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let inputs = [
        ("url", site.gw.url.as_str()),
        ("robot", "acme+ci"),
        ("registry", site.registry.addr.as_str()),
    ];

    // Without fedgate on PATH the action decides to build it, keyed by its own source.
    let mut job = site.github_vars();
    job.extend(vars(&[("PATH", SYSTEM_PATH)]));
    let (out, outputs, _) = run_action_step(&site, "locate", &inputs, &job);
    assert_ok(&out);
    assert!(outputs.contains("found=false"), "{outputs}");
    let key = outputs
        .lines()
        .find_map(|l| l.strip_prefix("key=fedgate-client-Linux-X64-"))
        .unwrap_or_else(|| panic!("{outputs}"));
    assert_eq!(key.len(), 32);

    // With fedgate on PATH (as after the build step), the login step logs the job in.
    std::os::unix::fs::symlink(BIN, bin.join("fedgate")).unwrap();
    let path = format!("{}:{SYSTEM_PATH}", bin.display());
    let mut job = site.github_vars();
    job.extend(vars(&[("PATH", &path)]));
    let (_, outputs, _) = run_action_step(&site, "locate", &inputs, &job);
    assert!(outputs.contains("found=true"), "{outputs}");
    let (out, _, _) = run_action_step(&site, "login", &inputs, &job);
    assert_ok(&out);
    let config = site.path("home/.docker/config.json");
    let token = stored_token(&config, &site.registry.addr);
    assert!(registry_accepts(&site, &token).await);
    assert!(!stdout(&out).contains(&token) && !stderr(&out).contains(&token));

    // credential-helper: "true" sets the helper up and puts it on PATH for later steps.
    let mut with_helper = inputs.to_vec();
    with_helper.push(("credential-helper", "true"));
    let (out, _, paths) = run_action_step(&site, "login", &with_helper, &job);
    assert_ok(&out);
    assert_eq!(
        read_json(&config)["credHelpers"][site.registry.addr.as_str()],
        "fedgate"
    );
    let helper_dir = paths.trim();
    assert!(
        Path::new(helper_dir)
            .join("docker-credential-fedgate")
            .exists(),
        "{paths}"
    );

    // A refusal fails the step with fedgate's reason.
    let mut wrong = inputs.to_vec();
    wrong.push(("audience", "https://elsewhere.example"));
    let (out, _, _) = run_action_step(&site, "login", &wrong, &job);
    assert_eq!(code(&out), 77);
    assert!(
        stderr(&out).contains("audience_mismatch"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_workflow_example_uses_the_action_with_its_inputs() {
    let action = action();
    let inputs = action["inputs"].as_hash().unwrap();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/examples/github-actions.yml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let workflow = yaml_rust2::YamlLoader::load_from_str(&text)
        .unwrap()
        .remove(0);
    assert_eq!(workflow["permissions"]["id-token"].as_str(), Some("write"));
    let steps = workflow["jobs"]["push"]["steps"].as_vec().unwrap();
    let login = steps
        .iter()
        .find(|s| s["uses"].as_str().is_some_and(|u| u.contains("/fedgate@")))
        .expect("a step uses the fedgate action");
    let with = login["with"].as_hash().unwrap();
    for (key, _) in with {
        assert!(
            inputs.contains_key(key),
            "{key:?} is not an input of action.yml"
        );
    }
    for (name, spec) in inputs {
        if spec["required"].as_bool() == Some(true) {
            assert!(with.contains_key(name), "required input {name:?} missing");
        }
    }
    // Every variable the action sets is one `fedgate login` reads.
    for step in action["runs"]["steps"].as_vec().unwrap() {
        for (name, _) in step["env"].as_hash().into_iter().flatten() {
            let name = name.as_str().unwrap();
            assert!(
                !name.starts_with("FEDGATE_")
                    || fedgate::client::settings::KNOWN_VARIABLES.contains(&name),
                "{name}"
            );
        }
    }
}

/// The client-only build (`cargo build --no-default-features`, which scripts/test makes and
/// names in FEDGATE_CLIENT_BIN): a GitHub job logs in, the helper answers, skopeo pushes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_only_build_logs_in_and_answers_as_helper() {
    let Some(client_bin) = std::env::var_os("FEDGATE_CLIENT_BIN") else {
        eprintln!(
            "skipped: FEDGATE_CLIENT_BIN is not set (scripts/test builds the client-only binary \
             and sets it)"
        );
        return;
    };
    let mut site = Site::start().await;
    site.bin = PathBuf::from(client_bin);
    let help = site.fedgate(&["--help"], &[]).output().unwrap();
    assert!(
        stdout(&help).contains("built without the gateway"),
        "{} is the client-only build",
        site.bin.display()
    );
    let serve = site.fedgate(&["serve"], &[]).output().unwrap();
    assert_eq!(code(&serve), 64, "no gateway in the client-only build");

    let path = helper_path(&site);
    let authfile = site.path("auth.json");
    let mut job = site.github_vars();
    job.extend(vars(&[("PATH", &path)]));
    let mut env = site.job_vars();
    env.extend(job.clone());
    env.extend(vars(&[("REGISTRY_AUTH_FILE", authfile.to_str().unwrap())]));
    let out = site.login(&[], &env);
    assert_ok(&out);
    let token = stored_token(&authfile, &site.registry.addr);
    assert!(registry_accepts(&site, &token).await);

    let out = site.login(&["--credential-helper"], &env);
    assert_ok(&out);
    let secret = secret_of(
        &helper(&site, "get", &site.registry.addr, &job),
        &site.registry.addr,
    );
    assert!(registry_accepts(&site, &secret).await);
    let mut step = job.clone();
    step.extend(vars(&[("HOME", site.path("home").to_str().unwrap())]));
    let image = oci_image(&site.path("client-only"), "from the client-only build");
    site.registry
        .skopeo_copy_with_authfile(
            &image,
            &site.registry.image("acme/app", "client-only"),
            &authfile,
            &step,
        )
        .unwrap_or_else(|e| panic!("skopeo push through the client-only helper: {e}"));
}
