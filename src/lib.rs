//! fedgate: an OIDC federation gateway for container-registry robot accounts.
//!
//! Module map (the request path runs top to bottom):
//!
//! - [`config`]: typed configuration from TOML plus `FEDGATE_<SECTION>_<KEY>`, validated once.
//! - [`http`]: the hyper listener (TLS, timeouts, connection cap, graceful shutdown), the router,
//!   error bodies and the admin-API authentication.
//! - [`api`]: one file per resource: robots, repository permissions, federation entries and
//!   their dry run, the exchange, health.
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
//! - [`cli`]: the verbs of the `fedgate` binary; [`admin`]: operations it shares with tests.

pub mod admin;
pub mod api;
pub mod app;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod exchange;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod names;
pub mod oidc;
pub mod pinning;
pub mod rng;
pub mod server;
pub mod shared;
pub mod shutdown;
pub mod store;
pub mod tokens;

/// mimalloc instead of the system allocator: a warm exchange makes dozens of small, short-lived
/// allocations (JSON, base64, headers), and glibc's malloc/free were ~10 % of its time
/// (README, "Performance"). Declared here so the binary, the tests and the benches all run it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
