//! `GET /admin/dead-letters` (the letters from the start of the dead-letter
//! topic: what failed, why, where it came from) and
//! `GET /admin/dead-letters/{partition}/{offset}` (one letter whole). Reading
//! moves nothing: no group is joined, no offset committed.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::error;
use crate::config::KafkaSettings;
use crate::http::AppState;
use crate::source::kafka::{list_letters, read_letter};

/// Letters listed when the request names no limit, and the most it may name.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// Where the letters are.
#[derive(Debug, Clone)]
pub struct DeadLetterTopic {
    pub kafka: KafkaSettings,
    pub topic: String,
}

#[derive(Debug, Deserialize)]
pub struct Listing {
    limit: Option<usize>,
}

/// The answer when there is no dead-letter topic to read.
fn no_topic() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no kafka.dead_letter_topic is configured".to_owned(),
    )
}

pub async fn list(State(state): State<AppState>, Query(listing): Query<Listing>) -> Response {
    let Some(letters) = state.dead_letters.as_deref().cloned() else {
        return no_topic();
    };
    let limit = listing.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let topic = letters.topic.clone();
    // librdkafka's calls block: off the async threads.
    let read =
        tokio::task::spawn_blocking(move || list_letters(&letters.kafka, &letters.topic, limit))
            .await;
    match read {
        Ok(Ok(found)) => axum::Json(json!({"topic": topic, "letters": found})).into_response(),
        Ok(Err(failure)) => error(StatusCode::SERVICE_UNAVAILABLE, failure.to_string()),
        Err(failure) => error(StatusCode::INTERNAL_SERVER_ERROR, failure.to_string()),
    }
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
