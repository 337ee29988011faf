//! Reading JSON from bytes, with UTF-8 checked once.
//!
//! Reading a byte slice, serde_json checks each string it keeps for UTF-8 on
//! its own (core's `from_utf8`, about 95 instructions a string), which cost
//! more than one check over the whole text. Text that is valid UTF-8 is read
//! as `str`; anything else is read as bytes, exactly as before, so what is
//! accepted and every error with its place stay serde_json's (strings it skips,
//! such as an attribute nobody reads, are not checked either way).

use serde::Deserialize;

/// `T` from the JSON in `bytes`, as `serde_json::from_slice` reads it.
pub fn from_bytes<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    }
}
