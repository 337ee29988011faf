//! Admission: which delivered records a partition's stream takes, in order,
//! and what becomes of the rest (dropped as redelivered or stale, a gap read
//! again by a seek, a log that lost the checkpoint's offset halted).

use std::collections::HashMap;

use tracing::{error, warn};

use super::{Admitted, Halt, Positioning, Positions, Stream};
use crate::event::RawRecord;
use crate::metrics::Metrics;
use crate::source::SourceControl;

/// Seeks answered from before the sought offset, in a row, before the log is
/// taken to have lost it (see [`Halt::Reset`]).
const SEEKS_BEFORE_RESET: u8 = 3;

impl Positions {
    /// Keep the records to apply, in order; drop redeliveries and stale
    /// records, and seek back over a gap.
    pub fn admit(
        &mut self,
        records: Vec<RawRecord>,
        source: &dyn SourceControl,
        metrics: &Metrics,
    ) -> Vec<Admitted> {
        let positioning = self.positioning;
        let mut admitted = Vec::with_capacity(records.len());
        let mut dropped: HashMap<&'static str, u64> = HashMap::new();
        for record in records {
            let position = &record.position;
            let Some(stream) = self
                .topics
                .get_mut(&*position.topic)
                .and_then(|streams| streams.get_mut(&position.partition))
            else {
                *dropped.entry("not_assigned").or_default() += 1;
                continue;
            };
            let verdict = stream.judge(position.offset, positioning);
            match verdict {
                Verdict::Admit { from } => admitted.push(Admitted { record, from }),
                Verdict::Drop(reason) => *dropped.entry(reason).or_default() += 1,
                Verdict::Gap { expected } => {
                    warn!(partition = %stream.partition, expected, offset = position.offset, "records missing; reading them again");
                    metrics.partition_gaps.inc();
                    stream.rewind(expected, source);
                    *dropped.entry("gap").or_default() += 1;
                }
                // Right after an assignment the consumer's own start (the
                // group's committed offset, or `auto.offset.reset` when it
                // has none) can overtake our seek: the log does hold the
                // offset, it was just read from elsewhere. Only a log that
                // answers every seek from before the offset has lost it.
                Verdict::Reset { sought } if stream.resets < SEEKS_BEFORE_RESET => {
                    stream.resets += 1;
                    warn!(
                        partition = %stream.partition,
                        sought,
                        offset = position.offset,
                        attempt = stream.resets,
                        "records before the sought offset arrived after the seek; seeking again"
                    );
                    stream.rewind(sought, source);
                    *dropped.entry("fetched_before_seek").or_default() += 1;
                }
                Verdict::Reset { sought } => {
                    error!(
                        partition = %stream.partition,
                        checkpoint = sought,
                        offset = position.offset,
                        "the log no longer holds the checkpoint's offset (topic recreated or truncated); \
                         the partition is halted: nothing is skipped or applied twice until an operator \
                         removes its checkpoint"
                    );
                    metrics
                        .partition_resets
                        .with_label_values(&[stream.partition.topic.as_str()])
                        .inc();
                    stream.halted = Some(Halt::Reset);
                    *dropped.entry("halted").or_default() += 1;
                }
            }
        }
        for (reason, count) in dropped {
            metrics
                .records_dropped
                .with_label_values(&[reason])
                .inc_by(count);
        }
        admitted
    }
}

enum Verdict {
    Admit { from: i64 },
    Drop(&'static str),
    Gap { expected: i64 },
    Reset { sought: i64 },
}

impl Stream {
    fn judge(&mut self, offset: i64, positioning: Positioning) -> Verdict {
        if self.halted.is_some() {
            return Verdict::Drop("halted");
        }
        if self.seeking.is_some() {
            return Verdict::Drop("fetched_before_seek");
        }
        let after_seek = std::mem::take(&mut self.after_seek);
        let from = match self.expected {
            None => offset,
            Some(expected) if offset == expected => offset,
            Some(expected) if offset < expected => {
                return if after_seek {
                    Verdict::Reset { sought: expected }
                } else {
                    Verdict::Drop("redelivered")
                };
            }
            // Past a hole: right after a seek (or from a file) the log simply
            // holds nothing in between; otherwise the broker skipped records.
            Some(expected) if after_seek || positioning == Positioning::InOrder => expected,
            Some(expected) => return Verdict::Gap { expected },
        };
        self.expected = Some(offset + 1);
        self.resets = 0;
        self.first_admitted.get_or_insert(from);
        Verdict::Admit { from }
    }
}
