//! The HTTP endpoints: `/metrics` (Prometheus text), `/healthz` (the consume loop
//! is making progress), `/readyz` (every cache answers `ping()`, the broker
//! answers the consumer's probe and the consumer holds its assignment), and
//! `GET /projections/{name}/{id}` (one projection read through the cache port).
//!
//! Read your own writes: given `topic`, `partition` and `offset` (the
//! producer's delivery report) and `wait_ms`, the read waits until the
//! projection's cache has applied that position (its checkpoint in the cache is
//! past the offset), and answers 409 `behind` when the wait runs out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use crate::cache::{Cache, KEY_SEPARATOR, Partition, checkpoint_scope};
use crate::config::AdminToken;
use crate::health::{Health, STALL_AFTER};
use crate::letters::DeadLetterTopic;
use crate::metrics::Metrics;

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    pub metrics: Metrics,
    pub health: Health,
    pub caches: BTreeMap<String, Arc<dyn Cache>>,
    /// Projection name -> where it writes and what it reads.
    pub projections: BTreeMap<String, Served>,
    /// The consumer group: with a cache's name, whose checkpoint it is.
    pub group: String,
    /// What the admin API's mutations demand; `None` refuses them all.
    pub admin_token: Option<AdminToken>,
    /// Where the admin API reads dead letters from, when there is a topic.
    pub dead_letters: Option<Arc<DeadLetterTopic>>,
    /// The projections' versions, for the admin API's rebuilds; `None` where
    /// nothing is rebuilt.
    pub rebuilds: Option<crate::rebuild::Catalog>,
}

/// A projection as the endpoints serve it.
#[derive(Debug, Clone)]
pub struct Served {
    pub cache: String,
    pub topics: Vec<String>,
}

impl AppState {
    /// Projection name -> cache name.
    pub fn cache_of(&self) -> BTreeMap<String, String> {
        self.projections
            .iter()
            .map(|(name, served)| (name.clone(), served.cache.clone()))
            .collect()
    }
}

/// The longest a read may wait for its position: short enough that waiting
/// reads still end within the pod's grace period after the drain (shutdown
/// stops serving only once the pipeline drained, then lets requests finish).
pub const MAX_WAIT: Duration = Duration::from_secs(10);
/// How often a waiting read looks at the checkpoint again.
const WAIT_POLL: Duration = Duration::from_millis(20);

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/projections/{name}/{id}", get(projection))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn healthz(State(state): State<AppState>) -> Response {
    let silent_ms = state.health.since_heartbeat_ms();
    if silent_ms > STALL_AFTER.as_millis() as u64 {
        let body = json!({"status": "stalled", "last_progress_ms_ago": silent_ms});
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    axum::Json(json!({"status": "alive"})).into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    let down = readiness(&state).await;
    state.metrics.ready.set(i64::from(down.is_empty()));
    if down.is_empty() {
        return axum::Json(json!({"status": "ready"})).into_response();
    }
    let body = json!({"status": "not ready", "down": down});
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}

/// What keeps the process from being ready (empty when it is): caches that do
/// not answer, a missing assignment, components stuck retrying. Refreshes
/// `projectionist_cache_up` on the way.
pub async fn readiness(state: &AppState) -> Vec<String> {
    let mut down = Vec::new();
    for (name, cache) in &state.caches {
        let up = cache.ping().await;
        state
            .metrics
            .cache_up
            .with_label_values(&[name])
            .set(i64::from(up));
        if !up {
            down.push(format!("cache {name}"));
        }
    }
    if !state.health.is_broker_reachable() {
        down.push("broker does not answer".to_owned());
    }
    if !state.health.is_assigned() {
        down.push("consumer has no partition assignment".to_owned());
    }
    for component in state.health.degraded() {
        down.push(format!("{component} failing, retrying"));
    }
    down
}

/// A position to wait for before reading (see the module docs).
#[derive(Debug, Deserialize)]
pub struct WaitFor {
    topic: Option<String>,
    partition: Option<i32>,
    offset: Option<i64>,
    wait_ms: Option<u64>,
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn projection(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    Query(wait): Query<WaitFor>,
) -> Response {
    let Some((served, cache)) = state
        .projections
        .get(&name)
        .and_then(|served| Some((served, state.caches.get(&served.cache)?)))
    else {
        return answer(
            StatusCode::NOT_FOUND,
            json!({"error": format!("no projection named {name:?}")}),
        );
    };
    match (wait.topic, wait.partition, wait.offset) {
        (None, None, None) => {}
        (Some(topic), Some(partition), Some(offset)) => {
            if !served.topics.contains(&topic) {
                let error = format!("{name} does not read topic {topic:?}");
                return answer(StatusCode::BAD_REQUEST, json!({"error": error}));
            }
            let partition = Partition::new(topic, partition);
            let scope = checkpoint_scope(&state.group, &served.cache);
            let wait_for = Duration::from_millis(wait.wait_ms.unwrap_or(0)).min(MAX_WAIT);
            if let Err(behind) =
                wait_applied(cache.as_ref(), &scope, &partition, offset, wait_for).await
            {
                return behind;
            }
        }
        _ => {
            let error = "topic, partition and offset come together";
            return answer(StatusCode::BAD_REQUEST, json!({"error": error}));
        }
    }
    let key = format!("{name}{KEY_SEPARATOR}{id}");
    match cache.get(&key).await {
        Ok(Some(projection)) => axum::Json(projection.into_value()).into_response(),
        Ok(None) => answer(
            StatusCode::NOT_FOUND,
            json!({"error": format!("{key} is absent")}),
        ),
        Err(error) => unavailable(&error),
    }
}

fn unavailable(error: &crate::cache::CacheError) -> Response {
    let status = if error.is_transient() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    answer(status, json!({"error": error.to_string()}))
}

/// Wait until the checkpoint of `scope` is past `offset` on `partition`, at
/// most `wait_for`; the refusal to send when it is not.
async fn wait_applied(
    cache: &dyn Cache,
    scope: &str,
    partition: &Partition,
    offset: i64,
    wait_for: Duration,
) -> Result<(), Response> {
    let deadline = tokio::time::Instant::now() + wait_for;
    loop {
        let applied = cache
            .applied(scope, partition)
            .await
            .map_err(|error| unavailable(&error))?;
        if applied.is_some_and(|next| next > offset) {
            return Ok(());
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            let body = json!({
                "status": "behind",
                "topic": partition.topic,
                "partition": partition.number,
                "offset": offset,
                // The next offset the projection's cache will apply.
                "applied": applied,
                "waited_ms": wait_for.as_millis() as u64,
            });
            return Err(answer(StatusCode::CONFLICT, body));
        }
        // The last look is at the deadline itself.
        tokio::time::sleep(WAIT_POLL.min(deadline - now)).await;
    }
}
