//! The state replicas share (`fedgate::shared`) on both of its backends: one node (the
//! database and memory) and Redis. The exchange and `/v2/auth` tests reach these rules through
//! HTTP; here each rule is pinned at its edges on a `ManualClock`, so a quota that counts one
//! too many or too few, a replay counted against the quota, a refused exchange that burns its
//! token, or a Redis key that changes its name (replicas of two versions would stop seeing
//! each other's records during a rolling upgrade) fails a test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fedgate::clock::{Clock, ManualClock};
use fedgate::config::DatabaseKind;
use fedgate::shared::limits::Limited;
use fedgate::shared::redis::RedisShared;
use fedgate::shared::{Admission, Shared};
use fedgate::store::SqlStore;

use crate::harness::redis::RedisServer;

const ISSUER: &str = "https://token.actions.githubusercontent.com";
/// Ten seconds into a rate-limit window (1,800,000,000 is a whole minute): 50 seconds are left.
const START: i64 = 1_800_000_010;

struct State {
    shared: Shared,
    clock: Arc<ManualClock>,
    /// The Redis this replica uses, and the server when this state started it.
    redis_url: Option<String>,
    _redis: Option<RedisServer>,
    _dir: tempfile::TempDir,
}

impl State {
    async fn one_node() -> Self {
        Self::start(None, None).await
    }

    async fn on_redis() -> Self {
        let server = RedisServer::start();
        Self::start(Some(server.url()), Some(server)).await
    }

    /// Another replica on `other`'s Redis.
    async fn joining(other: &State) -> Self {
        Self::start(other.redis_url.clone(), None).await
    }

    async fn start(redis_url: Option<String>, server: Option<RedisServer>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/fedgate.db", dir.path().display());
        let store = SqlStore::connect(&url, DatabaseKind::Sqlite).await.unwrap();
        store.migrate().await.unwrap();
        let clock = Arc::new(ManualClock::at(START));
        let redis = redis_url
            .as_deref()
            .map(|url| RedisShared::new(url, None).unwrap());
        Self {
            shared: Shared::new(Arc::new(store), clock.clone(), redis),
            clock,
            redis_url,
            _redis: server,
            _dir: dir,
        }
    }

    fn now(&self) -> i64 {
        self.clock.unix()
    }

    async fn admit(&self, limit: u32, jti: Option<&str>) -> Admission {
        let until = self.now() + 600;
        self.shared
            .admit("robot:acme+ci", limit, jti.map(|jti| (ISSUER, jti, until)))
            .await
            .unwrap()
    }

    /// A plain client of the test's Redis, to look at the keys fedgate wrote.
    async fn redis_client(&self) -> redis::aio::MultiplexedConnection {
        let url = self.redis_url.as_deref().expect("on Redis");
        redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

async fn both() -> [(&'static str, State); 2] {
    [
        ("one node", State::one_node().await),
        ("Redis", State::on_redis().await),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_admitted_once_and_only_admissions_count_against_the_quota() {
    for (backend, state) in both().await {
        let limited = Admission::Limited(Limited { retry_after: 50 });
        assert_eq!(
            state.admit(2, Some("a")).await,
            Admission::Admitted,
            "{backend}"
        );
        assert_eq!(
            state.admit(2, Some("a")).await,
            Admission::Replayed,
            "{backend}"
        );
        assert_eq!(
            state.admit(2, Some("b")).await,
            Admission::Admitted,
            "{backend}: the replay of a did not count"
        );
        assert_eq!(state.admit(2, Some("c")).await, limited, "{backend}");
        assert_eq!(state.admit(2, None).await, limited, "{backend}");
        assert_eq!(
            state.admit(0, Some("d")).await,
            Admission::Admitted,
            "{backend}: a limit of 0 is no limit"
        );

        state.clock.advance(50);
        assert_eq!(
            state.admit(2, Some("c")).await,
            Admission::Admitted,
            "{backend}: the refused exchange did not burn its token"
        );
        assert_eq!(
            state.admit(2, Some("c")).await,
            Admission::Replayed,
            "{backend}"
        );
        assert_eq!(
            state.admit(2, None).await,
            Admission::Admitted,
            "{backend}: without a jti nothing is recorded"
        );
        assert_eq!(
            state.admit(2, None).await,
            Admission::Limited(Limited { retry_after: 60 }),
            "{backend}: without a jti each exchange counts"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_admits_exactly_its_limit_and_a_check_does_not_count() {
    for (backend, state) in both().await {
        let shared = &state.shared;
        for _ in 0..5 {
            assert_eq!(
                shared.limit_check("k", 3).await.unwrap(),
                Ok(()),
                "{backend}"
            );
        }
        for hit in 1..=3 {
            assert_eq!(
                shared.limit_hit("k", 3).await.unwrap(),
                Ok(()),
                "{backend} {hit}"
            );
        }
        let limited = Err(Limited { retry_after: 50 });
        assert_eq!(
            shared.limit_hit("k", 3).await.unwrap(),
            limited,
            "{backend}"
        );
        assert_eq!(
            shared.limit_check("k", 3).await.unwrap(),
            limited,
            "{backend}"
        );
        assert_eq!(
            shared.limit_check("other", 3).await.unwrap(),
            Ok(()),
            "{backend}: keys count apart"
        );
        for _ in 0..10 {
            assert_eq!(
                shared.limit_hit("free", 0).await.unwrap(),
                Ok(()),
                "{backend}"
            );
        }
        assert_eq!(
            shared.limit_check("free", 0).await.unwrap(),
            Ok(()),
            "{backend}"
        );

        state.clock.advance(49);
        assert_eq!(
            shared.limit_check("k", 3).await.unwrap(),
            Err(Limited { retry_after: 1 }),
            "{backend}"
        );
        state.clock.advance(1);
        assert_eq!(
            shared.limit_hit("k", 3).await.unwrap(),
            Ok(()),
            "{backend}: a new minute"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_record_is_kept_per_issuer_until_the_token_expires() {
    for (backend, state) in both().await {
        let shared = &state.shared;
        let until = state.now() + 300;
        assert!(
            shared.record_once(ISSUER, "j", until).await.unwrap(),
            "{backend}"
        );
        assert!(
            !shared.record_once(ISSUER, "j", until).await.unwrap(),
            "{backend}"
        );
        assert!(
            shared
                .record_once("https://gitlab.com", "j", until)
                .await
                .unwrap(),
            "{backend}: another issuer's jti is another token"
        );
        assert!(
            shared.record_once(ISSUER, "j2", until).await.unwrap(),
            "{backend}"
        );
    }

    // One node: the database's record is taken over once it has expired.
    let state = State::one_node().await;
    let until = state.now() + 300;
    assert!(state.shared.record_once(ISSUER, "j", until).await.unwrap());
    state.clock.advance(300);
    assert!(!state.shared.record_once(ISSUER, "j", until).await.unwrap());
    state.clock.advance(1);
    assert!(
        state
            .shared
            .record_once(ISSUER, "j", until + 301)
            .await
            .unwrap()
    );
}

/// The names and lifetimes of fedgate's Redis keys are a contract between the replicas of a
/// rolling upgrade: `fedgate:replay:` + SHA-256 of `issuer NUL jti NUL` in hex, living until
/// the token expires (at least a second), and `fedgate:limit:{key}:{minute}`, living two
/// windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keys_keep_their_names_and_lifetimes() {
    let state = State::on_redis().await;
    let mut redis = state.redis_client().await;
    let ttl = async |redis: &mut redis::aio::MultiplexedConnection, key: &str| -> i64 {
        redis::cmd("TTL").arg(key).query_async(redis).await.unwrap()
    };
    let replay_key = |jti: &str| {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(format!("{ISSUER}\0{jti}\0").as_bytes());
        format!(
            "fedgate:replay:{}",
            data_encoding::HEXLOWER.encode(ctx.finish().as_ref())
        )
    };

    let now = state.now();
    assert!(
        state
            .shared
            .record_once(ISSUER, "j1", now + 300)
            .await
            .unwrap()
    );
    let left = ttl(&mut redis, &replay_key("j1")).await;
    assert!((299..=300).contains(&left), "TTL {left}");
    assert_eq!(state.admit(5, Some("j2")).await, Admission::Admitted);
    let left = ttl(&mut redis, &replay_key("j2")).await;
    assert!((599..=600).contains(&left), "TTL {left}");
    assert!(
        state
            .shared
            .record_once(ISSUER, "j3", now - 5)
            .await
            .unwrap()
    );
    assert_eq!(
        ttl(&mut redis, &replay_key("j3")).await,
        1,
        "an expired token's record still lives a second"
    );

    let window = format!("fedgate:limit:robot:acme+ci:{}", now / 60);
    let count = async |redis: &mut redis::aio::MultiplexedConnection| -> u64 {
        redis::cmd("GET")
            .arg(&window)
            .query_async(redis)
            .await
            .unwrap()
    };
    assert_eq!(
        count(&mut redis).await,
        1,
        "the admission counted in {window}"
    );
    let left = ttl(&mut redis, &window).await;
    assert!((119..=120).contains(&left), "TTL {left}");
    state
        .shared
        .limit_hit("robot:acme+ci", 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        count(&mut redis).await,
        2,
        "limit_hit counts in the same window"
    );
    let left = ttl(&mut redis, &window).await;
    assert!((119..=120).contains(&left), "TTL {left}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_notices_reach_a_subscribed_replica() {
    let one_node = State::one_node().await;
    assert!(
        one_node.shared.notices_live(),
        "one node has no one to miss"
    );
    one_node.shared.announce_change("acme+ci").await;

    let sender = State::on_redis().await;
    let receiver = State::joining(&sender).await;
    let redis = receiver.shared.redis().unwrap().clone();
    assert!(!receiver.shared.notices_live(), "not subscribed yet");

    let (notices, mut received) = tokio::sync::mpsc::unbounded_channel();
    let (gaps, mut gap) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listening = tokio::spawn(async move {
        redis
            .subscribe(
                move |robot| notices.send(robot).unwrap(),
                move || gaps.send(()).unwrap(),
                async {
                    let _ = stopped.await;
                },
            )
            .await;
    });
    gap.recv().await.expect("a subscription starts with a gap");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !receiver.shared.notices_live() {
        assert!(Instant::now() < deadline, "never subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sender.shared.announce_change("acme+ci").await;
    let notice = tokio::time::timeout(Duration::from_secs(10), received.recv()).await;
    assert_eq!(notice.unwrap().as_deref(), Some("acme+ci"));
    stop.send(()).unwrap();
    listening.await.unwrap();
}
