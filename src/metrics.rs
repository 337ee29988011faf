//! Every metric of the program, declared once, on the program's own registry.
//!
//! Names follow Prometheus conventions (`projectionist_<noun>_<unit>`, `_total`
//! for counters, `_seconds` for durations). Labels stay low-cardinality: never a
//! key, an identifier or error text.

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The states a projection reports in `projectionist_projection_state`; a
/// replica that owns none of its partitions (`idle`) sets every one to 0.
pub const PROJECTION_STATES: [&str; 4] = ["catching_up", "live", "stalled", "paused"];

/// Every `reason` a permanent failure can carry, so each series exists from the
/// start (a dashboard shows 0, not "no data", before the first failure).
pub const FAILURE_REASONS: [&str; 15] = [
    "empty_payload",
    "invalid_json",
    "not_an_object",
    "missing_attribute",
    "invalid_attribute",
    "invalid_time",
    "unsupported_specversion",
    "header_not_utf8",
    "invalid_base64",
    "data_not_utf8",
    "conflicting_data",
    "missing_identifier",
    "projector_error",
    "invalid_projection",
    "corrupt_state",
];

/// What became of a dead letter a replay or purge took up.
pub const LETTER_OUTCOMES: [&str; 4] = ["replayed", "failed_again", "duplicate", "purged"];

/// Freshness spans milliseconds (live) to days (a replay of old events).
const FRESHNESS_BUCKETS: [f64; 20] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0, 21600.0, 86400.0,
];

/// The `projection` label of failures that belong to no projection (a record
/// that could not be decoded) and of unrouted events.
pub const NO_PROJECTION: &str = "none";

/// The metrics, cloned cheaply (every field is an `Arc` inside).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Records fetched from Kafka, by topic.
    pub events_consumed: IntCounterVec,
    /// Events a projection applied (upsert or delete), by projection.
    pub events_projected: IntCounterVec,
    /// Events passed over without a change, by projection and reason.
    pub events_skipped: IntCounterVec,
    /// Permanent failures, by projection and reason.
    pub events_failed: IntCounterVec,
    /// Records written to the dead-letter topic, by projection and reason.
    pub events_dead_lettered: IntCounterVec,
    /// Dead letters sent without all of the original record, because the
    /// whole of it exceeded the dead-letter topic's message size.
    pub dead_letters_truncated: IntCounter,
    /// Dead letters taken up again by operators, by outcome (see
    /// [`LETTER_OUTCOMES`]).
    pub dead_letters_handled: IntCounterVec,
    /// Now minus event time when a projection is written, by projection.
    pub projection_freshness: HistogramVec,
    /// 1 for a projection's current state, 0 for the others.
    pub projection_state: IntGaugeVec,
    /// Records a projection's shadow (a rebuild, or the previous version
    /// kept for a rollback) has still to apply to reach the live version.
    pub rebuild_remaining: IntGaugeVec,
    /// The version a projection's shadow builds (0: none), and the live one.
    pub rebuild_version: IntGaugeVec,
    /// Writes sent to a cache, by projection and operation.
    pub cache_writes: IntCounterVec,
    pub batch_duration: Histogram,
    pub batch_size: Histogram,
    /// Cache round trips, by cache and operation.
    pub cache_operation_duration: HistogramVec,
    /// Transient failures that were retried, by component.
    pub retries: IntCounterVec,
    /// Offsets between the committed position and the end of a partition.
    pub consumer_lag: IntGaugeVec,
    /// Age of the last record processed from a partition that is behind (0 when
    /// caught up).
    pub consumer_lag_seconds: GaugeVec,
    /// 1 when `/readyz` would answer 200.
    pub ready: IntGauge,
    /// Unix time of the consume loop's last sign of life.
    pub heartbeat_timestamp: Gauge,
    /// 1 when a cache answered its last `ping()`.
    pub cache_up: IntGaugeVec,
    /// 1 while the consumer holds a partition assignment.
    pub consumer_assigned: IntGauge,
    pub rebalances: IntCounterVec,
    /// Records dropped before they were applied, by reason (redelivered, fetched
    /// before a seek, not assigned, a gap read again, halted).
    pub records_dropped: IntCounterVec,
    /// Records the broker skipped, noticed and read again by a seek.
    pub partition_gaps: prometheus::IntCounter,
    /// Times a cache was found to have lost writes below its checkpoint (a
    /// cluster primary failed over before replicating them), so a partition
    /// was folded again from where the loss began.
    pub partition_replays: prometheus::IntCounter,
    /// Partitions whose log no longer holds their checkpoint (recreated or
    /// truncated topic), halted until an operator acts, by topic.
    pub partition_resets: IntCounterVec,
    pub build_info: IntGaugeVec,
}

/// One projection's per-event series, resolved once: `with_label_values`
/// hashes the labels and takes a lock, too much to pay per event or write.
#[derive(Clone)]
pub struct ProjectionMetrics {
    pub projected: IntCounter,
    pub skipped: IntCounter,
    pub freshness: Histogram,
    pub upserts: IntCounter,
    pub deletes: IntCounter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(&registry, IntCounterVec::new(Opts::new(name, help), labels))
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let opts = HistogramOpts::new(name, help).buckets(buckets);
            register(&registry, HistogramVec::new(opts, labels))
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            register(&registry, IntGaugeVec::new(Opts::new(name, help), labels))
        };
        let plain_histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let opts = HistogramOpts::new(name, help).buckets(buckets);
            register(&registry, Histogram::with_opts(opts))
        };
        let seconds = prometheus::exponential_buckets(0.0005, 2.0, 16).expect("valid buckets");
        let sizes = prometheus::exponential_buckets(1.0, 2.0, 15).expect("valid buckets");
        let consumer_assigned = register(
            &registry,
            IntGauge::new(
                "projectionist_consumer_assigned",
                "1 while the consumer holds a partition assignment",
            ),
        );
        let ready = register(
            &registry,
            IntGauge::new("projectionist_ready", "1 when /readyz answers 200, else 0"),
        );
        let heartbeat_timestamp = register(
            &registry,
            Gauge::new(
                "projectionist_heartbeat_timestamp_seconds",
                "Unix time of the consume loop's last sign of life",
            ),
        );
        let consumer_lag_seconds = register(
            &registry,
            GaugeVec::new(
                Opts::new(
                    "projectionist_consumer_lag_seconds",
                    "Age of the last record processed from a partition that is behind",
                ),
                &["topic", "partition"],
            ),
        );
        let dead_letters_truncated = register(
            &registry,
            IntCounter::new(
                "projectionist_dead_letters_truncated_total",
                "Dead letters sent with the original payload cut to fit the topic's message size",
            ),
        );
        let metrics = Metrics {
            events_consumed: counter(
                "projectionist_events_consumed_total",
                "Records fetched from Kafka",
                &["topic"],
            ),
            events_projected: counter(
                "projectionist_events_projected_total",
                "Events applied to a projection (upsert or delete)",
                &["projection"],
            ),
            events_skipped: counter(
                "projectionist_events_skipped_total",
                "Events passed over without a change",
                &["projection", "reason"],
            ),
            events_failed: counter(
                "projectionist_events_failed_total",
                "Events that failed permanently and were passed over",
                &["projection", "reason"],
            ),
            events_dead_lettered: counter(
                "projectionist_events_dead_lettered_total",
                "Records written to the dead-letter topic",
                &["projection", "reason"],
            ),
            dead_letters_truncated,
            dead_letters_handled: counter(
                "projectionist_dead_letters_handled_total",
                "Dead letters taken up by a replay or a purge: replayed, failed_again (sent anew), duplicate (a second letter of one failure), purged",
                &["outcome"],
            ),
            projection_freshness: histogram(
                "projectionist_projection_freshness_seconds",
                "Now minus event time when a projection is written",
                &["projection"],
                FRESHNESS_BUCKETS.to_vec(),
            ),
            rebuild_remaining: gauge(
                "projectionist_rebuild_remaining_records",
                "Records the projection's shadow build has still to apply to reach the live version",
                &["projection"],
            ),
            rebuild_version: gauge(
                "projectionist_rebuild_version",
                "Version of the projection that is live, and that its shadow builds (0: none)",
                &["projection", "role"],
            ),
            projection_state: gauge(
                "projectionist_projection_state",
                "1 for the projection's current state (catching_up, live, stalled, paused), from its lag",
                &["projection", "state"],
            ),
            cache_writes: counter(
                "projectionist_cache_writes_total",
                "Projection writes sent to a cache",
                &["projection", "operation"],
            ),
            batch_duration: plain_histogram(
                "projectionist_batch_duration_seconds",
                "Time to load, project, write and checkpoint one batch",
                seconds.clone(),
            ),
            batch_size: plain_histogram(
                "projectionist_batch_size_events",
                "Records per processed batch",
                sizes,
            ),
            cache_operation_duration: histogram(
                "projectionist_cache_operation_duration_seconds",
                "Duration of cache round trips",
                &["cache", "operation"],
                seconds,
            ),
            retries: counter(
                "projectionist_retries_total",
                "Transient failures retried with backoff",
                &["component"],
            ),
            consumer_lag: gauge(
                "projectionist_consumer_lag_messages",
                "Messages between the consumer's position and the end of the partition",
                &["topic", "partition"],
            ),
            cache_up: gauge(
                "projectionist_cache_up",
                "1 when the cache answered its last ping, else 0",
                &["cache"],
            ),
            consumer_lag_seconds,
            ready,
            heartbeat_timestamp,
            consumer_assigned,
            rebalances: counter(
                "projectionist_rebalances_total",
                "Consumer group rebalances seen",
                &["kind"],
            ),
            records_dropped: counter(
                "projectionist_records_dropped_total",
                "Records dropped unapplied: already applied, stale, or not ours",
                &["reason"],
            ),
            partition_gaps: register(
                &registry,
                prometheus::IntCounter::new(
                    "projectionist_partition_gaps_total",
                    "Records the broker skipped, noticed and read again",
                ),
            ),
            partition_replays: register(
                &registry,
                prometheus::IntCounter::new(
                    "projectionist_partition_replays_total",
                    "Partitions folded again because a cache lost writes below its checkpoint",
                ),
            ),
            partition_resets: counter(
                "projectionist_partition_resets_total",
                "Partitions whose log no longer holds their checkpoint (topic recreated or truncated); halted",
                &["topic"],
            ),
            build_info: gauge(
                "projectionist_build_info",
                "Always 1; labels carry the version",
                &["version"],
            ),
            registry,
        };
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        metrics
    }

    /// Create every series whose labels are known up front (projections, caches,
    /// topics, reasons), so each is exported from the start with a zero value.
    /// The per-event series of projection `name` (see [`ProjectionMetrics`]).
    pub fn for_projection(&self, name: &str) -> ProjectionMetrics {
        ProjectionMetrics {
            projected: self.events_projected.with_label_values(&[name]),
            skipped: self
                .events_skipped
                .with_label_values(&[name, "projector_skip"]),
            freshness: self.projection_freshness.with_label_values(&[name]),
            upserts: self.cache_writes.with_label_values(&[name, "upsert"]),
            deletes: self.cache_writes.with_label_values(&[name, "delete"]),
        }
    }

    pub fn prepare(&self, projections: &[&str], caches: &[&str], topics: &[String]) {
        for topic in topics {
            self.partition_resets.with_label_values(&[topic.as_str()]);
        }
        for projection in projections {
            self.events_projected.with_label_values(&[projection]);
            self.events_skipped
                .with_label_values(&[projection, "projector_skip"]);
            for reason in FAILURE_REASONS {
                self.events_failed.with_label_values(&[projection, reason]);
                self.events_dead_lettered
                    .with_label_values(&[projection, reason]);
            }
            self.projection_freshness.with_label_values(&[projection]);
            for operation in ["upsert", "delete"] {
                self.cache_writes
                    .with_label_values(&[projection, operation]);
            }
            for state in PROJECTION_STATES {
                self.projection_state
                    .with_label_values(&[projection, state]);
            }
        }
        self.events_skipped
            .with_label_values(&[NO_PROJECTION, "unrouted_type"]);
        for reason in FAILURE_REASONS {
            self.events_failed
                .with_label_values(&[NO_PROJECTION, reason]);
            self.events_dead_lettered
                .with_label_values(&[NO_PROJECTION, reason]);
        }
        for cache in caches {
            self.cache_up.with_label_values(&[cache]);
            for operation in ["get_many", "commit"] {
                self.cache_operation_duration
                    .with_label_values(&[cache, operation]);
            }
        }
        for outcome in LETTER_OUTCOMES {
            self.dead_letters_handled.with_label_values(&[outcome]);
        }
        for component in ["cache", "dead_letter", "kafka"] {
            self.retries.with_label_values(&[component]);
        }
        for kind in ["assign", "revoke", "error"] {
            self.rebalances.with_label_values(&[kind]);
        }
        for reason in [
            "redelivered",
            "fetched_before_seek",
            "not_assigned",
            "gap",
            "halted",
        ] {
            self.records_dropped.with_label_values(&[reason]);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("encoding into a Vec cannot fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }
}

/// Register `metric` on `registry` and hand it back.
fn register<M: Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<M>,
) -> M {
    let metric = metric.expect("metric names, labels and buckets are valid literals");
    registry
        .register(Box::new(metric.clone()))
        .expect("each metric is registered once");
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
