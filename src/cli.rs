//! The `fedgate` command line (SPEC section 1). Admin verbs work on the same database while
//! `serve` runs. Exit codes: 0 success, 64 invalid configuration or usage, 1 anything else.
//! `login` and `credential-helper` are the client's (`crate::client`): they never load the
//! server's configuration, and have exit codes of their own.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;

use crate::admin::issue_api_token;
use crate::app::{AppState, load_keyring, open_store};
use crate::audit;
use crate::client::ClientCommand;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::http::auth::Scope;
use crate::http::listener::{self, ServeOptions};
use crate::names::{self, NameKind};
use crate::rng::SystemRng;
use crate::store::{NamespaceStore, OrgRole, StoreError};
use crate::tokens::at_rest::AtRestKeys;
use crate::tokens::signing::{self, SigningAlg};

#[derive(Debug, Parser)]
#[command(
    name = "fedgate",
    version,
    about = "OIDC federation gateway for container registries"
)]
pub struct Cli {
    /// Configuration file (TOML). Without it, the embedded defaults apply.
    #[arg(long, global = true, env = crate::config::ENV_CONFIG_PATH)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Server(ServerCommand),
    #[command(flatten)]
    Client(ClientCommand),
}

/// The verbs that work on the gateway's configuration and database.
#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Run the gateway (migrates the database first).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage organizations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Manage admin-API access tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new signing key active; previous keys stay published until their tokens expire.
    Rotate,
    /// Print a self-signed certificate (PEM) for every published signing key: the
    /// `auth.token.rootcertbundle` a Docker registry needs.
    RegistryCert,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user (a namespace).
    Create { name: String },
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organization with USER as its first admin.
    Create {
        name: String,
        #[arg(long, value_name = "USER")]
        admin: String,
    },
    /// Add USER to ORG as a member (or admin), or change an existing member's role.
    AddMember {
        org: String,
        user: String,
        #[arg(long)]
        admin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API access token for USER and print it, alone, on stdout.
    Create {
        user: String,
        /// user:admin, org:admin or repo:admin (repeatable).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// e.g. 30d, 12h, 90m. Without it the token does not expire.
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print the effective values (secrets masked).
    Check,
}

/// A failed command, with the exit code it maps to.
#[derive(Debug)]
pub enum CliError {
    /// Bad usage or configuration: exit 64.
    Usage(String),
    /// Anything else: exit 1.
    Failure(String),
}

impl CliError {
    pub fn exit(&self) -> ExitCode {
        let (code, reason) = match self {
            CliError::Usage(r) => (64, r),
            CliError::Failure(r) => (1, r),
        };
        eprintln!("fedgate: {}", reason.replace('\n', " "));
        ExitCode::from(code)
    }
}

fn failure(e: impl std::fmt::Display) -> CliError {
    CliError::Failure(e.to_string())
}

fn usage(e: impl std::fmt::Display) -> CliError {
    CliError::Usage(e.to_string())
}

/// Runs one verb to completion.
pub async fn run(command: ServerCommand, config: Config) -> Result<(), CliError> {
    match command {
        ServerCommand::Serve => serve(config).await,
        ServerCommand::Migrate => {
            open_store(&config).await.map_err(failure)?;
            eprintln!("fedgate: database is up to date");
            Ok(())
        }
        ServerCommand::Config(ConfigCommand::Check) => {
            print!("{}", config.to_masked_toml());
            Ok(())
        }
        ServerCommand::User(UserCommand::Create { name }) => {
            names::check(NameKind::Namespace, &name).map_err(usage)?;
            let store = open_store(&config).await.map_err(failure)?;
            match store.create_user(&name, SystemClock.unix()).await {
                Ok(()) => {}
                Err(StoreError::Conflict) => {
                    return Err(failure(format!("namespace {name} already exists")));
                }
                Err(e) => return Err(failure(e)),
            }
            audit::cli_change("user.create", &name);
            eprintln!("fedgate: created user {name}");
            Ok(())
        }
        ServerCommand::Org(OrgCommand::Create { name, admin }) => {
            names::check(NameKind::Namespace, &name).map_err(usage)?;
            let store = open_store(&config).await.map_err(failure)?;
            match store.create_org(&name, &admin, SystemClock.unix()).await {
                Ok(()) => {}
                Err(StoreError::Conflict) => {
                    return Err(failure(format!("namespace {name} already exists")));
                }
                Err(StoreError::Missing(_)) => {
                    return Err(failure(format!("no user named {admin}")));
                }
                Err(e) => return Err(failure(e)),
            }
            audit::cli_change("org.create", &name);
            eprintln!("fedgate: created organization {name} with admin {admin}");
            Ok(())
        }
        ServerCommand::Org(OrgCommand::AddMember { org, user, admin }) => {
            let store = open_store(&config).await.map_err(failure)?;
            let role = if admin {
                OrgRole::Admin
            } else {
                OrgRole::Member
            };
            match store.set_member(&org, &user, role).await {
                Ok(()) => {}
                Err(StoreError::Missing(what)) => return Err(failure(format!("{what} not found"))),
                Err(e) => return Err(failure(e)),
            }
            audit::cli_change("org.member", &format!("{org}:{user}:{}", role.as_str()));
            eprintln!("fedgate: {user} is now {} of {org}", role.as_str());
            Ok(())
        }
        ServerCommand::Keys(KeysCommand::Rotate) => {
            let now = SystemClock.unix();
            let alg = SigningAlg::parse(&config.keys.signing_alg).unwrap_or(SigningAlg::ES256);
            // The at-rest key too, so an empty directory becomes a complete keys directory.
            AtRestKeys::load_or_create(&config.keys.dir, &SystemRng::default()).map_err(failure)?;
            signing::generate(&config.keys.dir, alg, now).map_err(failure)?;
            let ring = load_keyring(&config, now).map_err(failure)?;
            audit::cli_change("keys.rotate", &ring.active().kid);
            eprintln!(
                "fedgate: new active signing key {} ({}); {} key(s) published; running gateways pick it up within seconds",
                ring.active().kid,
                alg.as_str(),
                ring.published().len()
            );
            Ok(())
        }
        ServerCommand::Keys(KeysCommand::RegistryCert) => {
            let now = SystemClock.unix();
            let ring = load_keyring(&config, now).map_err(failure)?;
            for key in ring.published() {
                print!(
                    "{}",
                    signing::registry_certificate(key, now).map_err(failure)?
                );
            }
            Ok(())
        }
        ServerCommand::Token(TokenCommand::Create {
            user,
            scopes,
            expires_in,
        }) => create_token(config, user, scopes, expires_in).await,
    }
}

async fn create_token(
    config: Config,
    user: String,
    scopes: Vec<String>,
    expires_in: Option<String>,
) -> Result<(), CliError> {
    let mut parsed = Vec::new();
    for scope in &scopes {
        let scope = Scope::parse(scope).ok_or_else(|| {
            usage(format!(
                "unknown scope {scope:?}: use user:admin, org:admin or repo:admin"
            ))
        })?;
        if !parsed.contains(&scope) {
            parsed.push(scope);
        }
    }
    let ttl: Option<Duration> = expires_in
        .map(|d| {
            humantime::parse_duration(&d).map_err(|e| usage(format!("--expires-in {d:?}: {e}")))
        })
        .transpose()?;
    let now = SystemClock.unix();
    let expires_at = ttl
        .map(|ttl| {
            i64::try_from(ttl.as_secs())
                .ok()
                .and_then(|s| now.checked_add(s))
        })
        .map(|at| at.ok_or_else(|| usage("--expires-in is too long")))
        .transpose()?;

    let store = open_store(&config).await.map_err(failure)?;
    let rng = SystemRng::default();
    let keys = AtRestKeys::load_or_create(&config.keys.dir, &rng).map_err(failure)?;
    let token = issue_api_token(&store, &keys, &rng, &user, &parsed, now, expires_at)
        .await
        .map_err(failure)?;
    let scopes: Vec<&str> = parsed.iter().map(|s| s.as_str()).collect();
    audit::cli_change("token.create", &format!("{user}:{}", scopes.join(" ")));
    println!("{}", token.expose_secret());
    Ok(())
}

async fn serve(config: Config) -> Result<(), CliError> {
    let tls = match config.server.tls_files() {
        Some((cert, key)) => Some(listener::load_tls(cert, key).map_err(usage)?),
        None => None,
    };
    let public = listener::bind(config.server.listen)
        .await
        .map_err(|e| failure(format!("cannot listen on {}: {e}", config.server.listen)))?;
    let metrics = match config.server.metrics_addr() {
        Some(addr) => Some(
            listener::bind(addr)
                .await
                .map_err(|e| failure(format!("cannot listen on {addr} (metrics): {e}")))?,
        ),
        None => None,
    };
    let state = AppState::open(config).await.map_err(failure)?;
    tracing::info!(
        listen = %state.config.server.listen,
        tls = tls.is_some(),
        metrics = %state.config.server.metrics_listen,
        database = ?state.config.database_kind().ok(),
        "fedgate is serving"
    );
    let options = ServeOptions {
        tls,
        ..ServeOptions::default()
    };
    crate::server::run(state, public, metrics, options, listener::shutdown_signal()).await;
    tracing::info!("fedgate stopped");
    Ok(())
}
