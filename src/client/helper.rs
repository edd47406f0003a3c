//! The Docker credential-helper protocol (github.com/docker/docker-credential-helpers), as
//! `docker-credential-fedgate <action>` (a link to the `fedgate` binary) or
//! `fedgate credential-helper <action>`. The tools run it for registries listed under
//! `credHelpers` in their auth file. Answers and errors go to standard output; an error exits
//! non-zero.
//!
//! - `get`: the server URL on stdin; `{"ServerURL", "Username", "Secret"}` out. The robot
//!   token comes from the cache, or from a new exchange when the cached one nears expiry. A
//!   registry fedgate was not set up for answers `credentials not found in native keychain`,
//!   which tells the tool to look elsewhere.
//! - `store`: fedgate mints credentials, it does not keep the ones it is given: refused with
//!   a message saying what to run instead (as other minting helpers, e.g. ECR's, refuse it).
//! - `erase`: the server URL on stdin; forgets the registry's settings and cached token.
//! - `list`: `{"<registry>": "<robot>"}` for every registry set up.
//! - `version`.
//!
//! Settings come from `fedgate login --credential-helper` (saved per registry), else from the
//! `FEDGATE_LOGIN_*` variables when `FEDGATE_LOGIN_REGISTRY` names the requested registry.

use std::io::{Read, Write};
use std::process::ExitCode;

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::cache::Store;
use super::settings::{LoginArgs, Settings, registry_host};
use super::source::Source;
use super::{ClientError, Env, login};
use crate::clock::Clock;

/// The message clients recognise as "no credentials here" (docker-credential-helpers'
/// `errCredentialsNotFoundMessage`).
pub const NOT_FOUND: &str = "credentials not found in native keychain";
const MISSING_SERVER_URL: &str = "no credentials server URL";
const MISSING_USERNAME: &str = "no credentials username";

/// At most this much is read from standard input (a server URL or a small JSON object).
const MAX_INPUT_BYTES: u64 = 64 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Credentials {
    #[serde(rename = "ServerURL")]
    server_url: String,
    username: String,
    secret: String,
}

/// A failed action: the message for standard output and the exit code.
struct Failure(String, u8);

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure(e.to_string(), e.code())
    }
}

fn protocol(message: &str) -> Failure {
    Failure(message.to_string(), 1)
}

pub async fn run(
    action: &str,
    env: &Env,
    clock: &dyn Clock,
    input: impl Read,
    mut output: impl Write,
) -> ExitCode {
    let result = match read_input(input) {
        Err(e) => Err(protocol(&format!("cannot read standard input: {e}"))),
        Ok(input) => match action {
            "get" => get(&input, env, clock).await,
            "store" => store(&input),
            "erase" => erase(&input, env),
            "list" => list(env),
            "version" => Ok(format!(
                "{} (fedgate) {}\n",
                login::HELPER_PROGRAM,
                env!("CARGO_PKG_VERSION")
            )),
            other => Err(protocol(&format!(
                "Unknown credential action `{other}` (get, store, erase, list, version)"
            ))),
        },
    };
    let (text, code) = match result {
        Ok(text) => (text, 0),
        Err(Failure(message, code)) => (format!("{}\n", message.replace('\n', " ")), code),
    };
    // Nothing to do if the tool closed the pipe: it has gone away.
    let _ = output
        .write_all(text.as_bytes())
        .and_then(|()| output.flush());
    ExitCode::from(code)
}

fn read_input(input: impl Read) -> std::io::Result<String> {
    let mut text = String::new();
    input.take(MAX_INPUT_BYTES).read_to_string(&mut text)?;
    Ok(text)
}

/// The registry a server URL names (`https://host:port/v1/` → `host:port`).
fn registry_of(server_url: &str) -> Result<String, Failure> {
    if server_url.is_empty() {
        return Err(protocol(MISSING_SERVER_URL));
    }
    registry_host(server_url).map_err(|_| protocol(NOT_FOUND))
}

/// The settings for `registry`: saved by `fedgate login --credential-helper`, else from the
/// environment when it names this registry. `None`: fedgate does not answer for it.
fn settings_for(registry: &str, env: &Env, store: &Store) -> Result<Option<Settings>, Failure> {
    if let Some(saved) = store.settings(registry)? {
        return Ok(Some(saved));
    }
    let from_env = env
        .get("FEDGATE_LOGIN_REGISTRY")
        .and_then(|r| registry_host(r).ok());
    if from_env.as_deref() != Some(registry) {
        return Ok(None);
    }
    let settings = Settings::resolve(&LoginArgs::default(), env)?;
    if settings.source == Source::Stdin {
        return Err(Failure(
            "the credential helper cannot read the identity token from standard input (its \
             standard input is the protocol); use a file, a variable or the platform's source"
                .into(),
            64,
        ));
    }
    Ok(Some(settings))
}

async fn get(input: &str, env: &Env, clock: &dyn Clock) -> Result<String, Failure> {
    let server_url = input.trim();
    let registry = registry_of(server_url)?;
    let store = Store::locate(env)?;
    let Some(settings) = settings_for(&registry, env, &store)? else {
        return Err(protocol(NOT_FOUND));
    };
    // One exchange at a time per registry: whoever waited finds the fresh token cached.
    let _lock = store.lock(&registry)?;
    let token = match store.token(&settings, &registry, clock) {
        Some(token) => token,
        None => {
            let minted = login::obtain(&settings, env).await?;
            store.put_token(&settings, &registry, &minted, clock)?;
            minted.token
        }
    };
    let answer = Credentials {
        server_url: server_url.to_string(),
        username: settings.robot,
        secret: token.expose_secret().to_string(),
    };
    serde_json::to_string(&answer)
        .map(|mut json| {
            json.push('\n');
            json
        })
        .map_err(|e| protocol(&e.to_string()))
}

fn store(input: &str) -> Result<String, Failure> {
    let credentials: Credentials = serde_json::from_str(input).map_err(|e| {
        protocol(&format!(
            "store expects {{\"ServerURL\", \"Username\", \"Secret\"}}: {e}"
        ))
    })?;
    if credentials.server_url.is_empty() {
        return Err(protocol(MISSING_SERVER_URL));
    }
    if credentials.username.is_empty() {
        return Err(protocol(MISSING_USERNAME));
    }
    let registry = registry_host(&credentials.server_url).unwrap_or(credentials.server_url);
    Err(protocol(&format!(
        "fedgate mints credentials for {registry} on demand and keeps none it is given: run \
         `fedgate login --credential-helper --registry {registry}` instead of logging in with a password"
    )))
}

fn erase(input: &str, env: &Env) -> Result<String, Failure> {
    let registry = registry_of(input.trim())?;
    Store::locate(env)?.forget(&registry)?;
    Ok(String::new())
}

fn list(env: &Env) -> Result<String, Failure> {
    let saved: serde_json::Map<String, serde_json::Value> = Store::locate(env)?
        .saved()
        .into_iter()
        .map(|(registry, robot)| (registry, serde_json::Value::String(robot)))
        .collect();
    Ok(format!("{}\n", serde_json::Value::Object(saved)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    async fn call(action: &str, input: &str, env: &Env) -> (String, ExitCode) {
        let mut out = Vec::new();
        let code = run(action, env, &ManualClock::at(0), input.as_bytes(), &mut out).await;
        (String::from_utf8(out).unwrap(), code)
    }

    fn home(dir: &std::path::Path) -> Env {
        Env::new([("HOME".to_string(), dir.display().to_string())])
    }

    #[tokio::test]
    async fn registries_not_set_up_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let env = home(dir.path());
        let (out, code) = call("get", "https://registry.example.com\n", &env).await;
        assert_eq!((out.trim(), code), (NOT_FOUND, ExitCode::from(1)));
        let (out, code) = call("get", "  \n", &env).await;
        assert_eq!((out.trim(), code), (MISSING_SERVER_URL, ExitCode::from(1)));
        let (out, code) = call("list", "", &env).await;
        assert_eq!((out.trim(), code), ("{}", ExitCode::SUCCESS));
        let (out, code) = call("erase", "registry.example.com", &env).await;
        assert_eq!((out.as_str(), code), ("", ExitCode::SUCCESS));
        let (out, code) = call("frobnicate", "", &env).await;
        assert!(out.contains("Unknown credential action `frobnicate`"));
        assert_eq!(code, ExitCode::from(1));
    }

    #[tokio::test]
    async fn store_is_refused_with_what_to_do_instead() {
        let dir = tempfile::tempdir().unwrap();
        let env = home(dir.path());
        let (out, code) = call(
            "store",
            r#"{"ServerURL": "registry.example.com", "Username": "u", "Secret": "s"}"#,
            &env,
        )
        .await;
        assert_eq!(code, ExitCode::from(1));
        assert!(
            out.contains("fedgate login --credential-helper --registry registry.example.com"),
            "{out}"
        );
        assert!(!out.contains("\"s\""));
        let (out, _) = call(
            "store",
            r#"{"ServerURL": "r", "Username": "", "Secret": "s"}"#,
            &env,
        )
        .await;
        assert_eq!(out.trim(), MISSING_USERNAME);
    }
}
