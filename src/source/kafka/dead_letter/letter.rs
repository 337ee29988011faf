//! A dead letter as it goes on the wire, whole or cut to a size budget.
//!
//! Pure: no IO, so the sizes and headers of every form are tested as values.
//! Sizes are estimated the way librdkafka checks `message.max.bytes` before it
//! accepts a record (key + payload + serialized headers + record overhead),
//! rounded up, so a letter cut to a budget is never refused locally.

use std::fmt::Write as _;

use crate::source::DeadLetter;

/// Per record, above librdkafka's `RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD` (36 bytes).
const RECORD_OVERHEAD: usize = 64;
/// Per header, above its two length varints (at most 5 bytes each below 2 GiB).
const HEADER_OVERHEAD: usize = 20;
/// The error text a cut letter keeps: a projector error may quote a whole state.
const MAX_ERROR_BYTES: usize = 1024;

use crate::source::headers::{
    ERROR, PROJECTION, REASON, SOURCE_OFFSET, SOURCE_PARTITION, SOURCE_TOPIC,
};
pub use crate::source::headers::{ORIGINAL_SHA256, ORIGINAL_SIZE, TRUNCATED};

/// How much of the failed record a letter carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The original key, payload and headers, plus ours.
    Whole,
    /// Our headers, then the original key and headers while they fit, then as
    /// much of the payload as fits in `budget` bytes.
    Truncated { budget: usize },
    /// Our headers only: the smallest letter there is.
    Bare,
}

/// Header names and values, in order; `None` is a null value.
pub type Headers = Vec<(String, Option<Vec<u8>>)>;

/// A letter ready for the producer; key and payload borrow the failed record.
#[derive(Debug)]
pub struct Encoded<'l> {
    pub key: Option<&'l [u8]>,
    pub payload: Option<&'l [u8]>,
    pub headers: Headers,
}

impl Encoded<'_> {
    /// The size librdkafka compares with `message.max.bytes`, rounded up.
    pub fn size(&self) -> usize {
        RECORD_OVERHEAD
            + self.key.map_or(0, <[u8]>::len)
            + self.payload.map_or(0, <[u8]>::len)
            + self
                .headers
                .iter()
                .map(|(name, value)| header_size(name, value.as_deref()))
                .sum::<usize>()
    }
}

fn header_size(name: &str, value: Option<&[u8]>) -> usize {
    HEADER_OVERHEAD + name.len() + value.map_or(0, <[u8]>::len)
}

/// The letter in `form`.
pub fn encode(letter: &DeadLetter, form: Form) -> Encoded<'_> {
    let record = &letter.record;
    if form == Form::Whole {
        let mut headers = record.headers.clone();
        headers.extend(ours(letter, &letter.error));
        return Encoded {
            key: record.key.as_deref(),
            payload: record.payload.as_deref(),
            headers,
        };
    }
    let payload = record.payload.as_deref().unwrap_or_default();
    let mut fixed = ours(letter, cut(&letter.error, MAX_ERROR_BYTES));
    fixed.push((TRUNCATED.to_owned(), Some(b"true".to_vec())));
    fixed.push((
        ORIGINAL_SIZE.to_owned(),
        Some(payload.len().to_string().into_bytes()),
    ));
    fixed.push((
        ORIGINAL_SHA256.to_owned(),
        Some(sha256_hex(payload).into_bytes()),
    ));
    let mut encoded = Encoded {
        key: None,
        payload: None,
        headers: Vec::new(),
    };
    let Form::Truncated { budget } = form else {
        encoded.headers = fixed;
        return encoded;
    };
    let fixed_size: usize = fixed
        .iter()
        .map(|(name, value)| header_size(name, value.as_deref()))
        .sum();
    let mut room = budget.saturating_sub(RECORD_OVERHEAD + fixed_size);
    if let Some(key) = record.key.as_deref()
        && key.len() <= room
    {
        encoded.key = Some(key);
        room -= key.len();
    }
    for (name, value) in &record.headers {
        let size = header_size(name, value.as_deref());
        if size <= room {
            encoded.headers.push((name.clone(), value.clone()));
            room -= size;
        }
    }
    encoded.headers.extend(fixed);
    if room > 0 && !payload.is_empty() {
        encoded.payload = Some(&payload[..room.min(payload.len())]);
    }
    encoded
}

/// The form to try after `refused` (of `size` bytes) was refused as too large,
/// `None` after the bare letter: nothing smaller exists. Each step at least
/// halves the budget, so a broker limit below the producer's is found in a
/// few attempts; `local_limit` is the producer's `message.max.bytes`.
pub fn smaller(
    letter: &DeadLetter,
    refused: Form,
    size: usize,
    local_limit: usize,
) -> Option<Form> {
    let budget = match refused {
        Form::Whole => (size / 2).min(local_limit),
        Form::Truncated { budget } => budget.min(size) / 2,
        Form::Bare => return None,
    };
    if budget <= encode(letter, Form::Bare).size() {
        return Some(Form::Bare);
    }
    Some(Form::Truncated { budget })
}

/// The form a letter is first sent in: whole unless librdkafka would refuse it.
pub fn first(letter: &DeadLetter, local_limit: usize) -> Form {
    if encode(letter, Form::Whole).size() <= local_limit {
        Form::Whole
    } else {
        Form::Truncated {
            budget: local_limit,
        }
    }
}

/// What failed, why, and where it came from.
fn ours(letter: &DeadLetter, error: &str) -> Headers {
    let position = &letter.record.position;
    let partition = position.partition.to_string();
    let offset = position.offset.to_string();
    let pairs = [
        (ERROR, error),
        (REASON, letter.reason),
        (PROJECTION, letter.projection.as_deref().unwrap_or("")),
        (SOURCE_TOPIC, &*position.topic),
        (SOURCE_PARTITION, partition.as_str()),
        (SOURCE_OFFSET, offset.as_str()),
    ];
    pairs
        .into_iter()
        .map(|(name, value)| (name.to_owned(), Some(value.as_bytes().to_vec())))
        .collect()
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest.as_ref() {
        write!(hex, "{byte:02x}").expect("writing to a String cannot fail");
    }
    hex
}
