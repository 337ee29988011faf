//! Raw settings -> [`Settings`]: pure checks, every mistake collected and named.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::admin::validate_admin;
use super::caches::validate_caches;
use super::raw::{RawEvents, RawKafka, RawLog, RawPipeline, RawScalar, RawSettings};
use super::{
    ConfigError, KafkaSettings, LogFormat, LogSettings, PipelineSettings, ServerSettings, Settings,
    StartFrom,
};
use crate::event::Envelope;

/// librdkafka properties Projectionist sets itself: overriding them would break
/// the delivery guarantee (offsets are stored only after writes are acknowledged).
const OWNED_PROPERTIES: [&str; 4] = [
    "enable.auto.offset.store",
    "group.id",
    "bootstrap.servers",
    "enable.partition.eof",
];

pub fn validate(raw: RawSettings, path: &Path) -> Result<Settings, ConfigError> {
    let mut errors = Vec::new();
    let kafka = validate_kafka(raw.kafka, &mut errors);
    let caches = validate_caches(raw.caches, &mut errors);
    let listen = raw
        .server
        .listen
        .unwrap_or_else(|| "0.0.0.0:8080".to_owned());
    let listen = listen.parse::<SocketAddr>().map_err(|_| {
        errors.push(format!(
            "server.listen = {listen:?} is not an address like \"0.0.0.0:8080\""
        ))
    });
    // Relative to the configuration file, so a mounted folder
    // (`/etc/projectionist/{config.toml,projections/}`) works from any directory.
    let base = path.parent().unwrap_or(Path::new("."));
    let projections_dir = base.join(raw.projections.dir.as_deref().unwrap_or("projections"));
    let admin = validate_admin(raw.admin, &mut errors);
    let pipeline = validate_pipeline(raw.pipeline, &mut errors);
    let envelope = validate_events(raw.events, &mut errors);
    let log = validate_log(raw.log, &mut errors);
    if !errors.is_empty() {
        let shown = path.display();
        return Err(ConfigError {
            errors: errors
                .into_iter()
                .map(|error| format!("{shown}: {error}"))
                .collect(),
        });
    }
    Ok(Settings {
        kafka,
        caches,
        server: ServerSettings {
            listen: listen.expect("an invalid address was reported above"),
        },
        admin: admin.expect("an invalid admin section was reported above"),
        projections_dir,
        pipeline,
        envelope: envelope.expect("an invalid envelope was reported above"),
        log,
    })
}

fn validate_kafka(raw: RawKafka, errors: &mut Vec<String>) -> KafkaSettings {
    let brokers = raw.brokers.unwrap_or_else(|| "localhost:9092".to_owned());
    if brokers.trim().is_empty() {
        errors.push("kafka.brokers is empty: give host:port[,host:port...]".to_owned());
    }
    let group_id = raw.group_id.unwrap_or_else(|| "projectionist".to_owned());
    if group_id.trim().is_empty() {
        errors.push("kafka.group_id is empty".to_owned());
    }
    let start_from = match raw.start_from.as_deref() {
        None | Some("earliest") => StartFrom::Earliest,
        Some("latest") => StartFrom::Latest,
        Some(other) => {
            errors.push(format!(
                "kafka.start_from = {other:?} is not a start position (valid: earliest, latest)"
            ));
            StartFrom::Earliest
        }
    };
    if let Some(topic) = &raw.dead_letter_topic
        && !is_kafka_name(topic)
    {
        errors.push(format!(
                "kafka.dead_letter_topic = {topic:?} is not a Kafka topic name (letters, digits, '.', '_', '-', at most 249)"
            ));
    }
    if let Some(id) = &raw.instance_id
        && !is_kafka_name(id)
    {
        errors.push(format!(
                "kafka.instance_id = {id:?} is not a group instance id (letters, digits, '.', '_', '-', at most 249; no whitespace)"
            ));
    }
    let mut properties = std::collections::BTreeMap::new();
    for (name, value) in raw.properties {
        // Environment overrides cannot carry dots in their names and arrive
        // lower-cased; librdkafka property names never contain '_', so map it back.
        let name = name.replace('_', ".");
        if name == "group.instance.id" {
            errors.push(
                "kafka.properties.\"group.instance.id\" is set through kafka.instance_id"
                    .to_owned(),
            );
            continue;
        }
        if OWNED_PROPERTIES.contains(&name.as_str()) {
            errors.push(format!(
                "kafka.properties.\"{name}\" is set by Projectionist itself and cannot be overridden"
            ));
            continue;
        }
        if let RawScalar::Float(_) = value {
            errors.push(format!(
                "kafka.properties.\"{name}\" = {value} must be a string, integer or boolean"
            ));
            continue;
        }
        properties.insert(name, value.to_text());
    }
    KafkaSettings {
        brokers,
        group_id,
        start_from,
        dead_letter_topic: raw.dead_letter_topic,
        instance_id: raw.instance_id,
        properties,
    }
}

/// A topic name, or a group instance id: Kafka validates both with this rule.
fn is_kafka_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn validate_pipeline(raw: RawPipeline, errors: &mut Vec<String>) -> PipelineSettings {
    let defaults = PipelineSettings::default();
    let mut positive = |key: &str, value: Option<RawScalar>, default: u64, max: u64| -> u64 {
        let Some(value) = value else {
            return default;
        };
        let number = match &value {
            RawScalar::Int(number) => u64::try_from(*number).ok(),
            RawScalar::Text(text) => text.trim().parse::<u64>().ok(),
            RawScalar::Bool(_) | RawScalar::Float(_) => None,
        };
        match number {
            Some(number) if (1..=max).contains(&number) => number,
            _ => {
                errors.push(format!(
                    "pipeline.{key} = {value} is not a whole number from 1 to {max}"
                ));
                default
            }
        }
    };
    let batch_size = positive(
        "batch_size",
        raw.batch_size,
        defaults.batch_size as u64,
        100_000,
    );
    let batch_timeout_ms = positive(
        "batch_timeout_ms",
        raw.batch_timeout_ms,
        defaults.batch_timeout.as_millis() as u64,
        60_000,
    );
    let drain_timeout_secs = positive(
        "drain_timeout_secs",
        raw.drain_timeout_secs,
        defaults.drain_timeout.as_secs(),
        3600,
    );
    let max_backoff_ms = positive(
        "max_backoff_ms",
        raw.max_backoff_ms,
        defaults.max_backoff.as_millis() as u64,
        600_000,
    );
    let queue_batches = positive(
        "queue_batches",
        raw.queue_batches,
        defaults.queue_batches as u64,
        1024,
    );
    let rebuild_share = match &raw.rebuild_share {
        None => defaults.rebuild_share,
        Some(value) => {
            let share = match value {
                RawScalar::Int(number) => Some(*number as f64),
                RawScalar::Float(number) => Some(*number),
                RawScalar::Text(text) => text.trim().parse::<f64>().ok(),
                RawScalar::Bool(_) => None,
            };
            match share {
                Some(share) if share > 0.0 && share <= 1.0 => share,
                _ => {
                    errors.push(format!(
                        "pipeline.rebuild_share = {value} is not a share of the time above 0 and at most 1 (0.5 is half)"
                    ));
                    defaults.rebuild_share
                }
            }
        }
    };
    PipelineSettings {
        rebuild_share,
        batch_size: batch_size as usize,
        batch_timeout: Duration::from_millis(batch_timeout_ms),
        drain_timeout: Duration::from_secs(drain_timeout_secs),
        max_backoff: Duration::from_millis(max_backoff_ms),
        queue_batches: queue_batches as usize,
    }
}

fn validate_events(raw: RawEvents, errors: &mut Vec<String>) -> Option<Envelope> {
    let pointers = [
        ("type_pointer", &raw.type_pointer),
        ("id_pointer", &raw.id_pointer),
        ("time_pointer", &raw.time_pointer),
        ("data_pointer", &raw.data_pointer),
    ];
    for (key, pointer) in pointers {
        if let Some(pointer) = pointer
            && !(pointer.is_empty() || pointer.starts_with('/'))
        {
            errors.push(format!(
                    "events.{key} = {pointer:?} is not a JSON pointer (it must start with '/', e.g. \"/eventType\")"
                ));
        }
    }
    match raw.envelope.as_deref() {
        None | Some("cloudevents") => {
            for (key, pointer) in pointers {
                if pointer.is_some() {
                    errors.push(format!(
                        "events.{key} only applies with events.envelope = \"json\""
                    ));
                }
            }
            Some(Envelope::CloudEvents)
        }
        Some("json") => {
            let Some(event_type) = raw.type_pointer.clone() else {
                errors.push(
                    "events.type_pointer is required with events.envelope = \"json\"".to_owned(),
                );
                return None;
            };
            Some(Envelope::Json {
                event_type,
                id: raw.id_pointer,
                time: raw.time_pointer,
                data: raw.data_pointer,
            })
        }
        Some(other) => {
            errors.push(format!(
                "events.envelope = {other:?} is not an envelope (valid: cloudevents, json)"
            ));
            None
        }
    }
}

fn validate_log(raw: RawLog, errors: &mut Vec<String>) -> LogSettings {
    if let Some(level) = &raw.level
        && let Err(error) = tracing_subscriber::EnvFilter::try_new(level)
    {
        errors.push(format!(
                "log.level = {level:?} is not a log filter (e.g. \"info\" or \"projectionist=debug,info\"): {error}"
            ));
    }
    let format = match raw.format.as_deref() {
        None => None,
        Some("text") => Some(LogFormat::Text),
        Some("json") => Some(LogFormat::Json),
        Some(other) => {
            errors.push(format!(
                "log.format = {other:?} is not a log format (valid: text, json)"
            ));
            None
        }
    };
    LogSettings {
        level: raw.level,
        format,
    }
}
