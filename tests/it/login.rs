//! `fedgate login` as a CI job runs it: the real binary with nothing in its environment but
//! what the platform would set, each platform's token source emulated on loopback, then skopeo
//! and podman pushing and pulling through a stock `docker-registry` and fedgate with nothing
//! but the auth file the client wrote. Refusals, missing tokens, and the exit codes.

use std::io::Write;
use std::process::Stdio;

use base64_simd::STANDARD as BASE64;
use fedgate::clock::{Clock, SystemClock};
use serde_json::json;

use crate::harness::ci::{
    Site, assert_logged_in, assert_ok, code, mode, plain, read_json, registry_accepts, stderr,
    stored_token, vars,
};
use crate::harness::free_port;
use crate::harness::issuer::{Issuer, Mode};
use crate::harness::platforms::REQUEST_TOKEN;
use crate::harness::registry::oci_image;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anywhere_else_the_token_comes_from_a_file_a_variable_or_stdin() {
    let site = Site::start().await;
    let file = site.path("id-token");
    std::fs::write(&file, site.token("github-actions")).unwrap();
    let mut env = site.job_vars();
    env.extend(vars(&[("MY_ID_TOKEN", &site.token("github-actions"))]));
    for args in [
        vec!["--print", "--token-file", file.to_str().unwrap()],
        vec!["--print", "--token-env", "MY_ID_TOKEN"],
    ] {
        let out = site.login(&args, &env);
        assert_ok(&out);
        let token = String::from_utf8(out.stdout).unwrap();
        assert!(registry_accepts(&site, token.trim()).await, "{args:?}");
    }
    for args in [
        vec!["--print", "--source", "stdin"],
        vec!["--print", "--token-file", "-"],
    ] {
        let mut child = site
            .fedgate(&[&["login"], args.as_slice()].concat(), &env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let id_token = site.token("github-actions");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(id_token.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_ok(&out);
        assert!(!stderr(&out).contains(&id_token));
        let token = String::from_utf8(out.stdout).unwrap();
        assert!(registry_accepts(&site, token.trim()).await, "{args:?}");
    }
}
