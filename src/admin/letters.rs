//! `GET /admin/dead-letters` (the letters from the start of the dead-letter
//! topic, or with `pending=true` from where they are pending: what failed,
//! why, where it came from, and whether it is still pending) and
//! `GET /admin/dead-letters/{partition}/{offset}` (one letter whole). Reading
//! moves nothing: no group is joined, no offset committed. Replaying and
//! purging them is [`super::replay`]'s.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::warn;

use super::error;

use crate::http::AppState;
use crate::letters::{Caches, DeadLetterTopic, caches_in_use, handled};
use crate::source::kafka::{letter_partitions, list_letters, read_letter};

/// Letters listed when the request names no limit, and the most it may name.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listing {
    limit: Option<usize>,
    /// Only the letters still pending, read from where they start.
    #[serde(default)]
    pending: bool,
}

/// The answer when there is no dead-letter topic to read.
pub(super) fn no_topic() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no kafka.dead_letter_topic is configured".to_owned(),
    )
}

/// The caches the projections write to: each keeps a letters checkpoint.
pub(super) fn letter_caches(state: &AppState) -> Caches {
    let used = state
        .projections
        .values()
        .map(|served| served.cache.clone());
    caches_in_use(&state.caches, used)
}

pub async fn list(State(state): State<AppState>, Query(listing): Query<Listing>) -> Response {
    let Some(letters) = state.dead_letters.as_deref().cloned() else {
        return no_topic();
    };
    let limit = listing.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let topic = letters.topic.clone();
    let caches = letter_caches(&state);
    // Without the checkpoints the letters are still worth listing, with
    // their state unknown; a listing of the pending ones needs them.
    let checkpoints = match pending_from(&caches, &state.group, &letters).await {
        Ok(checkpoints) => Some(checkpoints),
        Err(failure) if listing.pending => {
            return error(StatusCode::SERVICE_UNAVAILABLE, failure);
        }
        Err(failure) => {
            warn!(error = %failure, "dead-letter checkpoints unreadable; listing without states");
            None
        }
    };
    let from = match (&checkpoints, listing.pending) {
        (Some(checkpoints), true) => checkpoints.clone(),
        _ => BTreeMap::new(),
    };
    // librdkafka's calls block: off the async threads.
    let read = tokio::task::spawn_blocking(move || {
        list_letters(&letters.kafka, &letters.topic, limit, &from)
    })
    .await;
    let found = match read {
        Ok(Ok(found)) => found,
        Ok(Err(failure)) => return error(StatusCode::SERVICE_UNAVAILABLE, failure.to_string()),
        Err(failure) => return error(StatusCode::INTERNAL_SERVER_ERROR, failure.to_string()),
    };
    let mut listed = Vec::with_capacity(found.len());
    for letter in found {
        let pending = checkpoints.as_ref().map(|checkpoints| {
            checkpoints
                .get(&letter.partition)
                .is_none_or(|&next| letter.offset >= next)
        });
        let mut value = serde_json::to_value(&letter).unwrap_or(Value::Null);
        value["state"] = match pending {
            Some(true) => json!("pending"),
            Some(false) => json!("handled"),
            None => Value::Null,
        };
        listed.push(value);
    }
    axum::Json(json!({
        "topic": topic,
        // Per partition, the offset from which letters are pending.
        "pending_from": checkpoints,
        "letters": listed,
    }))
    .into_response()
}

/// Per partition the lowest letters checkpoint; partitions no replay or
/// purge took up are absent (pending from their start).
async fn pending_from(
    caches: &Caches,
    group: &str,
    letters: &DeadLetterTopic,
) -> Result<BTreeMap<i32, i64>, String> {
    let kafka = letters.kafka.clone();
    let topic = letters.topic.clone();
    let partitions = tokio::task::spawn_blocking(move || letter_partitions(&kafka, &topic))
        .await
        .map_err(|failure| failure.to_string())?
        .map_err(|failure| failure.to_string())?;
    let handled = handled(caches, group, &letters.topic, partitions)
        .await
        .map_err(|failure| failure.to_string())?;
    Ok(handled
        .into_iter()
        .filter_map(|(partition, next)| Some((partition, next?)))
        .collect())
}

pub async fn show(
    State(state): State<AppState>,
    Path((partition, offset)): Path<(i32, i64)>,
) -> Response {
    let Some(letters) = state.dead_letters.as_deref().cloned() else {
        return no_topic();
    };
    let read = tokio::task::spawn_blocking(move || {
        read_letter(&letters.kafka, &letters.topic, partition, offset)
    })
    .await;
    match read {
        Ok(Ok(Some(letter))) => axum::Json(letter).into_response(),
        Ok(Ok(None)) => error(
            StatusCode::NOT_FOUND,
            format!("no dead letter at {partition}/{offset}"),
        ),
        Ok(Err(failure)) => error(StatusCode::SERVICE_UNAVAILABLE, failure.to_string()),
        Err(failure) => error(StatusCode::INTERNAL_SERVER_ERROR, failure.to_string()),
    }
}
