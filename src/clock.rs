//! Wall-clock time derived from tokio's clock.
//!
//! The engine never reads the clock; the tasks around it do, through [`Clock`]. Because it
//! advances with `tokio::time`, tests that pause and advance tokio time move wall time too.

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

#[cfg(test)]
mod tests {
    use super::*;

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
