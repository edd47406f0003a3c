//! Load over loopback: `cargo bench --bench load` (options after `--`: `--seconds N`,
//! `--concurrency N`).
//!
//! Starts `fedgate serve` (the release binary) on its embedded defaults (SQLite in a temporary
//! working directory) plus what a private issuer needs (`extra_ca_file`,
//! `allow_private_networks`), and the HTTPS test issuer of the integration tests. Then, for a
//! fixed time at a fixed concurrency, it drives `GET /oauth2/federation/robot/token` with
//! replay protection off and on, and `GET /v2/auth`, first flat out, then paced at half that
//! rate, and prints throughput, p50/p99 latency and fedgate's peak RSS. Rate limits are off
//! (they would cap the run); request and audit logs are on, written to a file.

#[path = "../tests/it/harness/issuer.rs"]
#[expect(dead_code, reason = "the load bench uses a part of the test issuer")]
mod issuer;
#[path = "../tests/it/harness/replica.rs"]
#[expect(
    dead_code,
    reason = "the load bench does not stop its gateway with SIGTERM"
)]
mod replica;
#[path = "../tests/it/harness/tls.rs"]
mod tls;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fedgate::clock::{Clock, SystemClock};
use issuer::Issuer;
use replica::{Replica, acme_admin, admin};

/// Used by the shared issuer module for `jti`s.
fn random_suffix() -> String {
    use fedgate::rng::Rng;
    format!(
        "{:x}",
        fedgate::rng::SystemRng::default().positive_i64().unwrap()
    )
}

/// `fedgate serve` on its embedded defaults, in a temporary working directory of its own.
struct Gateway {
    replica: Replica,
    _dir: tempfile::TempDir,
}

impl Gateway {
    async fn start(issuer: &Issuer, replay: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // The defaults put the database and keys under `data/` in the working directory.
        std::env::set_current_dir(dir.path()).unwrap();
        let env: Vec<(String, String)> = [
            (
                "FEDGATE_FEDERATION_EXTRA_CA_FILE",
                issuer.ca_file.display().to_string(),
            ),
            ("FEDGATE_FEDERATION_ALLOW_PRIVATE_NETWORKS", "true".into()),
            ("FEDGATE_FEDERATION_REPLAY_PROTECTION", replay.to_string()),
            (
                "FEDGATE_LIMITS_FAILED_EXCHANGES_PER_MINUTE_PER_IP",
                "0".into(),
            ),
            ("FEDGATE_LIMITS_EXCHANGES_PER_MINUTE_PER_ROBOT", "0".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        admin(&env, &["migrate"]);
        let token = acme_admin(&env);
        let replica = Replica::start(&env, dir.path(), "fedgate").await;
        configure(&replica.url, &token, issuer).await;
        Self { replica, _dir: dir }
    }

    /// Peak resident set size of the fedgate process, in MiB.
    fn peak_rss_mib(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.replica.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

/// Robot `acme+ci`, federated with the test issuer and allowed to write `acme/app`.
async fn configure(url: &str, token: &str, issuer: &Issuer) {
    let client = reqwest::Client::new();
    let put = |path: String, body: Option<serde_json::Value>| {
        let mut request = client.put(format!("{url}{path}")).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    assert!(
        put("/api/v1/organization/acme/robots/ci".into(), None)
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let federation = serde_json::json!([{
        "issuer": issuer.url, "subject": "repo:octo-org/octo-repo:*",
        "audiences": ["https://github.com/octo-org"],
        "conditions": {"repository_owner_id": "123456"},
    }]);
    let set = client
        .post(format!(
            "{url}/api/v1/organization/acme/robots/ci/federation"
        ))
        .bearer_auth(token)
        .json(&federation)
        .send()
        .await
        .unwrap();
    assert!(set.status().is_success());
    let grant = put(
        "/api/v1/repository/acme/app/permissions/user/acme+ci".into(),
        Some(serde_json::json!({"role": "write"})),
    )
    .await
    .unwrap();
    assert!(grant.status().is_success());
}

/// Used by the shared replica module for listen addresses.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One request of a run: a URL and a Basic credential.
#[derive(Clone)]
struct Call {
    url: String,
    user: String,
    password: String,
}

struct Outcome {
    completed: usize,
    errors: usize,
    /// The list of calls was used up before the deadline.
    ran_out: bool,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Outcome {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        sorted
            .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    }

    fn rate(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64()
    }
}

/// Drives `calls` (taken in order, each once) at `concurrency` for `seconds`; with `pace`, each
/// worker waits for its share of that many requests per second.
async fn drive(
    calls: Arc<Vec<Call>>,
    next: Arc<std::sync::atomic::AtomicUsize>,
    concurrency: usize,
    seconds: u64,
    pace: Option<f64>,
) -> Outcome {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let (total, taken) = (calls.len(), next.clone());
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let (calls, next) = (calls.clone(), next.clone());
        workers.spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            // Paced workers start staggered and never catch up in bursts, so the offered load
            // is smooth.
            let mut ticker = pace.map(|rate| {
                let period = Duration::from_secs_f64(concurrency as f64 / rate);
                let offset = period.mul_f64(worker as f64 / concurrency as f64);
                let mut ticker =
                    tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticker
            });

            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            while Instant::now() < deadline {
                if let Some(ticker) = ticker.as_mut() {
                    ticker.tick().await;
                }
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // One call of a single-call run repeats; a list is used up once.
                let Some(call) = calls.get(if calls.len() == 1 { 0 } else { i }) else {
                    break;
                };
                let sent = Instant::now();
                let response = client
                    .get(&call.url)
                    .basic_auth(&call.user, Some(&call.password))
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                        latencies.push(sent.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        });
    }
    let mut outcome = Outcome {
        completed: 0,
        errors: 0,
        ran_out: false,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for (latencies, errors) in workers.join_all().await {
        outcome.completed += latencies.len();
        outcome.errors += errors;
        outcome.latencies.extend(latencies);
    }
    outcome.elapsed = started.elapsed();
    outcome.ran_out = total > 1 && taken.load(std::sync::atomic::Ordering::Relaxed) > total;
    outcome
}

fn report(name: &str, outcome: &Outcome, rss: f64) {
    println!(
        "{name:<38} {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {:>3}  fedgate peak RSS {rss:.1} MiB{}",
        outcome.rate(),
        outcome.percentile(0.50).as_secs_f64() * 1000.0,
        outcome.percentile(0.99).as_secs_f64() * 1000.0,
        outcome.errors,
        if outcome.ran_out {
            "  (ran out of identity tokens before the time was up)"
        } else {
            ""
        },
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let option = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    if args.iter().any(|a| a == "--list") {
        return; // `cargo bench -- --list`
    }
    let seconds = option("--seconds", 10);
    let concurrency = option("--concurrency", 32) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let issuer = rt.block_on(Issuer::rsa());
    println!("load over loopback: {concurrency} connections, {seconds} s per run");

    // Replay protection on needs a fresh token per request: sign them before the clock starts.
    // Enough for a flat-out run and a half-rate run at ~6,000 exchanges a second; the last
    // two are kept apart for the warm-up and the registry run.
    let needed = 9_000 * seconds as usize + 2;
    let started = Instant::now();
    let mut tokens = Vec::with_capacity(needed);
    std::thread::scope(|scope| {
        let per = needed / 2;
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let issuer = &issuer;
                scope.spawn(move || {
                    (0..per)
                        .map(|_| issuer.token(&issuer.claims("github-actions", SystemClock.unix())))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            tokens.extend(handle.join().unwrap());
        }
    });
    println!(
        "(signed {} identity tokens in {:.1} s)",
        tokens.len(),
        started.elapsed().as_secs_f64()
    );

    for replay in [false, true] {
        let gw = rt.block_on(Gateway::start(&issuer, replay));
        let exchange_url = format!("{}/oauth2/federation/robot/token", gw.replica.url);
        let calls: Vec<Call> = if replay {
            tokens[..needed - 2]
                .iter()
                .map(|t| Call {
                    url: exchange_url.clone(),
                    user: "acme+ci".into(),
                    password: t.clone(),
                })
                .collect()
        } else {
            vec![Call {
                url: exchange_url.clone(),
                user: "acme+ci".into(),
                password: tokens[0].clone(),
            }]
        };
        let calls = Arc::new(calls);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let fresh = || Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // Warm-up: keys fetched, robot cached.
        let warm = Call {
            url: exchange_url.clone(),
            user: "acme+ci".into(),
            password: tokens[needed - 1].clone(),
        };
        rt.block_on(drive(Arc::new(vec![warm]), fresh(), 1, 1, Some(5.0)));
        let label = if replay {
            "exchange, replay on (SQLite)"
        } else {
            "exchange, replay off"
        };
        let flat_out = rt.block_on(drive(
            calls.clone(),
            next.clone(),
            concurrency,
            seconds,
            None,
        ));
        report(label, &flat_out, gw.peak_rss_mib());
        let paced = rt.block_on(drive(
            calls,
            next,
            concurrency,
            seconds,
            Some(flat_out.rate() / 2.0),
        ));
        report(&format!("{label} at half rate"), &paced, gw.peak_rss_mib());

        if !replay {
            // The registry path with a minted token.
            let minted = rt.block_on(async {
                let body: serde_json::Value = reqwest::Client::new()
                    .get(&exchange_url)
                    .basic_auth("acme+ci", Some(&tokens[needed - 2]))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                body["token"].as_str().unwrap().to_string()
            });
            let v2 = Arc::new(vec![Call {
                url: format!(
                    "{}/v2/auth?scope=repository:acme/app:pull,push",
                    gw.replica.url
                ),
                user: "acme+ci".into(),
                password: minted,
            }]);
            let flat_out = rt.block_on(drive(v2.clone(), fresh(), concurrency, seconds, None));
            report(
                "registry token (/v2/auth, minted)",
                &flat_out,
                gw.peak_rss_mib(),
            );
            let paced = rt.block_on(drive(
                v2,
                fresh(),
                concurrency,
                seconds,
                Some(flat_out.rate() / 2.0),
            ));

            report("registry token at half rate", &paced, gw.peak_rss_mib());
        }
    }
}
