//! The first step of a chunk: decode every admitted record, route each event
//! to the projections it feeds and name the key each one touches. Records that
//! cannot be decoded or keyed become dead letters here.

use std::collections::BTreeMap;

use super::Pipeline;
use super::fold::Work;
use super::positions::Admitted;
use super::replayed::Replayable;
use crate::cache::Partition;
use crate::event::{Event, decode};
use crate::metrics::NO_PROJECTION;
use crate::source::DeadLetter;

/// A chunk's records, decoded and routed.
pub struct Plan {
    pub records: Vec<Admitted>,
    /// The decoded events, and for each the index of its record.
    pub events: Vec<Event>,
    pub sources: Vec<usize>,
    /// Every (event, projection) application, in record order.
    pub work: Vec<Work>,
    /// Records that failed before any projection ran.
    pub letters: Vec<DeadLetter>,
    /// Each partition's admitted records (indexes into `records`), in order.
    pub partitions: Vec<(Partition, Vec<usize>)>,
}

impl Plan {
    /// The record an event (by index) came from.
    pub fn record_of(&self, event: usize) -> &Admitted {
        &self.records[self.sources[event]]
    }

    /// Per partition, the timestamp of its newest record that has one: a
    /// record without one says nothing of how far the partition is.
    pub fn newest_timestamps(&self) -> Vec<(Partition, Option<i64>)> {
        self.partitions
            .iter()
            .map(|(partition, indexes)| {
                let newest = indexes
                    .iter()
                    .rev()
                    .find_map(|&index| self.records[index].record.timestamp_ms);
                (partition.clone(), newest)
            })
            .collect()
    }
}

impl Pipeline {
    /// Plan `plan`'s records again with the routes as they are now, and
    /// dead-letter only the failures the first plan did not.
    pub(super) async fn replan(&mut self, plan: Plan) -> Result<Plan, super::PipelineError> {
        let letter_of = |letter: &DeadLetter| {
            let position = &letter.record.position;
            (
                position.topic.clone(),
                position.partition,
                position.offset,
                letter.projection.clone(),
            )
        };
        let sent: std::collections::HashSet<_> = plan.letters.iter().map(letter_of).collect();
        let replanned = self.plan(plan.records);
        let fresh: Vec<DeadLetter> = replanned
            .letters
            .iter()
            .filter(|letter| !sent.contains(&letter_of(letter)))
            .cloned()
            .collect();
        self.dead_letter(&fresh).await?;
        Ok(replanned)
    }

    pub(super) fn plan(&self, records: Vec<Admitted>) -> Plan {
        let mut plan = Plan {
            events: Vec::with_capacity(records.len()),
            sources: Vec::with_capacity(records.len()),
            work: Vec::new(),
            letters: Vec::new(),
            partitions: Vec::new(),
            records: Vec::new(),
        };
        for (index, admitted) in records.iter().enumerate() {
            let record = &admitted.record;
            let position = &record.position;
            // A chunk spans a few partitions: a scan beats hashing a topic name
            // (and allocating one) per record.
            let known = plan.partitions.iter().position(|(partition, _)| {
                partition.number == position.partition && *partition.topic == *position.topic
            });
            match known {
                Some(at) => plan.partitions[at].1.push(index),
                None => plan.partitions.push((
                    Partition::new(&*position.topic, position.partition),
                    vec![index],
                )),
            }
            match self.replayable(record) {
                Replayable::Yes => {}
                Replayable::Duplicate => continue,
                Replayable::Refused(letter) => {
                    plan.letters.push(*letter);
                    continue;
                }
            }
            let mut event = match decode(record, &self.envelope) {
                Ok(event) => event,
                Err(error) => {
                    let letter = self.failure(record, None, error.reason(), error.to_string());
                    plan.letters.push(letter);
                    continue;
                }
            };
            let routes = match self.routes_of(record, &mut event) {
                Ok(routes) => routes,
                Err(letter) => {
                    plan.letters.push(*letter);
                    continue;
                }
            };
            if routes.is_empty() {
                self.metrics
                    .events_skipped
                    .with_label_values(&[NO_PROJECTION, "unrouted_type"])
                    .inc();
                continue;
            }
            for &route in routes.iter() {
                let definition = &self.router.route(route).definition;
                match definition.identifier.render_key(&definition.name, &event) {
                    Ok(key) => plan.work.push(Work {
                        event: plan.events.len(),
                        route,
                        key,
                    }),
                    Err(error) => plan.letters.push(self.failure(
                        record,
                        Some(&definition.name),
                        "missing_identifier",
                        error,
                    )),
                }
            }
            plan.events.push(event);
            plan.sources.push(index);
        }
        plan.records = records;
        plan
    }

    /// Counted per topic once a chunk: a labelled counter is a locked lookup.
    pub(super) fn count_consumed(&self, records: &[Admitted]) {
        let mut consumed: BTreeMap<&str, u64> = BTreeMap::new();
        for admitted in records {
            *consumed
                .entry(&*admitted.record.position.topic)
                .or_default() += 1;
        }
        for (topic, count) in consumed {
            self.metrics
                .events_consumed
                .with_label_values(&[topic])
                .inc_by(count);
        }
    }
}
