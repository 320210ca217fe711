//! Whether the store can keep what it is given: writes failing (a full disk, an I/O error,
//! a database that cannot be reached) and a database file removed or replaced under the
//! running daemon. `/readyz` fails while either lasts, and each failure is counted in
//! `tocsin_store_errors_total{reason}`, so that a monitor that cannot store is seen as one.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use prometheus::IntCounterVec;

use super::StoreError;

/// First pause before a failed batch is tried again; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

#[derive(Default)]
pub(super) struct Health {
    /// Why the batch the writer is on failed last; `None` once it is committed.
    writes: Mutex<Option<String>>,
    /// What happened to the database file; `None` while it is the one opened.
    file: Mutex<Option<String>>,
    errors: OnceLock<IntCounterVec>,
}

impl Health {
    /// Why the store cannot keep what it is given, if it cannot.
    pub fn problem(&self) -> Option<String> {
        let file = lock(&self.file).clone();
        file.or_else(|| lock(&self.writes).clone())
    }

    /// Counts failures in `errors` from now on (labelled `reason`).
    pub fn count_in(&self, errors: IntCounterVec) {
        let _ = self.errors.set(errors);
    }

    /// A batch failed: it will be tried again after `retry_in`.
    pub fn write_failed(&self, error: &StoreError, retry_in: Duration) {
        let reason = reason(error);
        self.count(reason);
        let mut writes = lock(&self.writes);
        if writes.is_none() {
            tracing::error!(error = %error, reason, "store writes failing; they are kept and retried in order");
        } else {
            tracing::warn!(error = %error, reason, retry_in = ?retry_in, "store write failed again");
        }
        *writes = Some(format!("store writes failing ({reason}): {error}"));
    }

    /// The batch the writer was on is committed.
    pub fn write_ok(&self) {
        if lock(&self.writes).take().is_some() {
            tracing::info!("store writes recovered; what failed is now stored");
        }
    }

    /// The database file is not (or again) the one opened: `lost` says how.
    pub fn file_checked(&self, lost: Option<String>) {
        let mut file = lock(&self.file);
        match (&*file, &lost) {
            (None, Some(how)) => {
                self.count("database_lost");
                tracing::error!(
                    problem = %how,
                    "the database file is gone: what is stored from now on is lost at the next \
                     restart; restore the file or restart tocsin to start a new database"
                );
            }
            (Some(_), None) => tracing::info!("the database file is back"),
            _ => {}
        }
        *file = lost;
    }

    fn count(&self, reason: &str) {
        if let Some(errors) = self.errors.get() {
            errors.with_label_values(&[reason]).inc();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `reason` label of a failed write.
pub(super) fn reason(error: &StoreError) -> &'static str {
    use rusqlite::ErrorCode;
    match error {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => match e.code {
            ErrorCode::DiskFull => "disk_full",
            ErrorCode::SystemIoFailure | ErrorCode::CannotOpen => "io",
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => "busy",
            ErrorCode::ReadOnly | ErrorCode::PermissionDenied => "read_only",
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => "corrupt",
            _ => "other",
        },
        StoreError::Pool(deadpool_postgres::PoolError::Backend(e)) | StoreError::Postgres(e) => {
            match e.code().map(|c| c.code()) {
                Some("53100") => "disk_full",
                // 08: connection exception; 57P: shut down, crashed, starting up.
                Some(c) if c.starts_with("08") || c.starts_with("57P") => "unreachable",
                Some(_) => "other",
                // No server answer: the socket failed, was closed, timed out.
                None => "unreachable",
            }
        }
        StoreError::Pool(_) => "unreachable",
        _ => "other",
    }
}

/// Pauses between attempts at one batch.
pub(super) struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(RETRY_FIRST)
    }
}

impl Backoff {
    /// The pause before the next attempt.
    pub fn next(&mut self) -> Duration {
        let pause = self.0;
        self.0 = (self.0 * 2).min(RETRY_MAX);
        pause
    }
}
