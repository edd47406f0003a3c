//! What `fedgate login` was asked to do: flags first, then `FEDGATE_LOGIN_*` variables, then
//! defaults, resolved once into [`Settings`]. The credential helper saves these settings per
//! registry (see [`super::cache`]) and uses them again for every `get`.

use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use url::Url;

use super::source::{self, Source};
use super::{ClientError, Env};

/// The exchange's two forms (SPEC 7.1 and 7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Form {
    /// `GET /oauth2/federation/robot/token` with Basic `robot:token` (Quay's).
    Quay,
    /// `POST /oauth2/token`, RFC 8693 token exchange.
    Rfc8693,
}

/// Where the identity token comes from; `auto` picks the platform the job runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceKind {
    Auto,
    Github,
    Gitlab,
    Kubernetes,
    Gcp,
    File,
    Env,
    Stdin,
}

/// `fedgate login`'s flags. Each has a `FEDGATE_LOGIN_*` variable (named in its help); a flag
/// wins over its variable.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LoginArgs {
    /// The gateway's base URL, e.g. https://fedgate.example.com [env: FEDGATE_LOGIN_URL]
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// The robot's full name, e.g. acme+ci [env: FEDGATE_LOGIN_ROBOT]
    #[arg(long, value_name = "NAMESPACE+NAME")]
    pub robot: Option<String>,
    /// The registry the credential is for, e.g. registry.example.com [env: FEDGATE_LOGIN_REGISTRY]
    #[arg(long, value_name = "HOST[:PORT]")]
    pub registry: Option<String>,
    /// The audience to ask the platform for [env: FEDGATE_LOGIN_AUDIENCE] [default: the gateway URL]
    #[arg(long, value_name = "AUDIENCE")]
    pub audience: Option<String>,
    /// Which exchange to call [env: FEDGATE_LOGIN_FORM] [default: quay]
    #[arg(long, value_enum)]
    pub form: Option<Form>,
    /// Where the identity token comes from [env: FEDGATE_LOGIN_SOURCE] [default: auto]
    #[arg(long, value_enum)]
    pub source: Option<SourceKind>,
    /// Read the identity token from this file ("-": standard input) [env: FEDGATE_LOGIN_TOKEN_FILE]
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Read the identity token from this variable (GitLab: the id_tokens name) [env: FEDGATE_LOGIN_TOKEN_ENV]
    #[arg(long, value_name = "NAME")]
    pub token_env: Option<String>,
    /// Write only this auth file (repeatable) [env: FEDGATE_LOGIN_AUTH_FILE] [default: the Docker
    /// config and the containers auth file]
    #[arg(long = "auth-file", value_name = "PATH")]
    pub auth_files: Vec<PathBuf>,
    /// Also trust the CA certificates in this PEM file for the gateway [env: FEDGATE_LOGIN_CA_FILE]
    #[arg(long, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    /// Give up on a request after this many seconds [env: FEDGATE_LOGIN_TIMEOUT] [default: 30]
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Print the robot token on standard output instead of writing any file
    #[arg(long, conflicts_with = "credential_helper")]
    pub print: bool,
    /// Configure docker-credential-fedgate for the registry instead of storing a token: the
    /// helper exchanges again whenever the cached token nears its expiry
    #[arg(long)]
    pub credential_helper: bool,
}

/// Every `FEDGATE_LOGIN_*` name the client reads. Any other name with the prefix is a typo and
/// an error, as unknown `FEDGATE_*` keys are for the server.
pub const KNOWN_VARIABLES: &[&str] = &[
    "FEDGATE_LOGIN_URL",
    "FEDGATE_LOGIN_ROBOT",
    "FEDGATE_LOGIN_REGISTRY",
    "FEDGATE_LOGIN_AUDIENCE",
    "FEDGATE_LOGIN_FORM",
    "FEDGATE_LOGIN_SOURCE",
    "FEDGATE_LOGIN_TOKEN_FILE",
    "FEDGATE_LOGIN_TOKEN_ENV",
    "FEDGATE_LOGIN_AUTH_FILE",
    "FEDGATE_LOGIN_CA_FILE",
    "FEDGATE_LOGIN_TIMEOUT",
    source::gitlab::DEFAULT_VARIABLE,
];

const DEFAULT_TIMEOUT_SECONDS: u64 = 30;

/// A resolved login: everything the exchange and the helper need, nothing secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// The gateway's base URL, without a trailing `/`.
    pub gateway: String,
    pub robot: String,
    /// `host[:port]`; `None` only with `--print`.
    pub registry: Option<String>,
    pub audience: String,
    pub form: Form,
    pub source: Source,
    pub ca_file: Option<PathBuf>,
    pub timeout_seconds: u64,
}

impl Settings {
    /// Resolves flags over variables over defaults, detecting the platform when the source is
    /// `auto`. Fails with a usage error naming the flag or variable at fault.
    pub fn resolve(args: &LoginArgs, env: &Env) -> Result<Self, ClientError> {
        check_variable_names(env, args.token_env.as_deref())?;
        let pick = |flag: &Option<String>, var: &str| -> Option<String> {
            flag.clone().or_else(|| env.get(var).map(str::to_string))
        };
        let gateway = pick(&args.url, "FEDGATE_LOGIN_URL").ok_or_else(|| {
            ClientError::Usage(
                "no gateway URL: give --url or FEDGATE_LOGIN_URL (e.g. https://fedgate.example.com)"
                    .into(),
            )
        })?;
        let gateway = gateway_url(&gateway)?;
        let robot = pick(&args.robot, "FEDGATE_LOGIN_ROBOT").ok_or_else(|| {
            ClientError::Usage(
                "no robot: give --robot or FEDGATE_LOGIN_ROBOT (e.g. acme+ci)".into(),
            )
        })?;
        check_robot(&robot)?;
        let registry = pick(&args.registry, "FEDGATE_LOGIN_REGISTRY")
            .map(|r| registry_host(&r))
            .transpose()?;
        if registry.is_none() && !args.print {
            return Err(ClientError::Usage(
                "no registry: give --registry or FEDGATE_LOGIN_REGISTRY (the host the credential is for), or --print".into(),
            ));
        }
        let audience = pick(&args.audience, "FEDGATE_LOGIN_AUDIENCE").unwrap_or(gateway.clone());
        let form = match args.form {
            Some(form) => form,
            None => parse_enum(env, "FEDGATE_LOGIN_FORM")?.unwrap_or(Form::Quay),
        };
        let kind = match args.source {
            Some(kind) => kind,
            None => parse_enum(env, "FEDGATE_LOGIN_SOURCE")?.unwrap_or(SourceKind::Auto),
        };
        let token_file = args
            .token_file
            .clone()
            .or_else(|| env.get("FEDGATE_LOGIN_TOKEN_FILE").map(PathBuf::from));
        let token_env = pick(&args.token_env, "FEDGATE_LOGIN_TOKEN_ENV");
        let source = source::choose(kind, token_file, token_env, env)?;
        let ca_file = args
            .ca_file
            .clone()
            .or_else(|| env.get("FEDGATE_LOGIN_CA_FILE").map(PathBuf::from));
        let timeout_seconds = match args.timeout {
            Some(t) => t,
            None => match env.get("FEDGATE_LOGIN_TIMEOUT") {
                Some(raw) => raw.trim().parse().map_err(|_| {
                    ClientError::Usage(format!(
                        "FEDGATE_LOGIN_TIMEOUT: {raw:?} is not a whole number of seconds"
                    ))
                })?,
                None => DEFAULT_TIMEOUT_SECONDS,
            },
        };
        if timeout_seconds == 0 {
            return Err(ClientError::Usage(
                "the timeout must be at least 1 second".into(),
            ));
        }
        Ok(Self {
            gateway,
            robot,
            registry,
            audience,
            form,
            source,
            ca_file,
            timeout_seconds,
        })
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds)
    }

    /// The auth files to write: `--auth-file` (or `FEDGATE_LOGIN_AUTH_FILE`) alone when given,
    /// else the Docker config and, when its place is known, the containers auth file.
    pub fn auth_files(args: &LoginArgs, env: &Env) -> Result<Vec<PathBuf>, ClientError> {
        if !args.auth_files.is_empty() {
            return Ok(args.auth_files.clone());
        }
        if let Some(path) = env.get("FEDGATE_LOGIN_AUTH_FILE") {
            return Ok(vec![PathBuf::from(path)]);
        }
        let mut files = vec![super::authfile::docker_config_path(env)?];
        if let Some(containers) = super::authfile::containers_auth_path(env) {
            files.push(containers);
        }
        Ok(files)
    }
}

fn parse_enum<T: ValueEnum>(env: &Env, name: &str) -> Result<Option<T>, ClientError> {
    let Some(raw) = env.get(name) else {
        return Ok(None);
    };
    T::from_str(raw.trim(), true).map(Some).map_err(|_| {
        let allowed: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_string()))
            .collect();
        ClientError::Usage(format!(
            "{name}: {raw:?} is not one of {}",
            allowed.join(", ")
        ))
    })
}

/// Unknown `FEDGATE_LOGIN_*` names are refused, so a typo never silently falls back to a
/// default. The variable `--token-env` names may carry the prefix too.
fn check_variable_names(env: &Env, token_env: Option<&str>) -> Result<(), ClientError> {
    let token_env = token_env.or(env.get("FEDGATE_LOGIN_TOKEN_ENV"));
    for name in env.client_names() {
        if !KNOWN_VARIABLES.contains(&name) && Some(name) != token_env {
            return Err(ClientError::Usage(format!(
                "{name} is not a fedgate login variable (known: {})",
                KNOWN_VARIABLES.join(", ")
            )));
        }
    }
    Ok(())
}

/// `http(s)://host[:port][/path]`, no query or fragment; returned without a trailing `/`.
fn gateway_url(raw: &str) -> Result<String, ClientError> {
    let bad = |why: &str| ClientError::Usage(format!("gateway URL {raw:?}: {why}"));
    let url = Url::parse(raw.trim()).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(bad("must be an https:// (or http://) URL"));
    }
    if url.host().is_none() || url.query().is_some() || url.fragment().is_some() {
        return Err(bad(
            "must be a base URL with a host and no query or fragment",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry credentials"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// Robot full names are `<namespace>+<short name>`.
fn check_robot(robot: &str) -> Result<(), ClientError> {
    let valid = robot
        .split_once('+')
        .is_some_and(|(ns, short)| !ns.is_empty() && !short.is_empty())
        && !robot.contains(|c: char| c.is_whitespace() || c == ':');
    if valid {
        Ok(())
    } else {
        Err(ClientError::Usage(format!(
            "robot {robot:?}: give the robot's full name, <namespace>+<name> (e.g. acme+ci)"
        )))
    }
}

/// The key the container tools look credentials up by: `host[:port]`. A URL is accepted and
/// reduced to its host (`https://registry.example.com/v2/` → `registry.example.com`).
pub fn registry_host(raw: &str) -> Result<String, ClientError> {
    let trimmed = raw.trim();
    let without_scheme = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .unwrap_or(trimmed);
    let host = without_scheme.split('/').next().unwrap_or_default();
    if host.is_empty()
        || host.contains(|c: char| c.is_whitespace() || c == '@' || c == '?' || c == '#')
    {
        return Err(ClientError::Usage(format!(
            "registry {raw:?}: give the registry's host[:port], e.g. registry.example.com"
        )));
    }
    Ok(host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("FEDGATE_LOGIN_URL", "https://fedgate.example.com/"),
            ("FEDGATE_LOGIN_ROBOT", "acme+ci"),
            ("FEDGATE_LOGIN_REGISTRY", "https://registry.example.com/v2/"),
            ("FEDGATE_LOGIN_TOKEN_FILE", "/run/token"),
        ]
    }

    #[test]
    fn variables_fill_what_flags_leave_out() {
        let s = Settings::resolve(&LoginArgs::default(), &env(&base())).unwrap();
        assert_eq!(s.gateway, "https://fedgate.example.com");
        assert_eq!(s.audience, "https://fedgate.example.com");
        assert_eq!(s.registry.as_deref(), Some("registry.example.com"));
        assert_eq!(s.form, Form::Quay);
        assert_eq!(
            s.source,
            Source::File {
                file: "/run/token".into()
            }
        );
        assert_eq!(s.timeout_seconds, 30);

        let args = LoginArgs {
            robot: Some("acme+other".into()),
            form: Some(Form::Rfc8693),
            audience: Some("sts.example.com".into()),
            ..LoginArgs::default()
        };
        let mut vars = base();
        vars.push(("FEDGATE_LOGIN_FORM", "quay"));
        let s = Settings::resolve(&args, &env(&vars)).unwrap();
        assert_eq!(
            (s.robot.as_str(), s.form, s.audience.as_str()),
            ("acme+other", Form::Rfc8693, "sts.example.com")
        );
    }

    #[test]
    fn mistakes_are_usage_errors_naming_the_setting() {
        let usage =
            |vars: &[(&str, &str)]| match Settings::resolve(&LoginArgs::default(), &env(vars)) {
                Err(ClientError::Usage(why)) => why,
                other => panic!("{vars:?}: {other:?}"),
            };
        let mut vars = base();
        vars.push(("FEDGATE_LOGIN_ROBOTT", "acme+ci"));
        assert!(usage(&vars).contains("FEDGATE_LOGIN_ROBOTT"));
        let mut vars = base();
        vars.push(("FEDGATE_LOGIN_FORM", "soap"));
        assert!(usage(&vars).contains("quay, rfc8693"));
        assert!(usage(&base()[1..]).contains("--url"));
        let mut vars = base();
        vars[1] = ("FEDGATE_LOGIN_ROBOT", "ci");
        assert!(usage(&vars).contains("<namespace>+<name>"));
        let mut vars = base();
        vars[0] = ("FEDGATE_LOGIN_URL", "https://user:pw@fedgate.example.com");
        assert!(usage(&vars).contains("credentials"));
        let mut vars = base();
        vars.remove(2);
        assert!(usage(&vars).contains("--registry"));
    }

    #[test]
    fn the_token_variable_may_carry_the_prefix() {
        let mut vars = base();
        vars.remove(3);
        vars.push(("FEDGATE_LOGIN_TOKEN_ENV", "FEDGATE_LOGIN_MY_TOKEN"));
        vars.push(("FEDGATE_LOGIN_MY_TOKEN", "x.y.z"));
        let s = Settings::resolve(&LoginArgs::default(), &env(&vars)).unwrap();
        assert_eq!(
            s.source,
            Source::Env {
                variable: "FEDGATE_LOGIN_MY_TOKEN".into()
            }
        );
    }

    #[test]
    fn registry_hosts_are_what_the_tools_look_up() {
        for (raw, host) in [
            ("registry.example.com", "registry.example.com"),
            ("127.0.0.1:5000", "127.0.0.1:5000"),
            ("https://registry.example.com/v2/", "registry.example.com"),
            ("http://127.0.0.1:5000", "127.0.0.1:5000"),
        ] {
            assert_eq!(registry_host(raw).unwrap(), host);
        }
        for bad in ["", "https://", "user@host", "a b"] {
            assert!(registry_host(bad).is_err(), "{bad}");
        }
    }
}
