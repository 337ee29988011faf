//! What the cache port offers a rebuild: notes (small texts of our own, such
//! as a projection's rebuild state), keys listed by prefix, and the key
//! rotation that promotes a shadow keyspace without a reader ever finding a
//! key missing.

use super::{BOOKKEEPING_PREFIX, CacheError, CacheResult};

/// One key's move when a rebuilt version is promoted (or rolled back): the
/// live key takes the incoming (shadow) key's value and TTL, or goes when the
/// incoming key is absent, and the outgoing key takes what the live key held
/// (with its TTL), or goes when it held nothing. The incoming key is gone
/// afterwards. Each rotation is atomic, so a reader of the live key sees the
/// old value or the new one, never neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub live: String,
    pub incoming: String,
    pub outgoing: String,
}

/// Which rotations of a call take place: a promotion first retires the live
/// keys the new version does not have, then brings in every new value. The
/// condition is checked inside each atomic step, so a key listed twice (a
/// `SCAN` may return one twice) is rotated once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateWhen {
    /// Only where the incoming key exists.
    IncomingPresent,
    /// Only where the incoming key is absent and the live key exists.
    IncomingAbsent,
}

/// A note's key must be one of ours: the seed's keys are never notes.
pub fn check_note_key(key: &str) -> CacheResult<()> {
    if key.starts_with(BOOKKEEPING_PREFIX) && !key.contains(super::KEY_SEPARATOR) {
        return Ok(());
    }
    Err(CacheError::InvalidArgument(format!(
        "{key:?} is not a bookkeeping key: notes live under {BOOKKEEPING_PREFIX:?}"
    )))
}
