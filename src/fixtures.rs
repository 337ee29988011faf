//! Event files: JSON lines, one Kafka record each, as shipped in
//! `projections/fixtures/<projection>/events.jsonl` and read by `dev`:
//! `{"topic": "shop.orders", "key": "ord-1", "event": {<structured CloudEvent>}}`.

use std::io::BufRead as _;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::event::{Position, RawRecord};

/// Content type of a structured-mode CloudEvent record.
pub const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";

/// One line of an event file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureRecord {
    pub topic: String,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub partition: Option<i32>,
    /// The structured CloudEvent (or any JSON payload).
    pub event: Value,
}

impl FixtureRecord {
    /// The payload bytes as a producer would send them.
    pub fn payload(&self) -> Vec<u8> {
        self.event.to_string().into_bytes()
    }

    /// The record as the consumer would hand it over at `offset`.
    pub fn to_raw_record(&self, offset: i64) -> RawRecord {
        RawRecord {
            position: Position {
                topic: self.topic.clone(),
                partition: self.partition.unwrap_or(0),
                offset,
            },
            key: self.key.as_ref().map(|key| key.as_bytes().to_vec()),
            payload: Some(self.payload()),
            headers: vec![(
                "content-type".to_owned(),
                Some(CLOUDEVENTS_JSON.as_bytes().to_vec()),
            )],
            timestamp_ms: None,
        }
    }
}

/// Read an event file; an error names the file and line.
pub fn read_jsonl(path: &Path) -> Result<Vec<FixtureRecord>, String> {
    jsonl_records(path)?.collect()
}

/// The records of an event file, one line at a time: memory holds a line, not
/// the file. An error names the file and line.
pub fn jsonl_records(
    path: &Path,
) -> Result<impl Iterator<Item = Result<FixtureRecord, String>>, String> {
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
