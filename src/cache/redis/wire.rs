//! How the adapter talks to Redis below the trait: arguments written straight
//! into command buffers, `SCAN` walks that only yield projection keys, and
//! the projections of a page read back from its `MGET`.

use redis::Cmd;
use serde_json::Value;

use super::{RedisCache, unavailable};
use crate::cache::{CacheError, CacheResult, KEY_SEPARATOR, Projection, decode_value, glob};

/// Keys Redis examines per `SCAN` call: big enough to keep round trips few, small
/// enough not to block the server for long.
const SCAN_COUNT: usize = 1000;

/// Writes a batch's keys and JSON values as command arguments. Each goes
/// through a reused buffer first: writing JSON into a plain `Vec` is several
/// times cheaper than writing through a command's argument writer, which costs
/// a call per token, and batches are the daemon's hot path.
#[derive(Default)]
pub(crate) struct ArgWriter {
    key: Vec<u8>,
    json: Vec<u8>,
}

impl ArgWriter {
    /// The projection's key, `{name}:::{id}`.
    pub(crate) fn key(&mut self, projection: &Projection) -> &[u8] {
        self.key.clear();
        self.key.extend_from_slice(projection.name().as_bytes());
        self.key.extend_from_slice(KEY_SEPARATOR.as_bytes());
        self.key.extend_from_slice(projection.id().as_bytes());
        &self.key
    }

    /// The projection's value as JSON text.
    pub(crate) fn json(&mut self, value: &Value) -> &[u8] {
        self.json.clear();
        serde_json::to_writer(&mut self.json, value)
            .expect("a JSON value always serializes, and into memory nothing fails");
        &self.json
    }

    /// `SET key json [PX millis]`, allocated at its final size.
    pub(crate) fn set(&mut self, projection: &Projection, millis: Option<u64>) -> Cmd {
        self.json(projection.value());
        self.key(projection);
        // "SET", "PX" and up to 20 digits of milliseconds.
        let mut command = Cmd::with_capacity(5, self.key.len() + self.json.len() + 25);
        command
            .arg("SET")
            .arg(self.key.as_slice())
            .arg(self.json.as_slice());
        if let Some(millis) = millis {
            command.arg("PX").arg(millis);
        }
        command
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
            .filter(|key| crate::cache::is_entry_key(key))
            .collect();
        Ok(Some(keys))
    }
}

/// The keys of a page that MGET answered nil for. MGET answers nil both for
/// a key deleted since the SCAN and for a key of another type; only the
/// first may be skipped silently, so their types are asked next.
pub(crate) fn missing_of<'a>(page: &[&'a String], texts: &[Option<Vec<u8>>]) -> Vec<&'a String> {
    page.iter()
        .zip(texts)
        .filter(|(_, text)| text.is_none())
        .map(|(key, _)| *key)
        .collect()
}

/// A page's projections from its MGET answers and the types of the keys
/// that answered nil (see [`missing_of`]): a vanished key is skipped, a key of
/// another type is a corrupt value.
pub(crate) fn decode_page(
    page: Vec<&String>,
    texts: Vec<Option<Vec<u8>>>,
    missing_types: Vec<String>,
) -> CacheResult<Vec<Projection>> {
    let mut missing_types = missing_types.into_iter();
    let mut projections = Vec::with_capacity(page.len());
    for (key, text) in page.into_iter().zip(texts) {
        match text {
            Some(text) => projections.push(decode_value(key, &text)?),
            None => match missing_types.next() {
                Some(redis_type) if redis_type != "none" => {
                    return Err(CacheError::CorruptValue {
                        key: key.clone(),
                        reason: format!("the key holds a Redis {redis_type}, not a string"),
                    });
                }
                _ => {}
            },
        }
    }
    Ok(projections)
}
