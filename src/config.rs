//! Typed configuration: a TOML file plus `FEDGATE_<SECTION>_<KEY>` environment overrides,
//! parsed and validated once at start-up. Any problem is a [`ConfigError`] (exit code 64).
//!
//! The environment is passed in as plain pairs so tests never touch the process environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use url::Url;

use crate::http::client_ip::{Cidr, ForwardedHeader, TrustedProxies};

/// Prefix of every environment override.
const ENV_PREFIX: &str = "FEDGATE_";
/// The one `FEDGATE_*` variable that is not a key override: the config file path.
pub const ENV_CONFIG_PATH: &str = "FEDGATE_CONFIG";
/// Keys that are arrays of tables (`[[federation.issuers]]`): they have no `FEDGATE_*` form
/// and are set in the file only.
pub const FILE_ONLY_KEYS: [(&str, &str); 1] = [("federation", "issuers")];
/// The client's variables (`fedgate login`, docs/login.md). A CI job that sets them may also
/// run the gateway, so the loader skips them; no configuration section may be named `login`.
const CLIENT_ENV_PREFIX: &str = "FEDGATE_LOGIN_";

/// An invalid configuration, with a one-line reason for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: Server,
    pub storage: Storage,
    pub keys: Keys,
    pub federation: Federation,
    pub registry: Registry,
    pub limits: Limits,
    pub log: Log,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    pub listen: SocketAddr,
    /// Issuer of every token fedgate mints; also its default audience.
    pub public_url: String,
    pub tls_cert: String,
    pub tls_key: String,
    /// `/metrics` is served here only; empty disables it.
    pub metrics_listen: String,
    pub max_body_bytes: usize,
    /// After SIGTERM, `/readyz` answers 503 and new connections are still accepted for this
    /// long, so load balancers stop routing here before the listener closes.
    pub drain_seconds: u64,
    /// Load balancers and proxies whose forwarded header names the client (see
    /// [`crate::http::client_ip`]); they are also exempt from `max_connections_per_ip`.
    pub trusted_proxies: Vec<Cidr>,
    pub trusted_proxy_header: ForwardedHeader,
    /// Open connections at once; beyond it, idle ones are closed to make room.
    pub max_connections: usize,
    /// Open connections from one client address (0: no limit).
    pub max_connections_per_ip: usize,
    /// Time a connection has to deliver a request head, from when it opens or its previous
    /// request ends (HTTP/1.1 and HTTP/2 alike); idle connections close after it.
    pub header_timeout_seconds: u64,
    /// Time a request body has to arrive in full, from its head.
    pub body_timeout_seconds: u64,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: "http://127.0.0.1:8080".into(),
            tls_cert: String::new(),
            tls_key: String::new(),
            metrics_listen: "127.0.0.1:9090".into(),
            max_body_bytes: 1024 * 1024,
            drain_seconds: 5,
            trusted_proxies: Vec::new(),
            trusted_proxy_header: ForwardedHeader::default(),
            max_connections: 4096,
            max_connections_per_ip: 256,
            header_timeout_seconds: 10,
            body_timeout_seconds: 30,
        }
    }
}

impl Server {
    /// The metrics listener address, if metrics are enabled (validated by [`Config::validate`]).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listen.parse().ok()
    }

    /// The trusted proxies, ready to use.
    pub fn proxies(&self) -> TrustedProxies {
        TrustedProxies::new(&self.trusted_proxies, self.trusted_proxy_header)
    }

    /// Certificate and key paths when TLS is configured.
    pub fn tls_files(&self) -> Option<(&Path, &Path)> {
        (!self.tls_cert.is_empty()).then(|| (Path::new(&self.tls_cert), Path::new(&self.tls_key)))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    pub database_url: String,
    pub redis_url: String,
    /// PEM CA bundle that verifies a `rediss://` server instead of the Mozilla roots.
    pub redis_ca_file: String,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            database_url: "sqlite://data/fedgate.db".into(),
            redis_url: String::new(),
            redis_ca_file: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Keys {
    pub dir: PathBuf,
    pub signing_alg: String,
    /// How long after `keys rotate` the staged key starts signing (unless `keys activate`
    /// brings it forward): the time to give registries its certificate.
    pub activation_delay_seconds: u64,
}

impl Default for Keys {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("data/keys"),
            signing_alg: "ES256".into(),
            activation_delay_seconds: 86_400,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Federation {
    pub allowed_issuers: Vec<String>,
    pub extra_ca_file: String,
    pub allow_private_networks: bool,
    pub allow_http_issuers: bool,
    pub audiences: Vec<String>,
    pub leeway_seconds: u64,
    pub token_ttl_seconds: u64,
    pub replay_protection: bool,
    pub require_jti: bool,
    pub fetch_timeout_ms: u64,
    pub max_document_bytes: usize,
    pub jwks_refresh_cooldown_seconds: u64,
    pub jwks_max_stale_seconds: u64,
    /// Per-issuer trust settings, `[[federation.issuers]]` (file only; `oidc::trust`).
    /// Last, so that TOML writes it after the plain keys.
    pub issuers: Vec<crate::oidc::trust::IssuerTrust>,
}

impl Default for Federation {
    fn default() -> Self {
        Self {
            allowed_issuers: Vec::new(),
            extra_ca_file: String::new(),
            allow_private_networks: false,
            allow_http_issuers: false,
            audiences: Vec::new(),
            leeway_seconds: 60,
            token_ttl_seconds: 3600,
            replay_protection: true,
            require_jti: false,
            fetch_timeout_ms: 5000,
            max_document_bytes: 65536,
            jwks_refresh_cooldown_seconds: 30,
            jwks_max_stale_seconds: 86400,
            issuers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Registry {
    /// Docker token `service` and `aud`; empty means host[:port] of `server.public_url`.
    pub service: String,
    pub token_ttl_seconds: u64,
    /// Registry tokens carry the signing key's certificate (JWS `x5c`), which distribution 2.x
    /// and 3.x check against `rootcertbundle`. Off: the `kid` alone, for distribution 3.x
    /// given a `jwks` file and no bundle.
    pub token_x5c: bool,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            service: String::new(),
            token_ttl_seconds: 300,
            token_x5c: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// 0 disables the limit.
    pub failed_exchanges_per_minute_per_ip: u32,
    /// Counted only for identities the robot trusts. 0 disables the limit.
    pub exchanges_per_minute_per_robot: u32,
    /// Failed `/v2/auth` logins per client address. 0 disables the limit.
    pub failed_registry_logins_per_minute_per_ip: u32,
    /// Memory the robot-policy cache may use, estimated from the entries' sizes.
    pub robot_cache_bytes: u64,
    /// Memory the issuers' key cache may use, estimated from the parsed keys' sizes.
    pub jwks_cache_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            failed_exchanges_per_minute_per_ip: 60,
            exchanges_per_minute_per_robot: 600,
            failed_registry_logins_per_minute_per_ip: 60,
            robot_cache_bytes: 64 * 1024 * 1024,
            jwks_cache_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Logging (not in the SPEC's list; an addition of fedgate's own).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `text` (human) or `json` (one object per line).
    pub format: String,
    /// A `tracing` filter directive, e.g. `info` or `info,fedgate=debug`.
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

/// Where the database lives, decided once from `storage.database_url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

impl Config {
    /// Reads `path` (if any), applies the `FEDGATE_*` pairs of `env`, and validates the result.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::new(format!("cannot read {}: {e}", path.display()))
                })?;
                parse_table(&text)
                    .map_err(|e| ConfigError::new(format!("{}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut table, env)?;
        Self::from_table(table)
    }

    /// Parses a TOML document without environment overrides (tests and `config check`).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_table(parse_table(text).map_err(ConfigError::new)?)
    }

    /// Types and validates a merged table. It goes through TOML text once more so that an
    /// error can name the `section.key` it is about.
    fn from_table(table: toml::Table) -> Result<Self, ConfigError> {
        let text = toml::to_string(&table)
            .map_err(|e| ConfigError::new(format!("cannot render configuration: {e}")))?;
        let config: Config =
            toml::from_str(&text).map_err(|e| ConfigError::new(name_the_key(&text, &e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Cross-field and value checks that serde's types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        let public = Url::parse(&s.public_url)
            .map_err(|e| ConfigError::new(format!("server.public_url: {e}")))?;
        if !matches!(public.scheme(), "http" | "https")
            || public.host_str().is_none()
            || public.query().is_some()
            || public.fragment().is_some()
        {
            return Err(ConfigError::new(
                "server.public_url must be an http(s) URL with a host and no query or fragment",
            ));
        }
        if s.tls_cert.is_empty() != s.tls_key.is_empty() {
            return Err(ConfigError::new(
                "server.tls_cert and server.tls_key must be set together",
            ));
        }
        if !s.metrics_listen.is_empty() {
            let addr: SocketAddr = s.metrics_listen.parse().map_err(|_| {
                ConfigError::new(format!(
                    "server.metrics_listen: {:?} is not an address like 127.0.0.1:9090",
                    s.metrics_listen
                ))
            })?;
            if addr == s.listen && addr.port() != 0 {
                return Err(ConfigError::new(
                    "server.metrics_listen must differ from server.listen",
                ));
            }
        }
        if s.max_body_bytes < 1024 {
            return Err(ConfigError::new(
                "server.max_body_bytes must be at least 1024",
            ));
        }
        if is_loopback_host(&public) && !s.listen.ip().is_loopback() {
            // The default public_url with a listener other hosts reach: every token would
            // carry the wrong `iss`, and no client would reach the URL it names.
            if s.public_url == Server::default().public_url {
                return Err(ConfigError::new(format!(
                    "server.public_url is still the default {} while server.listen is {}: set it to the URL clients reach fedgate at (it is the iss of every token)",
                    s.public_url, s.listen
                )));
            }
        }
        self.database_kind()?;
        let redis = &self.storage.redis_url;
        if !(redis.is_empty() || redis.starts_with("redis://") || redis.starts_with("rediss://")) {
            return Err(ConfigError::new(
                "storage.redis_url must start with redis:// or rediss://",
            ));
        }
        if redis.contains("#insecure") {
            return Err(ConfigError::new(
                "storage.redis_url: #insecure (no certificate check) is not supported; trust a private CA with storage.redis_ca_file",
            ));
        }
        if !self.storage.redis_ca_file.is_empty() && !redis.starts_with("rediss://") {
            return Err(ConfigError::new(
                "storage.redis_ca_file needs a rediss:// storage.redis_url",
            ));
        }
        if !matches!(self.keys.signing_alg.as_str(), "ES256" | "RS256" | "EdDSA") {
            return Err(ConfigError::new(format!(
                "keys.signing_alg: {:?} is not one of ES256, RS256, EdDSA",
                self.keys.signing_alg
            )));
        }
        let margin = crate::tokens::signing::ACTIVATION_MARGIN_SECONDS;
        if self.keys.activation_delay_seconds < margin as u64 {
            return Err(ConfigError::new(format!(
                "keys.activation_delay_seconds must be at least {margin}: every replica must have read a staged key before it signs"
            )));
        }
        let f = &self.federation;
        for pattern in &f.allowed_issuers {
            let ok = pattern.starts_with("https://")
                || (f.allow_http_issuers && pattern.starts_with("http://"));
            if !ok {
                return Err(ConfigError::new(format!(
                    "federation.allowed_issuers: {pattern:?} must start with https://"
                )));
            }
            if Url::parse(pattern).map_or(true, |u| u.host_str().is_none()) {
                return Err(ConfigError::new(format!(
                    "federation.allowed_issuers: {pattern:?} is not a URL (pattern) with a host"
                )));
            }
        }
        crate::oidc::trust::check_settings(&f.issuers, f.allow_http_issuers)
            .map_err(ConfigError::new)?;
        if f.audiences.iter().any(|a| a.is_empty()) {
            return Err(ConfigError::new(
                "federation.audiences may not contain an empty string",
            ));
        }
        for (key, value) in [
            ("server.max_connections", s.max_connections as u64),
            ("server.header_timeout_seconds", s.header_timeout_seconds),
            ("server.body_timeout_seconds", s.body_timeout_seconds),
            ("limits.robot_cache_bytes", self.limits.robot_cache_bytes),
            ("limits.jwks_cache_bytes", self.limits.jwks_cache_bytes),
            ("federation.token_ttl_seconds", f.token_ttl_seconds),
            ("federation.fetch_timeout_ms", f.fetch_timeout_ms),
            ("federation.max_document_bytes", f.max_document_bytes as u64),
            (
                "registry.token_ttl_seconds",
                self.registry.token_ttl_seconds,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::new(format!("{key} must be greater than 0")));
            }
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(ConfigError::new(format!(
                "log.format: {:?} is not one of text, json",
                self.log.format
            )));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| ConfigError::new(format!("log.level: {e}")))?;
        Ok(())
    }

    /// Valid but suspicious settings, one line each: `serve` logs them and `config check`
    /// prints them.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let s = &self.server;
        if let Ok(public) = Url::parse(&s.public_url)
            && is_loopback_host(&public)
            && !s.listen.ip().is_loopback()
        {
            warnings.push(format!(
                "server.public_url {} is a loopback URL but server.listen {} accepts other hosts: tokens name {} as their issuer; right only when clients reach fedgate through a port forwarded to this host",
                s.public_url, s.listen, s.public_url
            ));
        }
        warnings
    }

    pub fn database_kind(&self) -> Result<DatabaseKind, ConfigError> {
        let url = &self.storage.database_url;
        if url.starts_with("sqlite:") {
            Ok(DatabaseKind::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseKind::Postgres)
        } else {
            Err(ConfigError::new(
                "storage.database_url must start with sqlite: or postgres://",
            ))
        }
    }

    /// The Docker token `service` (and registry-token `aud`).
    pub fn registry_service(&self) -> String {
        if !self.registry.service.is_empty() {
            return self.registry.service.clone();
        }
        let url = Url::parse(&self.server.public_url).ok();
        match url
            .as_ref()
            .and_then(|u| u.host_str().map(|h| (h, u.port())))
        {
            Some((host, Some(port))) => format!("{host}:{port}"),
            Some((host, None)) => host.to_string(),
            None => self.server.public_url.clone(),
        }
    }

    /// The effective configuration as TOML, with passwords in URLs masked (`config check`).
    pub fn to_masked_toml(&self) -> String {
        let mut shown = self.clone();
        shown.storage.database_url = mask_url_password(&shown.storage.database_url);
        shown.storage.redis_url = mask_url_password(&shown.storage.redis_url);
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// `localhost`, `127.0.0.0/8` or `[::1]`.
fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn parse_table(text: &str) -> Result<toml::Table, String> {
    text.parse::<toml::Table>().map_err(|e| {
        let line = e
            .span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
        match line {
            Some(line) => format!("line {line}: {}", one_line(e.message())),
            None => one_line(e.message()),
        }
    })
}

/// Prefixes a typing error with the `section.key` its span points at.
fn name_the_key(text: &str, err: &toml::de::Error) -> String {
    let message = one_line(err.message());
    let Some(span) = err.span() else {
        return message;
    };
    let before = &text[..span.start.min(text.len())];
    let line = text[before.rfind('\n').map_or(0, |i| i + 1)..]
        .lines()
        .next()
        .unwrap_or_default();
    let Some((key, _)) = line.split_once('=') else {
        return message;
    };
    let section = before
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix('[')?.strip_suffix(']'))
        .map(|section| section.trim_matches(['[', ']'])); // `[[array.of.tables]]`
    match section {
        Some(section) => format!("{section}.{}: {message}", key.trim()),
        None => format!("{}: {message}", key.trim()),
    }
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Applies `FEDGATE_<SECTION>_<KEY>` pairs. The type of each key's default decides how the value
/// is read: strings are taken as they are, numbers and booleans are parsed, lists are either a
/// TOML array (`["a", "b"]`) or comma-separated.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let defaults = toml::Table::try_from(Config::default())
        .map_err(|e| ConfigError::new(format!("internal: defaults do not serialize: {e}")))?;
    let mut overrides: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| {
            name.starts_with(ENV_PREFIX)
                && name != ENV_CONFIG_PATH
                && !name.starts_with(CLIENT_ENV_PREFIX)
        })
        .collect();
    overrides.sort();
    for (name, raw) in overrides {
        let rest = name[ENV_PREFIX.len()..].to_ascii_lowercase();
        let unknown = || ConfigError::new(format!("{name}: no such configuration key"));
        let (section, key) = rest.split_once('_').ok_or_else(unknown)?;
        if FILE_ONLY_KEYS.contains(&(section, key)) {
            return Err(ConfigError::new(format!(
                "{name}: [[{section}.{key}]] is a list of tables, set in the configuration file only"
            )));
        }
        let default = defaults
            .get(section)
            .and_then(|s| s.as_table())
            .and_then(|s| s.get(key))
            .ok_or_else(unknown)?;
        let value =
            env_value(default, &raw).map_err(|why| ConfigError::new(format!("{name}: {why}")))?;
        let section_table = table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match section_table.as_table_mut() {
            Some(t) => {
                t.insert(key.to_string(), value);
            }
            None => return Err(ConfigError::new(format!("[{section}] must be a table"))),
        }
    }
    Ok(())
}

fn env_value(default: &toml::Value, raw: &str) -> Result<toml::Value, String> {
    Ok(match default {
        toml::Value::String(_) => toml::Value::String(raw.to_string()),
        toml::Value::Integer(_) => toml::Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| format!("{raw:?} is not a whole number"))?,
        ),
        toml::Value::Boolean(_) => toml::Value::Boolean(match raw.trim() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(format!("{raw:?} is not true or false")),
        }),
        toml::Value::Array(_) if raw.trim_start().starts_with('[') => {
            let doc: toml::Table = format!("v = {raw}")
                .parse()
                .map_err(|e: toml::de::Error| one_line(e.message()))?;
            doc.get("v").cloned().ok_or("not a TOML array")?
        }
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
        other => {
            return Err(format!(
                "cannot be set from the environment ({})",
                other.type_str()
            ));
        }
    })
}

fn mask_url_password(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("****"));
            url.to_string()
        }
        _ => raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.storage.database_url, "sqlite://data/fedgate.db");
        assert_eq!(c.federation.token_ttl_seconds, 3600);
        assert_eq!(c.registry_service(), "127.0.0.1:8080");
        assert_eq!(c.database_kind().unwrap(), DatabaseKind::Sqlite);
    }

    /// A staged key must wait for every replica's keyring check: twice its interval.
    #[test]
    fn the_activation_delay_is_at_least_two_keyring_checks() {
        let delay = |seconds: &str| {
            Config::load(
                None,
                env(&[("FEDGATE_KEYS_ACTIVATION_DELAY_SECONDS", seconds)]),
            )
        };
        let err = delay("9").unwrap_err().to_string();
        assert!(err.contains("at least 10"), "{err}");
        assert!(delay("10").is_ok());
    }

    #[test]
    fn env_overrides_are_typed_by_their_key() {
        let c = Config::load(
            None,
            env(&[
                ("FEDGATE_SERVER_LISTEN", "127.0.0.1:9999"),
                ("FEDGATE_FEDERATION_ALLOW_PRIVATE_NETWORKS", "true"),
                ("FEDGATE_FEDERATION_LEEWAY_SECONDS", "5"),
                ("FEDGATE_FEDERATION_AUDIENCES", "a, b"),
                (
                    "FEDGATE_FEDERATION_ALLOWED_ISSUERS",
                    r#"["https://x.example"]"#,
                ),
                ("FEDGATE_CONFIG", "ignored.toml"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.listen.port(), 9999);
        assert!(c.federation.allow_private_networks);
        assert_eq!(c.federation.leeway_seconds, 5);
        assert_eq!(c.federation.audiences, ["a", "b"]);
        assert_eq!(c.federation.allowed_issuers, ["https://x.example"]);
    }

    #[test]
    fn unknown_keys_are_refused_in_file_and_env() {
        let err = Config::from_toml("[server]\nlisen = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(err.to_string().contains("server.lisen"), "{err}");
        let err = Config::from_toml("[sever]\n").unwrap_err();
        assert!(err.to_string().contains("sever"), "{err}");
        let err = Config::load(None, env(&[("FEDGATE_SERVER_LISEN", "x")])).unwrap_err();
        assert!(err.to_string().contains("FEDGATE_SERVER_LISEN"), "{err}");
        let err = Config::load(None, env(&[("FEDGATE_NOPE", "x")])).unwrap_err();
        assert!(
            err.to_string().contains("no such configuration key"),
            "{err}"
        );
    }

    #[test]
    fn the_clients_variables_are_not_configuration_keys() {
        let c = Config::load(
            None,
            env(&[
                ("FEDGATE_LOGIN_URL", "https://fedgate.example.com"),
                ("FEDGATE_LOGIN_ROBOT", "acme+ci"),
                ("FEDGATE_LOGIN_ID_TOKEN", "a.b.c"),
            ]),
        )
        .unwrap();
        assert_eq!(c.to_masked_toml(), Config::default().to_masked_toml());
        assert!(
            toml::Table::try_from(Config::default())
                .unwrap()
                .get("login")
                .is_none()
        );
    }

    #[test]
    fn bad_values_give_one_line_reasons() {
        for (doc, needle) in [
            ("[server]\nlisten = \"nowhere\"", "socket address"),
            ("[server]\npublic_url = \"ftp://x\"", "public_url"),
            ("[server]\ntls_cert = \"a.pem\"", "tls_key"),
            ("[storage]\ndatabase_url = \"mysql://x\"", "database_url"),
            ("[keys]\nsigning_alg = \"HS256\"", "signing_alg"),
            ("[federation]\nallowed_issuers = [\"http://x\"]", "https://"),
            (
                "[federation]\nleeway_seconds = -1",
                "federation.leeway_seconds",
            ),
            ("[log]\nformat = \"xml\"", "log.format"),
            ("[server\n", "line 1"),
        ] {
            let err = Config::from_toml(doc).unwrap_err().to_string();
            assert!(err.contains(needle), "{doc:?} gave {err:?}");
            assert!(!err.contains('\n'), "{err:?} spans lines");
        }
        let err = Config::load(None, env(&[("FEDGATE_SERVER_MAX_BODY_BYTES", "lots")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("whole number"), "{err}");
    }

    #[test]
    fn a_loopback_public_url_with_an_open_listener_is_refused_or_warned() {
        let err = Config::from_toml("[server]\nlisten = \"0.0.0.0:8080\"").unwrap_err();
        assert!(err.to_string().contains("server.public_url"), "{err}");
        let local = Config::from_toml(
            "[server]\nlisten = \"0.0.0.0:8080\"\npublic_url = \"http://localhost:8080\"",
        )
        .unwrap();
        assert_eq!(local.warnings().len(), 1, "{:?}", local.warnings());
        for ok in [
            "[server]\nlisten = \"0.0.0.0:8080\"\npublic_url = \"https://fedgate.example.com\"",
            "[server]\nlisten = \"127.0.0.1:8080\"\npublic_url = \"http://localhost:8080\"",
            "",
        ] {
            let c = Config::from_toml(ok).unwrap();
            assert!(c.warnings().is_empty(), "{ok:?}: {:?}", c.warnings());
        }
    }

    #[test]
    fn issuer_settings_are_file_only_tables() {
        let c = Config::from_toml(
            r#"
[federation]
leeway_seconds = 5

[[federation.issuers]]
issuer = "https://kubernetes.default.svc.cluster.local"
jwks_uri = "https://10.0.0.1:6443/openid/v1/jwks"
bearer_token_file = "/var/run/secrets/kubernetes.io/serviceaccount/token"
ca_file = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
allow_private_network = true

[[federation.issuers]]
issuer = "https://login.microsoftonline.com/{tenantid}/v2.0"
"#,
        )
        .unwrap();
        assert_eq!(c.federation.issuers.len(), 2);
        assert!(c.federation.issuers[0].allow_private_network);
        // The environment may still override the section's scalar keys around the tables.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        std::fs::write(&path, toml::to_string(&c).unwrap()).unwrap();
        let again = Config::load(
            Some(&path),
            env(&[("FEDGATE_FEDERATION_LEEWAY_SECONDS", "7")]),
        )
        .unwrap();
        assert_eq!(again.federation.leeway_seconds, 7);
        assert_eq!(again.federation.issuers, c.federation.issuers);
        let err = Config::load(Some(&path), env(&[("FEDGATE_FEDERATION_ISSUERS", "[]")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("configuration file only"), "{err}");
        let err = Config::from_toml(
            "[[federation.issuers]]\nissuer = \"https://k\"\njwks_url = \"https://k/j\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("federation.issuers") && err.contains("jwks_url"),
            "{err}"
        );
        let err = Config::from_toml(
            "[[federation.issuers]]\nissuer = \"https://k\"\nbearer_token_file = \"/t\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("federation.issuers[0]"), "{err}");
    }

    #[test]
    fn redis_tls_settings_are_checked() {
        for (doc, needle) in [
            (
                "[storage]\nredis_url = \"redis://r:6379\"\nredis_ca_file = \"ca.pem\"",
                "rediss://",
            ),
            (
                "[storage]\nredis_url = \"rediss://r:6379/#insecure\"",
                "#insecure",
            ),
        ] {
            let err = Config::from_toml(doc).unwrap_err().to_string();
            assert!(err.contains(needle), "{doc:?} gave {err:?}");
        }
        Config::from_toml("[storage]\nredis_url = \"rediss://r:6380\"\nredis_ca_file = \"ca.pem\"")
            .unwrap();
    }

    #[test]
    fn check_output_masks_passwords() {
        let c = Config::from_toml(
            "[storage]\ndatabase_url = \"postgres://fed:hunter2@db/fedgate\"\nredis_url = \"redis://:pw@r:6379\"",
        )
        .unwrap();
        let shown = c.to_masked_toml();
        assert!(
            !shown.contains("hunter2") && !shown.contains(":pw@"),
            "{shown}"
        );
        assert!(shown.contains("****"));
    }
}
