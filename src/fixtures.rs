//! Event files: JSON lines, one Kafka record each, as shipped in
//! `projections/fixtures/<projection>/events.jsonl` and read by `dev`:
//! `{"topic": "shop.orders", "key": "ord-1", "event": {<structured CloudEvent>}}`.

use std::io::BufRead as _;
use std::path::Path;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::event::{Position, RawRecord};

/// Content type of a structured-mode CloudEvent record.
pub const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";

/// One line of an event file, its event read as `E`: a tree by default
/// (`dev`, the golden fixtures, tests), or its text ([`FileRecord`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureRecord<E = Value> {
    pub topic: String,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub partition: Option<i32>,
    /// The structured CloudEvent (or any JSON payload).
    pub event: E,
}

impl FixtureRecord {
    /// The payload bytes as a producer would send them.
    pub fn payload(&self) -> Vec<u8> {
        self.event.to_string().into_bytes()
    }

    /// The record as the consumer would hand it over at `offset`.
    pub fn to_raw_record(&self, offset: i64) -> RawRecord {
        FileRecord::from(self).into_raw_record(offset)
    }
}

/// A line of an event file as the offline pipeline takes it: the event's
/// text as the file holds it, for the decoder to read as it reads a Kafka
/// payload. Reading each event into a tree, writing it out again and
/// decoding that text took a third of a `replay`'s instructions. Text the
/// decoder then refuses (a number past `f64`) is that record's failure, as
/// the same bytes from Kafka would be, not a bad file. The text is checked
/// to be one JSON value and no more.
pub type FileRecord = FixtureRecord<Box<RawValue>>;

impl FileRecord {
    /// The record as the consumer would hand it over at `offset`.
    pub fn into_raw_record(self, offset: i64) -> RawRecord {
        let payload: Box<str> = self.event.into();
        RawRecord {
            position: Position {
                topic: self.topic.into(),
                partition: self.partition.unwrap_or(0),
                offset,
            },
            key: self.key.map(String::into_bytes),
            payload: Some(payload.into_boxed_bytes().into_vec()),
            headers: vec![(
                "content-type".to_owned(),
                Some(CLOUDEVENTS_JSON.as_bytes().to_vec()),
            )],
            timestamp_ms: None,
        }
    }
}

impl From<&FixtureRecord> for FileRecord {
    fn from(record: &FixtureRecord) -> FileRecord {
        FileRecord {
            topic: record.topic.clone(),
            key: record.key.clone(),
            partition: record.partition,
            event: serde_json::value::to_raw_value(&record.event)
                .expect("a JSON value writes as JSON text"),
        }
    }
}

/// Read an event file; an error names the file and line.
pub fn read_jsonl(path: &Path) -> Result<Vec<FixtureRecord>, String> {
    jsonl_lines(path)?.collect()
}

/// The records of an event file, one line at a time: memory holds a line, not
/// the file. An error names the file and line.
pub fn jsonl_records(
    path: &Path,
) -> Result<impl Iterator<Item = Result<FileRecord, String>>, String> {
    jsonl_lines(path)
}

/// Each non-blank line of `path`, read as a `T`.
fn jsonl_lines<T: DeserializeOwned>(
    path: &Path,
) -> Result<impl Iterator<Item = Result<T, String>>, String> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|error| format!("{shown}: {error}"))?;
    let lines = std::io::BufReader::new(file).lines().enumerate();
    Ok(lines.filter_map(move |(index, line)| {
        let line = match line {
            Ok(line) => line,
            Err(error) => return Some(Err(format!("{shown}:{}: {error}", index + 1))),
        };
        if line.trim().is_empty() {
            return None;
        }
        Some(serde_json::from_str(&line).map_err(|error| format!("{shown}:{}: {error}", index + 1)))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Envelope, decode};

    /// Odd but valid lines: spacing, member order, trailing zeros, escapes,
    /// a repeated member, and events the decoder refuses.
    const LINES: &[&str] = &[
        r#"{"topic": "t", "key": "k", "event": {"data" : {"b": 1.50, "a": "\u00e9\n"}, "type": "x", "specversion": "1.0"}}"#,
        r#"{"event":{"type":"x","type":"y","data":[1e2,-0.0,12345678901234567890]},"partition":3,"topic":"t"}"#,
        r#"{"topic": "t", "event": {"type": "x", "time": "2024-05-01T10:00:00+02:00", "data": null}}"#,
        r#"{"topic": "t", "event": ["1.0", "x"]}"#,
        r#"{"topic": "t", "event": {"data": {}}}"#,
        r#"{"topic": "t", "event": null}"#,
    ];

    /// The event reaches the decoder as the file writes it, not written out
    /// again from a tree.
    #[test]
    fn a_file_record_carries_the_event_as_the_file_writes_it() {
        let record = serde_json::from_str::<FileRecord>(LINES[0]).unwrap();
        assert_eq!(
            record.event.get(),
            r#"{"data" : {"b": 1.50, "a": "\u00e9\n"}, "type": "x", "specversion": "1.0"}"#
        );
        assert_eq!(
            (record.topic.as_str(), record.key.as_deref()),
            ("t", Some("k"))
        );
    }

    /// Read either way, a line decodes to the same event, or fails the same.
    #[test]
    fn the_text_decodes_as_the_tree_written_out_does() {
        for (offset, line) in LINES.iter().enumerate() {
            let file = serde_json::from_str::<FileRecord>(line)
                .unwrap()
                .into_raw_record(offset as i64);
            let tree: FixtureRecord = serde_json::from_str(line).unwrap();
            let tree = tree.to_raw_record(offset as i64);
            assert_eq!(file.position, tree.position, "{line}");
            assert_eq!(
                decode(&file, &Envelope::CloudEvents),
                decode(&tree, &Envelope::CloudEvents),
                "{line}"
            );
        }
    }

    /// A number past `f64` is JSON to the line's reading and the decoder's
    /// to refuse, as it refuses it from Kafka: the record fails, the file
    /// reads on.
    #[test]
    fn an_event_the_decoder_refuses_is_its_records_failure() {
        let line = r#"{"topic": "t", "event": {"type": "x", "data": {"n": 1e400}}}"#;
        let record = serde_json::from_str::<FileRecord>(line)
            .unwrap()
            .into_raw_record(0);
        let refused = decode(&record, &Envelope::CloudEvents).unwrap_err();
        assert_eq!(refused.reason(), "invalid_json", "{refused}");
    }

    /// What the tree reading refuses, the text reading refuses too.
    #[test]
    fn a_bad_line_is_refused_by_both_readings() {
        for line in [
            r#"{"topic": "t"}"#,
            r#"{"topic": "t", "event": {"type": "x"}, "extra": 1}"#,
            r#"{"topic": "t", "event": {"type": "x"}"#,
            r#"{"topic": 7, "event": {}}"#,
            r#"{"topic": "t", "event": {"type": tru}}"#,
        ] {
            assert!(serde_json::from_str::<FileRecord>(line).is_err(), "{line}");
            assert!(
                serde_json::from_str::<FixtureRecord>(line).is_err(),
                "{line}"
            );
        }
    }
}
