//! Hash slots: which of Redis Cluster's 16,384 slots a key lives in, and one
//! short hash tag per slot, so Projectionist can put a bookkeeping key into
//! the very slot of the projections it guards (scripts only run within one
//! slot).

use std::sync::OnceLock;

/// The number of hash slots in every Redis Cluster.
pub const SLOTS: u16 = 16384;

/// CRC16/XMODEM, the checksum Redis Cluster hashes keys with.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of `key`: only the part between the first `{` and the next `}`
/// counts when that part is not empty (a hash tag), as Redis does it.
pub fn slot_of(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&byte| byte == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&byte| byte == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS
}

/// A hash tag per slot: `tag(slot)` in braces puts any key into `slot`.
/// Found once by counting through base-36 numbers until every slot has its
/// first one: about 150,000 checksums, a few milliseconds, and the same tags
/// on every process, so every replica of the daemon names the same keys.
pub fn tag(slot: u16) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        let mut tags: Vec<Option<String>> = vec![None; usize::from(SLOTS)];
        let mut missing = usize::from(SLOTS);
        let mut number: u64 = 0;
        while missing > 0 {
            let candidate = base36(number);
            let found = &mut tags[usize::from(slot_of(candidate.as_bytes()))];
            if found.is_none() {
                *found = Some(candidate);
                missing -= 1;
            }
            number += 1;
        }
        tags.into_iter()
            .map(|tag| tag.expect("the loop ends once every slot has a tag"))
            .collect()
    });
    &tags[usize::from(slot % SLOTS)]
}

fn base36(mut number: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut text = Vec::new();
    loop {
        text.push(DIGITS[(number % 36) as usize]);
        number /= 36;
        if number == 0 {
            break;
        }
    }
    text.reverse();
    String::from_utf8(text).expect("base-36 digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_the_redis_cluster_specification() {
        // The examples of the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_eq!(slot_of(b"foo{}{bar}"), slot_of(b"foo{}{bar}"));
        assert_ne!(slot_of(b"foo{}{bar}"), slot_of(b"bar"));
        assert_eq!(slot_of(b"foo{{bar}}zap"), slot_of(b"{bar"));
    }

    #[test]
    fn every_slot_has_a_tag_that_hashes_to_it() {
        for slot in 0..SLOTS {
            let key = format!("@projectionist/mark/{{{}}}/g/c", tag(slot));
            assert_eq!(slot_of(key.as_bytes()), slot, "{key}");
        }
    }
}
