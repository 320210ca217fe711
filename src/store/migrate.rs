//! Versioned schema. Each backend lists its migrations in order; the database records
//! those applied in `schema_migrations`, each is applied once in its own transaction, and
//! a database at a version this build does not know is refused rather than written with
//! assumptions that may no longer hold.

use super::StoreError;

pub(super) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The migration to apply to a database whose latest applied version is `current` (0 for
/// none); `None` when it is up to date.
pub(super) fn next(known: &[Migration], current: i64) -> Result<Option<&Migration>, StoreError> {
    let latest = known.last().map_or(0, |m| m.version);
    if current > latest {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known: latest,
        });
    }
    Ok(known.iter().find(|m| m.version > current))
}
