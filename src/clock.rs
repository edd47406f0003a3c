//! Time behind a trait, so tests can pin or move it. The ambient calls are banned in
//! `clippy.toml`; [`SystemClock`] is the one place allowed to make them.

use time::OffsetDateTime;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;

    /// Seconds since the Unix epoch, the form every stored timestamp uses.
    fn unix(&self) -> i64 {
        self.now().unix_timestamp()
    }
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[expect(
        clippy::disallowed_methods,
        reason = "the one sanctioned wall-clock read"
    )]
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that stands still until told to move (tests).
#[derive(Debug)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    pub fn at(unix: i64) -> Self {
        Self(std::sync::atomic::AtomicI64::new(unix))
    }

    pub fn advance(&self, seconds: i64) {
        self.0
            .fetch_add(seconds, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        let unix = self.0.load(std::sync::atomic::Ordering::SeqCst);
        OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

const QUAY_DATE: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] -0000"
);

/// Formats a Unix timestamp as Quay writes dates: RFC 2822 with `-0000`,
/// e.g. `Fri, 10 May 2024 15:11:00 -0000`.
pub fn quay_date(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(QUAY_DATE).ok())
        .unwrap_or_default()
}

/// Reads back a date [`quay_date`] wrote.
pub fn parse_quay_date(date: &str) -> Option<i64> {
    time::PrimitiveDateTime::parse(date, QUAY_DATE)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

/// Formats a Unix timestamp as RFC 3339 in UTC, e.g. `2024-05-10T15:11:00Z` (token
/// responses, the CLI's key times).
pub fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_as_quay_writes_them() {
        assert_eq!(quay_date(1_715_353_860), "Fri, 10 May 2024 15:11:00 -0000");
        assert_eq!(quay_date(0), "Thu, 01 Jan 1970 00:00:00 -0000");
        assert_eq!(
            parse_quay_date(&quay_date(1_715_353_860)),
            Some(1_715_353_860)
        );
        assert_eq!(parse_quay_date("yesterday"), None);
        assert_eq!(rfc3339(1_715_353_860), "2024-05-10T15:11:00Z");
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::at(100);
        assert_eq!(c.unix(), 100);
        c.advance(5);
        assert_eq!(c.unix(), 105);
    }
}
