//! Load over loopback, each target interleaved with its reference in one run (this machine's
//! speed drifts by minutes, so only figures taken side by side compare):
//!
//! - `cargo bench --bench load`: one node on SQLite. Exchange with replay protection off (the
//!   reference), exchange with replay on (a fresh identity token per request, as real CI jobs
//!   send), and `/v2/auth` with a minted token.
//! - `cargo bench --bench load -- --replicas`: the production shape, two `fedgate serve`
//!   processes on PostgreSQL and Redis (started here like the integration tests start them,
//!   Redis with the persistence of `deploy/compose.yaml`), requests spread over both, beside
//!   the one-node SQLite exchange with replay on.
//!
//! Options after `--`: `--seconds N` per run (5), `--rounds N` (3), `--concurrency N` (32).
//! Every round runs each target flat out, then paced at half its own flat-out rate; the
//! report gives the median of the rounds and each target's ratio to its reference, also the
//! median of the per-round ratios. Processes run the release binary with request and audit logs
//! on (to a file), rate limits on as configured in production but with a per-robot quota no
//! run reaches. The load generator shares the machine's two cores.

#[path = "../tests/it/harness/issuer.rs"]
#[expect(dead_code, reason = "the load bench uses a part of the test issuer")]
mod issuer;
#[path = "../tests/it/harness/postgres.rs"]
#[expect(dead_code, reason = "the load bench never stops its database")]
mod postgres;
#[path = "../tests/it/harness/redis.rs"]
#[expect(dead_code, reason = "the load bench never stops its Redis")]
mod redis;
#[path = "../tests/it/harness/replica.rs"]
#[expect(
    dead_code,
    reason = "the load bench does not stop its gateways with SIGTERM"
)]
mod replica;
#[path = "../tests/it/harness/tls.rs"]
mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// Used by the shared PostgreSQL module.
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Used by the shared modules for listen addresses.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One deployment under load: a single node on SQLite, or replicas on PostgreSQL and Redis.
struct Stack {
    replicas: Vec<Replica>,
    /// What replicas share, kept running as long as they are.
    _servers: Option<(postgres::PgServer, redis::RedisServer)>,
    _dir: tempfile::TempDir,
}

impl Stack {
    /// `fedgate serve` on its embedded defaults, SQLite in a directory of its own.
    async fn single(issuer: &Issuer, replay: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let env = environment(
            issuer,
            replay,
            &[
                (
                    "FEDGATE_STORAGE_DATABASE_URL",
                    format!("sqlite://{}/fedgate.db", data.display()),
                ),
                ("FEDGATE_KEYS_DIR", data.join("keys").display().to_string()),
            ],
        );
        Self::start(issuer, env, 1, None, dir).await
    }

    /// Two replicas sharing a fresh PostgreSQL database, Redis and a keys directory.
    async fn replicas(issuer: &Issuer) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pg = postgres::PgServer::start();
        let redis = redis::RedisServer::start_with(&[
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--maxmemory-policy",
            "noeviction",
        ]);
        let env = environment(
            issuer,
            true,
            &[
                ("FEDGATE_STORAGE_DATABASE_URL", pg.fresh_database().await),
                ("FEDGATE_STORAGE_REDIS_URL", redis.url()),
                (
                    "FEDGATE_KEYS_DIR",
                    dir.path().join("keys").display().to_string(),
                ),
            ],
        );
        Self::start(issuer, env, 2, Some((pg, redis)), dir).await
    }

    async fn start(
        issuer: &Issuer,
        env: Vec<(String, String)>,
        count: usize,
        servers: Option<(postgres::PgServer, redis::RedisServer)>,
        dir: tempfile::TempDir,
    ) -> Self {
        admin(&env, &["migrate"]);
        let token = acme_admin(&env);
        let mut replicas = Vec::new();
        for i in 0..count {
            replicas.push(Replica::start(&env, dir.path(), &format!("fedgate-{i}")).await);
        }
        configure(&replicas[0].url, &token, issuer).await;
        Self {
            replicas,
            _servers: servers,
            _dir: dir,
        }
    }

    /// `path` on each replica in turn.
    fn urls(&self, path: &str) -> Vec<String> {
        self.replicas
            .iter()
            .map(|r| format!("{}{path}", r.url))
            .collect()
    }

    /// The largest peak resident set size of its fedgate processes, in MiB.
    fn peak_rss_mib(&self) -> f64 {
        self.replicas
            .iter()
            .map(|r| {
                std::fs::read_to_string(format!("/proc/{}/status", r.pid()))
                    .unwrap_or_default()
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                    .map_or(0.0, |kb| kb / 1024.0)
            })
            .fold(0.0, f64::max)
    }
}

/// What every process of a stack is started with, plus `extra`.
fn environment(issuer: &Issuer, replay: bool, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let base = [
        (
            "FEDGATE_FEDERATION_EXTRA_CA_FILE",
            issuer.ca_file.display().to_string(),
        ),
        ("FEDGATE_FEDERATION_ALLOW_PRIVATE_NETWORKS", "true".into()),
        ("FEDGATE_FEDERATION_REPLAY_PROTECTION", replay.to_string()),
        // Counted as in production, but never reached.
        (
            "FEDGATE_LIMITS_EXCHANGES_PER_MINUTE_PER_ROBOT",
            "4000000000".into(),
        ),
    ];
    base.iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
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

/// Identity tokens for `acme+ci`, each usable once with replay protection on. Signing one takes
/// about a millisecond of RSA, so they are signed between runs, as many as the next run needs.
struct Tokens<'a> {
    issuer: &'a Issuer,
    unused: Vec<String>,
}

impl Tokens<'_> {
    fn take(&mut self, count: usize) -> Vec<String> {
        if self.unused.len() < count {
            let missing = count - self.unused.len();
            let issuer = self.issuer;
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..2)
                    .map(|_| {
                        scope.spawn(move || {
                            (0..missing.div_ceil(2))
                                .map(|_| {
                                    let mut claims =
                                        issuer.claims("github-actions", SystemClock.unix());
                                    // Valid for the whole bench, however long it runs.
                                    claims["exp"] = serde_json::json!(SystemClock.unix() + 7200);
                                    issuer.token(&claims)
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                for handle in handles {
                    self.unused.extend(handle.join().unwrap());
                }
            });
        }
        self.unused.split_off(self.unused.len() - count)
    }

    /// Tokens a run did not use, for the next.
    fn give_back(&mut self, tokens: &[String]) {
        self.unused.extend_from_slice(tokens);
    }
}

/// One request of a run: a URL and a Basic credential.
struct Call {
    url: String,
    user: &'static str,
    password: String,
}

/// The requests of one run: each used once (fresh identity tokens), or repeated in turn.
struct Calls {
    list: Vec<Call>,
    repeat: bool,
}

struct Outcome {
    completed: usize,
    errors: usize,
    /// The list of calls was used up before the deadline.
    ran_out: bool,
    /// Calls of a use-once list that were taken.
    taken: usize,
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

/// Drives `calls` at `concurrency` for `seconds`; with `pace`, each worker waits for its share
/// of that many requests per second.
async fn drive(calls: Arc<Calls>, concurrency: usize, seconds: f64, pace: Option<f64>) -> Outcome {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let next = Arc::new(AtomicUsize::new(0));
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
                let i = next.fetch_add(1, Ordering::Relaxed);
                let call = if calls.repeat {
                    calls.list.get(i % calls.list.len())
                } else {
                    calls.list.get(i)
                };
                let Some(call) = call else {
                    break;
                };
                let sent = Instant::now();
                let response = client
                    .get(&call.url)
                    .basic_auth(call.user, Some(&call.password))
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
        taken: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for (latencies, errors) in workers.join_all().await {
        outcome.completed += latencies.len();
        outcome.errors += errors;
        outcome.latencies.extend(latencies);
    }
    outcome.elapsed = started.elapsed();
    let taken = next.load(Ordering::Relaxed);
    outcome.ran_out = !calls.repeat && taken > calls.list.len();
    outcome.taken = taken.min(calls.list.len());
    outcome
}

/// What a target sends: the same credential every time, or a fresh identity token each.
enum Password {
    Same(String),
    FreshIdentityToken,
}

/// One line of the report: a path on a stack, and its results round by round.
struct Target<'a> {
    label: &'static str,
    stack: &'a Stack,
    path: &'static str,
    password: Password,
    /// The label of the target this one is measured against.
    reference: Option<&'static str>,
    flat_out: Vec<Outcome>,
    half_rate: Vec<Outcome>,
}

impl<'a> Target<'a> {
    fn new(label: &'static str, stack: &'a Stack, path: &'static str, password: Password) -> Self {
        Self {
            label,
            stack,
            path,
            password,
            reference: None,
            flat_out: Vec::new(),
            half_rate: Vec::new(),
        }
    }

    fn against(mut self, reference: &'static str) -> Self {
        self.reference = Some(reference);
        self
    }

    /// One run; `pace` `None` is flat out. Fresh tokens are signed before the clock starts.
    fn run(
        &self,
        rt: &tokio::runtime::Runtime,
        tokens: &mut Tokens,
        options: &Options,
        pace: Option<f64>,
    ) -> Outcome {
        let urls = self.stack.urls(self.path);
        let calls = match &self.password {
            Password::Same(password) => Calls {
                list: urls
                    .iter()
                    .map(|url| Call {
                        url: url.clone(),
                        user: "acme+ci",
                        password: password.clone(),
                    })
                    .collect(),
                repeat: true,
            },
            Password::FreshIdentityToken => {
                // Enough for twice the rate seen so far (or a generous first guess); unused ones are
                // kept for the next run.
                let rate = pace.or_else(|| self.flat_out.last().map(Outcome::rate));
                let count = (rate.unwrap_or(12_000.0) * options.seconds * 2.0) as usize + 100;
                Calls {
                    list: tokens
                        .take(count)
                        .into_iter()
                        .enumerate()
                        .map(|(i, password)| Call {
                            url: urls[i % urls.len()].clone(),
                            user: "acme+ci",
                            password,
                        })
                        .collect(),
                    repeat: false,
                }
            }
        };
        let calls = Arc::new(calls);
        let outcome = rt.block_on(drive(
            calls.clone(),
            options.concurrency,
            options.seconds,
            pace,
        ));
        if !calls.repeat {
            let unused: Vec<String> = calls.list[outcome.taken..]
                .iter()
                .map(|c| c.password.clone())
                .collect();
            tokens.give_back(&unused);
        }
        outcome
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The machine's load averages (1, 5, 15 minutes), printed beside every result.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn report(targets: &[Target], options: &Options) {
    println!(
        "\n{} rounds of {} s per run, {} connections; medians of the rounds (load average now {})",
        options.rounds,
        options.seconds,
        options.concurrency,
        load_average()
    );
    println!(
        "{:<36} {:>9} {:>8} {:>8} {:>12} {:>8} {:>8} {:>7}",
        "target", "req/s", "p50 ms", "p99 ms", "half: req/s", "p50 ms", "p99 ms", "RSS MiB"
    );
    let median_of =
        |runs: &[Outcome], f: &dyn Fn(&Outcome) -> f64| median(runs.iter().map(f).collect());
    for t in targets {
        let errors: usize = t
            .flat_out
            .iter()
            .chain(&t.half_rate)
            .map(|o| o.errors)
            .sum();
        let ran_out = t.flat_out.iter().chain(&t.half_rate).any(|o| o.ran_out);
        println!(
            "{:<36} {:>9.0} {:>8.2} {:>8.2} {:>12.0} {:>8.2} {:>8.2} {:>7.1}{}{}",
            t.label,
            median_of(&t.flat_out, &Outcome::rate),
            median_of(&t.flat_out, &|o| ms(o.percentile(0.5))),
            median_of(&t.flat_out, &|o| ms(o.percentile(0.99))),
            median_of(&t.half_rate, &Outcome::rate),
            median_of(&t.half_rate, &|o| ms(o.percentile(0.5))),
            median_of(&t.half_rate, &|o| ms(o.percentile(0.99))),
            t.stack.peak_rss_mib(),
            if errors > 0 {
                format!("  ({errors} errors)")
            } else {
                String::new()
            },
            if ran_out {
                "  (a run used up its identity tokens early)"
            } else {
                ""
            },
        );
    }
    println!("\nratios to the reference, median of the per-round ratios (all rounds):");
    for t in targets {
        let Some(reference) = t.reference else {
            continue;
        };
        let r = targets.iter().find(|r| r.label == reference).unwrap();
        let ratios = |mine: &[Outcome], theirs: &[Outcome], f: &dyn Fn(&Outcome) -> f64| {
            let per_round: Vec<f64> = mine.iter().zip(theirs).map(|(a, b)| f(a) / f(b)).collect();
            let text: Vec<String> = per_round.iter().map(|v| format!("{v:.2}")).collect();
            format!("{:.2} ({})", median(per_round), text.join(" "))
        };
        println!(
            "{} / {}: throughput {}; p50 {}; p99 {}; p99 at half rate {}",
            t.label,
            reference,
            ratios(&t.flat_out, &r.flat_out, &Outcome::rate),
            ratios(&t.flat_out, &r.flat_out, &|o| ms(o.percentile(0.5))),
            ratios(&t.flat_out, &r.flat_out, &|o| ms(o.percentile(0.99))),
            ratios(&t.half_rate, &r.half_rate, &|o| ms(o.percentile(0.99))),
        );
    }
}

struct Options {
    seconds: f64,
    rounds: usize,
    concurrency: usize,
    replicas: bool,
}

/// A robot token minted by `stack` (for `/v2/auth`).
fn minted(rt: &tokio::runtime::Runtime, stack: &Stack, tokens: &mut Tokens) -> String {
    let identity = tokens.take(1).remove(0);
    rt.block_on(async {
        let body: serde_json::Value = reqwest::Client::new()
            .get(&stack.urls(EXCHANGE)[0])
            .basic_auth("acme+ci", Some(identity))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["token"].as_str().unwrap().to_string()
    })
}

const EXCHANGE: &str = "/oauth2/federation/robot/token";
const V2_AUTH: &str = "/v2/auth?scope=repository:acme/app:pull,push";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let option = |name: &str, default: f64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    if args.iter().any(|a| a == "--list") {
        return; // `cargo bench -- --list`
    }
    let options = Options {
        seconds: option("--seconds", 5.0),
        rounds: option("--rounds", 3.0) as usize,
        concurrency: option("--concurrency", 32.0) as usize,
        replicas: args.iter().any(|a| a == "--replicas"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let issuer = rt.block_on(Issuer::rsa());
    let mut tokens = Tokens {
        issuer: &issuer,
        unused: Vec::new(),
    };
    println!(
        "load over loopback ({}), load average at the start {}",
        if options.replicas {
            "two replicas on PostgreSQL + Redis beside one node on SQLite"
        } else {
            "one node on SQLite"
        },
        load_average()
    );

    let replay_on = rt.block_on(Stack::single(&issuer, true));
    let replay_off;
    let replicas;
    let mut targets = Vec::new();
    if options.replicas {
        replicas = rt.block_on(Stack::replicas(&issuer));
        let password = minted(&rt, &replicas, &mut tokens);
        targets.push(Target::new(
            "exchange, replay on (SQLite, 1 node)",
            &replay_on,
            EXCHANGE,
            Password::FreshIdentityToken,
        ));
        targets.push(
            Target::new(
                "exchange, replay on (PG+Redis, 2)",
                &replicas,
                EXCHANGE,
                Password::FreshIdentityToken,
            )
            .against("exchange, replay on (SQLite, 1 node)"),
        );
        targets.push(
            Target::new(
                "/v2/auth, minted (PG+Redis, 2)",
                &replicas,
                V2_AUTH,
                Password::Same(password),
            )
            .against("exchange, replay on (PG+Redis, 2)"),
        );
    } else {
        replay_off = rt.block_on(Stack::single(&issuer, false));
        let same_identity = tokens.take(1).remove(0);
        let password = minted(&rt, &replay_off, &mut tokens);
        targets.push(Target::new(
            "exchange, replay off",
            &replay_off,
            EXCHANGE,
            Password::Same(same_identity),
        ));
        // The reference's own path with fresh tokens: what a new token costs apart from its
        // replay record.
        targets.push(
            Target::new(
                "exchange, replay off, fresh tokens",
                &replay_off,
                EXCHANGE,
                Password::FreshIdentityToken,
            )
            .against("exchange, replay off"),
        );
        targets.push(
            Target::new(
                "exchange, replay on (SQLite)",
                &replay_on,
                EXCHANGE,
                Password::FreshIdentityToken,
            )
            .against("exchange, replay off"),
        );
        targets.push(
            Target::new(
                "/v2/auth, minted token",
                &replay_off,
                V2_AUTH,
                Password::Same(password),
            )
            .against("exchange, replay off"),
        );
    }

    // Warm-up: keys fetched, robots and roles cached, connections open.
    for target in &targets {
        let warm = Options {
            seconds: 1.0,
            ..options
        };
        target.run(&rt, &mut tokens, &warm, Some(200.0));
    }
    for round in 0..options.rounds {
        for target in &mut targets {
            let outcome = target.run(&rt, &mut tokens, &options, None);
            println!(
                "round {} {:<36} {:>8.0} req/s  p99 {:>6.2} ms  (load average {})",
                round + 1,
                target.label,
                outcome.rate(),
                ms(outcome.percentile(0.99)),
                load_average()
            );
            target.flat_out.push(outcome);
        }
        for target in &mut targets {
            let pace = target.flat_out.last().map(|o| o.rate() / 2.0);
            let outcome = target.run(&rt, &mut tokens, &options, pace);
            println!(
                "round {} {:<36} {:>8.0} req/s  p99 {:>6.2} ms  at half rate (load average {})",
                round + 1,
                target.label,
                outcome.rate(),
                ms(outcome.percentile(0.99)),
                load_average()
            );
            target.half_rate.push(outcome);
        }
    }
    report(&targets, &options);
}
