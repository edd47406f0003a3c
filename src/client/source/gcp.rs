//! Google Cloud (Compute Engine, GKE with Workload Identity, Cloud Run, Cloud Build): the
//! metadata server's identity endpoint signs a token for the instance's service account with
//! the audience asked for. Requests must carry `Metadata-Flavor: Google`, and so must answers
//! (a server that does not say it is the metadata server is not trusted).
//!
//! The host is `GCE_METADATA_HOST` when set (the variable Google's client libraries honour),
//! else `metadata.google.internal`. Auto-detection looks at that variable and at Cloud Run's
//! `K_SERVICE`/`CLOUD_RUN_JOB`; on a VM or in Cloud Build, say `--source gcp`.

use secrecy::SecretString;
use url::Url;

use super::super::http::{body, describe, excerpt};
use super::super::{ClientError, Env};
use super::generic::jwt;

pub const HOST_VARIABLE: &str = "GCE_METADATA_HOST";
pub const DEFAULT_HOST: &str = "metadata.google.internal";
const IDENTITY_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/identity";
const FLAVOR: &str = "Metadata-Flavor";

pub fn detected(env: &Env) -> bool {
    env.is_set(HOST_VARIABLE) || env.is_set("K_SERVICE") || env.is_set("CLOUD_RUN_JOB")
}

pub async fn fetch(
    env: &Env,
    http: &reqwest::Client,
    audience: &str,
) -> Result<SecretString, ClientError> {
    let host = env.get(HOST_VARIABLE).unwrap_or(DEFAULT_HOST);
    let fail = |why: String| {
        ClientError::NoIdentityToken(format!(
            "no identity token: Google Cloud metadata server {host} ({HOST_VARIABLE}): {why}"
        ))
    };
    let mut url = Url::parse(&format!("http://{host}{IDENTITY_PATH}"))
        .map_err(|e| fail(format!("not a host: {e}")))?;
    url.query_pairs_mut()
        .append_pair("audience", audience)
        .append_pair("format", "full");
    let response = http
        .get(url)
        .header(FLAVOR, "Google")
        .send()
        .await
        .map_err(|e| fail(format!("cannot be reached: {}", describe(&e))))?;
    let status = response.status();
    let flavored = response
        .headers()
        .get(FLAVOR)
        .is_some_and(|v| v.as_bytes() == b"Google");
    let bytes = body(response).await.map_err(fail)?;
    if !status.is_success() {
        return Err(fail(format!("answered {status}: {}", excerpt(&bytes, ""))));
    }
    if !flavored {
        return Err(fail(format!(
            "the answer lacks {FLAVOR}: Google, so it is not the metadata server"
        )));
    }
    jwt(
        &String::from_utf8_lossy(&bytes),
        &format!("the answer of the metadata server {host}"),
    )
}
