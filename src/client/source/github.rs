//! GitHub Actions: the job asks `ACTIONS_ID_TOKEN_REQUEST_URL` for a token, with
//! `Authorization: Bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN` and `&audience=<audience>`, and gets
//! `{"value": "<JWT>"}`. Both variables exist only when the workflow grants
//! `permissions: id-token: write`. Each request gives a fresh token, so the helper can
//! exchange again at any time.

use secrecy::SecretString;
use url::Url;

use super::super::http::{body, describe, excerpt};
use super::super::{ClientError, Env};
use super::generic::jwt;

pub const REQUEST_URL: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
pub const REQUEST_TOKEN: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";

pub fn detected(env: &Env) -> bool {
    env.get("GITHUB_ACTIONS") == Some("true") || env.is_set(REQUEST_URL)
}

#[derive(serde::Deserialize)]
struct Answer {
    value: String,
}

pub async fn fetch(
    env: &Env,
    http: &reqwest::Client,
    audience: &str,
) -> Result<SecretString, ClientError> {
    let fail = |why: String| {
        ClientError::NoIdentityToken(format!("no identity token: GitHub Actions: {why}"))
    };
    let permission = "give the job `permissions: id-token: write`";
    let url = env
        .get(REQUEST_URL)
        .ok_or_else(|| fail(format!("{REQUEST_URL} is not set; {permission}")))?;
    let bearer = env
        .get(REQUEST_TOKEN)
        .ok_or_else(|| fail(format!("{REQUEST_TOKEN} is not set; {permission}")))?;
    let mut url = Url::parse(url).map_err(|e| fail(format!("{REQUEST_URL} is not a URL: {e}")))?;
    url.query_pairs_mut().append_pair("audience", audience);
    let response = http
        .get(url)
        .bearer_auth(bearer)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| fail(format!("{REQUEST_URL} cannot be reached: {}", describe(&e))))?;
    let status = response.status();
    let bytes = body(response)
        .await
        .map_err(|e| fail(format!("{REQUEST_URL}: {e}")))?;
    if !status.is_success() {
        return Err(fail(format!(
            "{REQUEST_URL} answered {status}: {}",
            excerpt(&bytes, bearer)
        )));
    }
    let answer: Answer = serde_json::from_slice(&bytes).map_err(|_| {
        fail(format!(
            "{REQUEST_URL} answered {status} without a {{\"value\": ...}} object: {}",
            excerpt(&bytes, bearer)
        ))
    })?;
    jwt(&answer.value, &format!("the answer of {REQUEST_URL}"))
}
