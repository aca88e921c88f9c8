//! The offline commands: `decode` (every datagram of a capture through one
//! decoder, every record out) and `replay` (a capture through decode, the
//! flow table and the scripts inline on one thread, with the capture's
//! timestamps as the clock, so the same capture gives the same bytes).
//!
//! In: a pcap/pcapng path and the configuration. Out: records or JSON lines
//! to the caller, failures with their frame numbers, a [`DecodeSummary`].

use std::path::Path;
use std::sync::Arc;

use crate::capture::{self, CaptureStats};
use crate::config::Config;
use crate::decode::{DecodeError, Decoder};
use crate::enrich::{Enricher, GeoService};
use crate::flow::{FlowEvent, FlowTable, TableConfig};
use crate::output::Lines;
use crate::pipeline::{OutputFilter, PipelineError, encode_events};
use crate::record::FlowRecord;
use crate::script::{HostConfig, ScriptHost};
use crate::telemetry::FlowTelemetry;

/// Summary of an offline decode or replay.
#[derive(Debug, Clone, Default)]
pub struct DecodeSummary {
    pub capture: CaptureStats,
    pub datagrams: u64,
    pub records: u64,
    pub errors: u64,
    pub events: u64,
}

/// Decodes one captured datagram into `recs`; the problem, if any (also after partial success).
fn decode_reporting(
    decoder: &mut Decoder,
    d: &capture::CapturedDatagram,
    recs: &mut Vec<FlowRecord>,
) -> Option<DecodeError> {
    failure(decoder.decode(d.exporter, &d.payload, recs))
}

/// What went wrong with a datagram's decode, if anything (a partial error included).
fn failure(res: Result<crate::decode::Outcome, DecodeError>) -> Option<DecodeError> {
    match res {
        Ok(o) => o.partial_error,
        Err(e) => Some(e),
    }
}

/// Decodes every UDP datagram in the capture at `path`, giving each record to
/// `emit` and each failure (frame number, error) to `fail`.
pub fn decode_capture(
    path: &Path,
    cfg: &Config,
    mut emit: impl FnMut(&FlowRecord),
    mut fail: impl FnMut(u64, &DecodeError),
) -> Result<DecodeSummary, PipelineError> {
    let mut decoder = Decoder::from_config(cfg)?;
    let mut sum = DecodeSummary::default();
    let mut recs = Vec::new();
    sum.capture = capture::for_each_datagram(path, |d| {
        sum.datagrams += 1;
        recs.clear();
        if let Some(e) = decode_reporting(&mut decoder, &d, &mut recs) {
            sum.errors += 1;
            fail(d.frame, &e);
        }
        for r in &recs {
            sum.records += 1;
            emit(r);
        }
    })?;
    Ok(sum)
}

/// Runs a capture through decode and the flow table with the capture's
/// timestamps as the clock, then ends every remaining flow (`shutdown`).
/// Lines (events, and records when configured) go to `write`.
pub fn replay_capture(
    path: &Path,
    cfg: &Config,
    geo: Arc<GeoService>,
    mut write: impl FnMut(&Lines),
    mut fail: impl FnMut(u64, &DecodeError),
) -> Result<DecodeSummary, PipelineError> {
    let filter = OutputFilter::from_config(cfg);
    let mut decoder = Decoder::from_config(cfg)?;
    decoder.set_compiled(!filter.records());
    let mut table = FlowTable::with_enricher(
        TableConfig::from_config(&cfg.flow, 1),
        Some(Enricher::new(geo, cfg.geo.cache_size)),
    );
    let mut tel = FlowTelemetry::new(0);
    let host_cfg = HostConfig::from_config(cfg);
    let tree =
        crate::script::plugins::scan(&host_cfg.dir).map_err(|e| PipelineError::Scripts(vec![e]))?;
    if !tree.clashes.is_empty() {
        return Err(PipelineError::Scripts(tree.clashes));
    }
    let sources = tree.scripts;
    let mut host = if sources.is_empty() {
        None
    } else {
        let (h, errors) =
            ScriptHost::new(&host_cfg, &sources).map_err(|e| PipelineError::Scripts(vec![e]))?;
        if !errors.is_empty() {
            return Err(PipelineError::Scripts(errors));
        }
        Some(h)
    };
    // as `serve`: without scripts, events the output does not write are only counted
    if host.is_none() {
        table.set_wanted(crate::flow::EventKind::ALL.map(|k| filter.kind(k)));
    }
    let mut sum = DecodeSummary::default();
    let mut recs = Vec::new();
    let mut events = Vec::new();
    let mut lines = Lines::default();
    let mut flush = |events: &mut Vec<FlowEvent>,
                     lines: &mut Lines,
                     sum: &mut DecodeSummary,
                     tel: &mut FlowTelemetry| {
        sum.events += events.len() as u64;
        match host.as_mut() {
            Some(h) => {
                for e in events.drain(..) {
                    tel.event(&e);
                    h.handle(e, |k| filter.kind(k), lines);
                }
            }
            None => encode_events(events, &filter, lines, tel),
        }
        events.clear();
        if !lines.is_empty() {
            write(lines);
            lines.clear();
        }
    };
    let mut compact = Vec::new();
    sum.capture = capture::for_each_datagram(path, |d| {
        sum.datagrams += 1;
        recs.clear();
        compact.clear();
        let res = decoder.decode_split(d.exporter, &d.payload, &mut recs, &mut compact);
        if let Some(e) = failure(res) {
            sum.errors += 1;
            fail(d.frame, &e);
        }
        sum.records += (recs.len() + compact.len()) as u64;
        for r in recs.iter().filter(|r| filter.record(r)) {
            let _ = lines.push_record(r);
        }
        table.ingest_split(&recs, &compact, d.time_ms, &mut events);
        flush(&mut events, &mut lines, &mut sum, &mut tel);
    })?;
    // in chunks, as `serve` does: bounded buffers, reused
    loop {
        let more = table.end_some(FlowTable::SHUTDOWN_CHUNK, &mut events);
        flush(&mut events, &mut lines, &mut sum, &mut tel);
        if !more {
            break;
        }
    }
    if let Some(h) = host.as_mut() {
        h.teardown();
    }
    sum.events += table.stats.skipped.iter().sum::<u64>();
    tel.publish();
    Ok(sum)
}
