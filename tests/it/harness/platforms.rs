//! The CI platforms' token sources, emulated on loopback for `fedgate login`:
//!
//! - GitHub Actions' `ACTIONS_ID_TOKEN_REQUEST_URL`: answers `{"value": <JWT>}` only to
//!   `Authorization: Bearer <request token>`, and puts the `audience` parameter into `aud`;
//! - the Google Cloud metadata server's identity endpoint: answers only requests carrying
//!   `Metadata-Flavor: Google`, requires `audience`, and says `Metadata-Flavor: Google` back.
//!
//! Tokens are signed by the test issuer's key from the claim fixtures, as the real platforms'
//! are by theirs. GitLab's `id_tokens` variable and Kubernetes' projected file need no server:
//! the tests sign those tokens and put them in a variable or a file.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fedgate::clock::{Clock, SystemClock};
use fedgate::http::listener::{self, ServeOptions};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::issuer::{Issuer, TestKey};

/// What GitHub gives the job as `ACTIONS_ID_TOKEN_REQUEST_TOKEN`.
pub const REQUEST_TOKEN: &str = "ghs-request-token-for-this-job";

struct Shared {
    key: TestKey,
    github: Value,
    google: Value,
    github_hits: AtomicUsize,
    gcp_hits: AtomicUsize,
    audiences: Mutex<Vec<String>>,
}

pub struct Platforms {
    /// `127.0.0.1:<port>`
    pub addr: String,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
}

impl Platforms {
    /// Serves both endpoints, signing with `issuer`'s first key.
    pub async fn start(issuer: &Issuer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let shared = Arc::new(Shared {
            key: issuer.key(0),
            github: issuer.claims("github-actions", 0),
            google: issuer.claims("google", 0),
            github_hits: AtomicUsize::new(0),
            gcp_hits: AtomicUsize::new(0),
            audiences: Mutex::new(Vec::new()),
        });
        let router = Router::new()
            .route("/_apis/token", get(github))
            .route(
                "/computeMetadata/v1/instance/service-accounts/default/identity",
                get(gcp),
            )
            .with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(listener::serve(
            listener,
            router,
            ServeOptions::default(),
            async {
                let _ = stopped.await;
            },
        ));
        Self {
            addr,
            shared,
            stop: Some(stop),
        }
    }

    /// `ACTIONS_ID_TOKEN_REQUEST_URL`: like GitHub's, it already has a query.
    pub fn github_request_url(&self) -> String {
        format!("http://{}/_apis/token?api-version=2.0", self.addr)
    }

    /// `GCE_METADATA_HOST`.
    pub fn gce_metadata_host(&self) -> String {
        self.addr.clone()
    }

    /// Tokens handed out by the GitHub endpoint.
    pub fn github_hits(&self) -> usize {
        self.shared.github_hits.load(Ordering::SeqCst)
    }

    /// Tokens handed out by the metadata server.
    pub fn gcp_hits(&self) -> usize {
        self.shared.gcp_hits.load(Ordering::SeqCst)
    }

    /// The audiences asked for, in order.
    pub fn audiences(&self) -> Vec<String> {
        self.shared.audiences.lock().unwrap().clone()
    }
}

impl Drop for Platforms {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// `template` issued now for `audience`, valid five minutes.
fn sign(shared: &Shared, template: &Value, audience: &str, jti: bool) -> String {
    let now = SystemClock.unix();
    let mut claims = template.clone();
    let map = claims.as_object_mut().unwrap();
    map.insert("aud".into(), json!(audience));
    map.insert("iat".into(), json!(now));
    map.insert("nbf".into(), json!(now - 5));
    map.insert("exp".into(), json!(now + 300));
    if jti {
        map.insert("jti".into(), json!(super::random_suffix()));
    } else {
        map.remove("jti");
    }
    shared.key.sign(&claims)
}

async fn github(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if bearer != Some(&format!("Bearer {REQUEST_TOKEN}")) {
        return (StatusCode::UNAUTHORIZED, "bad or missing bearer").into_response();
    }
    if query.get("api-version").map(String::as_str) != Some("2.0") {
        return (StatusCode::BAD_REQUEST, "api-version is required").into_response();
    }
    // Without `audience`, GitHub uses the repository owner's URL (the fixture's `aud`).
    let audience = match query.get("audience") {
        Some(audience) => audience.clone(),
        None => shared.github["aud"].as_str().unwrap().to_string(),
    };
    shared.audiences.lock().unwrap().push(audience.clone());
    shared.github_hits.fetch_add(1, Ordering::SeqCst);
    let token = sign(&shared, &shared.github, &audience, true);
    axum::Json(json!({"count": 1, "value": token})).into_response()
}

async fn gcp(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if headers.get("metadata-flavor").map(|v| v.as_bytes()) != Some(b"Google") {
        return (
            StatusCode::FORBIDDEN,
            "Missing required header \"Metadata-Flavor\": \"Google\"",
        )
            .into_response();
    }
    let Some(audience) = query.get("audience").filter(|a| !a.is_empty()) else {
        return (
            StatusCode::BAD_REQUEST,
            "non-empty audience parameter required",
        )
            .into_response();
    };
    shared.audiences.lock().unwrap().push(audience.clone());
    shared.gcp_hits.fetch_add(1, Ordering::SeqCst);
    // Google's identity tokens carry no `jti`.
    let token = sign(&shared, &shared.google, audience, false);
    ([("Metadata-Flavor", "Google")], token).into_response()
}
