//! Exchange latency and memory at scale: 100,000 robots spread over 1,000 issuers, against a
//! single robot, in one run (`cargo bench --bench scale`).
//!
//! Both gateways run in process on SQLite with replay protection off, every issuer's keys and
//! every robot's policy warm (each robot exchanged once before measuring), so the figure is the
//! warm path at that size: cache lookups among 100,000 robots and 1,000 key sets.
//!
//! Printed besides criterion's figures:
//! - resident memory (VmRSS of this process) before the large gateway, after its robots are
//!   stored, and after every robot and issuer is warm: the last step is what fedgate holds in
//!   memory for that many robots;
//! - `scale/large_over_small`: the two cases interleaved (this machine's speed drifts by up to
//!   2x within a minute), 100 rounds of 50 exchanges each, as the median per-round ratio.

mod common;

use axum::Router;
use axum::body::Body;
use common::IdentityIssuer;
use criterion::{Criterion, criterion_group, criterion_main};
use data_encoding::BASE64;
use fedgate::oidc::policy::FederationEntry;
use fedgate::store::NewRobot;
use fedgate::tokens::opaque::{self, TokenKind};
use http::Request;
use secrecy::ExposeSecret;
use tower::ServiceExt;

const ROBOTS: usize = 100_000;
const ISSUERS: usize = 1_000;

fn issuer_url(i: usize) -> String {
    format!("https://issuer-{i}.example.com")
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A gateway with `robots` robots `acme+r<i>`, robot i trusting issuer `i % issuers`.
fn gateway(
    rt: &tokio::runtime::Runtime,
    issuer: &IdentityIssuer,
    robots: usize,
    issuers: usize,
) -> (Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let router = rt.block_on(async {
        let state = issuer.gateway_state(dir.path(), false).await;
        for i in 0..robots {
            let id = state.rng.positive_i64().unwrap();
            let token = opaque::generate(TokenKind::Robot, state.rng.as_ref()).unwrap();
            let robot = NewRobot {
                id,
                namespace: "acme".into(),
                short_name: format!("r{i}"),
                description: String::new(),
                metadata: "{}".into(),
                token_sealed: state
                    .at_rest
                    .seal(&token, &id.to_be_bytes(), state.rng.as_ref())
                    .unwrap(),
                token_lookup: state.at_rest.lookup_hash(token.expose_secret()),
                revision: state.rng.positive_i64().unwrap(),
                created_at: 0,
            };
            state.store.create_robot(&robot).await.unwrap();
            let entry = FederationEntry {
                issuer: issuer_url(i % issuers).into(),
                subject: "repo:octo-org/octo-repo:*".into(),
                audiences: ["https://github.com/octo-org".into()].into(),
                conditions: [("repository_owner_id".to_string(), "123456".to_string())]
                    .into_iter()
                    .collect(),
                preset: None,
            };
            state
                .store
                .replace_federation(id, &[entry], robot.revision)
                .await
                .unwrap();
        }
        fedgate::http::router::router(state)
    });
    (router, dir)
}

async fn exchange(router: &Router, robot: &str, token: &str) {
    let basic = BASE64.encode(format!("{robot}:{token}").as_bytes());
    let request = Request::builder()
        .uri("/oauth2/federation/robot/token")
        .header("authorization", format!("Basic {basic}"))
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200, "{robot}");
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let issuer = IdentityIssuer::new();
    let tokens: Vec<String> = (0..ISSUERS)
        .map(|i| issuer.token(&issuer_url(i), i as u64))
        .collect();
    let mut group = c.benchmark_group("scale");

    let (small, _small_dir) = gateway(&rt, &issuer, 1, 1);
    rt.block_on(exchange(&small, "acme+r0", &tokens[0]));
    group.bench_function("warm_exchange_1_robot", |b| {
        b.iter(|| rt.block_on(exchange(&small, "acme+r0", &tokens[0])))
    });

    let names: Vec<String> = (0..ROBOTS).map(|i| format!("acme+r{i}")).collect();
    let before = rss_mib();
    let started = std::time::Instant::now();
    let (large, _large_dir) = gateway(&rt, &issuer, ROBOTS, ISSUERS);
    let stored = rss_mib();
    rt.block_on(async {
        for (i, name) in names.iter().enumerate() {
            exchange(&large, name, &tokens[i % ISSUERS]).await;
        }
    });
    let warm = rss_mib();
    println!(
        "scale: {ROBOTS} robots over {ISSUERS} issuers stored and warmed in {:.0} s; \
         resident memory {before:.0} MiB before, {stored:.0} MiB stored, {warm:.0} MiB warm \
         ({:.0} MiB for the warm caches)",
        started.elapsed().as_secs_f64(),
        warm - stored,
    );
    // 100 rounds of 50 exchanges on each, the large one striding through all robots.
    const PER_ROUND: u32 = 50;
    let mut i = 0usize;
    common::interleaved_ratio(
        "scale/large_over_small",
        100,
        PER_ROUND,
        || {
            let started = std::time::Instant::now();
            rt.block_on(async {
                for _ in 0..PER_ROUND {
                    exchange(&small, "acme+r0", &tokens[0]).await;
                }
            });
            started.elapsed()
        },
        || {
            let started = std::time::Instant::now();
            rt.block_on(async {
                for _ in 0..PER_ROUND {
                    i = (i + 7_919) % ROBOTS;
                    exchange(&large, &names[i], &tokens[i % ISSUERS]).await;
                }
            });
            started.elapsed()
        },
    );
    let mut i = 0usize;
    group.bench_function("warm_exchange_100k_robots_1k_issuers", |b| {
        b.iter(|| {
            // A different robot (and issuer) each time, striding through all of them.
            i = (i + 7_919) % ROBOTS;
            rt.block_on(exchange(&large, &names[i], &tokens[i % ISSUERS]))
        })
    });
    group.finish();
}

criterion_group! {
    name = scale_benches;
    config = Criterion::default().sample_size(30);
    targets = benches
}
criterion_main!(scale_benches);
