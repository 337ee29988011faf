//! The pipeline over dead letters (see [`crate::letters`]): records are read
//! from the dead-letter topic and checkpointed there, in a scope of their own,
//! so the ordinary commit (writes and advance, one atomic step) applies each
//! letter once. What differs is only which projections a letter feeds:
//!
//! - it is routed by the topic its record came from, not the one it is read
//!   from, and the event carries its original position;
//! - only to the projection it failed for (its `projectionist.projection`
//!   header): the other projections of that record applied it when it first
//!   came. A letter that names none failed before any projection ran, so
//!   every projection of its type missed it;
//! - a letter whose original payload was cut (too large for the topic) is not
//!   the event, and fails again rather than being applied as something else.

use std::borrow::Cow;
use std::collections::BTreeSet;

use super::Pipeline;
use crate::event::{Event, RawRecord};
use crate::source::DeadLetter;
use crate::source::headers::{self, Origin};

/// A header the replay puts on a letter it read before under the same
/// origin (the same record, failed for the same projection): sent twice by a
/// crash between the letter and the checkpoint. It is passed over, so the
/// event is applied once.
pub const DUPLICATE_OF: &str = "projectionist.replay.duplicate_of";

/// What becomes of a record before it is decoded.
pub(super) enum Replayable {
    Yes,
    /// A second letter about one failure: passed over, its checkpoint moves.
    Duplicate,
    /// It fails again, as this letter.
    Refused(Box<DeadLetter>),
}

impl Pipeline {
    /// This pipeline applies dead letters read from `topic`: every cache
    /// checkpoints that topic's partitions (in the scope of the group the
    /// pipeline was wired with).
    pub fn replaying_letters(mut self, topic: &str) -> Pipeline {
        for slot in &mut self.caches {
            slot.topics = BTreeSet::from([topic.to_owned()]);
        }
        self.letters = Some(topic.to_owned());
        self
    }

    /// Whether a record is taken up, before it is decoded: always, unless
    /// this pipeline replays letters and this one is a duplicate or cannot
    /// be replayed as it is.
    pub(super) fn replayable(&self, record: &RawRecord) -> Replayable {
        if self.letters.is_none() {
            return Replayable::Yes;
        }
        let Some(origin) = Origin::of(&record.headers) else {
            let error = format!(
                "the record has no {} header: it is not a dead letter",
                headers::SOURCE_TOPIC
            );
            let letter = self.failure(record, None, "not_a_letter", error);
            return Replayable::Refused(Box::new(letter));
        };
        if headers::text(&record.headers, DUPLICATE_OF).is_some() {
            return Replayable::Duplicate;
        }
        if !origin.truncated {
            return Replayable::Yes;
        }
        let size = headers::text(&record.headers, headers::ORIGINAL_SIZE).unwrap_or("?");
        let error = format!(
            "the letter holds only part of the original record ({size} bytes): read it from {} \
             while the topic keeps it",
            origin.position
        );
        let projection = origin.projection.as_deref();
        let letter = self.failure(record, projection, "truncated_letter", error);
        Replayable::Refused(Box::new(letter))
    }

    /// The routes `event` feeds. A letter's event is given its original
    /// position; a letter naming a projection that no longer exists fails
    /// again.
    pub(super) fn routes_of(
        &self,
        record: &RawRecord,
        event: &mut Event,
    ) -> Result<Cow<'_, [usize]>, Box<DeadLetter>> {
        if self.letters.is_none() {
            let position = &record.position;
            return Ok(Cow::Borrowed(
                self.router.routes_for(&position.topic, &event.event_type),
            ));
        }
        let origin = Origin::of(&record.headers)
            .expect("a letter without an origin is refused before it is decoded");
        event.position = origin.position.clone();
        let routes = self
            .router
            .routes_for(&origin.position.topic, &event.event_type);
        let Some(projection) = &origin.projection else {
            return Ok(Cow::Borrowed(routes));
        };
        let known = (0..self.router.len())
            .any(|route| &self.router.route(route).definition.name == projection);
        if !known {
            let error = format!("no projection named {projection:?} is defined any more");
            let letter = self.failure(record, Some(projection), "unknown_projection", error);
            return Err(Box::new(letter));
        }
        let named = routes
            .iter()
            .copied()
            .filter(|&route| &self.router.route(route).definition.name == projection)
            .collect();
        Ok(Cow::Owned(named))
    }
}
