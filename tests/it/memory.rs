//! Issue 12, items 3 and 4: what one tenant can make the gateway hold in memory is bounded in
//! bytes, measured on the real binary (`fedgate serve` as a process, its VmRSS).

use std::path::Path;

use fedgate::clock::{Clock, SystemClock};
use serde_json::{Value, json};

use crate::harness::issuer::{Issuer, TestKey};
use crate::harness::replica::{Replica, acme_admin, admin};
use crate::harness::{Reply, send};

const MIB: u64 = 1024 * 1024;

/// The `fedgate_cache_bytes{cache}` gauge once it reads at least `at_least` (it is updated
/// every 5 s), or whatever it read last after 20 s.
async fn cache_bytes(gw: &Replica, cache: &str, at_least: u64) -> u64 {
    let series = format!("fedgate_cache_bytes{{cache=\"{cache}\"}}");
    let mut last = 0.0;
    for _ in 0..100 {
        last = gw.metric(&series).await.unwrap_or(0.0);
        if last >= at_least as f64 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    last as u64
}

/// Resident memory of process `pid`, from /proc/<pid>/status.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kb * 1024
}

/// A one-node deployment on SQLite in `dir`, trusting `issuer`, with the failed-exchange limit
/// off (the attacks below are about memory, not about one address's failure count).
fn site(dir: &Path, issuer: &Issuer, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "FEDGATE_STORAGE_DATABASE_URL",
            format!("sqlite://{}/fedgate.db", dir.display()),
        ),
        ("FEDGATE_KEYS_DIR", dir.join("keys").display().to_string()),
        (
            "FEDGATE_FEDERATION_EXTRA_CA_FILE",
            issuer.ca_file.display().to_string(),
        ),
        (
            "FEDGATE_FEDERATION_ALLOW_PRIVATE_NETWORKS",
            "true".to_string(),
        ),
        (
            "FEDGATE_LIMITS_FAILED_EXCHANGES_PER_MINUTE_PER_IP",
            "0".to_string(),
        ),
        ("FEDGATE_LOG_LEVEL", "warn".to_string()),
    ];
    env.extend(extra.iter().cloned());
    env.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

async fn call(url: &str, method: &str, path: &str, token: &str, body: Option<Value>) -> Reply {
    let mut request = reqwest::Client::new()
        .request(method.parse().unwrap(), format!("{url}{path}"))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    send(request).await
}

async fn garbage_exchange(url: &str, robot: &str, jwt: &str) -> Reply {
    send(
        reqwest::Client::new()
            .get(format!("{url}/oauth2/federation/robot/token"))
            .basic_auth(robot, Some(jwt)),
    )
    .await
}

/// The issue's robot-cache attack: many robots with as much federation configuration as the
/// gateway accepts, each loaded into the cache by one garbage exchange. The largest list the
/// gateway accepts is found by trying the attack's ~1 MiB list and halving it until accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_federation_lists_stay_within_the_robot_cache_budget() {
    const ROBOTS: usize = 150;
    const BUDGET: u64 = 2 * MIB;
    const MARGIN: u64 = 24 * MIB;
    let issuer = Issuer::rsa().await;
    let dir = tempfile::tempdir().unwrap();
    let env = site(
        dir.path(),
        &issuer,
        &[("FEDGATE_LIMITS_ROBOT_CACHE_BYTES", BUDGET.to_string())],
    );
    admin(&env, &["migrate"]);
    let token = acme_admin(&env);
    let gw = Replica::start(&env, dir.path(), "gw").await;
    let started = rss_bytes(gw.pid());

    // An entry with 20 audiences and 20 conditions whose strings are `len` bytes (condition
    // names `name_len`): 1,000-byte strings are the issue's attack; 500-byte strings with
    // 120-byte names are the largest the gateway's documented limits let through.
    let entry = |i: usize, len: usize, name_len: usize| {
        let text = |tag: usize| format!("{tag:04}{}", "a".repeat(len - 4));
        json!({"issuer": issuer.url, "subject": format!("repo:acme/{i}:*"),
               "audiences": (0..20).map(text).collect::<Vec<_>>(),
               "conditions": (0..20).map(|c| (format!("{c:03}{}", "c".repeat(name_len - 3)), json!(text(c))))
                   .collect::<serde_json::Map<_, _>>()})
    };
    let mut shapes = vec![(25, 1000, 3), (25, 500, 120)].into_iter();
    let mut shape = shapes.next().unwrap();
    for r in 0..ROBOTS {
        let robot = format!("r{r}");
        let created = call(
            &gw.url,
            "PUT",
            &format!("/api/v1/organization/acme/robots/{robot}"),
            &token,
            None,
        )
        .await;
        assert_eq!(created.status, 201, "{}", created.text);
        loop {
            let (entries, len, name_len) = shape;
            let list: Vec<Value> = (0..entries).map(|i| entry(i, len, name_len)).collect();
            let set = call(
                &gw.url,
                "POST",
                &format!("/api/v1/organization/acme/robots/{robot}/federation"),
                &token,
                Some(Value::Array(list)),
            )
            .await;
            match set.status {
                200 => break,
                400 if entries > 1 => shape.0 -= 1,
                400 => shape = shapes.next().expect("some list is accepted"),
                _ => panic!("{}: {:.300}", set.status, set.text),
            }
        }
    }
    let set_up = rss_bytes(gw.pid());
    for r in 0..ROBOTS {
        let reply = garbage_exchange(&gw.url, &format!("acme+r{r}"), "garbage").await;
        assert_eq!(reply.status, 401, "{}", reply.text);
    }
    let after = rss_bytes(gw.pid());
    let grown = after.saturating_sub(started);
    println!(
        "robot cache: {} entries of {} bytes a string per robot, {ROBOTS} robots loaded; \
         RSS {} KiB at start, {} KiB once set up, {} KiB after",
        shape.0,
        shape.1,
        started / 1024,
        set_up / 1024,
        after / 1024
    );
    assert!(
        grown <= BUDGET + MARGIN,
        "RSS grew by {} MiB, more than the {} MiB budget plus {} MiB",
        grown / MIB,
        BUDGET / MIB,
        MARGIN / MIB
    );
    // The cache filled up to its budget (what was offered was several times that), no further.
    let weighed = cache_bytes(&gw, "robots", BUDGET / 2).await;
    println!("robot cache: weighs {weighed} bytes (budget {BUDGET})");
    assert!(
        (BUDGET / 2..=BUDGET).contains(&weighed),
        "the robot cache holds {weighed} bytes of a {BUDGET}-byte budget"
    );
}

/// A JWKS document of `max_bytes` at most, of RSA keys without `alg` (as Entra ID publishes
/// them): one real modulus under many `kid`s.
fn big_jwks(max_bytes: usize) -> Value {
    let mut jwk = TestKey::rsa("template").jwk;
    let jwk = jwk.as_object_mut().unwrap();
    jwk.remove("alg");
    let mut keys = Vec::new();
    loop {
        let mut key = jwk.clone();
        key.insert("kid".into(), json!(format!("k{}", keys.len())));
        keys.push(Value::Object(key));
        if json!({"keys": keys}).to_string().len() > max_bytes {
            keys.pop();
            return json!({ "keys": keys });
        }
    }
}

/// An identity token naming `issuer`, signed by nobody: the gateway fetches the issuer's keys
/// before it can find the signature wrong.
fn unsigned_token(issuer: &str) -> String {
    let b64 = |v: Value| data_encoding::BASE64URL_NOPAD.encode(v.to_string().as_bytes());
    let now = SystemClock.unix();
    format!(
        "{}.{}.{}",
        b64(json!({"alg": "RS256", "kid": "k0"})),
        b64(
            json!({"iss": issuer, "sub": "repo:x/y:ref:refs/heads/main", "aud": "https://github.com/octo-org",
                       "exp": now + 300, "iat": now})
        ),
        data_encoding::BASE64URL_NOPAD.encode(&[7u8; 256])
    )
}

/// The issue's JWKS-cache attack: 200 issuer paths on one host, each named by an unsigned
/// token, each serving a full-size JWKS of RSA keys without `alg`. Memory stays within the
/// JWKS budget, and an issuer on another host keeps its cached keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_issuers_on_one_host_stay_within_the_jwks_cache_budget() {
    const ISSUERS: usize = 200;
    const BUDGET: u64 = 8 * MIB;
    const MARGIN: u64 = 24 * MIB;
    let attacker = Issuer::rsa().await;
    let jwks = big_jwks(60 * 1024);
    attacker.serve_tenants(jwks.clone());
    let victim = Issuer::start_on([127, 0, 0, 2].into(), true, vec![TestKey::rsa("v1")]).await;
    let dir = tempfile::tempdir().unwrap();
    let cas = dir.path().join("cas.pem");
    std::fs::write(
        &cas,
        std::fs::read_to_string(&attacker.ca_file).unwrap()
            + &std::fs::read_to_string(&victim.ca_file).unwrap(),
    )
    .unwrap();
    let env = site(
        dir.path(),
        &attacker,
        &[
            (
                "FEDGATE_FEDERATION_EXTRA_CA_FILE",
                cas.display().to_string(),
            ),
            ("FEDGATE_LIMITS_JWKS_CACHE_BYTES", BUDGET.to_string()),
        ],
    );
    admin(&env, &["migrate"]);
    let token = acme_admin(&env);
    let gw = Replica::start(&env, dir.path(), "gw").await;
    let started = rss_bytes(gw.pid());

    // The victim's robot, warm.
    let victim_entry = json!([{"issuer": victim.url, "subject": "repo:octo-org/octo-repo:*",
                               "audiences": ["https://github.com/octo-org"]}]);
    for (method, path, body) in [
        ("PUT", "/api/v1/organization/acme/robots/victim", None),
        (
            "POST",
            "/api/v1/organization/acme/robots/victim/federation",
            Some(victim_entry),
        ),
    ] {
        let reply = call(&gw.url, method, path, &token, body).await;
        assert!(reply.status < 300, "{}", reply.text);
    }
    let victim_exchange = async || {
        let jwt = victim.token(&victim.claims("github-actions", SystemClock.unix()));
        garbage_exchange(&gw.url, "acme+victim", &jwt).await
    };
    assert_eq!(victim_exchange().await.status, 200);
    assert_eq!(victim.jwks_hits(), 1);

    // The attacker's robots: 50 issuer paths each.
    let issuers: Vec<String> = (0..ISSUERS)
        .map(|i| attacker.tenant(&format!("t{i}")))
        .collect();
    for (r, chunk) in issuers.chunks(50).enumerate() {
        let robot = format!("a{r}");
        let entries: Vec<Value> = chunk
            .iter()
            .map(|iss| json!({"issuer": iss, "subject": "repo:x/y:*", "audiences": ["https://github.com/octo-org"]}))
            .collect();
        let created = call(
            &gw.url,
            "PUT",
            &format!("/api/v1/organization/acme/robots/{robot}"),
            &token,
            None,
        )
        .await;
        assert_eq!(created.status, 201, "{}", created.text);
        let set = call(
            &gw.url,
            "POST",
            &format!("/api/v1/organization/acme/robots/{robot}/federation"),
            &token,
            Some(Value::Array(entries)),
        )
        .await;
        assert_eq!(set.status, 200, "{}", set.text);
    }

    let set_up = rss_bytes(gw.pid());
    for (i, iss) in issuers.iter().enumerate() {
        let reply =
            garbage_exchange(&gw.url, &format!("acme+a{}", i / 50), &unsigned_token(iss)).await;
        assert_eq!(reply.status, 401, "{}", reply.text);
        assert_eq!(
            reply.json()["error_code"],
            "bad_signature",
            "{}",
            reply.text
        );
    }
    let after = rss_bytes(gw.pid());
    let grown = after.saturating_sub(started);
    println!(
        "JWKS cache: {ISSUERS} issuers of {} keys each; RSS {} KiB at start, {} KiB once set up, \
         {} KiB after",
        jwks["keys"].as_array().unwrap().len(),
        started / 1024,
        set_up / 1024,
        after / 1024
    );
    assert!(
        grown <= BUDGET + MARGIN,
        "RSS grew by {} MiB, more than the {} MiB budget plus {} MiB",
        grown / MIB,
        BUDGET / MIB,
        MARGIN / MIB
    );
    assert_eq!(victim_exchange().await.status, 200);
    assert_eq!(
        victim.jwks_hits(),
        1,
        "the other host's keys were not pushed out of the cache"
    );
    // The attacker's host filled its quarter of the budget, no more.
    let weighed = cache_bytes(&gw, "jwks", BUDGET / 8).await;
    println!("JWKS cache: weighs {weighed} bytes (budget {BUDGET}, a quarter per host)");
    assert!(
        (BUDGET / 8..=BUDGET / 4 + 64 * 1024).contains(&weighed),
        "the key cache holds {weighed} bytes; one host may take {}",
        BUDGET / 4
    );
}
