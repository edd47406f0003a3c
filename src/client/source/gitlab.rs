//! GitLab CI: a job declares its identity tokens under `id_tokens:`, each as a variable with
//! its own audience:
//!
//! ```yaml
//! id_tokens:
//!   FEDGATE_LOGIN_ID_TOKEN:
//!     aud: https://fedgate.example.com
//! ```
//!
//! The variable's name is `--token-env`, by default [`DEFAULT_VARIABLE`]. The token is made once
//! per job: with the gateway's replay protection on, it can be exchanged once.

use secrecy::SecretString;

use super::super::{ClientError, Env};
use super::generic::read_variable;

/// The `id_tokens` name `fedgate login` reads unless `--token-env` names another.
pub const DEFAULT_VARIABLE: &str = "FEDGATE_LOGIN_ID_TOKEN";

pub fn detected(env: &Env) -> bool {
    env.get("GITLAB_CI") == Some("true")
}

pub fn read(env: &Env, variable: &str) -> Result<SecretString, ClientError> {
    read_variable(
        env,
        variable,
        " (GitLab CI: declare it under the job's id_tokens: with the gateway's URL as aud, \
             or name another variable with --token-env)",
    )
}
