//! The hot path of `serve`: one thread per shard takes its exporters'
//! datagrams to the end, with no hop in between: decode (templates,
//! sampling, sequence), the flow table (stitching, lifecycle events), then
//! the events to the script workers or straight to the sink.
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

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use crate::decode::Decoder;
use crate::flow::{FlowEvent, FlowTable};
use crate::ingest::{Batch, Pool};
use crate::output::{Lines, OutputMsg};
use crate::pipeline::{OutputFilter, encode_events, wall_ms};
use crate::record::{Compact, FlowRecord};
use crate::script::ScriptRunner;
use crate::state::{SavedStream, Snapshot};
use crate::telemetry::{DecodeTelemetry, FlowTelemetry};

/// One shard's state and outlets.
pub struct Shard {
    pub id: usize,
    pub decoder: Decoder,
    pub table: FlowTable,
    pub out: Option<SyncSender<OutputMsg>>,
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
}

impl Shard {
    /// Runs until every sender of `rx` is gone, then ends every flow.
    pub fn run(mut self, rx: Receiver<Batch>) {
        let mut dtel = DecodeTelemetry::new(self.id);
        let mut ftel = FlowTelemetry::new(self.id);
        let mut stats = self.decoder.stats.clone();
        let mut last_poll = Instant::now();
        let mut recs: Vec<FlowRecord> = Vec::new();
        let mut compact: Vec<Compact> = Vec::new();
        let mut events: Vec<FlowEvent> = Vec::new();
        let mut lines = Lines::default();
        self.decoder.set_compiled(!self.filter.records());
        // without scripts, events the output does not write are only counted
        if self.scripts.is_none() {
            self.table
                .set_wanted(crate::flow::EventKind::ALL.map(|k| self.filter.kind(k)));
        }
        let mut saved_gen = self.decoder.generation();
        let mut last_save = Instant::now();
        loop {
            self.state_duties(&mut saved_gen, &mut last_save, &mut recs, &mut events);
            if last_poll.elapsed() >= Duration::from_secs(1) {
                dtel.template_stats(&self.decoder.template_stats());
                dtel.streams.set(self.decoder.streams() as f64);
                last_poll = Instant::now();
            }
            let batch = match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(b) => b,
                Err(RecvTimeoutError::Timeout) => {
                    self.table.advance(wall_ms(), &mut events);
                    ftel.table(&self.table);
                    if !self.emit(&mut events, &mut lines, &mut ftel) {
                        return;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            self.queued.fetch_sub(batch.len(), Ordering::AcqRel);
            for (from, received_ms, payload) in batch.iter() {
                recs.clear();
                compact.clear();
                let exporter = from.ip();
                match self
                    .decoder
                    .decode_split(exporter, payload, &mut recs, &mut compact)
                {
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
                if self.filter.records() {
                    for r in recs.iter().filter(|r| self.filter.record(r)) {
                        let _ = lines.push_record(r);
                    }
                }
                self.table
                    .ingest_split(&recs, &compact, received_ms.max(0), &mut events);
            }
            self.pool.give(batch);
            let s = &self.decoder.stats;
            // shared counters are touched only when they move
            for (c, now, was) in [
                (&dtel.seq_gaps, s.seq_gaps, stats.seq_gaps),
                (&dtel.seq_lost, s.seq_lost, stats.seq_lost),
                (&dtel.seq_late, s.seq_late, stats.seq_late),
                (&dtel.restarts, s.restarts, stats.restarts),
                (&dtel.trailing_bytes, s.trailing_bytes, stats.trailing_bytes),
            ] {
                if now != was {
                    c.increment(now - was);
                }
            }
            stats.clone_from(s);
            ftel.table(&self.table);
            if !self.emit(&mut events, &mut lines, &mut ftel) {
                return;
            }
        }
        self.table.advance(wall_ms(), &mut events);
        // in chunks: every flow's events at once would be a buffer per
        // table (tens of MB, page-faulted in and copied as it grows)
        loop {
            let more = self.table.end_some(FlowTable::SHUTDOWN_CHUNK, &mut events);
            ftel.table(&self.table);
            if !self.emit(&mut events, &mut lines, &mut ftel) || !more {
                break;
            }
        }
        if let Some((tx, _)) = &self.state
            && self.decoder.generation() != saved_gen
        {
            let _ = tx.send(Snapshot {
                shard: self.id,
                streams: self.decoder.saved_streams(),
            });
        }
    }

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
    fn emit(
        &mut self,
        events: &mut Vec<FlowEvent>,
        lines: &mut Lines,
        tel: &mut FlowTelemetry,
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
                tx.send(OutputMsg::Lines(std::mem::take(lines))).is_ok()
            }
            _ => {
                lines.clear();
                true
            }
        }
    }
}
