//! The exchange's hot path, measured against its floor.
//!
//! - `crypto_floor`: the primitives every exchange must pay, with keys parsed once: one
//!   RSA-2048 PKCS#1 v1.5 SHA-256 verification (the identity token) and one ECDSA P-256 SHA-256
//!   signature (the robot token), through aws-lc-rs directly.
//! - `exchange/warm`: a whole exchange in process, from the request with its Basic header (as
//!   hyper hands it over; built outside the timing) to the response body, through the router
//!   and its middleware (no socket), with the issuer's keys and the robot's policy cached.
//!   Replay protection off: the same token is reused.
//! - `exchange/warm_over_floor`: the two above interleaved, printed as a ratio (see
//!   [`common::interleaved_ratio`]).
//! - `exchange/warm_replay_sqlite`: the same with replay protection on SQLite, a fresh token
//!   (fresh `jti`) per iteration.
//! - `registry/v2_auth_minted_token`: `/v2/auth` with a minted token, one repository scope.
//! - `policy/match_50_entries`: matching a GitHub-shaped identity against 50 entries.
//!
//! Run: `cargo bench --bench exchange`. Figures and machine: README, "Performance".

use std::time::Instant;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, ParsedPublicKey,
};
use axum::Router;
use axum::body::Body;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use data_encoding::{BASE64, BASE64URL_NOPAD};
use fedgate::http::auth::Scope;
use fedgate::oidc::policy::{FederationEntry, matching_entry};
use http::Request;
use http_body_util::BodyExt;
use secrecy::ExposeSecret;
use serde_json::json;
use tower::ServiceExt;

mod common;

use common::IdentityIssuer;

const ISSUER: &str = "https://token.actions.githubusercontent.com";

/// A gateway in process with robot `acme+ci` federated with the issuer.
fn gateway(
    rt: &tokio::runtime::Runtime,
    issuer: &IdentityIssuer,
    replay: bool,
) -> (Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let router = rt.block_on(async {
        let state = issuer.gateway_state(dir.path(), replay).await;
        let api = fedgate::admin::issue_api_token(
            state.store.as_ref(),
            &state.at_rest,
            state.rng.as_ref(),
            "admin",
            &Scope::ALL,
            0,
            None,
        )
        .await
        .unwrap();
        let router = fedgate::http::router::router(state);
        for (method, path, body) in [
            ("PUT", "/api/v1/organization/acme/robots/ci", json!({})),
            (
                "POST",
                "/api/v1/organization/acme/robots/ci/federation",
                json!([{
                    "issuer": ISSUER, "subject": "repo:octo-org/octo-repo:*",
                    "audiences": ["https://github.com/octo-org"],
                    "conditions": {"repository_owner_id": "123456", "ref": "refs/heads/main"},
                }]),
            ),
        ] {
            let request = Request::builder()
                .method(method)
                .uri(path)
                .header("authorization", format!("Bearer {}", api.expose_secret()))
                .body(Body::from(body.to_string()))
                .unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            assert!(
                response.status().is_success(),
                "{method} {path}: {}",
                response.status()
            );
        }
        router
    });
    (router, dir)
}

/// The exchange request as hyper would hand it to the router.
fn exchange_request(token: &str) -> Request<Body> {
    let basic = BASE64.encode(format!("acme+ci:{token}").as_bytes());
    Request::builder()
        .uri("/oauth2/federation/robot/token")
        .header("authorization", format!("Basic {basic}"))
        .body(Body::empty())
        .unwrap()
}

/// Routes `request` and reads the whole 200 response body.
async fn answer(router: &Router, request: Request<Body>) -> bytes::Bytes {
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap().to_bytes()
}

async fn exchange(router: &Router, token: &str) -> bytes::Bytes {
    answer(router, exchange_request(token)).await
}

/// Criterion's name filter, if one was given (`cargo bench --bench exchange -- <filter>`).
fn selected(name: &str) -> bool {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    filter.is_none_or(|f| name.contains(&f))
}

fn benches(c: &mut Criterion) {
    let issuer = IdentityIssuer::new();
    let token = issuer.token(ISSUER, 0);

    // The floor: keys parsed once, one RS256 verification and one ES256 signature.
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig = BASE64URL_NOPAD.decode(sig.as_bytes()).unwrap();
    let public = issuer.pair.public_key();
    let components = signature::RsaPublicKeyComponents {
        n: public.modulus().big_endian_without_leading_zero(),
        e: public.exponent().big_endian_without_leading_zero(),
    };
    let parsed: ParsedPublicKey = components
        .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
        .unwrap();
    let _ = public.as_der();
    let rng = SystemRandom::new();
    let ec_doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec_doc.as_ref()).unwrap();
    let minted_input = vec![b'x'; 420];
    let mut floor = c.benchmark_group("crypto_floor");
    floor.bench_function("rs256_verify", |b| {
        b.iter(|| parsed.verify_sig(input.as_bytes(), &sig).unwrap())
    });
    floor.bench_function("es256_sign", |b| {
        b.iter(|| ec.sign(&rng, &minted_input).unwrap())
    });
    floor.bench_function("rs256_verify+es256_sign", |b| {
        b.iter(|| {
            parsed.verify_sig(input.as_bytes(), &sig).unwrap();
            ec.sign(&rng, &minted_input).unwrap()
        })
    });
    floor.finish();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("exchange");
    let (router, _dir) = gateway(&rt, &issuer, false);
    rt.block_on(exchange(&router, &token)); // warm: keys and robot cached
    group.bench_function("warm", |b| {
        b.iter_batched(
            || exchange_request(&token),
            |request| rt.block_on(answer(&router, request)),
            BatchSize::SmallInput,
        )
    });
    if selected("exchange/warm_over_floor") {
        // 200 rounds of 50 floor iterations, then 50 exchanges (requests built untimed).
        const PER_ROUND: u32 = 50;
        common::interleaved_ratio(
            "exchange/warm_over_floor",
            200,
            PER_ROUND,
            || {
                let started = Instant::now();
                for _ in 0..PER_ROUND {
                    parsed.verify_sig(input.as_bytes(), &sig).unwrap();
                    ec.sign(&rng, &minted_input).unwrap();
                }
                started.elapsed()
            },
            || {
                let requests: Vec<_> = (0..PER_ROUND).map(|_| exchange_request(&token)).collect();
                let started = Instant::now();
                rt.block_on(async {
                    for request in requests {
                        answer(&router, request).await;
                    }
                });
                started.elapsed()
            },
        );
    }

    let (router, _dir2) = gateway(&rt, &issuer, true);
    rt.block_on(exchange(&router, &issuer.token(ISSUER, u64::MAX)));
    let mut next = 0u64;
    group.bench_function("warm_replay_sqlite", |b| {
        b.iter_batched(
            || {
                next += 1;
                issuer.token(ISSUER, next)
            },
            |token| rt.block_on(exchange(&router, &token)),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    // The registry-token path: Basic with a minted token, one repository scope.
    let (router, _dir3) = gateway(&rt, &issuer, false);
    let minted_body = rt.block_on(exchange(&router, &token));
    let minted: serde_json::Value = serde_json::from_slice(&minted_body).unwrap();
    let minted = minted["token"].as_str().unwrap().to_string();
    let basic = format!(
        "Basic {}",
        BASE64.encode(format!("acme+ci:{minted}").as_bytes())
    );
    let mut registry = c.benchmark_group("registry");
    registry.bench_function("v2_auth_minted_token", |b| {
        b.iter(|| {
            rt.block_on(async {
                let request = Request::builder()
                    .uri("/v2/auth?scope=repository:acme/app:pull,push")
                    .header("authorization", &basic)
                    .body(Body::empty())
                    .unwrap();
                let response = router.clone().oneshot(request).await.unwrap();
                assert_eq!(response.status(), 200);
                response.into_body().collect().await.unwrap().to_bytes()
            })
        })
    });
    registry.finish();

    // Policy matching against a robot with 50 entries, the matching one last.
    let mut entries: Vec<FederationEntry> = (0..49)
        .map(|i| FederationEntry {
            issuer: ISSUER.into(),
            subject: format!("repo:octo-org/repo-{i}:*").into(),
            audiences: ["https://github.com/octo-org".into()].into(),
            conditions: [("repository_owner_id".to_string(), "123456".to_string())]
                .into_iter()
                .collect(),
            preset: None,
        })
        .collect();
    entries.push(FederationEntry {
        issuer: ISSUER.into(),
        subject: "repo:octo-org/octo-repo:*".into(),
        audiences: ["https://github.com/octo-org".into()].into(),
        conditions: [
            ("repository_owner_id".to_string(), "123456".to_string()),
            ("ref".to_string(), "refs/heads/main".to_string()),
        ]
        .into_iter()
        .collect(),
        preset: None,
    });
    let compact = fedgate::oidc::jws::decode(&token).unwrap();
    let claims = fedgate::oidc::verify::claims(compact.payload).unwrap();
    c.bench_function("policy/match_50_entries", |b| {
        b.iter(|| matching_entry(&entries, &claims, &[], "acme+ci").unwrap())
    });
}

criterion_group! {
    name = exchange_benches;
    config = Criterion::default().sample_size(30);
    targets = benches
}
criterion_main!(exchange_benches);
