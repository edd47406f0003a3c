//! The files the container tools read credentials from, edited in place: the Docker config
//! (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`: docker, and podman, skopeo and
//! buildah as a fallback) and the containers auth file (`$REGISTRY_AUTH_FILE`, else
//! `$XDG_RUNTIME_DIR/containers/auth.json`: podman, skopeo, buildah). Both have the same
//! shape: `{"auths": {"<host>": {"auth": base64("user:secret")}}, "credHelpers": {"<host>": "<helper>"}}`.
//!
//! Only the registry's own entry changes; every other entry and key is kept. The file is
//! replaced atomically (a temporary file in the same directory, synced, renamed over it) with
//! mode 0600, so a reader never sees half a file and no other user can read the token.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64_simd::STANDARD as BASE64;
use serde_json::{Map, Value};

use super::{ClientError, Env};

/// The helper name written into `credHelpers`: the tools run `docker-credential-fedgate`.
pub const HELPER_NAME: &str = "fedgate";

/// What to store for the registry.
#[derive(Debug)]
pub enum Entry<'a> {
    /// A robot token, as `auths.<host>.auth`.
    Credential { username: &'a str, secret: &'a str },
    /// `credHelpers.<host> = "fedgate"`: the tools ask `docker-credential-fedgate` each time.
    Helper,
}

pub fn docker_config_path(env: &Env) -> Result<PathBuf, ClientError> {
    if let Some(dir) = env.get("DOCKER_CONFIG") {
        return Ok(Path::new(dir).join("config.json"));
    }
    match env.home() {
        Some(home) => Ok(home.join(".docker/config.json")),
        None => Err(ClientError::Usage(
            "cannot find the Docker config: neither DOCKER_CONFIG nor HOME is set; give --auth-file"
                .into(),
        )),
    }
}

/// The containers auth file, when its place is known.
pub fn containers_auth_path(env: &Env) -> Option<PathBuf> {
    if let Some(file) = env.get("REGISTRY_AUTH_FILE") {
        return Some(PathBuf::from(file));
    }
    env.get("XDG_RUNTIME_DIR")
        .map(|dir| Path::new(dir).join("containers/auth.json"))
}

/// Sets `registry`'s entry in the auth file at `path` (created if missing). Returns notes for
/// the user (e.g. a `credsStore` that will shadow the entry for docker).
pub fn update(path: &Path, registry: &str, entry: &Entry) -> Result<Vec<String>, ClientError> {
    // Follow a symlinked config to the file it names, so the link survives.
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let fail = |why: String| ClientError::Write(format!("cannot update {}: {why}", path.display()));
    let mut doc = match std::fs::read(&path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Map::new(),
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => map,
            _ => return Err(fail("it is not a JSON object; left as it is".into())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
        Err(e) => return Err(fail(e.to_string())),
    };
    let mut notes = Vec::new();
    match entry {
        Entry::Credential { username, secret } => {
            let auth = BASE64.encode_to_string(format!("{username}:{secret}"));
            let mut value = Map::new();
            value.insert("auth".into(), Value::String(auth));
            section(&mut doc, "auths")
                .map_err(&fail)?
                .insert(registry.into(), Value::Object(value));
            let helpers = section(&mut doc, "credHelpers").map_err(&fail)?;
            // A helper entry for the host would be asked before `auths`; ours is stale now.
            if helpers.get(registry).and_then(Value::as_str) == Some(HELPER_NAME) {
                helpers.remove(registry);
            } else if let Some(other) = helpers.get(registry).and_then(Value::as_str) {
                notes.push(format!(
                    "{} names the credential helper {other:?} for {registry}; the tools ask it before this entry",
                    path.display()
                ));
            }
            if helpers.is_empty() {
                doc.remove("credHelpers");
            }
            if let Some(store) = doc.get("credsStore").and_then(Value::as_str) {
                notes.push(format!(
                    "{} sets credsStore {store:?}: docker reads credentials from that store, not \
                     from this file (podman and skopeo read this file); use --credential-helper",
                    path.display()
                ));
            }
        }
        Entry::Helper => {
            section(&mut doc, "credHelpers")
                .map_err(&fail)?
                .insert(registry.into(), Value::String(HELPER_NAME.into()));
            // A stored token for the host would be dead weight (and a secret at rest).
            let auths = section(&mut doc, "auths").map_err(&fail)?;
            auths.remove(registry);
            if auths.is_empty() {
                doc.remove("auths");
            }
        }
    }
    let mut text =
        serde_json::to_string_pretty(&Value::Object(doc)).map_err(|e| fail(e.to_string()))?;
    text.push('\n');
    write_atomically(&path, text.as_bytes()).map_err(fail)?;
    Ok(notes)
}

/// The object under `key`, created empty if missing; an error if `key` holds something else.
fn section<'a>(
    doc: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Map<String, Value>, String> {
    doc.entry(key)
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| format!("its {key:?} is not a JSON object; left as it is"))
}

/// Replaces `path` with `bytes`: temporary file (0600) in the same directory, synced, renamed.
/// A missing directory is created 0700.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    // tempfile creates the file 0600 with a random name, so nothing else can open it first.
    let mut temp = tempfile::Builder::new()
        .prefix(".fedgate-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| format!("cannot create a temporary file in {}: {e}", dir.display()))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| e.to_string())?;
    temp.persist(path).map_err(|e| e.error.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use serde_json::json;

    use super::*;

    fn read(path: &Path) -> Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn only_the_registry_entry_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let before = json!({
            "auths": {"other.example": {"auth": "b3RoZXI6cHc=", "email": "x@example.com"},
                      "registry.example.com": {"auth": "old", "identitytoken": "refresh"}},
            "credHelpers": {"gcr.io": "gcloud", "registry.example.com": "fedgate"},
            "HttpHeaders": {"User-Agent": "ci"},
            "psFormat": "table {{.ID}}"
        });
        std::fs::write(&path, before.to_string()).unwrap();
        let entry = Entry::Credential {
            username: "acme+ci",
            secret: "tok",
        };
        assert!(
            update(&path, "registry.example.com", &entry)
                .unwrap()
                .is_empty()
        );
        let after = read(&path);
        let mut expected = before.clone();
        expected["auths"]["registry.example.com"] =
            json!({"auth": BASE64.encode_to_string("acme+ci:tok")});
        expected["credHelpers"] = json!({"gcr.io": "gcloud"});
        assert_eq!(after, expected);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        update(&path, "registry.example.com", &Entry::Helper).unwrap();
        let after = read(&path);
        assert_eq!(after["credHelpers"]["registry.example.com"], "fedgate");
        assert_eq!(after["credHelpers"]["gcr.io"], "gcloud");
        assert_eq!(
            after["auths"],
            json!({"other.example": before["auths"]["other.example"]})
        );
        assert_eq!(after["HttpHeaders"], before["HttpHeaders"]);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn missing_files_and_directories_are_created_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/containers/auth.json");
        update(&path, "127.0.0.1:5000", &Entry::Helper).unwrap();
        assert_eq!(
            read(&path),
            json!({"credHelpers": {"127.0.0.1:5000": "fedgate"}})
        );
        let mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_file_that_is_not_an_auth_file_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        for text in ["[1, 2]", "{\"auths\": 3}", "not json"] {
            std::fs::write(&path, text).unwrap();
            let entry = Entry::Credential {
                username: "a+b",
                secret: "s",
            };
            assert!(
                matches!(update(&path, "r", &entry), Err(ClientError::Write(_))),
                "{text}"
            );
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        }
    }

    #[test]
    fn a_symlinked_config_stays_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        std::fs::write(&real, "{}").unwrap();
        let link = dir.path().join("config.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        update(&link, "r", &Entry::Helper).unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(read(&real)["credHelpers"]["r"], "fedgate");
    }

    #[test]
    fn a_creds_store_is_pointed_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"credsStore": "desktop"}"#).unwrap();
        let entry = Entry::Credential {
            username: "a+b",
            secret: "s",
        };
        let notes = update(&path, "r", &entry).unwrap();
        assert!(notes[0].contains("credsStore \"desktop\""), "{notes:?}");
    }
}
