//! The fetch thread's end of the delivery queue.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::event::RawRecord;
use crate::source::Delivery;

/// The most records a batch's list is allocated for ahead (half a MiB): a
/// larger configured batch grows past it as records come.
const RESERVE_MAX: usize = 4096;

/// The fetch thread's end of the queue, shared with the rebalance callbacks
/// (which librdkafka runs inside `poll`, on the same thread): the records
/// gathered so far go out before any rebalance event, so the pipeline sees
/// everything in the order it happened.
pub struct Outbox {
    /// `None` once fetching stopped: the queue then closes, and the pipeline
    /// drains what is left and finishes.
    sender: Mutex<Option<mpsc::Sender<Delivery>>>,
    pending: Mutex<Vec<RawRecord>>,
    /// Records each batch's list is allocated for at once, rather than
    /// grown (and copied) a doubling at a time.
    reserve: usize,
}

impl Outbox {
    /// `batch_size`: the records a batch holds at most.
    pub fn new(sender: mpsc::Sender<Delivery>, batch_size: usize) -> Outbox {
        let reserve = batch_size.min(RESERVE_MAX);
        Outbox {
            sender: Mutex::new(Some(sender)),
            pending: Mutex::new(Vec::with_capacity(reserve)),
            reserve,
        }
    }

    fn pending(&self) -> MutexGuard<'_, Vec<RawRecord>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The pending records, leaving an empty list behind.
    fn take_pending(&self) -> Vec<RawRecord> {
        let mut pending = self.pending();
        if pending.is_empty() {
            return Vec::new();
        }
        std::mem::replace(&mut *pending, Vec::with_capacity(self.reserve))
    }

    /// The queue's sending end, while it is open. A clone: sending may wait,
    /// and nothing may be locked meanwhile.
    fn sender(&self) -> Option<mpsc::Sender<Delivery>> {
        self.sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Add a record; returns how many are pending.
    pub(super) fn push(&self, record: RawRecord) -> usize {
        let mut pending = self.pending();
        pending.push(record);
        pending.len()
    }

    /// Send the pending records, waiting while the queue is full; `false` when
    /// the pipeline is gone.
    pub(super) fn flush(&self) -> bool {
        let records = self.take_pending();
        records.is_empty() || self.send_now(Delivery::Records(records))
    }

    /// Send `delivery` after the pending records.
    pub(super) fn send(&self, delivery: Delivery) -> bool {
        self.flush() && self.send_now(delivery)
    }

    fn send_now(&self, delivery: Delivery) -> bool {
        self.sender()
            .is_some_and(|sender| sender.blocking_send(delivery).is_ok())
    }

    /// Send `delivery` after the pending records, giving up at `deadline` (a
    /// pipeline stuck on an outage must not hold a rebalance forever).
    pub(super) fn send_by(&self, delivery: Delivery, deadline: Instant) -> bool {
        let records = self.take_pending();
        if !records.is_empty() && !self.try_send_by(Delivery::Records(records), deadline) {
            return false;
        }
        self.try_send_by(delivery, deadline)
    }

    fn try_send_by(&self, mut delivery: Delivery, deadline: Instant) -> bool {
        let Some(sender) = self.sender() else {
            return false;
        };
        loop {
            match sender.try_send(delivery) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
                Err(mpsc::error::TrySendError::Full(back)) if Instant::now() < deadline => {
                    delivery = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(mpsc::error::TrySendError::Full(_)) => return false,
            }
        }
    }

    /// Whether nothing waits in the queue: the pipeline has taken everything
    /// handed over (it may still be working on the last of it).
    /// Asked once per polled record while a batch is pending, so it looks at
    /// the sender in place rather than cloning it.
    pub(super) fn is_drained(&self) -> bool {
        self.sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|sender| sender.capacity() == sender.max_capacity())
    }

    /// Whether the queue still takes deliveries (fetching has not stopped).
    pub fn is_open(&self) -> bool {
        self.sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Flush, then close the queue: fetching is over.
    pub(super) fn close(&self) {
        self.flush();
        self.sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}
