//! Where every owned partition stands: the stream the consumer delivers (the
//! offset expected next, a seek under way) and, per cache, the owner's epoch
//! and the next offset that cache has applied.
//!
//! Invariants: a record is admitted once, in offset order, with no hole
//! before it that the log still holds; a cache is handed a partition's records
//! only from its own next offset on, so nothing it applied is applied again.
//! Anything else (a redelivery, a record fetched before a seek, a gap) is
//! dropped here and, where records are missing, read again by a seek.

mod admit;

use tracing::warn;

use super::KeyMap;
use crate::cache::{Claim, Epoch, Partition};
use crate::event::RawRecord;
use crate::source::SourceControl;

/// How the source delivers records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positioning {
    /// A broker: records may be redelivered or skipped (rebalances, broker
    /// faults), and a partition can be read again from any offset by a seek.
    Seek,
    /// A file: every record once, in order, from the start. A jump in offsets
    /// is a record that does not exist, and nothing is ever sought. Offsets
    /// are line numbers, not a log's: nothing is claimed or checkpointed, so
    /// replaying a file twice applies it twice, as asked.
    InOrder,
}

impl Positioning {
    /// Whether progress is claimed and checkpointed in the caches.
    pub fn checkpoints(self) -> bool {
        self == Positioning::Seek
    }
}

/// An admitted record, and the first offset it accounts for: past a gap the
/// log does not hold (compaction, transaction markers), `from` is below the
/// record's own offset.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub record: RawRecord,
    pub from: i64,
}

impl Admitted {
    pub fn offset(&self) -> i64 {
        self.record.position.offset
    }
}

/// What one cache has applied of one partition.
#[derive(Debug, Clone, Copy)]
pub struct Applied {
    pub epoch: Epoch,
    /// The next offset to apply; `None` until the first record it sees anchors it.
    pub next: Option<i64>,
    /// Where this process first anchored a partition the cache had never
    /// applied: if the cache later loses everything of it (rolled back to
    /// before its first write), it is read again from there.
    pub anchor: Option<i64>,
    /// Records from here to `next` are folded again, for a cache that may
    /// have lost writes below its checkpoint (a failed-over primary of a
    /// cluster); what it still holds is skipped by its floors.
    pub replay: Option<i64>,
}

/// Why a partition's records are dropped until it is assigned again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halt {
    /// A newer owner claimed it in a cache: we are a zombie there.
    Fenced,
    /// The log no longer holds the checkpoint's offset (topic recreated or
    /// truncated): resuming anywhere would skip or re-apply events.
    Reset,
}

#[derive(Debug)]
struct Stream {
    partition: Partition,
    /// The offset the next record should have; `None` until the first one.
    expected: Option<i64>,
    /// A seek asked for and not yet made: records until then are stale.
    seeking: Option<i64>,
    /// The next record is the first after a seek.
    after_seek: bool,
    halted: Option<Halt>,
    /// Seeks in a row answered by records before the sought offset.
    resets: u8,
    /// Where the first record admitted since the assignment starts: a cache
    /// held by a pause before it ever applied the partition resumes there.
    first_admitted: Option<i64>,
    /// Per cache, in the pipeline's cache order.
    caches: Vec<Applied>,
}

/// A cache's share of one partition in one chunk: its records from `first`
/// on, moving the checkpoint from `from` to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub epoch: Epoch,
    pub from: Option<i64>,
    /// The first offset the span accounts for: `from`, or where a partition
    /// never applied is anchored.
    pub start: i64,
    pub first: i64,
    pub to: i64,
    /// Past the span's last record: below `to` while a replay is under way.
    pub end: i64,
}

/// Every owned partition's stream, by topic then partition (nested so a
/// lookup by `&str` allocates nothing: it runs for every record, and so
/// with foldhash: SipHash of the topic's name was 1% of a catch-up).
pub struct Positions {
    positioning: Positioning,
    topics: KeyMap<String, KeyMap<i32, Stream>>,
}

impl Positions {
    pub fn positioning(&self) -> Positioning {
        self.positioning
    }

    pub fn new(positioning: Positioning) -> Positions {
        Positions {
            positioning,
            topics: KeyMap::default(),
        }
    }

    fn stream(&mut self, partition: &Partition) -> Option<&mut Stream> {
        self.topics
            .get_mut(&partition.topic)
            .and_then(|streams| streams.get_mut(&partition.number))
    }

    /// Take a partition over with each cache's claim, each read again from
    /// `replays[cache]` offsets below its checkpoint: seek to the lowest
    /// start, so every cache finds its next record.
    pub fn assign(
        &mut self,
        partition: Partition,
        claims: &[Claim],
        replays: &[u64],
        source: &dyn SourceControl,
    ) {
        let replay = |cache: usize, claim: &Claim| {
            let window = replays.get(cache).copied().unwrap_or(0);
            let window = i64::try_from(window).unwrap_or(i64::MAX);
            claim
                .next
                .filter(|_| window > 0)
                .map(|next| next.saturating_sub(window).max(0))
        };
        let lowest = claims
            .iter()
            .enumerate()
            .filter_map(|(cache, claim)| replay(cache, claim).or(claim.next))
            .min();
        let seeking = lowest.filter(|_| self.positioning == Positioning::Seek);
        if let Some(offset) = seeking {
            source.seek(&partition, offset);
        }
        let stream = Stream {
            partition: partition.clone(),
            expected: None,
            seeking,
            after_seek: false,
            halted: None,
            resets: 0,
            first_admitted: None,
            caches: claims
                .iter()
                .enumerate()
                .map(|(cache, claim)| Applied {
                    epoch: claim.epoch,
                    next: claim.next,
                    anchor: None,
                    replay: replay(cache, claim),
                })
                .collect(),
        };
        self.topics
            .entry(partition.topic)
            .or_default()
            .insert(partition.number, stream);
    }

    pub fn revoke(&mut self, partition: &Partition) {
        if let Some(streams) = self.topics.get_mut(&partition.topic) {
            streams.remove(&partition.number);
        }
    }

    /// The consumer made a seek: the partition's records start at `offset` now.
    pub fn sought(&mut self, partition: &Partition, offset: i64) {
        let Some(stream) = self.stream(partition) else {
            return;
        };
        // An earlier seek's marker, overtaken by a later request: keep waiting.
        if stream.seeking != Some(offset) {
            return;
        }
        stream.seeking = None;
        stream.expected = Some(offset);
        stream.after_seek = true;
    }

    /// Cache `cache`'s share of a partition whose admitted records in this
    /// chunk run from `first` to `last` (in order): `None` when it has nothing
    /// to apply there, or when its next record is missing (then the stream is
    /// sought back to it).
    pub fn span(
        &mut self,
        cache: usize,
        partition: &Partition,
        records: &[&Admitted],
        source: &dyn SourceControl,
    ) -> Option<Span> {
        let positioning = self.positioning;
        let stream = self.stream(partition)?;
        if stream.halted.is_some() {
            return None;
        }
        let applied = stream.caches[cache];
        // Everything of the partition was lost, or a replay was asked for,
        // and it is being read again: the records at hand are past what must
        // be applied first.
        if (applied.next.is_none() || applied.replay.is_some()) && stream.seeking.is_some() {
            return None;
        }
        let last = records.last()?;
        // Where this cache's records start: its next offset, or earlier
        // during a replay.
        let start = match (applied.replay, applied.next) {
            (Some(replay), Some(next)) => Some(replay.min(next)),
            (_, next) => next,
        };
        let first = match start {
            None => records.first()?,
            Some(start) => *records.iter().find(|record| record.offset() >= start)?,
        };
        if let Some(start) = start
            && first.from > start
            && positioning == Positioning::Seek
        {
            // Applied up to `start`, and the stream holds only later records:
            // read the partition again from there (the other caches skip).
            stream.rewind(start, source);
            return None;
        }
        let end = last.offset() + 1;
        Some(Span {
            epoch: applied.epoch,
            from: applied.next,
            start: applied.next.unwrap_or(first.from),
            first: first.offset(),
            // A replay below the checkpoint leaves it where it stands.
            to: applied.next.map_or(end, |next| next.max(end)),
            end,
        })
    }

    /// The cache's commit landed: it has applied up to `to`.
    pub fn advanced(&mut self, cache: usize, partition: &Partition, span: &Span) {
        if let Some(stream) = self.stream(partition) {
            let applied = &mut stream.caches[cache];
            if applied.next.is_none() {
                applied.anchor.get_or_insert(span.start);
            }
            applied.next = Some(span.to);
            applied.replay = applied
                .replay
                .filter(|_| span.end < span.to)
                .map(|_| span.end);
        }
    }

    /// The cache's checkpoint says something else than we thought (our claim
    /// was renewed, or the store went back in time): believe the store.
    pub fn reposition(
        &mut self,
        cache: usize,
        partition: &Partition,
        claim: Claim,
        source: &dyn SourceControl,
    ) {
        let Some(stream) = self.stream(partition) else {
            return;
        };
        warn!(%partition, epoch = claim.epoch, next = ?claim.next, "checkpoint moved under us; resuming from it");
        let applied = &mut stream.caches[cache];
        let lost_everything = claim.next.is_none() && applied.next.is_some();
        let (anchor, replay) = (applied.anchor, applied.replay);
        *applied = Applied {
            epoch: claim.epoch,
            next: claim.next,
            anchor,
            // A replay under way still has to happen from where it starts.
            replay: replay.filter(|&replay| claim.next.is_some_and(|next| replay < next)),
        };
        if lost_everything {
            // Rolled back to before its first write: nothing of the partition
            // is left, so read it again from where this process first took it
            // up, or, not knowing that, from the start of the log.
            stream.rewind(anchor.unwrap_or(0), source);
        }
    }

    /// The cache lost writes of the partition from `offset` on (below its
    /// checkpoint): fold the records from there again.
    pub fn replay(
        &mut self,
        cache: usize,
        partition: &Partition,
        offset: i64,
        source: &dyn SourceControl,
    ) {
        let Some(stream) = self.stream(partition) else {
            return;
        };
        warn!(%partition, offset, "the cache lost writes below its checkpoint; folding them again");
        let applied = &mut stream.caches[cache];
        applied.replay = Some(applied.replay.map_or(offset, |replay| replay.min(offset)));
        stream.rewind(offset, source);
    }

    /// Records of the partition from `offset` on must wait (a shadow build
    /// reached the live version): read them again from there later.
    pub fn hold_back(&mut self, partition: &Partition, offset: i64, source: &dyn SourceControl) {
        if let Some(stream) = self.stream(partition) {
            stream.rewind(offset, source);
        }
    }

    /// A newer owner claimed the partition: drop its records until Kafka
    /// assigns it to us again.
    pub fn fence(&mut self, partition: &Partition) {
        if let Some(stream) = self.stream(partition) {
            warn!(%partition, "another consumer owns this partition now; writing nothing more to it");
            stream.halted = Some(Halt::Fenced);
        }
    }

    /// Cache `cache` was held (paused) while the stream moved on: read each
    /// partition of `topics` it is behind on again from its own next offset.
    /// The other caches skip what they applied already.
    pub fn catch_up(
        &mut self,
        cache: usize,
        topics: &std::collections::BTreeSet<String>,
        source: &dyn SourceControl,
    ) {
        for (topic, streams) in &mut self.topics {
            if !topics.contains(topic) {
                continue;
            }
            for stream in streams.values_mut() {
                // Never applied: from the first record the pause held back.
                let Some(next) = stream.caches[cache].next.or(stream.first_admitted) else {
                    continue;
                };
                let ahead = stream.seeking.or(stream.expected);
                if stream.halted.is_none() && ahead.is_some_and(|at| at > next) {
                    stream.rewind(next, source);
                }
            }
        }
    }

    /// The next offset a cache applies of a partition; `None` when unknown
    /// or the partition is halted.
    pub fn next(&mut self, cache: usize, partition: &Partition) -> Option<i64> {
        let stream = self.stream(partition)?;
        if stream.halted.is_some() {
            return None;
        }
        stream.caches[cache].next
    }
}

impl Stream {
    /// Read the partition again from `offset` (the lowest asked for wins).
    fn rewind(&mut self, offset: i64, source: &dyn SourceControl) {
        let target = self.seeking.map_or(offset, |seeking| seeking.min(offset));
        self.seeking = Some(target);
        self.after_seek = false;
        source.seek(&self.partition, target);
    }
}
