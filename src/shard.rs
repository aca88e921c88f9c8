//! The hot path of `serve`: a shard takes its exporters' datagrams to the
//! end, with no hop in between: decode (templates, sampling, sequence), the
//! flow table (stitching, lifecycle events), then the events to the script
//! workers or straight to the sink.
//!
//! Who runs it: while the shard is idle with nothing queued, the receive
//! thread that read a round of datagrams runs it itself ([`Cell`], the
//! [`RunInline`] ingest calls): no hand-off, no wake-up, the payloads still
//! in that core's cache. Otherwise (the shard busy, a backlog queued, or a
//! full receive round: the socket has more waiting and the work should
//! spread over the cores) the batch goes to the shard's queue and its own
//! thread ([`Cell::run`]) takes it, in order. A lock held for a batch keeps
//! the two apart; the queued count is lowered only once a batch is handled,
//! so nothing runs inline ahead of a batch still queued.
//!
//! In: [`Batch`]es of datagrams from ingest (every exporter always on the
//! same shard, so its templates and its flows live here). Out: JSON lines
//! (events, records when `output.records`) to the output thread, one message
//! per batch; events to the script runner; the emptied batch back to its
//! pool. On disconnect (shutdown) the table ends every flow (`flowEnd`,
//! reason `shutdown`). With `[state]` on, the decoder's streams go to the
//! state writer when they changed (at most once per write interval, and at
//! shutdown), and streams another instance saved come in to be restored
//! (a rolling restart), their held data decoded then.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex, TryLockError};
use std::time::{Duration, Instant};

use crate::decode::Decoder;
use crate::flow::{FlowEvent, FlowTable};
use crate::ingest::{Batch, Inline, Pool, RunInline};
use crate::output::{Lines, OutputMsg, Recycle};
use crate::pipeline::{OutputFilter, encode_events, wall_ms};
use crate::record::{Compact, FlowRecord};
use crate::script::ScriptRunner;
use crate::state::{SavedStream, Snapshot};
use crate::telemetry::{DecodeTelemetry, FlowTelemetry};

/// Bytes reserved per `flowEnd` line of a shutdown chunk (a line is 500 to
/// 700 bytes; a chunk's buffer stays under `Recycle::MAX_BYTES` and is reused).
const CHUNK_BYTES_PER_LINE: usize = 1024;

/// How long a shutdown chunk waits for a written buffer to come back.
const RECYCLE_WAIT: Duration = Duration::from_millis(20);

/// One shard's state and outlets.
pub struct Shard {
    pub id: usize,
    pub decoder: Decoder,
    pub table: FlowTable,
    pub out: Option<SyncSender<OutputMsg>>,
    /// Written batches back from the output thread, for the next batch's lines.
    pub recycle: Recycle,
    pub filter: OutputFilter,
    pub scripts: Option<Arc<ScriptRunner>>,
    pub pool: Pool,
    /// Datagrams queued for this shard (ingest's bound; see `ShardTx`).
    pub queued: Arc<AtomicUsize>,
    /// Per-worker staging of events for the scripts (capacity kept).
    pub staging: Vec<Vec<FlowEvent>>,
    /// The state writer and how often to send it the streams.
    pub state: Option<(SyncSender<Snapshot>, Duration)>,
    /// Streams to restore while running (saved by an instance this one takes over from).
    pub restore: Option<Receiver<Vec<SavedStream>>>,
    /// Turns for ending the flows at shutdown, shared by the shards ([`EndTurns`]).
    pub end_turns: Arc<EndTurns>,
}

/// How many shards end their flows at once at shutdown: one core fewer than
/// the machine has (at least one), the output thread writing on the last.
/// Each shard's shutdown encodes a `flowEnd` line per flow, which the one
/// output thread writes: more shards encoding at once than cores beside it
/// only take turns on the cores (and their caches), costing CPU, not time.
pub struct EndTurns {
    free: Mutex<usize>,
    back: Condvar,
}

impl EndTurns {
    /// `turns` shards may end their flows at once (at least one).
    pub fn new(turns: usize) -> Self {
        EndTurns {
            free: Mutex::new(turns.max(1)),
            back: Condvar::new(),
        }
    }

    /// One turn per core beyond the first.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(cores.saturating_sub(1))
    }

    /// Waits for a turn; it is handed back when the guard drops.
    pub fn take(&self) -> EndTurn<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.back.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        EndTurn(self)
    }
}

/// A turn of [`EndTurns`], handed back on drop.
pub struct EndTurn<'a>(&'a EndTurns);

impl Drop for EndTurn<'_> {
    fn drop(&mut self) {
        let mut free = self.0.free.lock().unwrap_or_else(|e| e.into_inner());
        *free += 1;
        self.0.back.notify_one();
    }
}

/// A shard and what it works with, behind the lock of its [`Cell`].
struct Work {
    shard: Shard,
    dtel: DecodeTelemetry,
    ftel: FlowTelemetry,
    stats: crate::decode::DecodeStats,
    last_poll: Instant,
    recs: Vec<FlowRecord>,
    compact: Vec<Compact>,
    events: Vec<FlowEvent>,
    lines: Lines,
    saved_gen: u64,
    last_save: Instant,
    /// The sink is gone: nothing more to do.
    done: bool,
}

/// A shard as its thread and the receive threads share it.
pub struct Cell {
    work: Mutex<Work>,
    /// Datagrams queued for the shard or being handled from its queue.
    queued: Arc<AtomicUsize>,
}

impl Shard {
    /// Ready to run: the shard behind its lock.
    pub fn into_cell(mut self) -> Arc<Cell> {
        self.decoder.set_compiled(!self.filter.records());
        // without scripts, events the output does not write are only counted
        if self.scripts.is_none() {
            self.table
                .set_wanted(crate::flow::EventKind::ALL.map(|k| self.filter.kind(k)));
        }
        let queued = self.queued.clone();
        let work = Work {
            dtel: DecodeTelemetry::new(self.id),
            ftel: FlowTelemetry::new(self.id),
            stats: self.decoder.stats.clone(),
            last_poll: Instant::now(),
            recs: Vec::new(),
            compact: Vec::new(),
            events: Vec::new(),
            lines: Lines::default(),
            saved_gen: self.decoder.generation(),
            last_save: Instant::now(),
            done: false,
            shard: self,
        };
        Arc::new(Cell {
            work: Mutex::new(work),
            queued,
        })
    }
}

impl Cell {
    /// The shard's own thread: takes queued batches (and ticks the flow
    /// table each second without one) until every sender of `rx` is gone,
    /// then ends every flow.
    pub fn run(self: Arc<Self>, rx: Receiver<Batch>) {
        loop {
            let got = rx.recv_timeout(Duration::from_secs(1));
            // a receive thread that panicked while holding the shard poisoned it: stop
            let Ok(mut w) = self.work.lock() else {
                return;
            };
            match got {
                Ok(batch) => {
                    w.handle(&batch);
                    self.queued.fetch_sub(batch.len(), Ordering::AcqRel);
                    w.shard.pool.give(batch);
                }
                Err(RecvTimeoutError::Timeout) => w.tick(),
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if w.done {
                return;
            }
        }
        if let Ok(mut w) = self.work.lock() {
            w.finish();
        }
    }
}

impl RunInline for Cell {
    fn run_inline(&self, batch: &Batch) -> Inline {
        if self.queued.load(Ordering::Acquire) > 0 {
            return Inline::Queue;
        }
        let mut w = match self.work.try_lock() {
            Ok(w) => w,
            Err(TryLockError::WouldBlock) => return Inline::Queue,
            Err(TryLockError::Poisoned(_)) => return Inline::Gone,
        };
        // checked again under the lock: a batch queued meanwhile goes first
        if self.queued.load(Ordering::Acquire) > 0 {
            return Inline::Queue;
        }
        if w.done {
            return Inline::Gone;
        }
        w.handle(batch);
        if w.done { Inline::Gone } else { Inline::Done }
    }
}

impl Work {
    /// One batch: decode each datagram, its records into the flow table,
    /// the events out.
    fn handle(&mut self, batch: &Batch) {
        self.duties();
        if self.last_poll.elapsed() >= Duration::from_secs(1) {
            let d = &self.shard.decoder;
            self.dtel.template_stats(&d.template_stats());
            self.dtel.streams.set(d.streams() as f64);
            self.last_poll = Instant::now();
        }
        let (shard, dtel) = (&mut self.shard, &mut self.dtel);
        let (recs, compact) = (&mut self.recs, &mut self.compact);
        for (from, received_ms, payload) in batch.iter() {
            recs.clear();
            compact.clear();
            let exporter = from.ip();
            match shard.decoder.decode_split(exporter, payload, recs, compact) {
                Ok(o) => {
                    dtel.records(exporter, o.version, o.flows, o.options);
                    dtel.sampling(exporter, &o.sampling);
                    if o.missing_templates > 0 {
                        dtel.missing_template_sets
                            .increment(o.missing_templates as u64);
                    }
                    if let Some(e) = &o.partial_error {
                        dtel.error(e.code(), exporter, e);
                    }
                }
                Err(e) => dtel.error(e.code(), exporter, &e),
            }
            if shard.filter.records() {
                for r in recs.iter().filter(|r| shard.filter.record(r)) {
                    let _ = self.lines.push_record(r);
                }
            }
            shard
                .table
                .ingest_split(recs, compact, received_ms.max(0), &mut self.events);
        }
        let (s, was) = (&shard.decoder.stats, &self.stats);
        // shared counters are touched only when they move
        for (c, now, was) in [
            (&dtel.seq_gaps, s.seq_gaps, was.seq_gaps),
            (&dtel.seq_lost, s.seq_lost, was.seq_lost),
            (&dtel.seq_late, s.seq_late, was.seq_late),
            (&dtel.restarts, s.restarts, was.restarts),
            (&dtel.trailing_bytes, s.trailing_bytes, was.trailing_bytes),
        ] {
            if now != was {
                c.increment(now - was);
            }
        }
        self.stats.clone_from(s);
        dtel.publish();
        self.emit(false);
    }

    /// A second without a queued batch: the flow table's timers.
    fn tick(&mut self) {
        self.duties();
        self.shard.table.advance(wall_ms(), &mut self.events);
        self.emit(false);
    }

    /// Every flow ends (`shutdown`); the streams' last snapshot.
    fn finish(&mut self) {
        let turns = self.shard.end_turns.clone();
        let _turn = turns.take();
        self.shard.table.advance(wall_ms(), &mut self.events);
        // in chunks: every flow's events at once would be a buffer per
        // table (tens of MB, page-faulted in and copied as it grows)
        loop {
            // room for the chunk's lines at once: a buffer grown line by
            // line is copied into fresh pages at each doubling
            self.lines
                .buf
                .reserve(FlowTable::SHUTDOWN_CHUNK * CHUNK_BYTES_PER_LINE);
            let more = self
                .shard
                .table
                .end_some(FlowTable::SHUTDOWN_CHUNK, &mut self.events);
            self.emit(true);
            if self.done || !more {
                break;
            }
        }
        let shard = &self.shard;
        if let Some((tx, _)) = &shard.state
            && shard.decoder.generation() != self.saved_gen
        {
            let _ = tx.send(Snapshot {
                shard: shard.id,
                streams: shard.decoder.saved_streams(),
            });
        }
    }

    /// The state writer's turn and streams to restore ([`Shard::state_duties`]).
    fn duties(&mut self) {
        self.shard.state_duties(
            &mut self.saved_gen,
            &mut self.last_save,
            &mut self.recs,
            &mut self.events,
        );
    }

    /// The table's gauges, then the events out; `done` when the sink is
    /// gone. `ending`: a shutdown chunk ([`Shard::emit`]).
    fn emit(&mut self, ending: bool) {
        self.ftel.table(&self.shard.table);
        self.done = !self
            .shard
            .emit(&mut self.events, &mut self.lines, &mut self.ftel, ending);
    }
}

impl Shard {
    /// Sends the decoder's streams to the state writer when they changed
    /// (at most once per interval; a full queue waits for the next turn),
    /// and restores streams handed in.
    fn state_duties(
        &mut self,
        saved_gen: &mut u64,
        last_save: &mut Instant,
        recs: &mut Vec<FlowRecord>,
        events: &mut Vec<FlowEvent>,
    ) {
        if let Some((tx, every)) = &self.state
            && self.decoder.generation() != *saved_gen
            && last_save.elapsed() >= *every
        {
            *last_save = Instant::now();
            let generation = self.decoder.generation();
            let snap = Snapshot {
                shard: self.id,
                streams: self.decoder.saved_streams(),
            };
            match tx.try_send(snap) {
                Ok(()) => *saved_gen = generation,
                Err(_) => crate::telemetry::StateTelemetry::snapshot_deferred(),
            }
        }
        let Some(rx) = &self.restore else {
            return;
        };
        while let Ok(streams) = rx.try_recv() {
            let now = wall_ms();
            let mut restored = 0;
            for s in &streams {
                recs.clear();
                restored += self.decoder.restore(s, now, recs);
                self.table.ingest(recs, now, events);
            }
            if restored > 0 {
                tracing::info!(
                    shard = self.id,
                    templates = restored,
                    "restored templates another instance saved"
                );
                crate::telemetry::StateTelemetry::restored(restored);
            }
        }
    }

    /// Events to the scripts (what they cannot take is written here) and
    /// the lines to the sink; false when the sink is gone.
    /// `ending`: a shutdown chunk, whose next buffer may wait for one the
    /// output thread is writing ([`Recycle::take_waiting`]).
    fn emit(
        &mut self,
        events: &mut Vec<FlowEvent>,
        lines: &mut Lines,
        tel: &mut FlowTelemetry,
        ending: bool,
    ) -> bool {
        match &self.scripts {
            // the script workers write the events they take; this shard writes what they refuse
            Some(r) => {
                for e in events.iter() {
                    tel.event(e);
                }
                let filter = self.filter;
                r.submit_batch(events.drain(..), &mut self.staging, |e| {
                    if filter.event(&e) {
                        lines.push_event(&e);
                    }
                });
            }
            None => {
                encode_events(events, &self.filter, lines, tel);
                events.clear();
            }
        }
        tel.publish();
        match &self.out {
            Some(tx) if !lines.is_empty() => {
                let next = if ending {
                    self.recycle.take_waiting(RECYCLE_WAIT)
                } else {
                    self.recycle.take()
                };
                tx.send(OutputMsg::Lines(std::mem::replace(lines, next)))
                    .is_ok()
            }
            _ => {
                lines.clear();
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::EndTurns;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// No more shards end their flows at once than there are turns, and
    /// every one gets its turn.
    #[test]
    fn end_turns_bound_the_shards_ending_at_once() {
        for turns in [1, 2] {
            let t = Arc::new(EndTurns::new(turns));
            let (now, most, done) = (
                Arc::new(AtomicUsize::new(0)),
                Arc::new(AtomicUsize::new(0)),
                Arc::new(AtomicUsize::new(0)),
            );
            let threads: Vec<_> = (0..5)
                .map(|_| {
                    let (t, now, most, done) = (t.clone(), now.clone(), most.clone(), done.clone());
                    std::thread::spawn(move || {
                        let _turn = t.take();
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        now.fetch_sub(1, Ordering::SeqCst);
                        done.fetch_add(1, Ordering::SeqCst);
                    })
                })
                .collect();
            for th in threads {
                th.join().unwrap();
            }
            assert_eq!(done.load(Ordering::SeqCst), 5);
            let most = most.load(Ordering::SeqCst);
            assert!(most <= turns, "{most} at once with {turns} turns");
        }
        // no turn is no shard at all: at least one
        let t = EndTurns::new(0);
        drop(t.take());
    }
}
