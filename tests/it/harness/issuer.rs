//! A real OIDC issuer on loopback, standing in for GitHub, GitLab, Kubernetes and Google.
//!
//! It serves discovery and JWKS over HTTPS with a certificate from a CA made at start-up (the
//! gateway trusts it through `federation.extra_ca_file`), counts its hits, can rotate keys, and
//! can fail, stall or answer garbage. Tokens are signed with jsonwebtoken, an implementation
//! independent of fedgate's own, from the claim sets in `tests/fixtures/claims/`.
//!
//! Besides its root issuer it can serve more issuers on the same host, as the platforms lay
//! them out: other issuer paths (GitHub Enterprise Server's `/_services/token`, a GitLab under a
//! relative URL), a Kubernetes API server's bearer-protected `/openid/v1/jwks` with no
//! discovery document, and Azure's multi-tenant discovery naming `{tenantid}`. Its CA is its
//! own, so a gateway may trust it for this issuer only (`[[federation.issuers]] ca_file`).

use std::collections::HashMap;
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
    /// Announces a 100 MB body and never sends it.
    Oversized,
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

    /// An RSA key for `alg` (RS384/512, PS256/384/512), its JWK naming that algorithm.
    pub fn rsa_for(kid: &str, alg: Algorithm) -> Self {
        let mut key = Self::rsa(kid);
        key.alg = alg;
        key.jwk["alg"] = json!(format!("{alg:?}"));
        key
    }

    /// An ECDSA P-384 key (ES384).
    pub fn ec384(kid: &str) -> Self {
        use aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING;
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, doc.as_ref()).unwrap();
        let point = pair.public_key().as_ref().to_vec();
        let jwk = json!({
            "kty": "EC", "crv": "P-384", "kid": kid, "use": "sig", "alg": "ES384",
            "x": BASE64URL_NOPAD.encode(&point[1..49]),
            "y": BASE64URL_NOPAD.encode(&point[49..97]),
        });
        let spki = pair.public_key().as_der().unwrap();
        Self {
            kid: kid.to_string(),
            alg: Algorithm::ES384,
            encoding: EncodingKey::from_ec_pem(pem("PRIVATE KEY", doc.as_ref()).as_bytes())
                .unwrap(),
            jwk,
            public_pem: pem("PUBLIC KEY", spki.as_ref()),
        }
    }

    /// An Ed25519 key (EdDSA).
    pub fn ed25519(kid: &str) -> Self {
        use aws_lc_rs::signature::Ed25519KeyPair;
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let public = pair.public_key().as_ref().to_vec();
        let jwk = json!({
            "kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig", "alg": "EdDSA",
            "x": BASE64URL_NOPAD.encode(&public),
        });
        Self {
            kid: kid.to_string(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(doc.as_ref()),
            jwk,
            public_pem: String::new(),
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

    /// Signs `claims` under a header given whole (fields jsonwebtoken does not write, such
    /// as `crit`).
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            BASE64URL_NOPAD.encode(header.to_string().as_bytes()),
            BASE64URL_NOPAD.encode(claims.to_string().as_bytes())
        );
        let signature =
            jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding, self.alg).unwrap();
        format!("{input}.{signature}")
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
    /// Paths served besides the root issuer's (see [`Issuer::serve_issuer`] and friends).
    extra: Mutex<HashMap<String, Extra>>,
    /// Requests for a bearer-protected JWKS without the right bearer.
    unauthorized: AtomicUsize,
    /// Every request, whatever its path (including those answered 404).
    requests: AtomicUsize,
    /// The JWKS served to tenants (see [`Issuer::serve_tenants`]).
    tenant_jwks: Mutex<Option<Value>>,
    /// Where every request is redirected to (`<base><path>`), if anywhere.
    redirect_to: Mutex<Option<String>>,
    /// Discovery and JWKS bodies are streamed (chunked, no `Content-Length`).
    chunked: std::sync::atomic::AtomicBool,
}

/// What the issuer answers at one more path.
#[derive(Debug, Clone)]
enum Extra {
    /// A discovery document naming this issuer and key URL.
    Discovery { issuer: String, jwks_uri: String },
    /// The published keys; only to `Authorization: Bearer <bearer>` when one is set.
    Jwks { bearer: Option<String> },
    /// The tenants' key set ([`Issuer::serve_tenants`]).
    TenantJwks,
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
        let (ca_file, cert_path, key_path) = super::tls::TestCa::new("fedgate test CA")
            .write_into(dir.path(), &[&ip_text, "localhost"]);

        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let scheme = if tls { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            url: url.clone(),
            keys: Mutex::new(keys),
            mode: Mutex::new(Mode::Normal),
            discovery_hits: AtomicUsize::new(0),
            jwks_hits: AtomicUsize::new(0),
            extra: Mutex::new(HashMap::new()),
            unauthorized: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            tenant_jwks: Mutex::new(None),
            redirect_to: Mutex::new(None),
            chunked: std::sync::atomic::AtomicBool::new(false),
        });
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/{*path}", get(extra))
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

    /// The published keys as a JWKS document (static keys for `[[federation.issuers]]`).
    pub fn jwks_document(&self) -> Value {
        self.shared.jwks_document()
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

    /// Serves another issuer on this host at `path` (e.g. `/_services/token`; two segments or
    /// more): its discovery document and `<path>/jwks` with this issuer's keys. Returns the
    /// issuer identifier, `<url><path>`.
    pub fn serve_issuer(&self, path: &str) -> String {
        self.serve_issuer_at(&self.url, path)
    }

    /// As [`serve_issuer`](Self::serve_issuer), under another name for this host: `base` is
    /// e.g. `https://localhost:<port>` (the certificate names `localhost` too).
    pub fn serve_issuer_at(&self, base: &str, path: &str) -> String {
        let issuer = format!("{base}{path}");
        self.serve(
            &format!("{path}/.well-known/openid-configuration"),
            Extra::Discovery {
                issuer: issuer.clone(),
                jwks_uri: format!("{issuer}/jwks"),
            },
        );
        self.serve(&format!("{path}/jwks"), Extra::Jwks { bearer: None });
        issuer
    }

    /// Serves the keys at `path` only to `Authorization: Bearer <bearer>`, as a Kubernetes API
    /// server serves `/openid/v1/jwks`, with no discovery document. Returns the keys' URL.
    pub fn serve_protected_jwks(&self, path: &str, bearer: &str) -> String {
        self.serve(
            path,
            Extra::Jwks {
                bearer: Some(bearer.to_string()),
            },
        );
        format!("{}{path}", self.url)
    }

    /// Serves Azure's multi-tenant discovery: `/common/v2.0/.well-known/openid-configuration`
    /// names the issuer `<url>/{tenantid}/v2.0` and keys at `/common/discovery/v2.0/keys`.
    /// Returns the template.
    pub fn serve_tenant_template(&self) -> String {
        let template = format!("{}/{{tenantid}}/v2.0", self.url);
        self.serve(
            "/common/v2.0/.well-known/openid-configuration",
            Extra::Discovery {
                issuer: template.clone(),
                jwks_uri: format!("{}/common/discovery/v2.0/keys", self.url),
            },
        );
        self.serve("/common/discovery/v2.0/keys", Extra::Jwks { bearer: None });
        template
    }

    fn serve(&self, path: &str, what: Extra) {
        self.shared
            .extra
            .lock()
            .unwrap()
            .insert(path.to_string(), what);
    }

    /// Every request that reached the issuer, whatever its path.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Serves `jwks` for the tenant issuers [`tenant`](Self::tenant) makes (many issuers on
    /// one host, each with a key set of its own size).
    pub fn serve_tenants(&self, jwks: Value) {
        *self.shared.tenant_jwks.lock().unwrap() = Some(jwks);
    }

    /// Serves tenant issuer `<url>/<name>`, its discovery document and the tenants' key set,
    /// and returns its identifier.
    pub fn tenant(&self, name: &str) -> String {
        let issuer = format!("{}/{name}", self.url);
        self.serve(
            &format!("/{name}/.well-known/openid-configuration"),
            Extra::Discovery {
                issuer: issuer.clone(),
                jwks_uri: format!("{issuer}/jwks"),
            },
        );
        self.serve(&format!("/{name}/jwks"), Extra::TenantJwks);
        issuer
    }

    /// The host name form of this issuer's URL: `https://localhost:<port>`.
    pub fn localhost_url(&self) -> String {
        self.url.replacen("127.0.0.1", "localhost", 1)
    }

    /// Streams discovery and JWKS bodies (chunked, without `Content-Length`), so a client
    /// learns their size only by reading them.
    pub fn set_chunked(&self, chunked: bool) {
        self.shared.chunked.store(chunked, Ordering::SeqCst);
    }

    /// Answers every request with a 307 to `base` + the same path.
    pub fn redirect_to(&self, base: Option<&str>) {
        *self.shared.redirect_to.lock().unwrap() = base.map(str::to_string);
    }

    /// Requests for a bearer-protected JWKS that lacked the right bearer.
    pub fn unauthorized_hits(&self) -> usize {
        self.shared.unauthorized.load(Ordering::SeqCst)
    }

    /// Claims shaped like `fixture`, as [`claims`](Self::claims), naming `iss` as their issuer.
    pub fn claims_as(&self, fixture: &str, iss: &str, now: i64) -> Value {
        let mut claims = self.claims(fixture, now);
        claims["iss"] = json!(iss);
        claims
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
        Mode::Oversized => Some(
            (
                [(http::header::CONTENT_LENGTH, "100000000")],
                axum::body::Body::from_stream(futures_util::stream::pending::<
                    Result<Vec<u8>, std::io::Error>,
                >()),
            )
                .into_response(),
        ),
        Mode::Normal | Mode::WrongIssuer => None,
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
    let document = json!({
        "issuer": issuer,
        "jwks_uri": format!("{}/jwks", shared.url),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    });
    json_body(&shared, document)
}

/// The paths of [`Extra`]; anything else is 404.
async fn extra(
    State(shared): State<Arc<Shared>>,
    uri: http::Uri,
    headers: http::HeaderMap,
) -> Response {
    let what = shared.extra.lock().unwrap().get(uri.path()).cloned();
    match what {
        None => http::StatusCode::NOT_FOUND.into_response(),
        Some(Extra::Discovery { issuer, jwks_uri }) => {
            shared.discovery_hits.fetch_add(1, Ordering::SeqCst);
            if let Some(response) = misbehave(&shared).await {
                return response;
            }
            let document = json!({"issuer": issuer, "jwks_uri": jwks_uri,
                                  "id_token_signing_alg_values_supported": ["RS256", "ES256"]});
            json_body(&shared, document)
        }
        Some(Extra::Jwks {
            bearer: Some(bearer),
        }) if headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            != Some(format!("Bearer {bearer}").as_str()) =>
        {
            shared.unauthorized.fetch_add(1, Ordering::SeqCst);
            http::StatusCode::UNAUTHORIZED.into_response()
        }
        Some(Extra::Jwks { .. }) => jwks(State(shared)).await,
        Some(Extra::TenantJwks) => {
            shared.jwks_hits.fetch_add(1, Ordering::SeqCst);
            let jwks = shared.tenant_jwks.lock().unwrap().clone();
            match jwks {
                Some(jwks) => axum::Json(jwks).into_response(),
                None => http::StatusCode::NOT_FOUND.into_response(),
            }
        }
    }
}

/// Counts every request, and redirects it when told to.
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

impl Shared {
    fn jwks_document(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .lock()
            .unwrap()
            .iter()
            .map(|k| k.jwk.clone())
            .collect();
        json!({ "keys": keys })
    }
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    shared.jwks_hits.fetch_add(1, Ordering::SeqCst);
    if let Some(response) = misbehave(&shared).await {
        return response;
    }
    json_body(&shared, shared.jwks_document())
}

/// `value` as JSON, with a `Content-Length`, or streamed in small chunks without one.
fn json_body(shared: &Shared, value: Value) -> Response {
    if !shared.chunked.load(Ordering::SeqCst) {
        return axum::Json(value).into_response();
    }
    let bytes = value.to_string().into_bytes();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(64).map(|c| Ok(c.to_vec())).collect();
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(futures_util::stream::iter(chunks)),
    )
        .into_response()
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

    let (status, _, _) = get(format!(
        "{}/t1/.well-known/openid-configuration",
        issuer.url
    ))
    .await;
    assert_eq!(status, 404, "no tenant until it is served");
    issuer.serve_tenants(json!({"keys": [issuer.key(0).jwk]}));
    let tenant = issuer.tenant("t1");
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
