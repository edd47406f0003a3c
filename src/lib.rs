//! fedgate: an OIDC federation gateway for container-registry robot accounts.
//!
//! Module map (the request path runs top to bottom):
//!
//! - [`config`]: typed configuration from TOML plus `FEDGATE_<SECTION>_<KEY>`, validated once.
//! - [`http`]: the hyper listener (TLS, timeouts, connection cap, graceful shutdown), the router,
//!   error bodies and the admin-API authentication.
//! - [`api`]: one file per resource: robots, repository permissions, federation entries and
//!   their dry run, the exchange, health.
//! - [`exchange`]: the token exchange; [`robot_cache`]: robots' policies and roles in memory,
//!   bounded in bytes; [`minted_cache`]: minted tokens whose signature `/v2/auth` checked.
//! - [`tokens`]: secrets fedgate creates: opaque tokens (prefix + checksum) and their at-rest
//!   protection (AES-256-GCM sealing, keyed lookup hashes).
//! - [`store`]: persistence traits per aggregate and their sqlx implementation (SQLite or
//!   PostgreSQL); [`store::schema`]: the migration policy that keeps rollbacks safe.
//! - [`metrics`]: every Prometheus metric, declared in one place.
//! - [`clock`], [`rng`]: time and randomness behind traits so tests can replace them.
//! - [`app`]: the state handlers share; [`server`]: runs the listeners until shutdown;
//!   [`shutdown`]: SIGTERM drains, SIGINT stops now.
//! - [`audit`]: one audit line per admin change; [`logging`]: text or JSON logs.
//! - [`names`]: the naming rules of robots, namespaces and repositories.
//! - [`exchange`]: the token exchange; [`pinning`]: immutable IDs recorded on first use.
//! - [`wire`]: the exchange's paths and JSON bodies, one definition for the gateway and clients.
//! - [`cli`]: the verbs of the `fedgate` binary; [`admin`]: operations it shares with tests.
//! - [`client`]: the other side of the exchange, `fedgate login` and the Docker credential
//!   helper; no server module imports it, and it uses only [`wire`] (the exchange's JSON
//!   bodies and paths, shared with [`api`]) and [`clock`] of the rest.
//!
//! Everything but `client`, `wire` and `clock` is the gateway, behind the `server` feature (on
//! by default); `--no-default-features` builds the client alone.

#[cfg(feature = "server")]
pub mod admin;
#[cfg(feature = "server")]
pub mod api;
#[cfg(feature = "server")]
pub mod app;
#[cfg(feature = "server")]
pub mod audit;
#[cfg(feature = "server")]
pub mod cli;
pub mod client;
pub mod clock;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod exchange;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod logging;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod minted_cache;
#[cfg(feature = "server")]
pub mod names;
#[cfg(feature = "server")]
pub mod oidc;
#[cfg(feature = "server")]
pub mod pinning;
#[cfg(feature = "server")]
pub mod rng;
#[cfg(feature = "server")]
pub mod robot_cache;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod shared;
#[cfg(feature = "server")]
pub mod shutdown;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "server")]
pub mod tokens;
pub mod wire;

/// mimalloc instead of the system allocator: a warm exchange makes dozens of small, short-lived
/// allocations (JSON, base64, headers), and glibc's malloc/free were ~10 % of its time
/// (README, "Performance"). Declared here so the binary, the tests and the benches all run it.
#[cfg(feature = "server")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
