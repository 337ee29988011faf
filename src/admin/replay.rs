//! `POST /admin/dead-letters/replay` and `POST /admin/dead-letters/purge`
//! (bearer token): take up the pending letters, all of them or those of one
//! `partition` up to and including offset `to`, applying each once to the
//! projection it failed for ([`crate::letters::replay`]) or marking it
//! handled ([`crate::letters::purge`]). The answer comes when it is done,
//! with what the checkpoints say.
//!
//! The work runs in a task of its own: a client that hangs up does not cut
//! a replay short (nothing would be lost, but it would stop for no reason).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tracing::{info, warn};

use super::letters::{letter_caches, no_topic};
use super::{error, refusal};
use crate::http::AppState;
use crate::letters::{self, DeadLetterTopic, LettersError, Replay, Target};
use crate::source::kafka::{KafkaDeadLetters, KafkaLetterLog};
use crate::source::{DeadLetters, SourceError};

/// A replay stops, unfinished, when the dead-letter topic sends nothing for
/// this long while letters are still unread.
const IDLE: Duration = Duration::from_secs(30);

/// Which letters: `partition` and `to` (inclusive), or `all` (purge only:
/// purging everything must be said).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Taking {
    partition: Option<i32>,
    to: Option<i64>,
    #[serde(default)]
    all: bool,
}

impl Taking {
    fn target(&self) -> Target {
        Target {
            partition: self.partition,
            to: self.to,
        }
    }
}

pub async fn replay(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(taking): Query<Taking>,
) -> Response {
    let letters = match admit(&state, &headers) {
        Ok(letters) => letters,
        Err(refused) => return *refused,
    };
    if taking.all {
        return error(
            StatusCode::BAD_REQUEST,
            "a replay takes up every pending letter unless told otherwise: `all` is for purge"
                .to_owned(),
        );
    }
    // A paused projection's cache writes nothing: its letters would stay
    // pending, and the pause is there for a reason.
    let held = state.health.progress().pauses().held_caches();
    if !held.is_empty() {
        return error(
            StatusCode::CONFLICT,
            format!("caches {held:?} are held by a pause: resume their projections first"),
        );
    }
    // A letter folded with the version a promotion is replacing would land
    // beside the keys it rotates in.
    if let Some(catalog) = &state.rebuilds {
        for name in state.projections.keys() {
            if let Ok(Some(versions)) = catalog.state(name).await
                && versions.shadow.is_some_and(|shadow| shadow.promoting)
            {
                return error(
                    StatusCode::CONFLICT,
                    format!("{name:?} is being promoted: replay the letters once it is done"),
                );
            }
        }
    }
    let Ok(busy) = Arc::clone(&letters.busy).try_lock_owned() else {
        return busy_here();
    };
    let metrics = state.metrics.clone();
    let group = state.group.clone();
    let target = taking.target();
    let catalog = state.rebuilds.clone();
    let task = tokio::spawn(async move {
        let _busy = busy;
        let mut replay = replay_of(&letters, group, metrics.clone()).await?;
        // Letters are applied with the live versions, which a promotion may
        // have changed since the daemon started.
        if let Some(catalog) = &catalog {
            replay.router = catalog
                .live_router(&replay.router)
                .await
                .map_err(|failure| {
                    crate::pipeline::PipelineError::Definitions(failure.to_string())
                })?;
        }
        let report = letters::replay(replay, target).await?;
        let handled = &metrics.dead_letters_handled;
        handled
            .with_label_values(&["replayed"])
            .inc_by(report.replayed);
        handled
            .with_label_values(&["failed_again"])
            .inc_by(report.failed_again as u64);
        handled
            .with_label_values(&["duplicate"])
            .inc_by(report.duplicates);
        info!(
            replayed = report.replayed,
            failed_again = report.failed_again,
            duplicates = report.duplicates,
            finished = report.finished,
            "dead letters replayed"
        );
        Ok::<_, LettersError>(report)
    });
    match task.await {
        Ok(Ok(report)) => axum::Json(report).into_response(),
        Ok(Err(failure)) => answer(&failure),
        Err(failure) => error(StatusCode::INTERNAL_SERVER_ERROR, failure.to_string()),
    }
}

pub async fn purge(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(taking): Query<Taking>,
) -> Response {
    let letters = match admit(&state, &headers) {
        Ok(letters) => letters,
        Err(refused) => return *refused,
    };
    if taking.partition.is_none() && !taking.all {
        return error(
            StatusCode::BAD_REQUEST,
            "name the letters to purge: a partition (and an offset to stop at), or all of them"
                .to_owned(),
        );
    }
    if taking.all && (taking.partition.is_some() || taking.to.is_some()) {
        return error(
            StatusCode::BAD_REQUEST,
            "`all` purges every partition: it takes no partition or offset".to_owned(),
        );
    }
    let Ok(busy) = Arc::clone(&letters.busy).try_lock_owned() else {
        return busy_here();
    };
    let caches = letter_caches(&state);
    let group = state.group.clone();
    let metrics = state.metrics.clone();
    let target = taking.target();
    let task = tokio::spawn(async move {
        let _busy = busy;
        let log = letter_log(&letters).await?;
        let report = letters::purge(&caches, &group, &letters.topic, &log, target).await?;
        metrics
            .dead_letters_handled
            .with_label_values(&["purged"])
            .inc_by(report.purged);
        Ok::<_, LettersError>(report)
    });
    match task.await {
        Ok(Ok(report)) => axum::Json(report).into_response(),
        Ok(Err(failure)) => answer(&failure),
        Err(failure) => error(StatusCode::INTERNAL_SERVER_ERROR, failure.to_string()),
    }
}

/// The dead-letter topic, for a caller with the token.
fn admit(state: &AppState, headers: &HeaderMap) -> Result<DeadLetterTopic, Box<Response>> {
    if let Some(refused) = refusal(state, headers) {
        return Err(Box::new(refused));
    }
    let topic = state.dead_letters.as_deref().cloned();
    topic.ok_or_else(|| Box::new(no_topic()))
}

fn busy_here() -> Response {
    error(
        StatusCode::CONFLICT,
        "a replay or purge is already running on this replica".to_owned(),
    )
}

fn answer(failure: &LettersError) -> Response {
    let status = if failure.is_bad_request() {
        StatusCode::BAD_REQUEST
    } else if matches!(failure, LettersError::Contended(_)) {
        StatusCode::CONFLICT
    } else if failure.is_transient() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    if !failure.is_bad_request() {
        warn!(error = %failure, "dead letters not taken up");
    }
    error(status, failure.to_string())
}

async fn letter_log(letters: &DeadLetterTopic) -> Result<KafkaLetterLog, LettersError> {
    let (kafka, topic) = (letters.kafka.clone(), letters.topic.clone());
    let created = tokio::task::spawn_blocking(move || KafkaLetterLog::new(&kafka, &topic)).await;
    created
        .map_err(|failure| SourceError::Permanent(format!("dead-letter reader: {failure}")))?
        .map_err(LettersError::from)
}

async fn replay_of(
    letters: &DeadLetterTopic,
    group: String,
    metrics: crate::metrics::Metrics,
) -> Result<Replay, LettersError> {
    let log = letter_log(letters).await?;
    let sink: Arc<dyn DeadLetters> = Arc::new(KafkaDeadLetters::new(
        &letters.kafka,
        &letters.topic,
        metrics,
    )?);
    Ok(Replay {
        router: letters.router.clone(),
        envelope: letters.envelope.clone(),
        group,
        topic: letters.topic.clone(),
        log: Arc::new(log),
        sink,
        batch_size: letters.pipeline.batch_size,
        max_backoff: letters.pipeline.max_backoff,
        idle: IDLE,
        stop: letters.stop.clone(),
    })
}
