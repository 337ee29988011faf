//! The headers a dead letter carries beside the original record's own: their
//! names, in one place for the producer, the reader and the replay, and what
//! they say about where a letter came from ([`Origin`]).
//!
//! Every name starts with [`PREFIX`]; the original record's headers are kept
//! as they were, so taking ours away gives the record back.

use crate::event::{Headers, Position};

/// What every header of ours starts with.
pub const PREFIX: &str = "projectionist.";
pub const ERROR: &str = "projectionist.error";
pub const REASON: &str = "projectionist.reason";
/// The projection the record failed for; empty when it failed before any
/// projection ran (it could not be decoded), so every projection missed it.
pub const PROJECTION: &str = "projectionist.projection";
pub const SOURCE_TOPIC: &str = "projectionist.source.topic";
pub const SOURCE_PARTITION: &str = "projectionist.source.partition";
pub const SOURCE_OFFSET: &str = "projectionist.source.offset";
/// Marks a letter whose original payload (and maybe key or headers) was cut.
pub const TRUNCATED: &str = "projectionist.truncated";
/// The original payload's length in bytes.
pub const ORIGINAL_SIZE: &str = "projectionist.original.size";
/// The original payload's SHA-256, lowercase hex: with the source
/// topic/partition/offset headers it identifies the record in the source topic.
pub const ORIGINAL_SHA256: &str = "projectionist.original.sha256";

/// The headers that say what failed and where: a letter sent again (a replay
/// that failed anew) gets fresh ones, the rest travel with the record.
pub const FAILURE: [&str; 6] = [
    ERROR,
    REASON,
    PROJECTION,
    SOURCE_TOPIC,
    SOURCE_PARTITION,
    SOURCE_OFFSET,
];

/// The value of the first header called `name`, as text; a null or empty
/// value (how a letter says "none") is `None`.
pub fn text<'h>(headers: &'h Headers, name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(key, _)| key == name)
        .and_then(|(_, value)| value.as_deref())
        .and_then(|value| std::str::from_utf8(value).ok())
        .filter(|value| !value.is_empty())
}

/// Where a letter's record came from, and which projection it failed for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    pub position: Position,
    /// `None`: it failed before any projection ran.
    pub projection: Option<String>,
    /// Only part of the original record travelled (see [`TRUNCATED`]).
    pub truncated: bool,
}

impl Origin {
    /// Read from a letter's headers; `None` when they do not name a source
    /// position (the record is not one of our letters).
    pub fn of(headers: &Headers) -> Option<Origin> {
        let position = Position {
            topic: text(headers, SOURCE_TOPIC)?.into(),
            partition: text(headers, SOURCE_PARTITION)?.parse().ok()?,
            offset: text(headers, SOURCE_OFFSET)?.parse().ok()?,
        };
        Some(Origin {
            position,
            projection: text(headers, PROJECTION).map(str::to_owned),
            truncated: text(headers, TRUNCATED) == Some("true"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), Some(value.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn a_letter_names_its_source_and_projection() {
        let letter = headers(&[
            ("ce_type", "shop.order.paid"),
            (PROJECTION, "daily_sales"),
            (SOURCE_TOPIC, "shop.orders"),
            (SOURCE_PARTITION, "3"),
            (SOURCE_OFFSET, "41"),
        ]);
        let origin = Origin::of(&letter).unwrap();
        assert_eq!(origin.position.to_string(), "shop.orders/3@41");
        assert_eq!(origin.projection.as_deref(), Some("daily_sales"));
        assert!(!origin.truncated);
    }

    #[test]
    fn an_empty_projection_is_none_and_a_record_without_a_source_is_no_letter() {
        let letter = headers(&[
            (PROJECTION, ""),
            (SOURCE_TOPIC, "t"),
            (SOURCE_PARTITION, "0"),
            (SOURCE_OFFSET, "0"),
            (TRUNCATED, "true"),
        ]);
        let origin = Origin::of(&letter).unwrap();
        assert_eq!(origin.projection, None);
        assert!(origin.truncated);
        assert_eq!(Origin::of(&headers(&[(SOURCE_TOPIC, "t")])), None);
        let bad_offset = headers(&[
            (SOURCE_TOPIC, "t"),
            (SOURCE_PARTITION, "0"),
            (SOURCE_OFFSET, "x"),
        ]);
        assert_eq!(Origin::of(&bad_offset), None);
    }
}
