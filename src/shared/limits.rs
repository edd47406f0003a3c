//! Fixed-window rate limits (SPEC `[limits]`): counts per key per minute.
//!
//! Windows are whole minutes of the [`Clock`]. Only the current minute's counts matter, so
//! they live in one map that is replaced when the minute turns: memory is bounded by the keys
//! seen in one minute (at most one per request), and a key costs its name and a `u32`, not a
//! cache entry (at 100,000 robots the per-robot counters were ~35 MiB in a moka cache).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::clock::Clock;

/// Length of a rate-limit window.
pub const WINDOW_SECONDS: i64 = 60;

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

/// The counts of one window.
#[derive(Debug, Default)]
struct Window {
    number: i64,
    counts: HashMap<Box<str>, u32>,
}

#[derive(Clone)]
pub struct RateLimiter {
    window: Arc<Mutex<Window>>,
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
            window: Arc::default(),
            clock,
        }
    }

    /// Runs `f` on the current window's counts (a fresh map once the minute has turned), and
    /// returns its result with the seconds left in the window.
    fn with_counts<T>(&self, f: impl FnOnce(&mut HashMap<Box<str>, u32>) -> T) -> (T, u64) {
        let (number, retry_after) = window_at(self.clock.unix());
        // A panic cannot leave the counts inconsistent (each update is one insert or add).
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if window.number != number {
            let expected = window.counts.len();
            *window = Window {
                number,
                counts: HashMap::with_capacity(expected),
            };
        }
        (f(&mut window.counts), retry_after)
    }

    /// Counts one event for `key`; refuses it when that makes more than `limit` this minute.
    /// A `limit` of 0 means unlimited.
    pub fn hit(&self, key: &str, limit: u32) -> Result<(), Limited> {
        if limit == 0 {
            return Ok(());
        }
        let (count, retry_after) = self.with_counts(|counts| match counts.get_mut(key) {
            Some(count) => {
                *count = count.saturating_add(1);
                *count
            }
            None => {
                counts.insert(key.into(), 1);
                1
            }
        });
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
        let (count, retry_after) = self.with_counts(|counts| counts.get(key).copied());
        if count.unwrap_or(0) >= limit {
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
        clock.advance(600);
        assert!(
            limiter.hit("b", 1).is_ok(),
            "a later minute starts afresh too"
        );
        assert_eq!(limiter.hit("b", 1), Err(Limited { retry_after: 60 }));
    }
}
