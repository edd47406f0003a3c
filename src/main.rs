//! Wiring only: parse the command line and configuration, set up logging, run the verb.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use fedgate::cli::{self, Cli, CliError};
use fedgate::config::Config;

fn main() -> ExitCode {
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
    // Non-UTF-8 variables cannot be configuration values; a FEDGATE_ one is reported as invalid.
    let env = std::env::vars_os().map(|(k, v)| {
        (
            k.to_string_lossy().into_owned(),
            v.to_string_lossy().into_owned(),
        )
    });
    let config = match Config::load(cli.config.as_deref(), env) {
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
    match runtime.block_on(cli::run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.exit(),
    }
}
