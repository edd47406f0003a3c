//! Test harness: a real gateway served over loopback HTTP, on SQLite or PostgreSQL.

pub mod balancer;
pub mod ci;
pub mod containerd;
pub mod issuer;
pub mod platforms;
pub mod podman;
pub mod postgres;
pub mod python;
pub mod redis;
pub mod replica;
pub mod tls;

pub mod registry;

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use fedgate::admin::issue_api_token;
use fedgate::app::{AppState, SchemaPolicy, open_store};
use fedgate::clock::{Clock, ManualClock, SystemClock};
use fedgate::config::Config;
use fedgate::http::auth::Scope;
use fedgate::http::listener::ServeOptions;
use fedgate::http::router::routes;
use fedgate::rng::{Rng, SystemRng};
use fedgate::shutdown::{Shutdown, Stop};
use fedgate::store::{OrgRole, Store};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one `#[tokio::test]` per database for each named `async fn(Backend)`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::harness::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::harness::Backend::Postgres).await
                }
            )*
        }
    };
}

pub fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A port that was free a moment ago (for child processes that must bind it themselves).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port")
}

/// Runs a client tool (skopeo, podman) to completion: `Ok` on success, else its stderr.
pub fn run_tool(cmd: &mut std::process::Command) -> Result<(), String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/test installs it)"));
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

pub fn random_suffix() -> String {
    format!("{:x}", SystemRng::default().positive_i64().unwrap())
}

/// A database URL for a fresh, empty database of `backend` inside `dir`.
pub async fn database_url(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}/fedgate.db", dir.display()),
        Backend::Postgres => postgres::server().fresh_database().await,
    }
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    /// The `error_message` of an ApiError body.
    pub fn message(&self) -> String {
        self.json()["error_message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

pub async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("request reaches the gateway");
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        text: response.text().await.unwrap_or_default(),
    }
}

/// A gateway running in this process on loopback.
pub struct Gateway {
    pub url: String,
    pub state: AppState,
    pub client: reqwest::Client,
    pub config: Config,
    stop: mpsc::UnboundedSender<Stop>,
    _task: JoinHandle<()>,
    _dir: Arc<tempfile::TempDir>,
}

impl Gateway {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts with the harness defaults changed by `adjust`.
    pub async fn start_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_with_clock(backend, Arc::new(SystemClock), adjust).await
    }

    /// Starts with its own clock (tests that move time).
    pub async fn start_with_clock(
        backend: Backend,
        clock: Arc<dyn Clock>,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut config = Config::default();
        config.storage.database_url = database_url(backend, dir.path()).await;
        config.keys.dir = dir.path().join("keys");
        adjust(&mut config);
        let options = ServeOptions::from_config(&config.server);
        Self::serve_with_clock(config, dir, options, clock).await
    }

    /// A gateway that trusts `issuer` the way an operator configures a private issuer.
    pub async fn trusting(
        backend: Backend,
        issuer: &issuer::Issuer,
        clock: Arc<dyn Clock>,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let ca = issuer.ca_file.display().to_string();
        Self::start_with_clock(backend, clock, |c| {
            c.federation.extra_ca_file = ca;
            c.federation.allow_private_networks = true;
            adjust(c);
        })
        .await
    }

    /// As [`Gateway::trusting`], on SQLite with the default settings and a [`ManualClock`] set
    /// to now: it stands still unless the test moves it, so no rate-limit minute turns mid-test.
    pub async fn trusting_on_a_manual_clock(issuer: &issuer::Issuer) -> Self {
        let clock = Arc::new(ManualClock::at(SystemClock.unix()));
        Self::trusting(Backend::Sqlite, issuer, clock, |_| {}).await
    }

    /// Serves `config` (its listen addresses are replaced by fresh loopback ports).
    pub async fn serve(config: Config, dir: Arc<tempfile::TempDir>, options: ServeOptions) -> Self {
        Self::serve_with_clock(config, dir, options, Arc::new(SystemClock)).await
    }

    pub async fn serve_with_clock(
        mut config: Config,
        dir: Arc<tempfile::TempDir>,
        options: ServeOptions,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = public.local_addr().unwrap();
        config.server.listen = addr;
        config.server.metrics_listen = metrics.local_addr().unwrap().to_string();
        let scheme = if options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        config.server.public_url = format!("{scheme}://{addr}");
        config.validate().expect("test configuration is valid");
        let store = open_store(&config, SchemaPolicy::Migrate)
            .await
            .expect("open the test database");
        let state = AppState::with_parts(
            config.clone(),
            Arc::new(store),
            clock,
            Arc::new(SystemRng::default()),
        )
        .expect("state");
        let (stop, shutdown) = Shutdown::channel();
        let task = tokio::spawn(fedgate::server::run(
            state.clone(),
            public,
            Some(metrics),
            options,
            shutdown,
        ));
        Self {
            url: config.server.public_url.clone(),
            state,
            client: reqwest::Client::new(),
            config,
            stop,
            _task: task,
            _dir: dir,
        }
    }

    /// A second gateway in this process on the same database and keys: another replica,
    /// without Redis (each keeps its own caches).
    pub async fn replica(&self) -> Self {
        Self::serve(
            self.config.clone(),
            self._dir.clone(),
            ServeOptions::default(),
        )
        .await
    }

    /// Another replica on the same database, keys and (if configured) Redis, on `clock`.
    pub async fn replica_with_clock(&self, clock: Arc<dyn Clock>) -> Self {
        Self::serve_with_clock(
            self.config.clone(),
            self._dir.clone(),
            ServeOptions::default(),
            clock,
        )
        .await
    }

    /// Waits until this gateway's change-log follower has applied every change made so far,
    /// so that a robot cached from now on is not dropped by a change made before.
    pub async fn caught_up(&self) {
        let latest = self.store().latest_change().await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self
            .state
            .changes_applied
            .load(std::sync::atomic::Ordering::SeqCst)
            < latest
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the change log follower did not reach change {latest}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub fn store(&self) -> &dyn Store {
        self.state.store.as_ref()
    }

    /// A connection pool of the test's own to the gateway's database, for what the API
    /// cannot do: reading stored rows as they are, hiding a table, adding a trigger.
    pub async fn database(&self) -> sqlx::AnyPool {
        sqlx::AnyPool::connect(&self.config.storage.database_url)
            .await
            .unwrap()
    }

    pub async fn user(&self, name: &str) {
        self.store().create_user(name, 1_700_000_000).await.unwrap();
    }

    pub async fn org(&self, name: &str, admin: &str) {
        self.store()
            .create_org(name, admin, 1_700_000_000)
            .await
            .unwrap();
    }

    pub async fn member(&self, org: &str, user: &str, role: OrgRole) {
        self.store().set_member(org, user, role).await.unwrap();
    }

    /// An API token for `user` with `scopes`.
    pub async fn token(&self, user: &str, scopes: &[Scope]) -> String {
        self.token_expiring(user, scopes, None).await
    }

    pub async fn token_expiring(
        &self,
        user: &str,
        scopes: &[Scope],
        expires_at: Option<i64>,
    ) -> String {
        let token = issue_api_token(
            self.store(),
            &self.state.at_rest,
            self.state.rng.as_ref(),
            user,
            scopes,
            1_700_000_000,
            expires_at,
        )
        .await
        .unwrap();
        token.expose_secret().to_string()
    }

    /// A user with a token carrying every scope.
    pub async fn admin(&self, name: &str) -> String {
        self.user(name).await;
        self.token(name, &Scope::ALL).await
    }

    /// `method path` with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Reply {
        let mut request = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        send(request).await
    }

    /// `method path` with a raw body.
    pub async fn call_raw(&self, method: &str, path: &str, token: &str, body: Vec<u8>) -> Reply {
        send(
            self.client
                .request(method.parse().unwrap(), format!("{}{path}", self.url))
                .bearer_auth(token)
                .body(body),
        )
        .await
    }

    /// `GET /oauth2/federation/robot/token` with Basic `robot:jwt`.
    pub async fn exchange(&self, robot: &str, jwt: &str) -> Reply {
        send(
            self.client
                .get(format!("{}/oauth2/federation/robot/token", self.url))
                .basic_auth(robot, Some(jwt)),
        )
        .await
    }

    /// An organization `org` administered by a new user, with robot `robot` federated with
    /// `entries`. Returns the admin's API token.
    pub async fn federated_robot(
        &self,
        org: &str,
        robot: &str,
        entries: serde_json::Value,
    ) -> String {
        let admin = format!("{org}-admin");
        let token = self.admin(&admin).await;
        self.org(org, &admin).await;
        let created = self
            .call(
                "PUT",
                &format!("/api/v1/organization/{org}/robots/{robot}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        let set = self
            .call(
                "POST",
                &format!("/api/v1/organization/{org}/robots/{robot}/federation"),
                Some(&token),
                Some(entries),
            )
            .await;
        assert_eq!(set.status, 200, "{}", set.text);
        token
    }

    /// Another robot in `org` (administered by `token`'s user) with `entries`: the answer to
    /// the federation POST, whatever it is.
    pub async fn add_robot(
        &self,
        token: &str,
        org: &str,
        robot: &str,
        entries: serde_json::Value,
    ) -> Reply {
        let created = self
            .call(
                "PUT",
                &format!("/api/v1/organization/{org}/robots/{robot}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        self.call(
            "POST",
            &format!("/api/v1/organization/{org}/robots/{robot}/federation"),
            Some(token),
            Some(entries),
        )
        .await
    }

    /// The Prometheus page of the metrics listener.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.config.server.metrics_listen);
        reqwest::get(url).await.unwrap().text().await.unwrap()
    }

    /// Number of robots in `namespace`, straight from the store.
    pub async fn robot_count(&self, namespace: &str) -> usize {
        self.store()
            .list_robots(namespace, None)
            .await
            .unwrap()
            .len()
    }
}

/// A concrete path for a route pattern (`{org}` → `acme`, ...), to ask the router about it.
pub fn concrete(pattern: &str) -> String {
    pattern
        .replace("{org}", "acme")
        .replace("{ns}", "acme")
        .replace("{short}", "ci")
        .replace("{repo}", "app")
        .replace("{name}", "acme+ci")
        .replace("{prefix}", "alice")
}

/// Every `(METHOD, path pattern)` the gateway's router serves, as the router itself answers
/// it: for each pattern of the route table, a method no route allows gets a 405 whose `Allow`
/// lists the route's methods (HEAD, which axum adds to GET, left out).
pub async fn served_endpoints(gateway: &Gateway) -> BTreeSet<(String, String)> {
    let mut served = BTreeSet::new();
    for (pattern, _) in routes() {
        let reply = send(gateway.client.request(
            "TRACE".parse().unwrap(),
            format!("{}{}", gateway.url, concrete(&pattern)),
        ))
        .await;
        assert_eq!(reply.status, 405, "{pattern}: {}", reply.text);
        let allow = reply.headers["allow"].to_str().unwrap().to_string();
        for method in allow.split(',').map(str::trim).filter(|m| *m != "HEAD") {
            served.insert((method.to_string(), pattern.clone()));
        }
    }
    served
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.stop.send(Stop::Now);
    }
}
