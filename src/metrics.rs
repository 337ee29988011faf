//! Every metric of the program, declared once, on the program's own registry.
//!
//! Names follow Prometheus conventions (`projectionist_<noun>_<unit>`, `_total`
//! for counters, `_seconds` for durations). Labels stay low-cardinality: never a
//! key, an identifier or error text.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

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
    /// Records written to the dead-letter topic, by reason.
    pub events_dead_lettered: IntCounterVec,
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
    /// 1 when a cache answered its last `ping()`.
    pub cache_up: IntGaugeVec,
    /// 1 while the consumer holds a partition assignment.
    pub consumer_assigned: IntGauge,
    pub rebalances: IntCounterVec,
    pub build_info: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("metric names and labels are valid literals");
            registry
                .register(Box::new(metric.clone()))
                .expect("each metric is registered once");
            metric
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let metric = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
                .expect("metric names and labels are valid literals");
            registry
                .register(Box::new(metric.clone()))
                .expect("each metric is registered once");
            metric
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntGaugeVec::new(Opts::new(name, help), labels)
                .expect("metric names and labels are valid literals");
            registry
                .register(Box::new(metric.clone()))
                .expect("each metric is registered once");
            metric
        };
        let plain_histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let metric = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("metric names are valid literals");
            registry
                .register(Box::new(metric.clone()))
                .expect("each metric is registered once");
            metric
        };
        let seconds = prometheus::exponential_buckets(0.0005, 2.0, 16).expect("valid buckets");
        let sizes = prometheus::exponential_buckets(1.0, 2.0, 15).expect("valid buckets");
        let consumer_assigned = IntGauge::new(
            "projectionist_consumer_assigned",
            "1 while the consumer holds a partition assignment",
        )
        .expect("valid metric");
        registry
            .register(Box::new(consumer_assigned.clone()))
            .expect("each metric is registered once");
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
                &["reason"],
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
            consumer_assigned,
            rebalances: counter(
                "projectionist_rebalances_total",
                "Consumer group rebalances seen",
                &["kind"],
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

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("encoding into a Vec cannot fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
