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
use crate::app::{
    AppState, SchemaPolicy, key_retirement_seconds, load_keyring, open_store, signing_alg,
};
use crate::audit;
use crate::client::ClientCommand;
use crate::clock::{Clock, SystemClock, rfc3339};
use crate::config::Config;
use crate::http::auth::Scope;
use crate::http::listener::{self, ServeOptions};
use crate::names::{self, NameKind};
use crate::rng::SystemRng;
use crate::shutdown::Shutdown;
use crate::store::{NamespaceStore, OrgRole, SqlStore, StoreError};
use crate::tokens::at_rest::AtRestKeys;
use crate::tokens::key_files;
use crate::tokens::signing;

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
    /// Run the gateway, applying pending database migrations first (unless --no-migrate).
    Serve {
        /// Do not migrate: refuse a database schema older than this binary needs. For
        /// deployments that run `fedgate migrate` as their own step before a rollout.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Apply pending database migrations and exit; a no-op on a newer schema.
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
    /// Stage a new signing key: published at once, signing only after
    /// keys.activation_delay_seconds (or `keys activate`). In an empty keys directory, the
    /// first key signs at once. Previous keys stay published until their tokens expire.
    Rotate,
    /// Make the staged key sign from a moment shortly ahead, the same instant on every replica.
    Activate {
        /// How far ahead (at least 10s, so every replica has read it first), e.g. 10s, 5m.
        #[arg(long = "in", value_name = "DURATION", default_value = "10s")]
        after: String,
    },
    /// List the published signing keys: kid, algorithm, state, activation and retirement.
    List,
    /// Print a self-signed certificate (PEM) for every published signing key: the
    /// `auth.token.rootcertbundle` a Docker registry (distribution 2.x and 3.x) needs.
    RegistryCert {
        /// Only this key's certificate (for registries that trust one key, such as zot).
        /// A kid is base64url and may start with `-`.
        #[arg(long, allow_hyphen_values = true)]
        kid: Option<String>,
    },
    /// Print the JWKS of every published signing key: the `auth.token.jwks` file distribution
    /// 3.x can use instead of a bundle (with `registry.token_x5c = false`).
    RegistryJwks,
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
        ServerCommand::Serve { no_migrate } => {
            let schema = if no_migrate {
                SchemaPolicy::Require
            } else {
                SchemaPolicy::Migrate
            };
            serve(config, schema).await
        }
        ServerCommand::Migrate => {
            let kind = config.database_kind().map_err(usage)?;
            let store = SqlStore::connect(&config.storage.database_url, kind)
                .await
                .map_err(|e| failure(format!("cannot open the database: {e}")))?;
            let migrated = store.migrate().await.map_err(failure)?;
            eprintln!("fedgate: {migrated}");
            Ok(())
        }
        ServerCommand::Config(ConfigCommand::Check) => {
            for warning in config.warnings() {
                eprintln!("fedgate: warning: {warning}");
            }
            print!("{}", config.to_masked_toml());
            Ok(())
        }
        ServerCommand::User(UserCommand::Create { name }) => {
            names::check(NameKind::Namespace, &name).map_err(usage)?;
            let store = open_store(&config, SchemaPolicy::Require)
                .await
                .map_err(failure)?;
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
            let store = open_store(&config, SchemaPolicy::Require)
                .await
                .map_err(failure)?;
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
            let store = open_store(&config, SchemaPolicy::Require)
                .await
                .map_err(failure)?;
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
        ServerCommand::Keys(command) => keys(command, &config),
        ServerCommand::Token(TokenCommand::Create {
            user,
            scopes,
            expires_in,
        }) => create_token(config, user, scopes, expires_in).await,
    }
}

fn keys(command: KeysCommand, config: &Config) -> Result<(), CliError> {
    let now = SystemClock.unix();
    let dir = &config.keys.dir;
    if matches!(
        command,
        KeysCommand::List | KeysCommand::RegistryCert { .. } | KeysCommand::RegistryJwks
    ) && key_files::list(dir).map_err(failure)?.is_empty()
    {
        // As before staged rotation, the first look at an empty directory makes its first key
        // (deploy/compose.yaml writes the bundle before any gateway has started).
        let delay = i64::try_from(config.keys.activation_delay_seconds).unwrap_or(i64::MAX);
        signing::stage(dir, signing_alg(config), delay, now).map_err(failure)?;
    }
    match command {
        KeysCommand::Rotate => {
            // The at-rest key too, so an empty directory becomes a complete keys directory.
            AtRestKeys::load_or_create(dir, &SystemRng::default()).map_err(failure)?;
            let delay = i64::try_from(config.keys.activation_delay_seconds).unwrap_or(i64::MAX);
            let staged = signing::stage(dir, signing_alg(config), delay, now).map_err(failure)?;
            let ring = load_keyring(config, now).map_err(failure)?;
            let key = ring
                .published()
                .last()
                .filter(|k| k.created_at == staged.created)
                .ok_or_else(|| failure("the new key is not in the keys directory"))?;
            audit::cli_change("keys.rotate", &key.kid);
            if key.activates_at <= now {
                eprintln!(
                    "fedgate: first signing key {} ({}) is active",
                    key.kid,
                    key.alg.as_str()
                );
            } else {
                eprintln!(
                    "fedgate: staged signing key {} ({}); it signs from {} (in {} s). Give every registry the new bundle now (fedgate keys registry-cert, or registry-jwks), then wait or run `fedgate keys activate`",
                    key.kid,
                    key.alg.as_str(),
                    rfc3339(key.activates_at),
                    key.activates_at - now
                );
            }
            Ok(())
        }
        KeysCommand::Activate { after } => {
            let after = humantime::parse_duration(&after)
                .map_err(|e| usage(format!("--in {after:?}: {e}")))?;
            let margin = signing::ACTIVATION_MARGIN_SECONDS;
            let after = i64::try_from(after.as_secs()).unwrap_or(i64::MAX);
            if after < margin {
                return Err(usage(format!(
                    "--in must be at least {margin}s, so that every replica has read the change before it takes effect"
                )));
            }
            let files = key_files::list(dir).map_err(failure)?;
            let staged = files
                .iter()
                .rfind(|f| f.activates_at() > now)
                .ok_or_else(|| {
                    failure("no staged signing key; `fedgate keys rotate` stages one")
                })?;
            let at = now.saturating_add(after);
            key_files::set_activation(staged, at).map_err(failure)?;
            let ring = load_keyring(config, now).map_err(failure)?;
            let kid = ring
                .published()
                .iter()
                .find(|k| k.created_at == staged.created && k.activates_at == at)
                .map(|k| k.kid.clone())
                .unwrap_or_else(|| staged.name.clone());
            audit::cli_change("keys.activate", &kid);
            eprintln!(
                "fedgate: signing key {kid} signs from {} (in {after} s); running gateways read the change within {} s",
                rfc3339(at),
                signing::RELOAD_INTERVAL_SECONDS
            );
            Ok(())
        }
        KeysCommand::List => {
            let ring = load_keyring(config, now).map_err(failure)?;
            let retire_after = key_retirement_seconds(config);
            for key in ring.published() {
                let retires = ring
                    .superseded_at(key)
                    .map(|at| format!(" retires {}", rfc3339(at.saturating_add(retire_after))))
                    .unwrap_or_default();
                println!(
                    "{} {} {} activates {}{retires}",
                    key.kid,
                    key.alg.as_str(),
                    ring.state(key, now).as_str(),
                    rfc3339(key.activates_at),
                );
            }
            Ok(())
        }
        KeysCommand::RegistryCert { kid } => {
            let ring = load_keyring(config, now).map_err(failure)?;
            let keys: Vec<_> = ring
                .published()
                .iter()
                .filter(|k| kid.as_ref().is_none_or(|kid| k.kid == *kid))
                .collect();
            if keys.is_empty() {
                return Err(failure(format!(
                    "no published signing key has kid {}",
                    kid.unwrap_or_default()
                )));
            }
            for key in keys {
                print!("{}", key.registry_certificate(now).map_err(failure)?);
            }
            Ok(())
        }
        KeysCommand::RegistryJwks => {
            let ring = load_keyring(config, now).map_err(failure)?;
            println!("{}", ring.jwks());
            Ok(())
        }
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

    let store = open_store(&config, SchemaPolicy::Require)
        .await
        .map_err(failure)?;
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

async fn serve(config: Config, schema: SchemaPolicy) -> Result<(), CliError> {
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let tls = match config.server.tls_files() {
        Some((cert, key)) => Some(listener::load_tls(cert, key).map_err(usage)?),
        None => None,
    };
    let shutdown =
        Shutdown::on_signals().map_err(|e| failure(format!("cannot listen for signals: {e}")))?;
    // The database first: the port opens only once this replica can serve, so a long
    // migration or an unreachable database never meets a liveness probe or a load balancer.
    let state = AppState::open(config, schema).await.map_err(failure)?;
    let listen = state.config.server.listen;
    let public = listener::bind(listen)
        .await
        .map_err(|e| failure(format!("cannot listen on {listen}: {e}")))?;
    let metrics = match state.config.server.metrics_addr() {
        Some(addr) => Some(
            listener::bind(addr)
                .await
                .map_err(|e| failure(format!("cannot listen on {addr} (metrics): {e}")))?,
        ),
        None => None,
    };
    tracing::info!(
        listen = %state.config.server.listen,
        tls = tls.is_some(),
        metrics = %state.config.server.metrics_listen,
        database = ?state.config.database_kind().ok(),
        "fedgate is serving"
    );
    listener::raise_open_file_limit(state.config.server.max_connections);
    let options = ServeOptions {
        tls,
        ..ServeOptions::from_config(&state.config.server)
    };
    crate::server::run(state, public, metrics, options, shutdown).await;
    tracing::info!("fedgate stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RFC 7638 kid is base64url: one in 64 starts with `-`, and an operator must still be
    /// able to pass it as `--kid <kid>` (this made `tests/it/keys.rs` fail one run in 64).
    #[test]
    fn a_kid_may_start_with_a_dash() {
        let cli = Cli::try_parse_from(["fedgate", "keys", "registry-cert", "--kid", "-x4Bq"])
            .expect("a kid starting with '-' is a value");
        match cli.command {
            Command::Server(ServerCommand::Keys(KeysCommand::RegistryCert { kid })) => {
                assert_eq!(kid.as_deref(), Some("-x4Bq"));
            }
            other => panic!("parsed as {other:?}"),
        }
    }
}
