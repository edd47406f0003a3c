//! The client's HTTP client: the system's trust store plus `--ca-file`, the proxy variables a CI
//! runner sets, a timeout on every request, and bounded bodies.

use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

/// No answer the client reads (a token, an error body) is anywhere near this.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

pub fn client(ca_file: Option<&Path>, timeout: Duration) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        // Neither the platforms' token endpoints nor the gateway redirect; a redirect could
        // carry the identity token's request to another host.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("fedgate-login/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| format!("CA file {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("CA file {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("CA file {}: no certificate found", path.display()));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| format!("HTTP client set-up: {e}"))
}

/// Reads a response body, refusing one larger than [`MAX_BODY_BYTES`].
pub async fn body(mut response: reqwest::Response) -> Result<Bytes, String> {
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(format!("answer larger than {MAX_BODY_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// reqwest's error with its causes ("error sending request: connection refused"), which say
/// more than the top-level message. URLs in it carry no secret: tokens travel in headers and
/// bodies only.
pub fn describe(err: &reqwest::Error) -> String {
    let mut text = if err.is_timeout() {
        "timed out".to_string()
    } else {
        String::new()
    };
    let mut source: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

/// A short, single-line excerpt of a body that is not the JSON we expected, for an error message.
/// `secret` (the identity token sent) is cut out in case a proxy echoes the request.
pub fn excerpt(body: &[u8], secret: &str) -> String {
    let text = String::from_utf8_lossy(body);
    let text = if secret.is_empty() {
        text.into_owned()
    } else {
        text.replace(secret, "<identity token>")
    };
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}
