//! Red Hat's Ansible collection for Quay (`infra.quay_configuration` 2.8.1, vendored in
//! `tests/vendor/`), unmodified, run by `ansible-playbook` against the gateway: its
//! `quay_robot` module creates an organization robot with a federation, finds nothing to do
//! the second time, appends a federation, creates a robot in the user's own namespace, and
//! deletes, then finds nothing to delete.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use fedgate::store::FederationEntry;
use serde_json::{Value, json};

use crate::harness::{Backend, Gateway, python};

const COLLECTION: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vendor/infra-quay_configuration-2.8.1.tar.gz"
);
const PLAYBOOKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ansible");

struct Ansible {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Ansible {
    /// Installs the vendored collection into a fresh directory.
    fn install(galaxy: &Path) -> Self {
        let bin = galaxy.parent().unwrap().to_path_buf();
        let ansible = Self {
            bin,
            dir: tempfile::tempdir().unwrap(),
        };
        let out = ansible
            .command("ansible-galaxy")
            .args(["collection", "install", "--offline", "-p"])
            .arg(ansible.dir.path().join("collections"))
            .arg(COLLECTION)
            .output()
            .expect("run ansible-galaxy");
        assert!(out.status.success(), "ansible-galaxy: {}", said(&out));
        ansible
    }

    /// A command of the virtualenv with an environment of its own: no user configuration,
    /// no `QUAY_*` defaults, state under the temporary directory.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("ANSIBLE_") || key.starts_with("QUAY_") {
                cmd.env_remove(&*key);
            }
        }
        let home = self.dir.path().join("home");
        cmd.current_dir(self.dir.path())
            .env("ANSIBLE_HOME", &home)
            .env("ANSIBLE_LOCAL_TEMP", home.join("tmp"))
            .env(
                "ANSIBLE_COLLECTIONS_PATH",
                self.dir.path().join("collections"),
            )
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_PIPELINING", "1");
        cmd
    }

    /// Runs `playbook` against `gateway` as the holder of `token`; returns what it recorded.
    async fn play(&self, playbook: &str, gateway: &Gateway, token: &str) -> Value {
        let out_file = self.dir.path().join(format!("{playbook}.json"));
        let vars = self.dir.path().join("vars.json");
        let python = self.bin.join("python");
        std::fs::write(
            &vars,
            json!({
                "quay_host": gateway.url,
                "quay_token": token,
                "out": out_file,
                "ansible_python_interpreter": python,
            })
            .to_string(),
        )
        .unwrap();
        let mut cmd = self.command("ansible-playbook");
        cmd.args(["-i", "localhost,", "-c", "local", "-e"])
            .arg(format!("@{}", vars.display()))
            .arg(Path::new(PLAYBOOKS).join(playbook));
        // The gateway serves on this runtime's workers while the playbook runs.
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap()
            .expect("run ansible-playbook");
        assert!(out.status.success(), "{playbook}: {}", said(&out));
        serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap()
    }
}

fn said(out: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn changed(results: &Value, task: &str) -> bool {
    let result = &results[task];
    assert_eq!(result["failed"], false, "{task}: {result}");
    result["changed"]
        .as_bool()
        .unwrap_or_else(|| panic!("{task}: {result}"))
}

async fn issuers_and_subjects(
    gateway: &Gateway,
    namespace: &str,
    short: &str,
) -> BTreeSet<(String, String)> {
    let robot = gateway
        .store()
        .robot(namespace, short)
        .await
        .unwrap()
        .unwrap();
    let entries: Vec<FederationEntry> = gateway.store().federation(robot.id).await.unwrap();
    entries
        .iter()
        .map(|e| (e.issuer.to_string(), e.subject.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quay_collection_manages_robots_and_their_federation() {
    let test = "ansible::the_quay_collection_manages_robots_and_their_federation";
    let Some(galaxy) = python::tool("ansible-galaxy", test) else {
        return;
    };
    let ansible = Ansible::install(&galaxy);
    let gateway = Gateway::start(Backend::Sqlite).await;
    // The collection's documented requirement: "Administer Organization" and "Administer User".
    let token = gateway.admin("alice").await;
    gateway.org("acme", "alice").await;

    let created = ansible.play("robots-create.yml", &gateway, &token).await;
    assert!(changed(&created, "create"));
    assert!(
        !changed(&created, "again"),
        "the same task twice changes nothing"
    );
    assert!(changed(&created, "append"));
    assert!(changed(&created, "user_robot"));

    let ci = gateway
        .store()
        .robot("acme", "ci")
        .await
        .unwrap()
        .expect("acme+ci");
    assert_eq!(ci.description, "CI pushes");
    assert_eq!(created["create"]["name"], "acme+ci");
    // The module returns the robot's token, and the second run did not replace the robot.
    let token_of_ci = gateway
        .call(
            "GET",
            "/api/v1/organization/acme/robots/ci",
            Some(&token),
            None,
        )
        .await
        .json()["token"]
        .clone();
    assert_eq!(created["create"]["token"], token_of_ci);
    assert_eq!(created["again"]["token"], token_of_ci);
    assert_eq!(
        issuers_and_subjects(&gateway, "acme", "ci").await,
        BTreeSet::from([
            (
                "https://token.actions.githubusercontent.com".to_string(),
                "repo:acme/app:ref:refs/heads/main".to_string()
            ),
            (
                "https://gitlab.example.com".to_string(),
                "project_path:acme/app:ref_type:branch:ref:main".to_string()
            ),
        ])
    );
    let builder = gateway
        .store()
        .robot("alice", "builder")
        .await
        .unwrap()
        .expect("alice+builder");
    assert_eq!(builder.description, "My builds");
    assert_eq!(created["user_robot"]["name"], "alice+builder");

    let deleted = ansible.play("robots-delete.yml", &gateway, &token).await;
    assert!(changed(&deleted, "delete"));
    assert!(!changed(&deleted, "delete_again"), "nothing left to delete");
    assert!(changed(&deleted, "delete_user_robot"));
    assert_eq!(gateway.robot_count("acme").await, 0);
    assert_eq!(gateway.robot_count("alice").await, 0);
}
