//! Fixed-window rate limits (SPEC `[limits]`): counts per key per minute.
//!
//! Windows are whole minutes of the [`Clock`]; a key's counter lives in a moka cache that
//! forgets it two minutes later, so memory stays bounded by the number of active keys.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::clock::Clock;

/// Length of a rate-limit window.
pub const WINDOW_SECONDS: i64 = 60;
const MAX_KEYS: u64 = 1_000_000;

/// The window `now` falls in, and the seconds left in it.
pub fn window_at(now: i64) -> (i64, u64) {
    let window = now.div_euclid(WINDOW_SECONDS);
    let retry_after = (WINDOW_SECONDS - now.rem_euclid(WINDOW_SECONDS)) as u64;
    (window, retry_after)
}

/// Over the limit: retry after this many seconds (the rest of the window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: u64,
}

#[derive(Clone)]
pub struct RateLimiter {
    counters: moka::sync::Cache<(String, i64), Arc<AtomicU32>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").finish_non_exhaustive()
    }
}

impl RateLimiter {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            counters: moka::sync::Cache::builder()
                .max_capacity(MAX_KEYS)
                .time_to_live(Duration::from_secs(2 * WINDOW_SECONDS as u64))
                .build(),
            clock,
        }
    }

    fn window(&self) -> (i64, u64) {
        window_at(self.clock.unix())
    }

    fn counter(&self, key: &str, window: i64) -> Arc<AtomicU32> {
        self.counters
            .get_with((key.to_string(), window), || Arc::new(AtomicU32::new(0)))
    }

    /// Counts one event for `key`; refuses it when that makes more than `limit` this minute.
    /// A `limit` of 0 means unlimited.
    pub fn hit(&self, key: &str, limit: u32) -> Result<(), Limited> {
        if limit == 0 {
            return Ok(());
        }
        let (window, retry_after) = self.window();
        let count = self.counter(key, window).fetch_add(1, Ordering::Relaxed) + 1;
        if count > limit {
            Err(Limited { retry_after })
        } else {
            Ok(())
        }
    }

    /// Refuses when `key` has already reached `limit` this minute, without counting.
    pub fn check(&self, key: &str, limit: u32) -> Result<(), Limited> {
        if limit == 0 {
            return Ok(());
        }
        let (window, retry_after) = self.window();
        let count = self
            .counters
            .get(&(key.to_string(), window))
            .map_or(0, |c| c.load(Ordering::Relaxed));
        if count >= limit {
            Err(Limited { retry_after })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn counts_per_key_per_minute() {
        let clock = Arc::new(ManualClock::at(6_000));
        let limiter = RateLimiter::new(clock.clone());
        assert!(limiter.hit("a", 2).is_ok());
        assert!(limiter.hit("a", 2).is_ok());
        assert_eq!(limiter.hit("a", 2), Err(Limited { retry_after: 60 }));
        assert_eq!(limiter.check("a", 2), Err(Limited { retry_after: 60 }));
        assert!(limiter.hit("b", 2).is_ok(), "keys are independent");
        clock.advance(45);
        assert_eq!(limiter.check("a", 2), Err(Limited { retry_after: 15 }));
        clock.advance(15);
        assert!(limiter.check("a", 2).is_ok(), "a new minute starts afresh");
        assert!(
            limiter.hit("a", 0).is_ok() && limiter.check("a", 0).is_ok(),
            "0 is unlimited"
        );
    }
}
