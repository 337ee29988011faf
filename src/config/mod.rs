//! Configuration: read (TOML file + `PROJECTIONIST__SECTION__KEY` environment
//! overrides) -> validate (pure, no IO, every error collected) -> [`Settings`].
//!
//! Connecting to anything is the caller's job, after validation succeeded, so
//! `projectionist check` can report every mistake without touching the network.

mod admin;
mod caches;
mod raw;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::event::Envelope;

pub use admin::{AdminSettings, AdminToken};
pub use caches::{CacheSettings, Provider};
pub use raw::{RawScalar, RawSettings};

/// Prefix of environment overrides: `PROJECTIONIST__KAFKA__BROKERS=...`.
pub const ENV_PREFIX: &str = "PROJECTIONIST";

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub caches: BTreeMap<String, CacheSettings>,
    pub server: ServerSettings,
    pub admin: AdminSettings,
    pub projections_dir: PathBuf,
    pub pipeline: PipelineSettings,
    pub envelope: Envelope,
    pub log: LogSettings,
}

/// Logging as configured; the command line and `RUST_LOG` take precedence.
#[derive(Debug, Clone, Default)]
pub struct LogSettings {
    pub level: Option<String>,
    pub format: Option<LogFormat>,
}

/// Also the values of `--log-format`, which wins over `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    pub group_id: String,
    pub start_from: StartFrom,
    pub dead_letter_topic: Option<String>,
    /// This replica's `group.instance.id` (static membership): a restarted
    /// consumer with the same id takes its partitions back without a rebalance.
    pub instance_id: Option<String>,
    /// librdkafka properties passed through, after the ones Projectionist owns.
    pub properties: BTreeMap<String, String>,
}

/// Where a consumer group without committed offsets starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    Earliest,
    Latest,
}

impl StartFrom {
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            StartFrom::Earliest => "earliest",
            StartFrom::Latest => "latest",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// A batch closes at this many records...
    pub batch_size: usize,
    /// ...or this long after its first record, whichever comes first, while
    /// the pipeline has batches queued; with none queued, a batch goes over
    /// as soon as nothing more has arrived.
    pub batch_timeout: Duration,
    /// How long shutdown may spend finishing in-flight batches.
    pub drain_timeout: Duration,
    /// Cap of the exponential backoff on transient failures.
    pub max_backoff: Duration,
    /// Batches fetched ahead of the one being written (bounds memory).
    pub queue_batches: usize,
    /// The share of the time a shadow build (a rebuild) may be busy, so the
    /// live version keeps its freshness while the shadow catches up.
    pub rebuild_share: f64,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            batch_size: 1000,
            batch_timeout: Duration::from_millis(50),
            drain_timeout: Duration::from_secs(20),
            max_backoff: Duration::from_secs(10),
            queue_batches: 4,
            rebuild_share: 0.5,
        }
    }
}

impl Settings {
    /// The embedded defaults: one memory cache, a local broker, `projections/`.
    pub fn defaults() -> Settings {
        validate::validate(RawSettings::default(), Path::new("projectionist.toml"))
            .expect("the empty configuration is valid by construction")
    }
}

/// Everything wrong with a configuration, each line naming the file and key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .errors.join("\n"))]
pub struct ConfigError {
    pub errors: Vec<String>,
}

impl ConfigError {
    pub fn one(message: impl Into<String>) -> Self {
        ConfigError {
            errors: vec![message.into()],
        }
    }
}

/// Read `path` with the process environment's overrides, then validate.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let environment: BTreeMap<String, String> = std::env::vars()
        .filter(|(name, _)| name.starts_with(&format!("{ENV_PREFIX}__")))
        .collect();
    load_with_env(path, environment)
}

/// [`load`] with an explicit environment, so tests need not touch the process's.
pub fn load_with_env(
    path: &Path,
    environment: BTreeMap<String, String>,
) -> Result<Settings, ConfigError> {
    let raw = read(path, environment)?;
    validate::validate(raw, path)
}

fn read(path: &Path, environment: BTreeMap<String, String>) -> Result<RawSettings, ConfigError> {
    let shown = path.display();
    if !path.is_file() {
        return Err(ConfigError::one(format!(
            "{shown}: no such configuration file"
        )));
    }
    let overrides = config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .source(Some(environment.into_iter().collect()));
    config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .add_source(overrides)
        .build()
        .and_then(|merged| merged.try_deserialize::<RawSettings>())
        .map_err(|error| ConfigError::one(format!("{shown}: {error}")))
}
