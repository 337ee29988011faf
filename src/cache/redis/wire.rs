//! How the adapter talks to Redis below the trait: arguments written straight
//! into command buffers, and `SCAN` walks that only yield projection keys.

use redis::{RedisWrite, ToRedisArgs};
use serde_json::Value;

use super::{RedisCache, unavailable};
use crate::cache::{CacheResult, KEY_SEPARATOR, Projection, glob};

/// Keys Redis examines per `SCAN` call: big enough to keep round trips few, small
/// enough not to block the server for long.
const SCAN_COUNT: usize = 1000;

/// A projection's key as a command argument, written straight into the command
/// buffer: batches are the hot path, and this saves an allocation per write.
pub(super) struct KeyArg<'a>(pub(super) &'a Projection);

impl ToRedisArgs for KeyArg<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        let projection = self.0;
        out.write_arg_fmt(format_args!(
            "{}{KEY_SEPARATOR}{}",
            projection.name(),
            projection.id()
        ));
    }
}

/// A projection's value as JSON text, serialized straight into the command buffer.
pub(super) struct JsonArg<'a>(pub(super) &'a Value);

impl ToRedisArgs for JsonArg<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        serde_json::to_writer(out.writer_for_next_arg(), self.0)
            .expect("a JSON value always serializes, and into memory nothing fails");
    }
}

/// A `SCAN MATCH` walk over the keyspace, one page of projection keys at a time.
pub(super) struct ScanPages {
    redis_pattern: String,
    cursor: Option<u64>,
}

impl ScanPages {
    pub(super) fn new(pattern: &str) -> Self {
        ScanPages {
            redis_pattern: glob::to_redis(pattern),
            cursor: Some(0),
        }
    }

    /// The next page (possibly empty), or `None` once the cursor is back at 0.
    pub(super) async fn next(&mut self, cache: &RedisCache) -> CacheResult<Option<Vec<String>>> {
        let Some(cursor) = self.cursor else {
            return Ok(None);
        };
        let command = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&self.redis_pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .to_owned();
        let (next_cursor, raw_keys): (u64, Vec<Vec<u8>>) =
            cache.query(&command).await.map_err(unavailable)?;
        self.cursor = (next_cursor != 0).then_some(next_cursor);
        // A key that is not UTF-8 or lacks `:::` was not written by a cache.
        let keys = raw_keys
            .into_iter()
            .filter_map(|raw| String::from_utf8(raw).ok())
            .filter(|key| key.contains(KEY_SEPARATOR))
            .collect();
        Ok(Some(keys))
    }
}
