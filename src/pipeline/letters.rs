//! Permanent failures: logged with their position, counted, and sent to the
//! dead-letter topic before the commit that passes over them, so a letter is
//! never lost (a crash between the two sends it again: at least once).

use std::collections::HashMap;

use tracing::warn;

use super::commit::Reported;
use super::fold::{Folded, Work};
use super::plan::Plan;
use super::{Pipeline, PipelineError};
use crate::event::RawRecord;
use crate::metrics::NO_PROJECTION;
use crate::source::DeadLetter;

impl Pipeline {
    /// Log and count a permanent failure, and make its dead letter.
    pub(super) fn failure(
        &self,
        record: &RawRecord,
        projection: Option<&str>,
        reason: &'static str,
        error: String,
    ) -> DeadLetter {
        let position = &record.position;
        // The producer's trace, when it sent one, follows the failure into the logs.
        let traceparent = record
            .headers
            .iter()
            .find(|(name, _)| name == "traceparent")
            .and_then(|(_, value)| value.as_deref())
            .map(String::from_utf8_lossy);
        let span = match &traceparent {
            Some(traceparent) => tracing::warn_span!("event", %traceparent),
            None => tracing::Span::none(),
        };
        let _entered = span.enter();
        warn!(
            topic = %position.topic,
            partition = position.partition,
            offset = position.offset,
            projection = projection.unwrap_or(NO_PROJECTION),
            reason,
            %error,
            "event failed permanently and is passed over"
        );
        self.metrics
            .events_failed
            .with_label_values(&[projection.unwrap_or(NO_PROJECTION), reason])
            .inc();
        DeadLetter {
            record: record.clone(),
            projection: projection.map(str::to_owned),
            reason,
            error,
        }
    }

    /// Events on a key whose stored value is not JSON cannot be folded: they
    /// fail (once, however often the share is folded again) and leave `work`.
    pub(super) async fn letter_corrupt(
        &self,
        plan: &Plan,
        work: &mut Vec<Work>,
        corrupt: &HashMap<String, String>,
        reported: &mut Reported,
    ) -> Result<(), PipelineError> {
        let mut letters = Vec::new();
        work.retain(|item| {
            let Some(error) = corrupt.get(&item.key) else {
                return true;
            };
            if reported.insert((item.event, item.route)) {
                let name = &self.router.route(item.route).definition.name;
                let record = &plan.record_of(item.event).record;
                letters.push(self.failure(record, Some(name), "corrupt_state", error.clone()));
            }
            false
        });
        self.dead_letter(&letters).await
    }

    /// The projectors' refusals of this fold that were not reported before.
    pub(super) async fn letter_refusals(
        &self,
        plan: &Plan,
        folded: &Folded,
        reported: &mut Reported,
    ) -> Result<(), PipelineError> {
        let mut letters = Vec::new();
        for refusal in &folded.refusals {
            if !reported.insert((refusal.event, refusal.route)) {
                continue;
            }
            let name = &self.router.route(refusal.route).definition.name;
            let record = &plan.record_of(refusal.event).record;
            letters.push(self.failure(record, Some(name), refusal.reason, refusal.error.clone()));
        }
        self.dead_letter(&letters).await
    }

    /// Send `letters` to the dead-letter topic (when there is one), retrying
    /// while the broker is unavailable.
    pub(super) async fn dead_letter(&self, letters: &[DeadLetter]) -> Result<(), PipelineError> {
        if letters.is_empty() {
            return Ok(());
        }
        let Some(sink) = &self.dead_letters else {
            return Ok(());
        };
        self.retry
            .run("dead_letter", || sink.send(letters))
            .await
            .map_err(PipelineError::DeadLetter)?;
        for letter in letters {
            self.metrics
                .events_dead_lettered
                .with_label_values(&[
                    letter.projection.as_deref().unwrap_or(NO_PROJECTION),
                    letter.reason,
                ])
                .inc();
        }
        Ok(())
    }
}
