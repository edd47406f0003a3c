//! Where the identity token comes from: one file per platform, plus the generic file,
//! variable and standard-input sources. [`choose`] picks one (detecting the platform for
//! `--source auto`), [`fetch`] obtains a token from it. Every failure is
//! [`ClientError::NoIdentityToken`] naming the variable, file or endpoint it looked at.

pub mod gcp;
pub mod generic;
pub mod github;
pub mod gitlab;
pub mod kubernetes;

use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::settings::SourceKind;
use super::{ClientError, Env};

/// A resolved source. Nothing secret: the helper saves it and fetches again later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// GitHub Actions: `ACTIONS_ID_TOKEN_REQUEST_URL` with `ACTIONS_ID_TOKEN_REQUEST_TOKEN`.
    Github,
    /// GitLab CI: an `id_tokens` variable.
    Gitlab { variable: String },
    /// Kubernetes: a projected service-account token file (kubelet rotates it, so it is read
    /// again on every fetch).
    Kubernetes { file: PathBuf },
    /// Google Cloud: the metadata server's identity endpoint.
    Gcp,
    /// A file (re-read on every fetch).
    File { file: PathBuf },
    /// A variable of the environment.
    Env { variable: String },
    /// Standard input (`fedgate login` only: the helper's standard input is its protocol).
    Stdin,
}

impl Source {
    /// For messages: "GitHub Actions", "the file /var/run/...".
    pub fn describe(&self) -> String {
        match self {
            Source::Github => "GitHub Actions".into(),
            Source::Gitlab { variable } => format!("GitLab CI (variable {variable})"),
            Source::Kubernetes { file } => {
                format!("Kubernetes (projected token {})", file.display())
            }
            Source::Gcp => "the Google Cloud metadata server".into(),
            Source::File { file } => format!("the file {}", file.display()),
            Source::Env { variable } => format!("the variable {variable}"),
            Source::Stdin => "standard input".into(),
        }
    }
}

/// Picks the source: an explicit kind, else an explicit file or variable, else the platform
/// the process runs on (GitHub Actions, GitLab CI, Kubernetes, Google Cloud, in that order).
pub fn choose(
    kind: SourceKind,
    token_file: Option<PathBuf>,
    token_env: Option<String>,
    env: &Env,
) -> Result<Source, ClientError> {
    let file_or_stdin = |file: PathBuf| {
        if file.as_os_str() == "-" {
            Source::Stdin
        } else {
            Source::File { file }
        }
    };
    let needs =
        |what: &str, flag: &str| ClientError::Usage(format!("--source {what} needs {flag}"));
    Ok(match kind {
        SourceKind::Github => Source::Github,
        SourceKind::Gitlab => Source::Gitlab {
            variable: token_env.unwrap_or_else(|| gitlab::DEFAULT_VARIABLE.into()),
        },
        SourceKind::Kubernetes => Source::Kubernetes {
            file: token_file.unwrap_or_else(|| kubernetes::DEFAULT_TOKEN_FILE.into()),
        },
        SourceKind::Gcp => Source::Gcp,
        SourceKind::File => file_or_stdin(token_file.ok_or_else(|| needs("file", "--token-file"))?),
        SourceKind::Env => Source::Env {
            variable: token_env.ok_or_else(|| needs("env", "--token-env"))?,
        },
        SourceKind::Stdin => Source::Stdin,
        SourceKind::Auto => match (token_file, token_env) {
            (Some(file), _) if kubernetes::detected(env) && file.as_os_str() != "-" => {
                Source::Kubernetes { file }
            }
            (Some(file), _) => file_or_stdin(file),
            (None, Some(variable)) if gitlab::detected(env) => Source::Gitlab { variable },
            (None, Some(variable)) => Source::Env { variable },
            (None, None) => detect(env)?,
        },
    })
}

fn detect(env: &Env) -> Result<Source, ClientError> {
    if github::detected(env) {
        return Ok(Source::Github);
    }
    if gitlab::detected(env) {
        return Ok(Source::Gitlab {
            variable: gitlab::DEFAULT_VARIABLE.into(),
        });
    }
    if kubernetes::detected(env) {
        return Ok(Source::Kubernetes {
            file: kubernetes::DEFAULT_TOKEN_FILE.into(),
        });
    }
    if gcp::detected(env) {
        return Ok(Source::Gcp);
    }
    Err(ClientError::NoIdentityToken(format!(
        "no identity token: this is not GitHub Actions ({} unset), GitLab CI (GITLAB_CI unset), \
         Kubernetes (KUBERNETES_SERVICE_HOST unset) or Google Cloud ({} and K_SERVICE unset; \
         on a VM, say --source gcp); give --token-file, --token-env or --source stdin",
        github::REQUEST_URL,
        gcp::HOST_VARIABLE
    )))
}

/// Obtains an identity token for `audience` from `source`.
pub async fn fetch(
    source: &Source,
    env: &Env,
    http: &reqwest::Client,
    audience: &str,
) -> Result<SecretString, ClientError> {
    match source {
        Source::Github => github::fetch(env, http, audience).await,
        Source::Gitlab { variable } => gitlab::read(env, variable),
        Source::Kubernetes { file } => kubernetes::read(file),
        Source::Gcp => gcp::fetch(env, http, audience).await,
        Source::File { file } => {
            generic::read_file(file, &format!("the file {}", file.display()), "")
        }
        Source::Env { variable } => generic::read_variable(env, variable, ""),
        Source::Stdin => generic::read_stdin(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn auto_detects_the_platform() {
        let auto = |pairs: &[(&str, &str)]| choose(SourceKind::Auto, None, None, &env(pairs));
        assert_eq!(
            auto(&[
                ("GITHUB_ACTIONS", "true"),
                ("ACTIONS_ID_TOKEN_REQUEST_URL", "https://x")
            ])
            .unwrap(),
            Source::Github
        );
        assert_eq!(
            auto(&[
                ("GITLAB_CI", "true"),
                ("KUBERNETES_SERVICE_HOST", "10.0.0.1")
            ])
            .unwrap(),
            Source::Gitlab {
                variable: gitlab::DEFAULT_VARIABLE.into()
            }
        );
        assert_eq!(
            auto(&[("KUBERNETES_SERVICE_HOST", "10.0.0.1")]).unwrap(),
            Source::Kubernetes {
                file: kubernetes::DEFAULT_TOKEN_FILE.into()
            }
        );
        assert_eq!(
            auto(&[("GCE_METADATA_HOST", "127.0.0.1:8080")]).unwrap(),
            Source::Gcp
        );
        let Err(ClientError::NoIdentityToken(why)) = auto(&[]) else {
            panic!("nothing to detect");
        };
        assert!(why.contains("ACTIONS_ID_TOKEN_REQUEST_URL") && why.contains("--token-file"));
    }

    #[test]
    fn explicit_files_and_variables_win_over_detection() {
        let gh = env(&[
            ("GITHUB_ACTIONS", "true"),
            ("ACTIONS_ID_TOKEN_REQUEST_URL", "https://x"),
        ]);
        assert_eq!(
            choose(SourceKind::Auto, Some("/t".into()), None, &gh).unwrap(),
            Source::File { file: "/t".into() }
        );
        assert_eq!(
            choose(SourceKind::Auto, Some("-".into()), None, &gh).unwrap(),
            Source::Stdin
        );
        assert_eq!(
            choose(SourceKind::Auto, None, Some("MY_TOKEN".into()), &gh).unwrap(),
            Source::Env {
                variable: "MY_TOKEN".into()
            }
        );
        let k8s = env(&[("KUBERNETES_SERVICE_HOST", "10.0.0.1")]);
        assert_eq!(
            choose(SourceKind::Auto, Some("/t".into()), None, &k8s).unwrap(),
            Source::Kubernetes { file: "/t".into() }
        );
        assert!(matches!(
            choose(SourceKind::File, None, None, &gh),
            Err(ClientError::Usage(_))
        ));
    }
}
