//! `fedgate login`: get the identity token where the platform puts it, exchange it, and store
//! the robot token where the container tools look (or print it, or set up the helper).

use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;

use super::authfile::{self, Entry};
use super::cache::Store;
use super::exchange::{self, Minted};
use super::settings::{LoginArgs, Settings};
use super::source::{self, Source};
use super::{ClientError, Env, http};
use crate::clock::Clock;

/// The helper's program name; the tools run `docker-credential-<credHelpers value>`.
pub const HELPER_PROGRAM: &str = "docker-credential-fedgate";

pub async fn login(args: LoginArgs, env: &Env, clock: &dyn Clock) -> Result<(), ClientError> {
    let settings = Settings::resolve(&args, env)?;
    if args.credential_helper && settings.source == Source::Stdin {
        return Err(ClientError::Usage(
            "--credential-helper cannot read the identity token from standard input (the helper \
             must fetch it again later); use a file, a variable or the platform's source"
                .into(),
        ));
    }
    // Decided before any request, so a bad setting costs no identity token.
    let files = if args.print {
        Vec::new()
    } else {
        Settings::auth_files(&args, env)?
    };
    let store = if args.credential_helper {
        Some(Store::locate(env)?)
    } else {
        None
    };
    if let Some(host) = plain_http_host(&settings.gateway) {
        eprintln!(
            "fedgate: note: {} is plain HTTP to {host}: the identity token and the robot token \
             cross the network unencrypted; use https://",
            settings.gateway
        );
    }
    let minted = obtain(&settings, env).await?;
    let robot = &settings.robot;
    let minutes = minted.expires_in / 60;
    if args.print {
        println!("{}", minted.token.expose_secret());
        eprintln!(
            "fedgate: robot token for {robot} from {} (valid {minutes} min) printed",
            settings.gateway
        );
        return Ok(());
    }
    let registry = settings
        .registry
        .clone()
        .ok_or_else(|| ClientError::Usage("no registry".into()))?;
    let entry = match &store {
        Some(store) => {
            store.save_settings(&settings, &registry)?;
            store.put_token(&settings, &registry, &minted, clock)?;
            Entry::Helper
        }
        None => Entry::Credential {
            username: robot,
            secret: minted.token.expose_secret(),
        },
    };
    for file in &files {
        for note in authfile::update(file, &registry, &entry)? {
            eprintln!("fedgate: note: {note}");
        }
    }
    let written: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    if store.is_some() {
        eprintln!(
            "fedgate: {HELPER_PROGRAM} now answers for {registry} as {robot} (identity from {}); wrote {}",
            settings.source.describe(),
            written.join(", ")
        );
        if find_in_path(env, HELPER_PROGRAM).is_none() {
            eprintln!(
                "fedgate: note: {HELPER_PROGRAM} is not on PATH; the tools need it: \
                 ln -s \"$(command -v fedgate)\" /usr/local/bin/{HELPER_PROGRAM}"
            );
        }
    } else {
        eprintln!(
            "fedgate: logged in to {registry} as {robot} for {minutes} min (identity from {}); wrote {}",
            settings.source.describe(),
            written.join(", ")
        );
    }
    Ok(())
}

/// Fetches an identity token from the settings' source and exchanges it.
pub async fn obtain(settings: &Settings, env: &Env) -> Result<Minted, ClientError> {
    let http = http::client(settings.ca_file.as_deref(), settings.timeout())
        .map_err(ClientError::Usage)?;
    let id_token = source::fetch(&settings.source, env, &http, &settings.audience).await?;
    exchange::exchange(&http, settings, &id_token).await
}

/// The host of an `http://` gateway URL that is not this machine.
fn plain_http_host(gateway: &str) -> Option<String> {
    let url = url::Url::parse(gateway).ok()?;
    let local = match url.host()? {
        url::Host::Domain(name) => name == "localhost",
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    (url.scheme() == "http" && !local).then(|| url.host_str().unwrap_or_default().to_string())
}

fn find_in_path(env: &Env, program: &str) -> Option<PathBuf> {
    env.get("PATH")?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_pointed_out_unless_local() {
        assert_eq!(
            plain_http_host("http://fedgate.internal:8080").as_deref(),
            Some("fedgate.internal")
        );
        for quiet in [
            "https://fedgate.example.com",
            "http://127.0.0.1:8080",
            "http://localhost:8080",
            "http://[::1]:8080",
        ] {
            assert_eq!(plain_http_host(quiet), None, "{quiet}");
        }
    }
}
