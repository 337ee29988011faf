//! The HTTP endpoints: `/metrics` (Prometheus text), `/healthz` (the consume loop
//! is making progress), `/readyz` (every cache answers `ping()` and the consumer
//! holds its assignment), and `GET /projections/{name}/{id}` (one projection read
//! through the cache port: how a user looks into the memory cache).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::cache::{Cache, KEY_SEPARATOR};
use crate::health::{Health, STALL_AFTER};
use crate::metrics::Metrics;

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    pub metrics: Metrics,
    pub health: Health,
    pub caches: BTreeMap<String, Arc<dyn Cache>>,
    /// Projection name -> cache name, for `/projections/{name}/{id}`.
    pub projections: BTreeMap<String, String>,
}

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
    if !state.health.is_assigned() {
        down.push("consumer has no partition assignment".to_owned());
    }
    for component in state.health.degraded() {
        down.push(format!("{component} failing, retrying"));
    }
    down
}

async fn projection(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    let not_found = |message: String| {
        (StatusCode::NOT_FOUND, axum::Json(json!({"error": message}))).into_response()
    };
    let Some(cache) = state
        .projections
        .get(&name)
        .and_then(|cache| state.caches.get(cache))
    else {
        return not_found(format!("no projection named {name:?}"));
    };
    let key = format!("{name}{KEY_SEPARATOR}{id}");
    match cache.get(&key).await {
        Ok(Some(projection)) => axum::Json(projection.into_value()).into_response(),
        Ok(None) => not_found(format!("{key} is absent")),
        Err(error) if error.is_transient() => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error": error.to_string()})),
        )
            .into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": error.to_string()})),
        )
            .into_response(),
    }
}
