//! The configuration as read, before validation: every key the file may hold,
//! and nothing else (`deny_unknown_fields`, so a typo is an error, not a default).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::cache::Ttl;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    #[serde(default)]
    pub kafka: RawKafka,
    #[serde(default)]
    pub caches: BTreeMap<String, RawCache>,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub admin: super::admin::RawAdmin,
    #[serde(default)]
    pub projections: RawProjections,
    #[serde(default)]
    pub pipeline: RawPipeline,
    #[serde(default)]
    pub events: RawEvents,
    #[serde(default)]
    pub log: RawLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// An `EnvFilter` directive (`info`, `projectionist=debug,rdkafka=warn`);
    /// `RUST_LOG` wins over it.
    pub level: Option<String>,
    /// `text` or `json`; `--log-format` wins over it.
    pub format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKafka {
    pub brokers: Option<String>,
    pub group_id: Option<String>,
    /// Where a group with no committed offset starts: `earliest` or `latest`.
    pub start_from: Option<String>,
    pub dead_letter_topic: Option<String>,
    /// Static group membership: librdkafka's `group.instance.id`.
    pub instance_id: Option<String>,
    /// librdkafka properties passed through (SASL, TLS, tuning).
    #[serde(default)]
    pub properties: BTreeMap<String, RawScalar>,
}

/// A cache as the seed spells it (`provider`, `URI`, `TTL`). The lower-case
/// spellings are accepted too, because environment overrides arrive lower-cased;
/// when both are present the lower-case one (the override) wins.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub provider: Option<RawScalar>,
    #[serde(rename = "URI")]
    pub uri_seed: Option<RawScalar>,
    pub uri: Option<RawScalar>,
    #[serde(rename = "TTL")]
    pub ttl_seed: Option<RawScalar>,
    pub ttl: Option<RawScalar>,
    /// Seed node URIs of a Redis Cluster (`provider = "redis_cluster"`).
    pub nodes: Option<RawNodes>,
    /// Offsets below the checkpoint a claimed partition is folded again on a
    /// Redis Cluster.
    pub rewind: Option<RawScalar>,
}

/// Seed nodes: a TOML list, or one comma-separated string as an environment
/// override gives it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum RawNodes {
    List(Vec<String>),
    Text(String),
}

impl RawNodes {
    pub fn to_list(&self) -> Vec<String> {
        match self {
            RawNodes::List(nodes) => nodes.iter().map(|node| node.trim().to_owned()).collect(),
            RawNodes::Text(text) => text
                .split(',')
                .map(str::trim)
                .filter(|node| !node.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProjections {
    pub dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    pub batch_size: Option<RawScalar>,
    pub batch_timeout_ms: Option<RawScalar>,
    pub drain_timeout_secs: Option<RawScalar>,
    pub max_backoff_ms: Option<RawScalar>,
    pub queue_batches: Option<RawScalar>,
    pub rebuild_share: Option<RawScalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvents {
    /// `cloudevents` (default) or `json`.
    pub envelope: Option<String>,
    pub type_pointer: Option<String>,
    pub id_pointer: Option<String>,
    pub time_pointer: Option<String>,
    pub data_pointer: Option<String>,
}

/// A scalar as TOML or an environment variable gives it. Kept raw so validation
/// can say exactly which value was wrong, whatever its type.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum RawScalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl std::fmt::Display for RawScalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawScalar::Bool(value) => write!(f, "{value}"),
            RawScalar::Int(value) => write!(f, "{value}"),
            RawScalar::Float(value) => write!(f, "{value}"),
            RawScalar::Text(value) => write!(f, "{value:?}"),
        }
    }
}

impl RawScalar {
    /// The text form, for values that are strings by nature (URIs, properties).
    pub fn to_text(&self) -> String {
        match self {
            RawScalar::Text(value) => value.clone(),
            other => other.to_string(),
        }
    }

    /// A TTL is a positive finite number of seconds or such a number as text;
    /// booleans are refused even though TOML could coerce them.
    pub fn to_ttl(&self) -> Option<Ttl> {
        match self {
            RawScalar::Bool(_) => None,
            RawScalar::Int(secs) => Ttl::from_secs_f64(*secs as f64).ok(),
            RawScalar::Float(secs) => Ttl::from_secs_f64(*secs).ok(),
            RawScalar::Text(text) => Ttl::parse(text).ok(),
        }
    }
}
