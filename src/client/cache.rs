//! What the credential helper keeps between runs, one file per registry:
//!
//! - its settings, saved by `fedgate login --credential-helper` (nothing secret) under
//!   `$XDG_CONFIG_HOME/fedgate/helper/` (else `~/.config/fedgate/helper/`);
//! - the last robot token, under `$XDG_CACHE_HOME/fedgate/tokens/` (else
//!   `~/.cache/fedgate/tokens/`), used until [`REFRESH_MARGIN_SECONDS`] before it expires
//!   (or half its lifetime, for short-lived tokens).
//!
//! Directories are 0700 and files 0600, written atomically. A lock file per registry
//! serializes exchanges, so tools asking in parallel trigger one exchange, not one each (a
//! second exchange of a file-based identity token would be refused as replayed).

use std::fs::File;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::authfile::write_atomically;
use super::exchange::Minted;
use super::settings::Settings;
use super::{ClientError, Env};
use crate::clock::Clock;

/// A cached token is replaced this long before it expires, so a push that starts with it
/// does not outlive it.
pub const REFRESH_MARGIN_SECONDS: u64 = 300;

#[derive(Debug, Clone)]
pub struct Store {
    settings_dir: PathBuf,
    tokens_dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct CachedToken {
    gateway: String,
    robot: String,
    token: String,
    expires_at: i64,
    refresh_at: i64,
}

impl Store {
    pub fn locate(env: &Env) -> Result<Self, ClientError> {
        let base = |xdg: &str, fallback: &str| -> Result<PathBuf, ClientError> {
            match (env.get(xdg), env.home()) {
                (Some(dir), _) => Ok(PathBuf::from(dir)),
                (None, Some(home)) => Ok(home.join(fallback)),
                (None, None) => Err(ClientError::Usage(format!(
                    "the credential helper keeps its settings under ${xdg} or $HOME; neither is set"
                ))),
            }
        };
        Ok(Self {
            settings_dir: base("XDG_CONFIG_HOME", ".config")?.join("fedgate/helper"),
            tokens_dir: base("XDG_CACHE_HOME", ".cache")?.join("fedgate/tokens"),
        })
    }

    pub fn save_settings(&self, settings: &Settings, registry: &str) -> Result<(), ClientError> {
        let path = self.settings_dir.join(file_name(registry));
        let json = serde_json::to_vec_pretty(settings)
            .map_err(|e| ClientError::Write(format!("settings: {e}")))?;
        write_atomically(&path, &json)
            .map_err(|e| ClientError::Write(format!("cannot save {}: {e}", path.display())))
    }

    /// The saved settings for `registry`, if `fedgate login --credential-helper` saved any.
    pub fn settings(&self, registry: &str) -> Result<Option<Settings>, ClientError> {
        let path = self.settings_dir.join(file_name(registry));
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                ClientError::Usage(format!(
                    "{} is not a fedgate helper settings file ({e}); run fedgate login --credential-helper again",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ClientError::Usage(format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// Every saved registry with its robot (the helper's `list`).
    pub fn saved(&self) -> Vec<(String, String)> {
        let Ok(entries) = std::fs::read_dir(&self.settings_dir) else {
            return Vec::new();
        };
        let mut found: Vec<(String, String)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|bytes| serde_json::from_slice::<Settings>(&bytes).ok())
            .filter_map(|s| Some((s.registry?, s.robot)))
            .collect();
        found.sort();
        found
    }

    /// Forgets `registry`: its settings and its cached token (the helper's `erase`).
    pub fn forget(&self, registry: &str) -> Result<(), ClientError> {
        for path in [
            self.settings_dir.join(file_name(registry)),
            self.tokens_dir.join(file_name(registry)),
        ] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(ClientError::Write(format!(
                        "cannot remove {}: {e}",
                        path.display()
                    )));
                }
            }
        }
        Ok(())
    }

    /// The cached token for `registry`, if it was minted for these settings and is not due
    /// for refresh at `clock`'s time.
    pub fn token(
        &self,
        settings: &Settings,
        registry: &str,
        clock: &dyn Clock,
    ) -> Option<SecretString> {
        let bytes = std::fs::read(self.tokens_dir.join(file_name(registry))).ok()?;
        let cached: CachedToken = serde_json::from_slice(&bytes).ok()?;
        let fresh = cached.gateway == settings.gateway
            && cached.robot == settings.robot
            && clock.unix() < cached.refresh_at;
        fresh.then(|| SecretString::from(cached.token))
    }

    pub fn put_token(
        &self,
        settings: &Settings,
        registry: &str,
        minted: &Minted,
        clock: &dyn Clock,
    ) -> Result<(), ClientError> {
        let now = clock.unix();
        let lifetime = i64::try_from(minted.expires_in).unwrap_or(i64::MAX / 4);
        let margin = i64::try_from(REFRESH_MARGIN_SECONDS)
            .unwrap_or(0)
            .min(lifetime / 2);
        let cached = CachedToken {
            gateway: settings.gateway.clone(),
            robot: settings.robot.clone(),
            token: minted.token.expose_secret().to_string(),
            expires_at: now + lifetime,
            refresh_at: now + lifetime - margin,
        };
        let path = self.tokens_dir.join(file_name(registry));
        let json = serde_json::to_vec(&cached).map_err(|e| ClientError::Write(e.to_string()))?;
        write_atomically(&path, &json).map_err(|e| {
            ClientError::Write(format!("cannot cache the token in {}: {e}", path.display()))
        })
    }

    /// Holds an exclusive lock on `registry`'s lock file until dropped.
    pub fn lock(&self, registry: &str) -> Result<File, ClientError> {
        let path = self
            .tokens_dir
            .join(format!("{}.lock", file_name(registry)));
        create_private_dir(&self.tokens_dir)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ClientError::Write(format!("cannot open {}: {e}", path.display())))?;
        file.lock()
            .map_err(|e| ClientError::Write(format!("cannot lock {}: {e}", path.display())))?;
        Ok(file)
    }
}

fn create_private_dir(dir: &Path) -> Result<(), ClientError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| ClientError::Write(format!("cannot create {}: {e}", dir.display())))
}

/// `127.0.0.1:5000` → `127.0.0.1_3a5000.json`: every byte outside `[A-Za-z0-9.-]` is escaped,
/// so two hosts never share a file.
fn file_name(registry: &str) -> String {
    let mut name = String::new();
    for b in registry.bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("_{b:02x}"));
        }
    }
    name.push_str(".json");
    name
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::client::settings::Form;
    use crate::client::source::Source;
    use crate::clock::ManualClock;

    fn settings() -> Settings {
        Settings {
            gateway: "https://fedgate.example.com".into(),
            robot: "acme+ci".into(),
            registry: Some("127.0.0.1:5000".into()),
            audience: "https://fedgate.example.com".into(),
            form: Form::Quay,
            source: Source::Github,
            ca_file: None,
            timeout_seconds: 30,
        }
    }

    fn store(dir: &Path) -> Store {
        Store::locate(&Env::new([("HOME".to_string(), dir.display().to_string())])).unwrap()
    }

    fn minted(expires_in: u64) -> Minted {
        Minted {
            token: SecretString::from("robot-token".to_string()),
            expires_in,
        }
    }

    #[test]
    fn a_token_is_used_until_shortly_before_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let (store, s, clock) = (store(dir.path()), settings(), ManualClock::at(1_000_000));
        let registry = "127.0.0.1:5000";
        assert!(store.token(&s, registry, &clock).is_none());
        store
            .put_token(&s, registry, &minted(3600), &clock)
            .unwrap();
        clock.advance(3600 - 301);
        assert_eq!(
            store.token(&s, registry, &clock).unwrap().expose_secret(),
            "robot-token"
        );
        clock.advance(1);
        assert!(
            store.token(&s, registry, &clock).is_none(),
            "due for refresh 5 minutes before expiry"
        );

        // A short-lived token is refreshed at half its life.
        store.put_token(&s, registry, &minted(120), &clock).unwrap();
        clock.advance(59);
        assert!(store.token(&s, registry, &clock).is_some());
        clock.advance(1);
        assert!(store.token(&s, registry, &clock).is_none());

        // A token minted for another robot or gateway is not used.
        store
            .put_token(&s, registry, &minted(3600), &clock)
            .unwrap();
        let other = Settings {
            robot: "acme+other".into(),
            ..settings()
        };
        assert!(store.token(&other, registry, &clock).is_none());

        let path = store.tokens_dir.join(file_name(registry));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(&store.tokens_dir)
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
    }

    #[test]
    fn settings_are_saved_listed_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let clock = ManualClock::at(0);
        assert_eq!(store.settings("127.0.0.1:5000").unwrap(), None);
        store.save_settings(&settings(), "127.0.0.1:5000").unwrap();
        store
            .put_token(&settings(), "127.0.0.1:5000", &minted(3600), &clock)
            .unwrap();
        assert_eq!(store.settings("127.0.0.1:5000").unwrap(), Some(settings()));
        assert_eq!(
            store.saved(),
            vec![("127.0.0.1:5000".into(), "acme+ci".into())]
        );
        store.forget("127.0.0.1:5000").unwrap();
        assert_eq!(store.settings("127.0.0.1:5000").unwrap(), None);
        assert!(store.token(&settings(), "127.0.0.1:5000", &clock).is_none());
        store.forget("127.0.0.1:5000").unwrap();
    }

    #[test]
    fn file_names_never_collide() {
        assert_eq!(file_name("127.0.0.1:5000"), "127.0.0.1_3a5000.json");
        assert_ne!(file_name("a:1"), file_name("a_1"));
        assert_eq!(file_name("../x"), ".._2fx.json");
    }
}
