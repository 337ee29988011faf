//! The consumer's queues as the fetch thread takes them: one per assigned
//! partition, taken in turn, and the consumer's own queue, which carries the
//! rebalances, errors, statistics and commit results.
//!
//! librdkafka hands a consumer its records in the order the fetch responses
//! arrived, and a broker may fill a response from one partition (tansu fills
//! up to `fetch.max.bytes` from one): a catch-up then applied one partition's
//! backlog after another, and the others' readers waited. With a queue per
//! partition the fetch thread takes the partitions in turn, so every
//! partition librdkafka has prefetched advances together.
//!
//! A turn takes all a partition holds, up to the batch's room, rather than a
//! record of each: a catch-up's batch is then a run of one partition, whose
//! events of one aggregate lie close together, and a batch folds them into
//! one load and one write. Taken a record of each, a batch spans a quarter
//! as much of each of four partitions: on the pipeline bench's invoice
//! stream (an invoice's events 250 records apart in its partition) that was
//! four times the keys per batch and 0.70x the catch-up rate. Every
//! partition still advances within as many batches as there are partitions,
//! and a live batch holds what every partition had at hand.
//!
//! A partition is split off in the rebalance callback before it is assigned,
//! so none of its records can be left behind in the consumer's queue. The
//! split outlives the assignment (librdkafka keeps an application's
//! forwarding), and each assignment splits again, which is harmless.
//!
//! Waiting: librdkafka calls back when a queue goes from empty to not empty,
//! and the callback wakes the fetch thread ([`Wakeup`]). So the thread only
//! sleeps after it found every queue empty: a record that arrives after that
//! look wakes it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{Consumer_, SourceContext};
use crate::source::Partition;

/// A flag the fetch thread sleeps on; raised by librdkafka's callbacks. It
/// stays raised until the thread wakes, so a callback that comes between the
/// thread's last look and its sleep is not lost.
#[derive(Default)]
struct Wakeup {
    raised: Mutex<bool>,
    ring: Condvar,
}

impl Wakeup {
    fn raise(&self) {
        *self.raised.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.ring.notify_one();
    }

    /// Sleep until raised or `timeout` passed, and lower the flag.
    fn wait(&self, timeout: Duration) {
        let raised = self.raised.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut raised, _) = self
            .ring
            .wait_timeout_while(raised, timeout, |raised| !*raised)
            .unwrap_or_else(PoisonError::into_inner);
        *raised = false;
    }
}

/// The assigned partitions' queues, shared by the rebalance callbacks (which
/// add and remove them) and the fetch thread (which takes from them). Both
/// run on the fetch thread, so the lock is never contended; it is never held
/// across a poll of the consumer's own queue, where the callbacks run.
#[derive(Default)]
pub struct Queues {
    /// Set once the consumer exists; weak, because the consumer owns these
    /// queues through its context.
    consumer: OnceLock<Weak<Consumer_>>,
    partitions: Mutex<Turns>,
    wakeup: Arc<Wakeup>,
    /// Raised by the callbacks of events the consumer's queue served (a
    /// poll returns nothing for those, as when the queue is empty).
    served: AtomicBool,
}

/// An assigned partition's queue.
struct Held {
    /// Its topic's name as its records' positions share it (one allocation
    /// per assignment, not one per record).
    topic: Arc<str>,
    number: i32,
    queue: PartitionQueue<SourceContext>,
}

impl Held {
    fn is(&self, partition: &Partition) -> bool {
        self.number == partition.number && *self.topic == *partition.topic
    }
}

#[derive(Default)]
struct Turns {
    queues: Vec<Held>,
    /// Which queue the next round starts with (modulo their number).
    next: usize,
}

impl Queues {
    fn turns(&self) -> MutexGuard<'_, Turns> {
        // Each update is one push, one retain or one round: a poisoned list
        // is consistent.
        self.partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn bind(&self, consumer: &Arc<Consumer_>) {
        let _ = self.consumer.set(Arc::downgrade(consumer));
    }

    /// Give `partitions` queues of their own; called before they are assigned.
    pub(super) fn split(&self, partitions: &[Partition]) {
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            return;
        };
        let mut turns = self.turns();
        for partition in partitions {
            if turns.queues.iter().any(|held| held.is(partition)) {
                continue;
            }
            match consumer.split_partition_queue(&partition.topic, partition.number) {
                Some(mut queue) => {
                    queue.set_nonempty_callback(self.waker());
                    turns.queues.push(Held {
                        topic: partition.topic.as_str().into(),
                        number: partition.number,
                        queue,
                    });
                }
                // Only for a topic name librdkafka cannot take; its records
                // then come through the consumer's queue, in order all the same.
                None => warn!(%partition, "no queue of its own for this partition"),
            }
        }
    }

    /// Drop the queues of `partitions`, revoked: what they still hold is no
    /// longer ours.
    pub(super) fn remove(&self, partitions: &[Partition]) {
        self.turns()
            .queues
            .retain(|held| !partitions.iter().any(|partition| held.is(partition)));
    }

    /// Drop every queue. They hold the consumer, whose context holds them:
    /// without this the consumer would never be destroyed.
    pub(super) fn clear(&self) {
        self.turns().queues.clear();
    }

    /// Take up to `room` records, handing each poll's result to `take`: the
    /// partitions in turn, each for all it holds, the round starting after
    /// the partition the last one took from (after an empty partition, a
    /// fixed rotation would hand its turn to the next one every time).
    /// `true` when every queue was found empty (an error ends its
    /// partition's turn).
    pub(super) fn take_in_turn(
        &self,
        room: usize,
        mut take: impl FnMut(&Arc<str>, KafkaResult<BorrowedMessage<'_>>),
    ) -> bool {
        let mut turns = self.turns();
        let Turns { queues, next } = &mut *turns;
        let count = queues.len();
        if count == 0 {
            return true;
        }
        if room == 0 {
            return false;
        }
        let start = *next % count;
        let mut taken = 0;
        for turn in 0..count {
            let index = (start + turn) % count;
            loop {
                if taken == room {
                    *next = index + 1;
                    return false;
                }
                let held = &queues[index];
                match held.queue.poll(Duration::ZERO) {
                    Some(Ok(message)) => {
                        taken += 1;
                        *next = index + 1;
                        take(&held.topic, Ok(message));
                    }
                    Some(Err(error)) => {
                        take(&held.topic, Err(error));
                        break;
                    }
                    None => break,
                }
            }
        }
        true
    }

    /// An event was served on the consumer's queue (a callback ran).
    pub(super) fn mark_served(&self) {
        self.served.store(true, Ordering::Relaxed);
    }

    /// Whether an event was served since the last call.
    pub(super) fn take_served(&self) -> bool {
        self.served.swap(false, Ordering::Relaxed)
    }

    /// A callback for librdkafka that wakes the fetch thread.
    pub(super) fn waker(&self) -> impl Fn() + Send + Sync + 'static {
        let wakeup = Arc::clone(&self.wakeup);
        move || wakeup.raise()
    }

    /// Sleep until a callback woke the fetch thread, or `timeout` passed.
    pub(super) fn sleep(&self, timeout: Duration) {
        self.wakeup.wait(timeout);
    }

    /// Wake the fetch thread when `shutdown` is cancelled, so an idle thread
    /// stops at once rather than at the end of its sleep (the drain waits for
    /// it). Runs on the calling tokio runtime; the task holds only the wakeup.
    pub(super) fn wake_on(&self, shutdown: CancellationToken) {
        let wake = self.waker();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            wake();
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// An idle fetch thread sleeps until a record arrives; shutdown must end
    /// that sleep, not wait it out.
    #[tokio::test]
    async fn shutdown_wakes_a_sleeping_fetch_thread() {
        let queues = Arc::new(Queues::default());
        let shutdown = CancellationToken::new();
        queues.wake_on(shutdown.clone());
        let sleeper = Arc::clone(&queues);
        let slept = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            sleeper.sleep(Duration::from_secs(30));
            started.elapsed()
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        shutdown.cancel();
        let slept = slept.await.unwrap();
        assert!(slept < Duration::from_secs(10), "slept {slept:?}");
    }
}
