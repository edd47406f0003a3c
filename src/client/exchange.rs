//! The exchange call: an identity token in, a robot token out, in either of the gateway's forms.
//! A refusal keeps fedgate's `error_code` and explanation (the part `curl -f` used to hide);
//! the answer's status decides whose side failed.

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};

use super::ClientError;
use super::http::{body, describe, excerpt};
use super::settings::{Form, Settings};
use crate::wire;

/// A robot token and how long it lives.
#[derive(Debug)]
pub struct Minted {
    pub token: SecretString,
    pub expires_in: u64,
}

/// Trades `id_token` for a robot token of `settings.robot`.
pub async fn exchange(
    http: &reqwest::Client,
    settings: &Settings,
    id_token: &SecretString,
) -> Result<Minted, ClientError> {
    let request = match settings.form {
        Form::Quay => http
            .get(format!("{}{}", settings.gateway, wire::QUAY_EXCHANGE_PATH))
            .basic_auth(&settings.robot, Some(id_token.expose_secret())),
        Form::Rfc8693 => {
            let form = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", wire::GRANT_TYPE)
                .append_pair("subject_token", id_token.expose_secret())
                .append_pair("subject_token_type", wire::TOKEN_TYPE_JWT)
                .append_pair(
                    "resource",
                    &format!("{}{}", wire::ROBOT_RESOURCE_PREFIX, settings.robot),
                )
                .finish();
            http.post(format!("{}{}", settings.gateway, wire::STS_PATH))
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form)
        }
    };
    let response = request.send().await.map_err(|e| {
        ClientError::GatewayUnavailable(format!(
            "the gateway {} cannot be reached: {}",
            settings.gateway,
            describe(&e)
        ))
    })?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(|s| format!(" (retry after {s} s)"))
        .unwrap_or_default();
    let bytes = body(response).await.map_err(|e| {
        ClientError::GatewayUnavailable(format!("the gateway {}: {e}", settings.gateway))
    })?;
    if status == StatusCode::OK {
        return issued(settings, &bytes);
    }
    let reason = reason(settings.form, &bytes, id_token.expose_secret());
    let robot = &settings.robot;
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Err(ClientError::GatewayUnavailable(format!(
            "the gateway {} answered {status}{retry_after}: {reason}",
            settings.gateway
        )))
    } else {
        Err(ClientError::Refused(format!(
            "the gateway refused the identity token from {} for {robot} ({status}): {reason}",
            settings.source.describe()
        )))
    }
}

fn issued(settings: &Settings, bytes: &[u8]) -> Result<Minted, ClientError> {
    let parsed = match settings.form {
        Form::Quay => serde_json::from_slice::<wire::RobotToken>(bytes)
            .ok()
            .map(|t| (t.token.into_owned(), t.expires_in)),
        Form::Rfc8693 => serde_json::from_slice::<wire::StsToken>(bytes)
            .ok()
            .map(|t| (t.access_token.into_owned(), t.expires_in)),
    };
    match parsed {
        Some((token, expires_in)) if !token.is_empty() => Ok(Minted {
            token: SecretString::from(token),
            expires_in,
        }),
        _ => Err(ClientError::GatewayUnavailable(format!(
            "{} answered 200 without a robot token; is it a fedgate gateway?",
            settings.gateway
        ))),
    }
}

/// fedgate's explanation: `error_code: error` (Quay form) or `error: error_description`
/// (RFC 8693, whose description starts with the code); any other body, briefly.
fn reason(form: Form, bytes: &[u8], id_token: &str) -> String {
    let quay = || {
        serde_json::from_slice::<wire::ExchangeError>(bytes)
            .ok()
            .map(|e| format!("{}: {}", e.error_code, e.error))
    };
    let oauth = || {
        serde_json::from_slice::<wire::OAuthError>(bytes)
            .ok()
            .map(|e| format!("{}: {}", e.error, e.error_description))
    };
    let found = match form {
        Form::Quay => quay().or_else(oauth),
        Form::Rfc8693 => oauth().or_else(quay),
    };
    match found {
        // The gateway never echoes a token, but a proxy in between might.
        Some(text) => excerpt(text.as_bytes(), id_token),
        None if bytes.is_empty() => "no explanation given".into(),
        None => excerpt(bytes, id_token),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_keep_the_code_and_message() {
        let quay = br#"{"error": "token aud \"x\" is not accepted for acme+ci", "error_code": "audience_mismatch"}"#;
        assert_eq!(
            reason(Form::Quay, quay, "jwt"),
            r#"audience_mismatch: token aud "x" is not accepted for acme+ci"#
        );
        let sts =
            br#"{"error": "invalid_request", "error_description": "expired: token expired at 1"}"#;
        assert_eq!(
            reason(Form::Rfc8693, sts, "jwt"),
            "invalid_request: expired: token expired at 1"
        );
        assert_eq!(
            reason(
                Form::Quay,
                b"<html>\n<b>Bad gateway</b> a.b.c</html>",
                "a.b.c"
            ),
            "<html> <b>Bad gateway</b> <identity token></html>"
        );
        assert_eq!(reason(Form::Quay, b"", "x"), "no explanation given");
    }
}
