//! The client side of the exchange: `fedgate login` and the Docker credential helper
//! (`docker-credential-fedgate`). A CI job or workload runs it to trade the identity token its
//! platform gives it for a robot token, and to hand that token to the container tools.
//!
//! - [`settings`]: flags and `FEDGATE_LOGIN_*` variables, resolved once into [`Settings`].
//! - [`source`]: where each platform puts the identity token (one file per platform).
//! - [`exchange`]: the call to the gateway, in Quay's form or RFC 8693's.
//! - [`authfile`]: the Docker config and the containers auth file, edited in place.
//! - [`cache`]: robot tokens kept on disk for the credential helper, and its saved settings.
//! - [`helper`]: the credential-helper protocol (`get`, `store`, `erase`, `list`, `version`).
//! - [`login`]: `fedgate login` itself.
//!
//! No server module imports this one, and it uses nothing of the server but the wire types
//! ([`crate::wire`]) and the clock. It never reads the server's configuration: its variables are
//! `FEDGATE_LOGIN_*`, a prefix the server's configuration loader skips.
//!
//! Exit codes say which side failed (see [`ClientError`]); messages never contain a token.

pub mod authfile;
pub mod cache;
pub mod exchange;
pub mod helper;
mod http;
pub mod login;
pub mod settings;
pub mod source;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

pub use settings::{LoginArgs, Settings};

/// Prefix of every client variable; the server's configuration loader ignores these names.
pub const ENV_PREFIX: &str = "FEDGATE_LOGIN_";

/// The process environment, read once and passed in, so tests run the real code on their own
/// variables. An empty value counts as unset, as CI systems use "" for "not set".
#[derive(Debug, Clone, Default)]
pub struct Env(BTreeMap<String, String>);

impl Env {
    pub fn new(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Self(vars.into_iter().filter(|(_, v)| !v.is_empty()).collect())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn is_set(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Names of the `FEDGATE_LOGIN_*` variables that are set.
    pub fn client_names(&self) -> impl Iterator<Item = &str> {
        self.0
            .keys()
            .map(String::as_str)
            .filter(|k| k.starts_with(ENV_PREFIX))
    }

    pub fn home(&self) -> Option<PathBuf> {
        self.get("HOME").map(PathBuf::from)
    }
}

/// Why the client failed; each kind has its own exit code so a CI log (or a retry policy)
/// can tell whose side failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Bad flags or variables: 64 (as every `fedgate` verb).
    #[error("{0}")]
    Usage(String),
    /// No identity token could be obtained from the platform: 66. The message names the
    /// variable, file or endpoint that was looked at.
    #[error("{0}")]
    NoIdentityToken(String),
    /// The gateway could not be reached, or answered 5xx or 429 (retrying later may help): 69.
    #[error("{0}")]
    GatewayUnavailable(String),
    /// The gateway refused the identity token (4xx): 77. The message carries fedgate's
    /// `error_code` and explanation.
    #[error("{0}")]
    Refused(String),
    /// The auth file, cache or settings could not be written: 73.
    #[error("{0}")]
    Write(String),
}

impl ClientError {
    pub fn code(&self) -> u8 {
        match self {
            ClientError::Usage(_) => 64,
            ClientError::NoIdentityToken(_) => 66,
            ClientError::GatewayUnavailable(_) => 69,
            ClientError::Write(_) => 73,
            ClientError::Refused(_) => 77,
        }
    }

    /// Prints the one-line reason on stderr and returns the exit code.
    pub fn exit(&self) -> ExitCode {
        eprintln!("fedgate: {}", self.to_string().replace('\n', " "));
        ExitCode::from(self.code())
    }
}

/// The client's verbs, part of the `fedgate` command line.
#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Log in to a registry from a CI job or workload: trade its identity token for a robot
    /// token and store it for docker, podman, skopeo and buildah (see docs/login.md).
    Login(LoginArgs),
    /// The Docker credential-helper protocol, as docker-credential-fedgate runs it.
    CredentialHelper {
        /// get, store, erase, list or version
        action: String,
    },
}

/// Runs a client verb with the process's environment, standard input and output.
pub fn run(command: ClientCommand, env: Env) -> ExitCode {
    match command {
        ClientCommand::Login(args) => run_login(args, env),
        ClientCommand::CredentialHelper { action } => run_helper(&action, env),
    }
}

/// Runs `fedgate login` with the process's environment and standard input.
pub fn run_login(args: LoginArgs, env: Env) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("fedgate: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(login::login(args, &env, &crate::clock::SystemClock)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.exit(),
    }
}

/// Runs one credential-helper action (`docker-credential-fedgate <action>`) on the process's
/// standard input and output.
pub fn run_helper(action: &str, env: Env) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            println!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    runtime.block_on(helper::run(
        action,
        &env,
        &crate::clock::SystemClock,
        stdin,
        stdout,
    ))
}
