//! Issue 19, item 3: the bounds of every outbound fetch beyond IP literals. A host name that
//! resolves to a private address (the guard inside the DNS resolver), and
//! `max_document_bytes`, whether the issuer announces the size or streams the body.

use std::sync::Arc;

use fedgate::clock::{Clock, SystemClock};
use fedgate::oidc::policy::FederationEntry;
use serde_json::json;

use crate::harness::issuer::{Issuer, Mode, TestKey};
use crate::harness::{Backend, Gateway, Reply};

async fn exchange_with(gw: &Gateway, issuer: &Issuer, iss: &str) -> Reply {
    gw.federated_robot(
        "acme",
        "ci",
        json!([{"issuer": iss, "subject": "repo:octo-org/octo-repo:*",
                "audiences": ["https://github.com/octo-org"]}]),
    )
    .await;
    let claims = issuer.claims_as("github-actions", iss, SystemClock.unix());
    gw.exchange("acme+ci", &issuer.token(&claims)).await
}

/// `localhost` is a host name, so the URL check before any I/O lets it through; it resolves
/// to 127.0.0.1 (the system resolver, `/etc/hosts`), which the resolver's guard refuses. The
/// same issuer is reached once private networks are allowed, so nothing else stood in the way.
#[tokio::test]
async fn a_host_name_that_resolves_to_a_private_address_is_refused() {
    let issuer = Issuer::rsa().await;
    let named = issuer.serve_issuer_at(&issuer.localhost_url(), "/by-name");
    assert!(named.starts_with("https://localhost:"), "{named}");
    let ca = issuer.ca_file.display().to_string();
    for allow_private in [false, true] {
        let gw = Gateway::start_with(Backend::Sqlite, |c| {
            c.federation.extra_ca_file = ca.clone();
            c.federation.allow_private_networks = allow_private;
        })
        .await;
        let before = issuer.requests();
        let reply = exchange_with(&gw, &issuer, &named).await;
        if allow_private {
            assert_eq!(reply.status, 200, "{}", reply.text);
        } else {
            assert_eq!(reply.status, 503, "{}", reply.text);
            assert_eq!(reply.json()["error_code"], "issuer_unavailable");
            assert!(
                reply.text.contains("resolves only to non-public addresses"),
                "{}",
                reply.text
            );
            assert_eq!(issuer.requests(), before, "nothing reached 127.0.0.1");
        }
    }
}

/// A key set of exactly `max_document_bytes` is read; one byte more is refused, with a
/// `Content-Length` (refused before the body is read) and streamed (refused while reading).
#[tokio::test]
async fn documents_are_bounded_by_max_document_bytes() {
    let issuer = Issuer::start(vec![TestKey::rsa("rsa-1"), TestKey::rsa("rsa-2")]).await;
    let jwks_len = issuer.jwks_document().to_string().len();
    for chunked in [false, true] {
        issuer.set_chunked(chunked);
        for (limit, accepted) in [(jwks_len, true), (jwks_len - 1, false)] {
            let gw = Gateway::trusting(Backend::Sqlite, &issuer, Arc::new(SystemClock), |c| {
                c.federation.max_document_bytes = limit;
            })
            .await;
            let reply = exchange_with(&gw, &issuer, &issuer.url).await;
            let case = format!("chunked {chunked}, limit {limit} for {jwks_len} bytes");
            if accepted {
                assert_eq!(reply.status, 200, "{case}: {}", reply.text);
            } else {
                assert_eq!(reply.status, 503, "{case}: {}", reply.text);
                assert_eq!(reply.json()["error_code"], "issuer_unavailable", "{case}");
                assert!(
                    reply.text.contains(&format!("larger than {limit} bytes")),
                    "{case}: {}",
                    reply.text
                );
            }
        }
    }
}

/// A body announced larger than `max_document_bytes` is refused on its `Content-Length`, before
/// any of it is read: the issuer here never sends it, so reading would end in the timeout.
#[tokio::test]
async fn an_announced_oversized_document_is_refused_before_it_is_read() {
    let issuer = Issuer::rsa().await;
    issuer.set_mode(Mode::Oversized);
    let gw = Gateway::trusting(Backend::Sqlite, &issuer, Arc::new(SystemClock), |c| {
        c.federation.fetch_timeout_ms = 60_000;
    })
    .await;
    let reply = exchange_with(&gw, &issuer, &issuer.url).await;
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert_eq!(reply.json()["error_code"], "issuer_unavailable");
    let limit = gw.config.federation.max_document_bytes;
    assert!(
        reply.text.contains(&format!("larger than {limit} bytes")),
        "{}",
        reply.text
    );
}

/// A plain-HTTP issuer is fetched only with `allow_http_issuers`; without it the URL is refused
/// before any I/O, even for an entry that got into the database anyway (the API refuses to
/// make one: made before the setting was turned off).
#[tokio::test]
async fn plain_http_issuers_need_allow_http_issuers() {
    let issuer = Issuer::start_on([127, 0, 0, 1].into(), false, vec![TestKey::rsa("rsa-1")]).await;
    assert!(issuer.url.starts_with("http://"), "{}", issuer.url);
    let entries = json!([{"issuer": issuer.url, "subject": "repo:octo-org/octo-repo:*",
                          "audiences": ["https://github.com/octo-org"]}]);
    for allow_http in [true, false] {
        let gw = Gateway::start_with(Backend::Sqlite, |c| {
            c.federation.allow_private_networks = true;
            c.federation.allow_http_issuers = allow_http;
        })
        .await;
        gw.federated_robot("acme", "ci", json!([])).await;
        let robot = gw.store().robot("acme", "ci").await.unwrap().unwrap();
        let entry: FederationEntry = serde_json::from_value(entries[0].clone()).unwrap();
        gw.store()
            .replace_federation(robot.id, &[entry], 7)
            .await
            .unwrap();
        let before = issuer.requests();
        let claims = issuer.claims("github-actions", SystemClock.unix());
        let reply = gw.exchange("acme+ci", &issuer.token(&claims)).await;
        if allow_http {
            assert_eq!(reply.status, 200, "{}", reply.text);
        } else {
            assert_eq!(reply.status, 503, "{}", reply.text);
            assert!(
                reply.text.contains("http:// URLs are not fetched"),
                "{}",
                reply.text
            );
            assert_eq!(issuer.requests(), before, "nothing was fetched");
        }
    }
}
