//! Wiring only: parse the command line and configuration, set up logging, run the verb.
//!
//! The client verbs (`login`, `credential-helper`, and the binary run as
//! `docker-credential-fedgate`) are dispatched before the server's configuration is loaded:
//! a CI job has no gateway configuration, and must not fail on one. Built without the `server`
//! feature, the binary has the client verbs only.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use fedgate::client::{self, Env};

fn main() -> ExitCode {
    if invoked_as(client::login::HELPER_PROGRAM) {
        let action = std::env::args().nth(1).unwrap_or_default();
        return client::run_helper(&action, Env::new(environment()));
    }
    run()
}

/// The process environment as strings. Non-UTF-8 variables cannot be configuration values; a
/// FEDGATE_ one is reported as invalid.
fn environment() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().map(|(k, v)| {
        (
            k.to_string_lossy().into_owned(),
            v.to_string_lossy().into_owned(),
        )
    })
}

/// Parses the command line; help and version exit 0, mistakes exit 64 with one line.
fn parse<T: Parser>() -> Result<T, ExitCode> {
    match T::try_parse() {
        Ok(parsed) => Ok(parsed),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            let text = e.to_string();
            let reason = text
                .lines()
                .next()
                .unwrap_or("invalid usage")
                .trim_start_matches("error: ");
            eprintln!("fedgate: {reason} (see fedgate --help)");
            Err(ExitCode::from(64))
        }
    }
}

#[cfg(feature = "server")]
fn run() -> ExitCode {
    use std::io::IsTerminal;

    use fedgate::cli::{self, Cli, CliError, Command};
    use fedgate::config::Config;

    let cli = match parse::<Cli>() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let command = match cli.command {
        Command::Client(command) => return client::run(command, Env::new(environment())),
        Command::Server(command) => command,
    };
    let config = match Config::load(cli.config.as_deref(), environment()) {
        Ok(config) => config,
        Err(e) => return CliError::Usage(format!("invalid configuration: {e}")).exit(),
    };
    let colour = fedgate::logging::colour_wanted(std::io::stderr().is_terminal(), |name| {
        std::env::var_os(name).is_some_and(|v| !v.is_empty())
    });
    fedgate::logging::init(&config.log, colour);
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

/// The client-only build's command line: the client verbs alone.
#[cfg(not(feature = "server"))]
#[derive(Debug, Parser)]
#[command(
    name = "fedgate",
    version,
    about = "fedgate's client: log in to a registry through a fedgate gateway (built without the gateway)"
)]
struct ClientCli {
    #[command(subcommand)]
    command: client::ClientCommand,
}

#[cfg(not(feature = "server"))]
fn run() -> ExitCode {
    match parse::<ClientCli>() {
        Ok(cli) => client::run(cli.command, Env::new(environment())),
        Err(code) => code,
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
