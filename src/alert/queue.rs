//! A target's bounded queue and the loop that drains it into the target.
//!
//! In: [`Item`]s pushed by the router (never blocking: when the queue is full
//! its oldest item is dropped and counted). Out: batches handed to a
//! [`Deliver`] implementation, at most one per `interval`, retried with
//! backoff until delivered, refused, or the shutdown deadline passes.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{AlertError, Item};
use crate::telemetry::{DeliveryTelemetry, RateLimit};

/// Why an attempt failed.
#[derive(Debug)]
pub struct Failure {
    /// Stable code for `flowhook_sink_failed_total` (see `DELIVERY_ERROR_CODES`).
    pub code: &'static str,
    /// Worth trying again (else the batch is dropped as `rejected`).
    pub retry: bool,
    pub detail: String,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
}

/// A target: turns queued items into a batch and sends it.
pub trait Deliver: Send + 'static {
    type Batch: Send;
    /// The batch for `items` and the number of alerts (or messages) in it;
    /// `None` when there is nothing to send (items only updated state).
    fn prepare(&mut self, items: Vec<Item>) -> Option<(Self::Batch, usize)>;
    /// One attempt. May consume part of the batch (syslog: what was written).
    fn send(&mut self, batch: &mut Self::Batch) -> Result<(), Failure>;
    /// What is left of a batch of `total` after failed attempts.
    fn left(&self, _batch: &Self::Batch, total: usize) -> usize {
        total
    }
    /// While shutting down, the time left until the deadline: no attempt may take longer.
    fn limit(&mut self, _left: Option<Duration>) {}
}

struct State {
    items: VecDeque<Item>,
    inflight: usize,
    /// Set by `close`: deliver until then, then give up.
    deadline: Option<Instant>,
}

/// A bounded queue of one target.
pub struct Queue {
    state: Mutex<State>,
    cv: Condvar,
    cap: usize,
    pub tel: DeliveryTelemetry,
}

impl Queue {
    pub fn new(cap: usize, tel: DeliveryTelemetry) -> Self {
        Queue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                inflight: 0,
                deadline: None,
            }),
            cv: Condvar::new(),
            cap: cap.max(1),
            tel,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `item`; when full, the oldest item goes (counted as `queue_full`).
    pub fn push(&self, item: Item) {
        let mut s = self.lock();
        if s.deadline.is_some() {
            self.tel.shutdown.increment(1);
            return;
        }
        if s.items.len() >= self.cap {
            s.items.pop_front();
            self.tel.queue_full.increment(1);
        }
        s.items.push_back(item);
        self.tel.depth.set((s.items.len() + s.inflight) as f64);
        drop(s);
        self.cv.notify_one();
    }

    /// Items waiting (the batch in flight included).
    pub fn depth(&self) -> usize {
        let s = self.lock();
        s.items.len() + s.inflight
    }

    /// Stops taking items; the worker delivers what it holds until `deadline`.
    pub fn close(&self, deadline: Instant) {
        self.lock().deadline = Some(deadline);
        self.cv.notify_all();
    }

    /// Waits for items and returns up to `max` of them, not before
    /// `not_before` unless closing. `None`: closed and empty. Past the
    /// deadline the remaining items are dropped (counted) and `None` returned.
    fn take(&self, max: usize, not_before: Instant) -> Option<Vec<Item>> {
        let mut s = self.lock();
        loop {
            let now = Instant::now();
            if let Some(d) = s.deadline {
                if now >= d {
                    let n = s.items.len();
                    s.items.clear();
                    self.tel.shutdown.increment(n as u64);
                    self.tel.depth.set(s.inflight as f64);
                    return None;
                }
                if s.items.is_empty() {
                    return None;
                }
            }
            if !s.items.is_empty() && (now >= not_before || s.deadline.is_some()) {
                let n = s.items.len().min(max);
                let batch: Vec<Item> = s.items.drain(..n).collect();
                s.inflight = n;
                return Some(batch);
            }
            let wait = if s.items.is_empty() {
                Duration::from_secs(3600)
            } else {
                not_before - now
            };
            s = self
                .cv
                .wait_timeout(s, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The batch in flight is done with.
    fn done(&self) {
        let mut s = self.lock();
        s.inflight = 0;
        self.tel.depth.set(s.items.len() as f64);
    }

    /// Time left until the shutdown deadline, once closing.
    fn time_left(&self) -> Option<Duration> {
        self.lock()
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Sleeps `d` (woken early when the queue starts closing; while closing,
    /// at most until the deadline); returns whether the deadline has passed.
    fn backoff(&self, d: Duration) -> bool {
        let s = self.lock();
        match s.deadline {
            None => {
                let s = self
                    .cv
                    .wait_timeout_while(s, d, |s| s.deadline.is_none())
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
                s.deadline.is_some_and(|dl| Instant::now() >= dl)
            }
            Some(dl) => {
                drop(s);
                let now = Instant::now();
                std::thread::sleep(d.min(dl.saturating_duration_since(now)));
                Instant::now() >= dl
            }
        }
    }
}

/// First wait between retries.
pub const BACKOFF_START: Duration = Duration::from_millis(500);

/// Runs `sink` on its own thread, draining `queue` until it is closed and empty.
pub fn spawn<D: Deliver>(
    kind: &'static str,
    queue: Arc<Queue>,
    sink: D,
    max_batch: usize,
    interval: Duration,
    backoff_max: Duration,
) -> Result<JoinHandle<()>, AlertError> {
    std::thread::Builder::new()
        .name(format!("flowhook-{kind}"))
        .spawn(move || run(queue, sink, max_batch, interval, backoff_max))
        .map_err(|e| AlertError::Setup {
            key: kind,
            detail: format!("cannot start its thread: {e}"),
        })
}

fn run<D: Deliver>(
    queue: Arc<Queue>,
    mut sink: D,
    max_batch: usize,
    interval: Duration,
    backoff_max: Duration,
) {
    let mut logs = RateLimit::new(Duration::from_secs(10));
    // retries never come faster than the configured request rate
    let first_wait = interval.max(BACKOFF_START);
    let mut last: Option<Instant> = None;
    while let Some(items) = queue.take(max_batch, last.map_or_else(Instant::now, |l| l + interval))
    {
        let Some((mut batch, total)) = sink.prepare(items) else {
            queue.done();
            continue;
        };
        let mut wait = first_wait;
        let mut counted = 0;
        loop {
            let started = Instant::now();
            last = Some(started);
            sink.limit(queue.time_left());
            let r = sink.send(&mut batch);
            queue.tel.duration.record(started.elapsed().as_secs_f64());
            let Err(f) = r else {
                queue.tel.sent.increment((total - counted) as u64);
                break;
            };
            queue.tel.failed(f.code);
            // a partly written batch (syslog) re-sends only what is left
            let left = sink.left(&batch, total);
            queue.tel.sent.increment((total - left - counted) as u64);
            counted = total - left;
            if !f.retry {
                queue.tel.rejected.increment(left as u64);
                if let Some(held) = logs.allow("rejected") {
                    tracing::error!(to = %queue.tel.target(), suppressed = held, "alert delivery refused, {left} dropped: {}", f.detail);
                }
                break;
            }
            if let Some(held) = logs.allow("failed") {
                tracing::warn!(to = %queue.tel.target(), suppressed = held, retry_in = ?wait, "alert delivery failed ({}): {}", f.code, f.detail);
            }
            if queue.backoff(wait) {
                queue.tel.shutdown.increment(left as u64);
                tracing::error!(to = %queue.tel.target(), "shutdown deadline passed: {left} alerts not delivered");
                break;
            }
            wait = (wait * 2).min(backoff_max);
        }
        queue.done();
    }
}
