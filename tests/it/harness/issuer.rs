//! A real OIDC issuer on loopback, standing in for GitHub, GitLab, Kubernetes and Google.
//!
//! It serves discovery and JWKS over HTTPS with a certificate from a CA made at start-up (the
//! gateway trusts it through `federation.extra_ca_file`), counts its hits, can rotate keys, and
//! can fail, stall or answer garbage. Tokens are signed with jsonwebtoken, an implementation
//! independent of fedgate's own, from the claim sets in `tests/fixtures/claims/`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RsaKeyPair};
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use data_encoding::BASE64URL_NOPAD;
use fedgate::http::listener::{self, ServeOptions};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// How the issuer answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// 503 for everything.
    Down,
    /// Never answers (until the client gives up).
    Stall,
    /// Discovery and JWKS are not JSON.
    Garbage,
    /// Discovery names another issuer.
    WrongIssuer,
}

/// A signing key of the issuer.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
    pub jwk: Value,
    /// PEM of the public key (what an HS256 confusion attack would use as the secret).
    pub public_pem: String,
}

impl TestKey {
    pub fn rsa(kid: &str) -> Self {
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pkcs8 = pair.as_der().unwrap();
        let public = pair.public_key();
        let jwk = json!({
            "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": BASE64URL_NOPAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": BASE64URL_NOPAD.encode(public.exponent().big_endian_without_leading_zero()),
        });
        let spki = public.as_der().unwrap();
        Self {
            kid: kid.to_string(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes())
                .unwrap(),
            jwk,
            public_pem: pem("PUBLIC KEY", spki.as_ref()),
        }
    }

    pub fn ec(kid: &str) -> Self {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        let point = pair.public_key().as_ref().to_vec();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": BASE64URL_NOPAD.encode(&point[1..33]),
            "y": BASE64URL_NOPAD.encode(&point[33..65]),
        });
        let spki = pair.public_key().as_der().unwrap();
        Self {
            kid: kid.to_string(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_pem(pem("PRIVATE KEY", doc.as_ref()).as_bytes())
                .unwrap(),
            jwk,
            public_pem: pem("PUBLIC KEY", spki.as_ref()),
        }
    }

    /// Signs `claims` with this key, under header `kid` (normally this key's own).
    pub fn sign_as(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(Some(&self.kid), claims)
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = data_encoding::BASE64.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

struct Shared {
    url: String,
    keys: Mutex<Vec<TestKey>>,
    mode: Mutex<Mode>,
    discovery_hits: AtomicUsize,
    jwks_hits: AtomicUsize,
    /// Every request, whatever its path (including those answered 404).
    requests: AtomicUsize,
    /// The JWKS served to tenants (`<url>/<tenant>` issuers); none: tenants are 404.
    tenant_jwks: Mutex<Option<Value>>,
    /// Where discovery and JWKS requests are redirected to (`<base><path>`), if anywhere.
    redirect_to: Mutex<Option<String>>,
}

pub struct Issuer {
    /// The issuer identifier (`iss`), `https://127.0.0.1:<port>`.
    pub url: String,
    /// PEM of the CA that signed the issuer's certificate.
    pub ca_file: PathBuf,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Issuer {
    /// An issuer publishing one key of each of `keys`.
    pub async fn start(keys: Vec<TestKey>) -> Self {
        Self::start_on(std::net::Ipv4Addr::LOCALHOST, true, keys).await
    }

    /// An issuer on `ip` (a host of its own: 127.0.0.2 is not 127.0.0.1), over HTTPS or, when
    /// `tls` is false, plain HTTP (a downgrade target).
    pub async fn start_on(ip: std::net::Ipv4Addr, tls: bool, keys: Vec<TestKey>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ip_text = ip.to_string();
        let (ca_file, cert_path, key_path) =
            super::tls::TestCa::new("fedgate test CA").write_into(dir.path(), &[&ip_text]);

        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let scheme = if tls { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            url: url.clone(),
            keys: Mutex::new(keys),
            mode: Mutex::new(Mode::Normal),
            discovery_hits: AtomicUsize::new(0),
            jwks_hits: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            tenant_jwks: Mutex::new(None),
            redirect_to: Mutex::new(None),
        });
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route(
                "/{tenant}/.well-known/openid-configuration",
                get(tenant_discovery),
            )
            .route("/{tenant}/jwks", get(tenant_jwks))
            .fallback(|| async { http::StatusCode::NOT_FOUND })
            .layer(axum::middleware::from_fn_with_state(shared.clone(), count))
            .with_state(shared.clone());
        let options = ServeOptions {
            tls: tls.then(|| listener::load_tls(&cert_path, &key_path).unwrap()),
            grace_period: Duration::from_millis(100),
            ..ServeOptions::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(listener::serve(listener, router, options, async {
            let _ = stopped.await;
        }));
        Self {
            url,
            ca_file,
            shared,
            stop: Some(stop),
            _dir: dir,
        }
    }

    pub async fn rsa() -> Self {
        Self::start(vec![TestKey::rsa("rsa-1")]).await
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// Replaces the published keys (a key rotation).
    pub fn publish(&self, keys: Vec<TestKey>) {
        *self.shared.keys.lock().unwrap() = keys;
    }

    pub fn key(&self, index: usize) -> TestKey {
        self.shared.keys.lock().unwrap()[index].clone()
    }

    pub fn discovery_hits(&self) -> usize {
        self.shared.discovery_hits.load(Ordering::SeqCst)
    }

    pub fn jwks_hits(&self) -> usize {
        self.shared.jwks_hits.load(Ordering::SeqCst)
    }

    /// Every request that reached the issuer, whatever its path.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Serves `jwks` for every tenant issuer `<url>/<tenant>` (many issuers on one host).
    pub fn serve_tenants(&self, jwks: Value) {
        *self.shared.tenant_jwks.lock().unwrap() = Some(jwks);
    }

    /// The issuer identifier of tenant `name`.
    pub fn tenant(&self, name: &str) -> String {
        format!("{}/{name}", self.url)
    }

    /// Answers discovery and JWKS requests with a 307 to `base` + the same path.
    pub fn redirect_to(&self, base: Option<&str>) {
        *self.shared.redirect_to.lock().unwrap() = base.map(str::to_string);
    }

    /// Claims shaped like `fixture` (a file of `tests/fixtures/claims/`), issued by this
    /// issuer at `now`, valid five minutes, with a fresh `jti`.
    pub fn claims(&self, fixture: &str, now: i64) -> Value {
        let path = format!(
            "{}/tests/fixtures/claims/{fixture}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut claims: Value = serde_json::from_str(&text).unwrap();
        let map = claims.as_object_mut().unwrap();
        map.remove("_notes");
        map.insert("iss".into(), json!(self.url));
        map.insert("iat".into(), json!(now));
        map.insert("nbf".into(), json!(now - 5));
        map.insert("exp".into(), json!(now + 300));
        map.insert("jti".into(), json!(super::random_suffix()));
        claims
    }

    /// `claims` signed with the first published key.
    pub fn token(&self, claims: &Value) -> String {
        self.key(0).sign(claims)
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn misbehave(shared: &Shared) -> Option<Response> {
    let mode = *shared.mode.lock().unwrap();
    match mode {
        Mode::Down => Some((http::StatusCode::SERVICE_UNAVAILABLE, "down").into_response()),
        Mode::Stall => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Some("late".into_response())
        }
        Mode::Garbage => Some("<html>not json</html>".into_response()),
        Mode::Normal | Mode::WrongIssuer => None,
    }
}

async fn count(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let redirect = shared.redirect_to.lock().unwrap().clone();
    if let Some(base) = redirect {
        let location = format!("{base}{}", request.uri().path());
        return (
            http::StatusCode::TEMPORARY_REDIRECT,
            [(http::header::LOCATION, location)],
        )
            .into_response();
    }
    next.run(request).await
}

async fn tenant_discovery(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(tenant): axum::extract::Path<String>,
) -> Response {
    if shared.tenant_jwks.lock().unwrap().is_none() {
        return http::StatusCode::NOT_FOUND.into_response();
    }
    shared.discovery_hits.fetch_add(1, Ordering::SeqCst);
    axum::Json(json!({
        "issuer": format!("{}/{tenant}", shared.url),
        "jwks_uri": format!("{}/{tenant}/jwks", shared.url),
    }))
    .into_response()
}

async fn tenant_jwks(State(shared): State<Arc<Shared>>) -> Response {
    let jwks = shared.tenant_jwks.lock().unwrap().clone();
    shared.jwks_hits.fetch_add(1, Ordering::SeqCst);
    match jwks {
        Some(jwks) => axum::Json(jwks).into_response(),
        None => http::StatusCode::NOT_FOUND.into_response(),
    }
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Response {
    shared.discovery_hits.fetch_add(1, Ordering::SeqCst);
    if let Some(response) = misbehave(&shared).await {
        return response;
    }
    let issuer = if *shared.mode.lock().unwrap() == Mode::WrongIssuer {
        "https://evil.example".to_string()
    } else {
        shared.url.clone()
    };
    axum::Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{}/jwks", shared.url),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    }))
    .into_response()
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    shared.jwks_hits.fetch_add(1, Ordering::SeqCst);
    if let Some(response) = misbehave(&shared).await {
        return response;
    }
    let keys: Vec<Value> = shared
        .keys
        .lock()
        .unwrap()
        .iter()
        .map(|k| k.jwk.clone())
        .collect();
    axum::Json(json!({ "keys": keys })).into_response()
}

/// The issuer's own behaviour, which the issue-12 tests rely on: tenant issuers under one
/// host, counted requests, redirects, another address, plain HTTP.
#[tokio::test]
async fn the_test_issuer_serves_tenants_redirects_and_plain_http() {
    let issuer = Issuer::rsa().await;
    let plain = Issuer::start_on([127, 0, 0, 2].into(), false, vec![TestKey::ec("ec-1")]).await;
    assert!(plain.url.starts_with("http://127.0.0.2:"), "{}", plain.url);
    let trusting = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(
            std::fs::read(&issuer.ca_file).unwrap().as_slice(),
        )
        .unwrap()])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = async |url: String| {
        let reply = trusting.get(url).send().await.unwrap();
        (
            reply.status().as_u16(),
            reply.headers().clone(),
            reply.text().await.unwrap(),
        )
    };

    let tenant = issuer.tenant("t1");
    let (status, _, _) = get(format!("{tenant}/.well-known/openid-configuration")).await;
    assert_eq!(status, 404, "no tenants until they are served");
    issuer.serve_tenants(json!({"keys": [issuer.key(0).jwk]}));
    let (status, _, body) = get(format!("{tenant}/.well-known/openid-configuration")).await;
    assert_eq!(status, 200);
    let discovery: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(discovery["issuer"], tenant.as_str());
    let (status, _, body) = get(discovery["jwks_uri"].as_str().unwrap().to_string()).await;
    assert_eq!((status, body.contains("rsa-1")), (200, true));
    assert_eq!(issuer.requests(), 3);

    issuer.redirect_to(Some(&plain.url));
    let (status, headers, _) = get(format!("{}/jwks", issuer.url)).await;
    assert_eq!(status, 307);
    assert_eq!(headers["location"], format!("{}/jwks", plain.url).as_str());
    let plain_jwks = reqwest::get(format!("{}/jwks", plain.url)).await.unwrap();
    assert!(plain_jwks.text().await.unwrap().contains("ec-1"));
    assert_eq!(plain.requests(), 1);
}
