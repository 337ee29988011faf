//! The admin API's rebuilds: `GET /admin/projections/{name}/rebuild` (the
//! state and how far the shadow stands from the live version) and, with the
//! token, `POST` to it (start), `.../promote`, `.../rollback` and
//! `.../collect`.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{error, refusal};
use crate::cache::Partition;
use crate::http::AppState;
use crate::rebuild::catalog::CatalogError;
use crate::rebuild::progress::measure;
use crate::rebuild::{Catalog, Role, promote};
use crate::source::kafka::offsets_at;

/// How long a promotion waits, unless asked, for the shadow to reach the
/// live version once the live writers hold.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);
const MAX_WAIT: Duration = Duration::from_secs(300);

#[derive(Debug, Deserialize)]
pub struct Wait {
    wait_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct From {
    /// RFC 3339: build from the first records at or after this time.
    from: Option<String>,
}

fn failure(failure: CatalogError) -> Response {
    let status = match &failure {
        CatalogError::Invalid { .. } => StatusCode::CONFLICT,
        CatalogError::Cache(_) | CatalogError::Broker(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, failure.to_string())
}

/// The catalog and the projection's partitions, or why not.
async fn scope(state: &AppState, name: &str) -> Result<(Catalog, Vec<Partition>), Response> {
    let Some(catalog) = state.rebuilds.clone() else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "this process does not rebuild".to_owned(),
        ));
    };
    if !state.projections.contains_key(name) {
        let known: Vec<&String> = state.projections.keys().collect();
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("no projection named {name:?} (known: {known:?})"),
        ));
    }
    let partitions = catalog.partitions(name).await.map_err(failure)?;
    Ok((catalog, partitions))
}

pub async fn show(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let (catalog, partitions) = match scope(&state, &name).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let current = match catalog.state(&name).await {
        Ok(current) => current,
        Err(failed) => return failure(failed),
    };
    let shadow = current.as_ref().and_then(|current| current.shadow.clone());
    let progress = match &shadow {
        Some(shadow) => match measure(&catalog, &name, shadow, &partitions).await {
            Ok(progress) => Some(progress),
            Err(failed) => return failure(failed),
        },
        None => None,
    };
    axum::Json(json!({
        "projection": name,
        "live_version": current.as_ref().map(|current| current.live),
        "shadow": shadow,
        "progress": progress.as_ref().map(|progress| json!({
            "live": progress.live,
            "remaining": progress.remaining,
            "ratio": progress.ratio(),
            "level": progress.level(),
            "partitions": progress.partitions,
        })),
    }))
    .into_response()
}

pub async fn start(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(from): Query<From>,
) -> Response {
    if let Some(refused) = refusal(&state, &headers) {
        return refused;
    }
    let time = match from
        .from
        .as_deref()
        .map(chrono::DateTime::parse_from_rfc3339)
    {
        None => None,
        Some(Ok(time)) => Some(time.timestamp_millis()),
        Some(Err(problem)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "from = {:?} is not an RFC 3339 time such as 2026-11-01T00:00:00Z: {problem}",
                    from.from.unwrap_or_default()
                ),
            );
        }
    };
    let (catalog, partitions) = match scope(&state, &name).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let from = match time {
        None => None,
        Some(time) => {
            let kafka = catalog.settings().kafka.clone();
            let asked = partitions.clone();
            let found = tokio::task::spawn_blocking(move || offsets_at(&kafka, &asked, time)).await;
            match found {
                Ok(Ok(offsets)) => Some((time, offsets)),
                Ok(Err(broker)) => {
                    return error(StatusCode::SERVICE_UNAVAILABLE, broker.to_string());
                }
                Err(joined) => return error(StatusCode::INTERNAL_SERVER_ERROR, joined.to_string()),
            }
        }
    };
    match promote::start(&catalog, &name, from, &partitions).await {
        Ok(shadow) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"projection": name, "shadow": shadow})),
        )
            .into_response(),
        Err(failed) => failure(failed),
    }
}

pub async fn promote(
    state: State<AppState>,
    headers: HeaderMap,
    name: Path<String>,
    wait: Query<Wait>,
) -> Response {
    switch(state, headers, name, wait, None).await
}

pub async fn rollback(
    state: State<AppState>,
    headers: HeaderMap,
    name: Path<String>,
    wait: Query<Wait>,
) -> Response {
    switch(state, headers, name, wait, Some(Role::Previous)).await
}

/// Promote the shadow; for a rollback, only the previous version.
async fn switch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(wait): Query<Wait>,
    only: Option<Role>,
) -> Response {
    if let Some(refused) = refusal(&state, &headers) {
        return refused;
    }
    // A replay folds letters with the version it started with: not across
    // a switch.
    if let Some(letters) = &state.dead_letters
        && letters.busy.try_lock().is_err()
    {
        return error(
            StatusCode::CONFLICT,
            "a dead-letter replay is running on this replica: promote once it is done".to_owned(),
        );
    }
    let (catalog, partitions) = match scope(&state, &name).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    if let Some(role) = only {
        let shadow = match catalog.state(&name).await {
            Ok(current) => current.and_then(|current| current.shadow),
            Err(failed) => return failure(failed),
        };
        if shadow.as_ref().is_none_or(|shadow| shadow.role != role) {
            return error(
                StatusCode::CONFLICT,
                format!(
                    "{name:?} has no previous version to roll back to (never promoted, or collected)"
                ),
            );
        }
    }
    let wait = wait
        .wait_secs
        .map_or(DEFAULT_WAIT, Duration::from_secs)
        .min(MAX_WAIT);
    match promote::promote(&catalog, &name, &partitions, wait).await {
        Ok(promoted) => {
            axum::Json(json!({"projection": name, "promoted": promoted})).into_response()
        }
        Err(failed) => failure(failed),
    }
}

pub async fn collect(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Some(refused) = refusal(&state, &headers) {
        return refused;
    }
    let (catalog, _) = match scope(&state, &name).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    match promote::collect(&catalog, &name).await {
        Ok(removed) => axum::Json(json!({"projection": name, "removed": removed})).into_response(),
        Err(failed) => failure(failed),
    }
}
