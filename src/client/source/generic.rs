//! The sources every platform reduces to: a file, a variable, standard input. Each checks that
//! what it read looks like a JWT, so "the file holds something else" is said here rather than
//! as a refusal from the gateway.

use std::io::Read;
use std::path::Path;

use secrecy::SecretString;

use super::super::{ClientError, Env};

/// Identity tokens are a few KiB; a bigger file is not one.
const MAX_TOKEN_BYTES: u64 = 64 * 1024;

/// The token in `text`, trimmed, if it has a JWT's shape (three base64url parts).
pub fn jwt(text: &str, from: &str) -> Result<SecretString, ClientError> {
    let token = text.trim();
    if token.is_empty() {
        return Err(ClientError::NoIdentityToken(format!(
            "no identity token: {from} is empty"
        )));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let base64url = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
    };
    if parts.len() != 3 || !parts.iter().all(|p| base64url(p)) {
        return Err(ClientError::NoIdentityToken(format!(
            "no identity token: {from} does not hold a JWT (header.payload.signature)"
        )));
    }
    Ok(SecretString::from(token.to_string()))
}

/// Reads the token from `path`; `label` says what the file is in messages, `hint` follows
/// them when the file cannot be read.
pub fn read_file(path: &Path, label: &str, hint: &str) -> Result<SecretString, ClientError> {
    let missing = |why: String| {
        ClientError::NoIdentityToken(format!("no identity token: {label}: {why}{hint}"))
    };
    let file = std::fs::File::open(path).map_err(|e| missing(e.to_string()))?;
    let mut text = String::new();
    file.take(MAX_TOKEN_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| missing(e.to_string()))?;
    if text.len() as u64 > MAX_TOKEN_BYTES {
        return Err(missing(format!("larger than {MAX_TOKEN_BYTES} bytes")));
    }
    jwt(&text, label)
}

/// Reads the token from the variable `name`; `hint` follows the message when it is unset.
pub fn read_variable(env: &Env, name: &str, hint: &str) -> Result<SecretString, ClientError> {
    match env.get(name) {
        Some(value) => jwt(value, &format!("the variable {name}")),
        None => Err(ClientError::NoIdentityToken(format!(
            "no identity token: the variable {name} is not set{hint}"
        ))),
    }
}

pub fn read_stdin() -> Result<SecretString, ClientError> {
    let mut text = String::new();
    std::io::stdin()
        .lock()
        .take(MAX_TOKEN_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| {
            ClientError::NoIdentityToken(format!("no identity token: standard input: {e}"))
        })?;
    jwt(&text, "standard input")
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn only_jwt_shaped_text_is_taken() {
        assert_eq!(
            jwt("  eyJh.eyJz.c2ln \n", "x").unwrap().expose_secret(),
            "eyJh.eyJz.c2ln"
        );
        for bad in [
            "",
            "  \n",
            "not a token",
            "a.b",
            "a.b.c.d",
            "a..c",
            "a.b c.d",
        ] {
            assert!(
                matches!(jwt(bad, "the file t"), Err(ClientError::NoIdentityToken(m)) if m.contains("the file t")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_missing_file_is_named() {
        let Err(ClientError::NoIdentityToken(why)) = read_file(
            Path::new("/nonexistent/token"),
            "the file /nonexistent/token",
            "",
        ) else {
            panic!()
        };
        assert!(why.contains("/nonexistent/token"), "{why}");
    }
}
