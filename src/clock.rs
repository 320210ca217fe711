//! Wall-clock time derived from tokio's clock.
//!
//! The engine never reads the clock; the tasks around it do, through [`Clock`]. Because it
//! advances with `tokio::time`, tests that pause and advance tokio time move wall time too.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// A point in wall time, UTC.
pub type Timestamp = DateTime<Utc>;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_wall: Timestamp,
    base_instant: Instant,
}

impl Clock {
    /// A clock anchored at the system's current time.
    pub fn system() -> Self {
        Self::starting_at(Utc::now())
    }

    /// A clock that reads `start` now and advances with tokio time.
    pub fn starting_at(start: Timestamp) -> Self {
        Self {
            base_wall: start,
            base_instant: Instant::now(),
        }
    }

    pub fn now(&self) -> Timestamp {
        self.at(Instant::now())
    }

    /// The wall time of a tokio instant.
    pub fn at(&self, instant: Instant) -> Timestamp {
        let elapsed = instant.saturating_duration_since(self.base_instant);
        self.base_wall + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::MAX)
    }
}

/// `at + d`, or some 30 years after `at` when that does not fit an `Instant` (adding
/// panics then). Intervals and timeouts come from the configuration, where humantime reads
/// up to 500 billion years; anything past 30 years is "never" for a running daemon.
pub fn instant_after(at: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 86_400);
    at.checked_add(d)
        .or_else(|| at.checked_add(FAR))
        .unwrap_or(at)
}

/// Checks a timestamp that came from input (a replay line, an API body). chrono reads
/// years up to 262142, where adding a second overflows and panics; RFC 3339 has four-digit
/// years, and within them every offset the engine adds to a time fits.
pub fn check_input_time(t: Timestamp) -> Result<(), String> {
    use chrono::Datelike;
    if (0..=9999).contains(&t.year()) {
        Ok(())
    } else {
        Err(format!("{t}: the year must be 0000 to 9999"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instant_too_far_is_far_not_a_panic() {
        let now = Instant::now();
        let second = Duration::from_secs(1);
        assert_eq!(instant_after(now, second), now + second);
        assert!(instant_after(now, Duration::MAX) > now + Duration::from_secs(86_400 * 365));
    }

    #[tokio::test(start_paused = true)]
    async fn advances_with_tokio_time() {
        let start: Timestamp = "2026-07-05T14:00:00Z".parse().unwrap();
        let clock = Clock::starting_at(start);
        tokio::time::advance(std::time::Duration::from_secs(90)).await;
        assert_eq!(
            clock.now(),
            "2026-07-05T14:01:30Z".parse::<Timestamp>().unwrap()
        );
    }
}
