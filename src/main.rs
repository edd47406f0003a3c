//! Wiring only: parse the command line and configuration, set up logging, run the verb.
//!
//! The client verbs (`login`, `credential-helper`, and the binary run as
//! `docker-credential-fedgate`) are dispatched before the server's configuration is loaded:
//! a CI job has no gateway configuration, and must not fail on one.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use fedgate::cli::{self, Cli, CliError, Command};
use fedgate::client::{self, Env};
use fedgate::config::Config;

fn main() -> ExitCode {
    // Non-UTF-8 variables cannot be configuration values; a FEDGATE_ one is reported as invalid.
    let env = || {
        std::env::vars_os().map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
    };
    if invoked_as(fedgate::client::login::HELPER_PROGRAM) {
        let action = std::env::args().nth(1).unwrap_or_default();
        return client::run_helper(&action, Env::new(env()));
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            let reason = text
                .lines()
                .next()
                .unwrap_or("invalid usage")
                .trim_start_matches("error: ");
            return CliError::Usage(format!("{reason} (see fedgate --help)")).exit();
        }
    };
    let command = match cli.command {
        Command::Login(args) => return client::run_login(args, Env::new(env())),
        Command::CredentialHelper { action } => {
            return client::run_helper(&action, Env::new(env()));
        }
        Command::Server(command) => command,
    };
    let config = match Config::load(cli.config.as_deref(), env()) {
        Ok(config) => config,
        Err(e) => return CliError::Usage(format!("invalid configuration: {e}")).exit(),
    };
    fedgate::logging::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return CliError::Failure(format!("cannot start the runtime: {e}")).exit(),
    };
    match runtime.block_on(cli::run(command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.exit(),
    }
}

/// True when the binary was started under `name` (a symlink such as `docker-credential-fedgate`).
fn invoked_as(name: &str) -> bool {
    std::env::args_os()
        .next()
        .as_deref()
        .and_then(|arg0| Path::new(arg0).file_name())
        .is_some_and(|file| file == name)
}
