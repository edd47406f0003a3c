//! The state every handler shares, and how it is opened from a [`Config`].

use std::ops::Deref;
use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::rng::{Rng, SystemRng};
use crate::store::{SqlStore, Store};
use crate::tokens::at_rest::AtRestKeys;

/// Cheap to clone: one `Arc` around everything.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub at_rest: AtRestKeys,
    pub clock: Arc<dyn Clock>,
    pub rng: Arc<dyn Rng>,
    pub metrics: Metrics,
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Why the gateway could not open its state.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Keys(#[from] crate::tokens::at_rest::AtRestError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

impl AppState {
    /// Connects to the database (migrating it), loads or creates the keys, with the real clock
    /// and random source.
    pub async fn open(config: Config) -> Result<Self, OpenError> {
        let store = open_store(&config).await?;
        Self::with_parts(
            config,
            Arc::new(store),
            Arc::new(SystemClock),
            Arc::new(SystemRng::default()),
        )
    }

    /// Assembles state from parts (tests pass their own clock or random source).
    pub fn with_parts(
        config: Config,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        rng: Arc<dyn Rng>,
    ) -> Result<Self, OpenError> {
        let at_rest = AtRestKeys::load_or_create(&config.keys.dir, rng.as_ref())?;
        Ok(Self(Arc::new(Inner {
            config,
            store,
            at_rest,
            clock,
            rng,
            metrics: Metrics::new(),
        })))
    }
}

/// Opens and migrates the configured database.
pub async fn open_store(config: &Config) -> Result<SqlStore, OpenError> {
    let store = SqlStore::connect(&config.storage.database_url, config.database_kind()?).await?;
    store.migrate().await?;
    Ok(store)
}
