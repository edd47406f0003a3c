//! `docker-credential-fedgate`: driven through its stdin/stdout protocol, then used by skopeo
//! and podman through `credHelpers`; its cache, its lock; and the client-only build.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::harness::ci::{
    Site, age_cached_token, assert_ok, cached_token_file, code, helper, helper_path, mode,
    read_json, registry_accepts, secret_of, stderr, stdout, stored_token, vars,
};
use crate::harness::registry::oci_image;

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
