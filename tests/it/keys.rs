//! The `fedgate keys` verbs as an operator runs them through a rotation: rotate (first key,
//! then a staged one), list, activate, registry-cert, registry-jwks, and their exit codes.

use std::process::Output;

use serde_json::Value;

use crate::harness::replica::fedgate;

fn run(env: &[(String, String)], args: &[&str]) -> Output {
    fedgate(env, args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `keys list` as `(kid, state)` pairs.
fn states(env: &[(String, String)]) -> Vec<(String, String)> {
    let listed = run(env, &["keys", "list"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    stdout(&listed)
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields[0].to_string(), fields[2].to_string())
        })
        .collect()
}

#[test]
fn an_operator_stages_publishes_and_activates_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![(
        "FEDGATE_KEYS_DIR".to_string(),
        dir.path().join("keys").display().to_string(),
    )];
    // The first key signs at once, made by `keys rotate` or by the first look at the
    // directory (as the compose file's bundle step does).
    let first = run(&env, &["keys", "rotate"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stderr(&first).contains("is active"), "{}", stderr(&first));
    let listed = states(&env);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].1, "active");
    let first_kid = listed[0].0.clone();
    let elsewhere = vec![(
        "FEDGATE_KEYS_DIR".to_string(),
        dir.path().join("other").display().to_string(),
    )];
    let bundle = run(&elsewhere, &["keys", "registry-cert"]);
    assert!(bundle.status.success(), "{}", stderr(&bundle));
    assert_eq!(stdout(&bundle).matches("BEGIN CERTIFICATE").count(), 1);
    assert_eq!(states(&elsewhere)[0].1, "active");

    // Nothing staged to activate.
    let nothing = run(&env, &["keys", "activate"]);
    assert_eq!(nothing.status.code(), Some(1));
    assert!(
        stderr(&nothing).contains("no staged"),
        "{}",
        stderr(&nothing)
    );

    // The second is staged: published everywhere, not signing.
    let second = run(&env, &["keys", "rotate"]);
    assert!(second.status.success());
    assert!(stderr(&second).contains("staged"), "{}", stderr(&second));
    let listed = states(&env);
    assert_eq!(
        listed.iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>(),
        ["active", "staged"]
    );
    let staged_kid = listed[1].0.clone();
    let bundle = stdout(&run(&env, &["keys", "registry-cert"]));
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2);
    let jwks: Value =
        serde_json::from_str(&stdout(&run(&env, &["keys", "registry-jwks"]))).unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [first_kid.as_str(), staged_kid.as_str()]);
    // One key's certificate, the same bytes as in the bundle.
    let one = stdout(&run(&env, &["keys", "registry-cert", "--kid", &staged_kid]));
    assert_eq!(one.matches("BEGIN CERTIFICATE").count(), 1);
    assert!(
        bundle.ends_with(&one),
        "the staged key's certificate comes last"
    );
    let unknown = run(&env, &["keys", "registry-cert", "--kid", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));

    // Activation must leave every replica time to read it.
    let too_soon = run(&env, &["keys", "activate", "--in", "2s"]);
    assert_eq!(too_soon.status.code(), Some(64), "{}", stderr(&too_soon));
    let bad = run(&env, &["keys", "activate", "--in", "soon"]);
    assert_eq!(bad.status.code(), Some(64));
    let activated = run(&env, &["keys", "activate", "--in", "1h"]);
    assert!(activated.status.success(), "{}", stderr(&activated));
    assert!(
        stderr(&activated).contains(&staged_kid),
        "{}",
        stderr(&activated)
    );
    assert_eq!(states(&env)[1].1, "staged", "an hour ahead");
    let activated = run(&env, &["keys", "activate"]);
    assert!(activated.status.success());
    assert!(
        stderr(&activated).contains("in 10 s"),
        "{}",
        stderr(&activated)
    );

    // A delay shorter than the reload margin is refused in the configuration.
    let mut short = env.clone();
    short.push(("FEDGATE_KEYS_ACTIVATION_DELAY_SECONDS".into(), "5".into()));
    let refused = run(&short, &["keys", "rotate"]);
    assert_eq!(refused.status.code(), Some(64));
    assert!(
        stderr(&refused).contains("activation_delay_seconds"),
        "{}",
        stderr(&refused)
    );
}
