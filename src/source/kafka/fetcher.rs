//! The fetch thread: it takes records from the partitions' queues in turn
//! (see [`super::queues`]), serves the consumer's events, makes the seeks the
//! pipeline asks for, and hands records over in batches that adapt to the
//! pipeline (see [`poll_wait`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers as _, Message};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Consumer_, Outbox, POLL_INTERVAL, Queues, Seeks};
use crate::event::{Position, RawRecord};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::source::{Delivery, Partition};

/// How long a seek may wait for librdkafka to take it.
const SEEK_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the thread may sleep while records wait for a busy pipeline:
/// nothing wakes it when the pipeline takes what was queued, so this is how
/// late it may notice that the pipeline is ready for more.
const DRAIN_CHECK: Duration = Duration::from_millis(1);

/// How long the thread may sleep once every queue is empty, unless a record
/// or event wakes it: `pending` records wait to be handed over, `drained`
/// says the pipeline took everything queued, and the batch was opened
/// `opened_for` ago.
fn poll_wait(
    pending: usize,
    drained: bool,
    opened_for: Duration,
    batch_timeout: Duration,
) -> Duration {
    if pending == 0 {
        POLL_INTERVAL
    } else if drained {
        Duration::ZERO
    } else {
        batch_timeout.saturating_sub(opened_for).min(DRAIN_CHECK)
    }
}

pub(super) struct Fetcher {
    pub(super) consumer: Arc<Consumer_>,
    pub(super) outbox: Arc<Outbox>,
    pub(super) queues: Arc<Queues>,
    pub(super) seeks: Arc<Seeks>,
    pub(super) health: Health,
    pub(super) metrics: Metrics,
    pub(super) batch_size: usize,
    pub(super) batch_timeout: Duration,
    pub(super) shutdown: CancellationToken,
}

impl Fetcher {
    pub(super) fn run(self) {
        self.fetch();
        // The queues hold the consumer; the consumer holds them.
        self.queues.clear();
        // Closing the queue is how the pipeline learns that fetching is over.
        self.outbox.close();
        info!("fetching stopped");
    }

    /// Fetch until shutdown, or until the pipeline is gone. Each round serves
    /// the consumer's events (rebalances run here, after every record taken
    /// before them), then takes what the partitions' queues hold, in turn.
    fn fetch(&self) {
        let mut opened = Instant::now();
        let mut pending = 0;
        while !self.shutdown.is_cancelled() {
            if !self.make_seeks() {
                return;
            }
            pending = self.serve_events(pending, &mut opened);
            let room = self.batch_size.saturating_sub(pending);
            let emptied = self
                .queues
                .take_in_turn(room, |topic, polled| match polled {
                    Ok(message) => pending = self.push(to_record(&message, topic), &mut opened),
                    Err(error) => self.log_poll_error(&error),
                });
            self.health.beat();
            // Batches adapt to the pipeline: while it has nothing queued, what
            // has arrived goes over as soon as nothing more is at hand (no wait
            // on a quiet stream); while deliveries queue up, a batch grows
            // toward its size or its timeout.
            let drained = pending > 0 && self.outbox.is_drained();
            let full = pending >= self.batch_size;
            let due = pending > 0 && opened.elapsed() >= self.batch_timeout;
            if full || due || (drained && emptied) {
                if !self.outbox.flush() {
                    return;
                }
                pending = 0;
            } else if emptied {
                let wait = poll_wait(pending, drained, opened.elapsed(), self.batch_timeout);
                self.queues.sleep(wait);
            }
        }
    }

    /// Serve what the consumer's own queue holds: rebalances, statistics and
    /// commit results (their callbacks run inside the poll), errors, and the
    /// records of a partition without a queue of its own. Returns how many
    /// records are pending.
    fn serve_events(&self, mut pending: usize, opened: &mut Instant) -> usize {
        while pending < self.batch_size {
            match self.consumer.poll(Duration::ZERO) {
                Some(Ok(message)) => pending = self.push(to_own_record(&message), opened),
                Some(Err(error)) => self.log_poll_error(&error),
                // A served event also polls as nothing: only a poll that ran
                // no callback says the queue is empty.
                None if self.queues.take_served() => {}
                None => break,
            }
        }
        pending
    }

    /// Queue `message`; returns how many are pending. The first record of
    /// a batch (also after a rebalance flushed the last one) opens it.
    fn push(&self, record: RawRecord, opened: &mut Instant) -> usize {
        let pending = self.outbox.push(record);
        if pending == 1 {
            *opened = Instant::now();
        }
        pending
    }

    /// Make the seeks the pipeline asked for, each announced by a
    /// [`Delivery::Sought`] after the records fetched before it. `false` when
    /// the pipeline is gone.
    fn make_seeks(&self) -> bool {
        let requested = std::mem::take(&mut *self.seeks.lock());
        for (partition, offset) in requested {
            let sought = self.consumer.seek(
                &partition.topic,
                partition.number,
                Offset::Offset(offset),
                SEEK_TIMEOUT,
            );
            match sought {
                Ok(()) => {
                    info!(%partition, offset, "seeking");
                    if !self.outbox.send(Delivery::Sought { partition, offset }) {
                        return false;
                    }
                }
                Err(error) => {
                    // Not assigned (any more): the next assignment claims afresh.
                    // Anything else is librdkafka being busy: try again next round.
                    if self.is_assigned(&partition) {
                        warn!(%error, %partition, offset, "seek failed; retrying");
                        self.seeks.lock().entry(partition).or_insert(offset);
                    }
                }
            }
        }
        true
    }

    fn is_assigned(&self, partition: &Partition) -> bool {
        self.consumer.assignment().is_ok_and(|list| {
            list.find_partition(&partition.topic, partition.number)
                .is_some()
        })
    }

    fn log_poll_error(&self, error: &KafkaError) {
        self.metrics.retries.with_label_values(&["kafka"]).inc();
        warn!(%error, "kafka poll failed; librdkafka retries by itself");
    }
}

/// A polled message with no queue's topic name to share (from the consumer's
/// own queue, or the dead-letter log's): [`to_record`] with a name of its own.
pub(super) fn to_own_record(message: &BorrowedMessage<'_>) -> RawRecord {
    to_record(message, &message.topic().into())
}

/// A polled message of `topic` as the pipeline takes it, copied out of
/// librdkafka's buffer (which the next poll reuses); the dead-letter log
/// reads letters so too.
pub(super) fn to_record(message: &BorrowedMessage<'_>, topic: &Arc<str>) -> RawRecord {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|header| (header.key.to_owned(), header.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    RawRecord {
        position: Position {
            topic: Arc::clone(topic),
            partition: message.partition(),
            offset: message.offset(),
        },
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec),
        headers,
        timestamp_ms: message.timestamp().to_millis(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(50);

    #[test]
    fn an_idle_fetcher_blocks_and_a_drained_pipeline_gets_its_records_at_once() {
        assert_eq!(poll_wait(0, false, Duration::ZERO, TIMEOUT), POLL_INTERVAL);
        assert_eq!(poll_wait(3, true, Duration::ZERO, TIMEOUT), Duration::ZERO);
    }

    /// Records waiting for a busy pipeline are handed over within a
    /// millisecond of it being ready, not when the next fetch arrives.
    #[test]
    fn records_held_for_a_busy_pipeline_are_rechecked_every_millisecond() {
        assert_eq!(poll_wait(3, false, Duration::ZERO, TIMEOUT), DRAIN_CHECK);
        assert_eq!(
            poll_wait(3, false, Duration::from_millis(10), TIMEOUT),
            DRAIN_CHECK
        );
        // Never past the batch's deadline.
        assert_eq!(poll_wait(3, false, TIMEOUT, TIMEOUT), Duration::ZERO);
    }
}
