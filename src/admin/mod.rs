//! The operator's API, on a listener of its own (`admin.listen`) so it never
//! sits behind the metrics Service: `GET /admin/status` (every projection and
//! partition this replica owns: state, lag in offsets and seconds, pauses) and
//! `POST /admin/projections/{name}/pause|resume`, and the dead letters
//! ([`letters`]: list, show one; [`replay`]: replay, purge), and rebuilds
//! ([`rebuilds`]: progress, start, promote, roll back, collect). Mutations demand
//! `Authorization: Bearer <admin.token>`; without a configured token they are
//! all refused. [`cli`] is the command line over it, [`client`] its HTTP.

pub mod cli;
pub mod client;
pub mod letters;
pub mod rebuild_cli;
pub mod rebuilds;
pub mod replay;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tracing::{info, warn};

use crate::http::AppState;
use crate::status::{ProjectionStatus, load_pauses};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/admin/status", get(status))
        .route("/admin/projections/{name}/pause", post(pause))
        .route("/admin/projections/{name}/resume", post(resume))
        .route(
            "/admin/projections/{name}/rebuild",
            get(rebuilds::show).post(rebuilds::start),
        )
        .route(
            "/admin/projections/{name}/rebuild/promote",
            post(rebuilds::promote),
        )
        .route(
            "/admin/projections/{name}/rebuild/rollback",
            post(rebuilds::rollback),
        )
        .route(
            "/admin/projections/{name}/rebuild/collect",
            post(rebuilds::collect),
        )
        .route("/admin/dead-letters", get(letters::list))
        .route(
            "/admin/dead-letters/{partition}/{offset}",
            get(letters::show),
        )
        .route("/admin/dead-letters/replay", post(replay::replay))
        .route("/admin/dead-letters/purge", post(replay::purge))
        .with_state(state)
}

/// Every projection as this replica sees it.
pub fn statuses(state: &AppState) -> Vec<ProjectionStatus> {
    let progress = state.health.progress();
    let failing = state.health.failing();
    let pauses = progress.pauses();
    state
        .projections
        .iter()
        .map(|(name, served)| {
            let partitions = progress.partitions(&served.cache, &served.topics);
            let held_by = pauses.held_by(&served.cache);
            ProjectionStatus::new(name, &served.cache, held_by, failing, partitions)
        })
        .collect()
}

async fn status(State(state): State<AppState>) -> Response {
    let mut rebuilds = serde_json::Map::new();
    if let Some(catalog) = &state.rebuilds {
        for name in state.projections.keys() {
            if let Ok(Some(versions)) = catalog.state(name).await {
                rebuilds.insert(name.clone(), json!(versions));
            }
        }
    }
    let body = json!({
        "group": state.group,
        "ready": crate::http::readiness(&state).await.is_empty(),
        "projections": statuses(&state),
        // Each projection's live version and its shadow, if any; how far
        // a shadow stands is at /admin/projections/{name}/rebuild.
        "versions": rebuilds,
    });
    axum::Json(body).into_response()
}

async fn pause(state: State<AppState>, headers: HeaderMap, name: Path<String>) -> Response {
    set_paused(state, headers, name, true).await
}

async fn resume(state: State<AppState>, headers: HeaderMap, name: Path<String>) -> Response {
    set_paused(state, headers, name, false).await
}

pub(crate) fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({"error": message}))).into_response()
}

/// `None` when the request carries the configured token; else the refusal.
fn refusal(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = &state.admin_token else {
        return Some(error(
            StatusCode::FORBIDDEN,
            "admin.token is not configured: mutations are disabled".to_owned(),
        ));
    };
    let offered = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if offered.is_some_and(|offered| token.matches(offered.trim())) {
        return None;
    }
    warn!("admin request refused: missing or wrong bearer token");
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "a bearer token is required (Authorization: Bearer <admin.token>)".to_owned(),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        "Bearer".parse().expect("a valid header value"),
    );
    Some(response)
}

/// Record the pause in the projection's cache, where every replica reads it,
/// and take it into effect here at once.
async fn set_paused(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    paused: bool,
) -> Response {
    if let Some(refused) = refusal(&state, &headers) {
        return refused;
    }
    let Some(served) = state.projections.get(&name) else {
        let known: Vec<&String> = state.projections.keys().collect();
        return error(
            StatusCode::NOT_FOUND,
            format!("no projection named {name:?} (known: {known:?})"),
        );
    };
    let Some(cache) = state.caches.get(&served.cache) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("no cache {:?}", served.cache),
        );
    };
    if let Err(failure) = cache.set_paused(&state.group, &name, paused).await {
        return error(StatusCode::SERVICE_UNAVAILABLE, failure.to_string());
    }
    let caches = &state.caches;
    let cache_of = state.cache_of();
    match load_pauses(caches, &cache_of, &state.group).await {
        Ok(pauses) => state.health.progress().set_pauses(pauses),
        // Recorded: the watcher takes it up on its next read.
        Err(failure) => warn!(error = %failure, "pauses could not be read back"),
    }
    let held = state.health.progress().pauses().held_by(&served.cache);
    info!(projection = %name, paused, cache = %served.cache, "pause changed by operator");
    axum::Json(json!({
        "projection": name,
        "paused": paused,
        "cache": served.cache,
        // Every projection of the cache waits while any of them is paused.
        "cache_held_by": held,
    }))
    .into_response()
}
