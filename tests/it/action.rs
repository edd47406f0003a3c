//! The GitHub Action (`action.yml`): its own steps run as the runner runs them, against the
//! loopback gateway; and the workflow example's use of it.

use std::path::Path;
use std::process::{Command, Output};

use crate::harness::ci::{
    BIN, SYSTEM_PATH, Site, assert_ok, code, read_json, registry_accepts, stderr, stdout,
    stored_token, vars,
};

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
