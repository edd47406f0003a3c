//! `podman` as a registry client (Debian's package; `scripts/test` installs it). It cannot run
//! containers here, but pulling and pushing need none: images live in a throwaway storage
//! (vfs driver) under a temporary directory, and nothing of the host's configuration but
//! `/etc/containers` (the signature policy) is read.

use std::path::Path;
use std::process::Command;

use super::run_tool;

pub struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A podman command with its own storage, and of the environment only `env` (a
    /// credential helper's needs, such as PATH and HOME).
    fn command(&self, env: &[(String, String)]) -> Command {
        let dir = self.dir.path();
        for sub in ["home", "run", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(dir.join("root"))
            .arg("--runroot")
            .arg(dir.join("runroot"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "none",
            ])
            .env_clear()
            .env("HOME", dir.join("home"))
            .env("XDG_RUNTIME_DIR", dir.join("run"))
            .env("TMPDIR", dir.join("tmp"))
            .envs(env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// `podman pull` of `image` (`docker://host/repo:tag`) with only `authfile`.
    pub fn pull(
        &self,
        image: &str,
        authfile: &Path,
        env: &[(String, String)],
    ) -> Result<(), String> {
        let mut cmd = self.command(env);
        run_tool(
            cmd.args(["pull", "--quiet", "--tls-verify=false", "--authfile"])
                .arg(authfile)
                .arg(image),
        )
    }

    /// `podman push` of a pulled `image` to `dest` with only `authfile`.
    pub fn push(
        &self,
        image: &str,
        dest: &str,
        authfile: &Path,
        env: &[(String, String)],
    ) -> Result<(), String> {
        let mut cmd = self.command(env);
        run_tool(
            cmd.args(["push", "--quiet", "--tls-verify=false", "--authfile"])
                .arg(authfile)
                .args([image, dest]),
        )
    }
}
