//! Decode stage: export datagrams → normalized [`FlowRecord`]s.
//!
//! In: one datagram and its exporter address. Out: records appended to a
//! caller's `Vec`, plus an [`Outcome`] (what was decoded, sequence verdict,
//! trailing bytes) or a [`DecodeError`]. Synchronous and free of tokio: the
//! `serve` pipeline runs one [`Decoder`] per shard thread, `decode`/`replay`
//! run one inline. Template state is scoped by (exporter address, version,
//! observation domain / source id) as RFC 7011 §8 and RFC 3954 §5 require, so
//! two routers reusing template id 256 never see each other's templates.
//!
//! Layout: `framing` (one message per datagram, header fields), `fields` (IE
//! identity and names), `value` (typed values), `normalize` (IE → record
//! fields), `time` (uptime and IPFIX time conversion), `sequence` (loss and
//! restart detection), `streams` (bounded per-exporter state), `error`.

pub mod compiled;
pub mod error;
pub mod fields;
pub mod framing;
pub mod normalize;
pub mod persist;
pub mod sampling;
pub mod sequence;
mod streams;
#[cfg(test)]
mod tests;
pub mod time;
pub mod value;
pub mod varlen;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use netflow_parser::variable_versions::enterprise_registry::EnterpriseFieldRegistry;
use netflow_parser::variable_versions::ipfix::FlowSetBody as IpfixBody;
use netflow_parser::variable_versions::ipfix::lookup::IPFixField;
use netflow_parser::variable_versions::v9::{FlowSetBody as V9Body, ScopeDataField};
use netflow_parser::{
    FieldValue, NetflowPacket, NetflowParser, PendingFlowsConfig, RouterScopedParser, TtlConfig,
    V9Field,
};

pub use error::DecodeError;
use fields::FieldCatalog;
use normalize::{Builder, Ctx};
use sequence::SeqEvent;
pub use streams::StreamKey;
use streams::Streams;

use crate::record::{Compact, FlowRecord, RecordKind, Value};

/// Decoder limits; every cache the decoder keeps is bounded by one of these.
#[derive(Debug, Clone)]
pub struct DecoderLimits {
    /// Exporter streams (address, version, domain) tracked per shard; the least recently used is evicted.
    pub max_exporters: usize,
    /// Templates kept per exporter stream (LRU).
    pub max_templates_per_exporter: usize,
    /// Fields accepted in one template.
    pub max_fields_per_template: usize,
    /// Template ids with data waiting for their template, per stream.
    pub pending_max_templates: usize,
    /// Data sets held per missing template id.
    pub pending_max_sets_per_template: usize,
    /// How long data waits for its template.
    pub pending_ttl: Duration,
    /// Templates not refreshed for this long are forgotten (`None`: only LRU).
    pub template_ttl: Option<Duration>,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        Self::from_config(&crate::config::DecodeConfig::default())
    }
}

impl DecoderLimits {
    /// The limits `[decode]` sets.
    pub fn from_config(c: &crate::config::DecodeConfig) -> Self {
        DecoderLimits {
            max_exporters: c.max_exporters,
            max_templates_per_exporter: c.max_templates_per_exporter,
            max_fields_per_template: c.max_fields_per_template,
            pending_max_templates: c.pending_max_templates,
            pending_max_sets_per_template: c.pending_max_sets_per_template,
            pending_ttl: c.pending_ttl,
            template_ttl: c.template_ttl,
        }
    }
}

/// What decoding one datagram produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub version: u16,
    pub domain: u32,
    pub flows: usize,
    pub options: usize,
    /// Bytes after the end of the export message (not decoded).
    pub trailing: usize,
    pub sequence: SeqEvent,
    /// Data sets that arrived before their template (held for later when pending is on).
    pub missing_templates: usize,
    /// A problem after some records were decoded.
    pub partial_error: Option<DecodeError>,
    /// Flow records by where their sampling rate came from.
    pub sampling: sampling::SourceCounts,
}

/// Running decoder counters (read by telemetry).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecodeStats {
    pub seq_gaps: u64,
    pub seq_lost: u64,
    pub seq_late: u64,
    pub restarts: u64,
    pub trailing_bytes: u64,
    pub streams_evicted: u64,
}

/// Template and held-data totals (see [`Decoder::template_stats`]); counters
/// of evicted exporters are not retained, so these can go down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TemplateStats {
    pub templates: u64,
    pub inserted: u64,
    pub evicted: u64,
    pub expired: u64,
    pub pending_now: u64,
    pub pending_held: u64,
    pub pending_replayed: u64,
    pub pending_dropped: u64,
}

/// Most compiled templates a stream may have for the decoder to remember
/// that the crate holds them all (see `decode_compiled`).
const HELD_CHECK_MAX: usize = 16;

/// One shard's decoder: parser state per exporter stream, bounded.
pub struct Decoder {
    parser: RouterScopedParser<StreamKey>,
    catalog: FieldCatalog,
    streams: Streams,
    registry: EnterpriseFieldRegistry,
    max_templates: usize,
    /// Decode data sets with compiled templates (records without `fields`).
    compiled: bool,
    template_ttl: Option<Duration>,
    /// `[[sampling]]` rules.
    rules: sampling::Rules,
    /// Bumped whenever a stream's templates or sampling change (what the state file follows).
    generation: u64,
    /// Template ids a refresh datagram repeated (scratch).
    refreshed: Vec<u16>,
    /// Bumped whenever the crate's state may change (a datagram it parses,
    /// a stream it forgets): a stream whose `held_epoch` equals it still
    /// has every compiled template in the crate's cache, unasked.
    crate_epoch: u64,
    pub stats: DecodeStats,
}

fn builder(limits: &DecoderLimits) -> netflow_parser::NetflowParserBuilder {
    let mut pending =
        PendingFlowsConfig::with_ttl(limits.pending_max_templates.max(1), limits.pending_ttl);
    pending.max_entries_per_template = limits.pending_max_sets_per_template.max(1);
    let mut b = NetflowParser::builder()
        .with_cache_size(limits.max_templates_per_exporter.max(1))
        .with_max_field_count(limits.max_fields_per_template.max(1))
        .with_pending_flows(pending)
        .register_enterprise_fields(fields::enterprise_fields());
    if let Some(ttl) = limits.template_ttl {
        b = b.with_ttl(TtlConfig::new(ttl));
    }
    b
}

impl Decoder {
    /// A decoder with `limits`; fails only on limits the decoder crate rejects (zero sizes).
    pub fn new(limits: &DecoderLimits) -> Result<Self, DecodeError> {
        // The stream table decides evictions (and removes evicted streams from
        // the crate), so the crate's own cap is never the one that bites.
        let parser = RouterScopedParser::try_with_builder(builder(limits))
            .and_then(|p| p.with_max_sources(limits.max_exporters.max(1) + 16))
            .map_err(|e| DecodeError::Malformed {
                detail: format!("decoder configuration: {e}"),
            })?;
        Ok(Decoder {
            parser,
            catalog: FieldCatalog::new(),
            streams: Streams::new(limits.max_exporters.max(1)),
            registry: {
                let mut r = EnterpriseFieldRegistry::new();
                for d in fields::enterprise_fields() {
                    r.register(d);
                }
                r
            },
            max_templates: limits.max_templates_per_exporter.max(1),
            compiled: false,
            template_ttl: limits.template_ttl,
            rules: sampling::Rules::default(),
            generation: 0,
            refreshed: Vec::new(),
            crate_epoch: 1,
            stats: DecodeStats::default(),
        })
    }

    /// A decoder as `[decode]` and `[[sampling]]` configure it.
    pub fn from_config(cfg: &crate::config::Config) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(&DecoderLimits::from_config(&cfg.decode))?;
        d.set_sampling_rules(sampling::Rules::from_config(&cfg.sampling));
        Ok(d)
    }

    /// Turns on the compiled-template path: data sets whose templates are
    /// compiled decode without the crate, into records without `fields` or
    /// `application_id` (what the flow stage reads). Off by default: `decode`
    /// and `output.records` need every field.
    pub fn set_compiled(&mut self, on: bool) {
        self.compiled = on;
    }

    /// Sets the `[[sampling]]` rules (per-exporter rates that fill in or override).
    pub fn set_sampling_rules(&mut self, rules: sampling::Rules) {
        self.rules = rules;
    }

    /// Decodes a datagram whose every set is a data set with a compiled
    /// template (and a template the crate still holds); `None` sends it down
    /// the crate path.
    fn decode_compiled(
        &mut self,
        key: StreamKey,
        frame: &framing::Frame<'_>,
        out: &mut Vec<FlowRecord>,
        compact: Option<&mut Vec<Compact>>,
    ) -> Option<Outcome> {
        let msg: &[u8] = &frame.msg;
        let (state, evicted) = self.streams.get(key);
        if evicted {
            self.stats.streams_evicted += 1;
        }
        if state.plans.is_empty() {
            return None;
        }
        let ipfix = frame.version == 10;
        let has = |p: &NetflowParser, id| {
            if ipfix {
                p.has_ipfix_template(id)
            } else {
                p.has_v9_template(id)
            }
        };
        // Whether the crate still holds a template (it must: it is the
        // reference). Without a template TTL its cache changes only when it
        // parses or forgets, so once every plan of the stream is found there
        // the answer stands until `crate_epoch` moves: no lookup per set.
        // (A stream with many plans is asked per set, as it was: checking
        // them all after every crate parse could cost more than it saves.)
        let cached = self.template_ttl.is_none() && state.plans.len() <= HELD_CHECK_MAX;
        let crate_parser = if cached && state.held_epoch == self.crate_epoch {
            None
        } else {
            let p = self.parser.get_parser(&key)?;
            if cached && state.plans.ids().all(|id| has(p, id)) {
                state.held_epoch = self.crate_epoch;
                None
            } else {
                Some(p)
            }
        };
        let held = |id| crate_parser.is_none_or(|p| has(p, id));
        // Data sets of compiled templates, and template sets that only
        // refresh compiled templates (the crate already holds them as they
        // are; with a template TTL the crate must see the refresh).
        let refresh_ok = self.template_ttl.is_none();
        let refreshed = &mut self.refreshed;
        refreshed.clear();
        let mut ok = true;
        let mut last_checked = None;
        let whole = varlen::for_each_set(msg, frame.version, |id, body| {
            if !ok || last_checked == Some(id) {
                return;
            }
            if id == if ipfix { 2 } else { 0 } {
                let mut all_held = true;
                let refresh = refresh_ok
                    && compiled::is_refresh(frame.version, body, &state.plans, |tid| {
                        all_held &= held(tid);
                        refreshed.push(tid);
                    });
                ok &= refresh && all_held;
                return;
            }
            last_checked = Some(id);
            ok &= id >= 256 && held(id) && state.plans.get(id).is_some();
        });
        if !ok || !whole {
            return None;
        }
        if !self.refreshed.is_empty() {
            let now = wall_ms();
            for id in &self.refreshed {
                state.wire.touch(*id, now);
            }
        }
        let ctx = Ctx::of(key.exporter, frame, state);
        let start = out.len();
        let compact_start = compact.as_ref().map_or(0, |c| c.len());
        let mut em = Emitter::new(
            ctx,
            &mut self.catalog,
            out,
            std::mem::take(&mut state.sampling),
            &self.rules,
        );
        em.compact = compact;
        varlen::for_each_set(msg, frame.version, |id, body| {
            if id >= 256
                && let Some(plan) = state.plans.get(id)
            {
                em.compiled_set(id, plan, body);
            }
        });
        let ctx = em.ctx;
        let counts = em.counts;
        state.sampling = em.sampling;
        let decoded = em.out.len() - start + em.compact.map_or(0, |c| c.len() - compact_start);
        self.stats.trailing_bytes += frame.trailing as u64;
        let units = if ipfix {
            u32::try_from(decoded).ok()
        } else {
            Some(1)
        };
        state.system_init_ms = ctx.system_init_ms;
        let sequence = observe(
            &mut self.stats,
            &mut state.seq,
            frame.sequence,
            units,
            frame.uptime_ms,
        );
        Some(Outcome {
            version: frame.version,
            domain: frame.domain,
            flows: decoded,
            options: 0,
            trailing: frame.trailing,
            sequence,
            missing_templates: 0,
            partial_error: None,
            sampling: counts,
        })
    }

    /// Drops the crate's state of the streams the stream table evicted.
    fn forget_evicted(&mut self) {
        self.crate_epoch += 1;
        for k in self.streams.evicted.drain(..) {
            self.parser.remove_source(&k);
        }
    }

    /// Totals over every exporter's parser: templates known, template
    /// insertions/evictions/expiries, data held for a template and what
    /// became of it.
    pub fn template_stats(&self) -> TemplateStats {
        let mut t = TemplateStats::default();
        for (_, info) in self.parser.all_info() {
            for c in [&info.v9, &info.ipfix] {
                t.templates += c.current_size as u64;
                t.inserted += c.metrics.insertions;
                t.evicted += c.metrics.evictions;
                t.expired += c.metrics.expired;
                t.pending_now += c.pending_flow_count as u64;
                t.pending_held += c.metrics.pending_cached;
                t.pending_replayed += c.metrics.pending_replayed;
                t.pending_dropped += c.metrics.pending_dropped + c.metrics.pending_replay_failed;
            }
        }
        t
    }

    /// Number of exporter streams with state.
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// Changes so far to any stream's templates or sampling (compare with an
    /// earlier value to know whether the state file is behind).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Every stream's templates (as sent) and sampling announcements.
    pub fn saved_streams(&self) -> Vec<persist::SavedStream> {
        self.streams
            .iter()
            .filter(|(_, s)| !s.wire.is_empty() || s.sampling != sampling::Announced::default())
            .map(|(k, s)| persist::SavedStream {
                exporter: k.exporter,
                version: k.version,
                domain: k.domain,
                templates: s.wire.list().to_vec(),
                sampling: s.sampling.clone(),
            })
            .collect()
    }

    /// Restores a saved stream: templates this decoder does not know yet
    /// (and that the template TTL has not expired) go through the decoder as
    /// if just received, keeping their saved times; sampling announcements
    /// fill in when the stream has none. Data held for those templates comes
    /// out in `out`. Sequence tracking is left as it was. Returns how many
    /// templates were restored.
    pub fn restore(
        &mut self,
        s: &persist::SavedStream,
        now_ms: i64,
        out: &mut Vec<FlowRecord>,
    ) -> usize {
        if !matches!(s.version, 9 | 10) {
            return 0;
        }
        let key = StreamKey {
            exporter: s.exporter,
            version: s.version,
            domain: s.domain,
        };
        let ttl_ms = self
            .template_ttl
            .map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX));
        let (state, _) = self.streams.get(key);
        let new: Vec<&persist::SavedTemplate> = s
            .templates
            .iter()
            .filter(|t| !state.wire.has(t.id))
            .filter(|t| ttl_ms.is_none_or(|ttl| now_ms.saturating_sub(t.learned_ms) < ttl))
            .collect();
        if state.sampling == sampling::Announced::default() {
            state.sampling = s.sampling.clone();
        }
        let seq = state.seq.clone();
        let stats = self.stats.clone();
        for m in persist::messages(s, &new, now_ms) {
            let _ = self.decode(s.exporter, &m, out);
        }
        let (state, _) = self.streams.get(key);
        state.seq = seq;
        for t in &new {
            if state.wire.has(t.id) {
                state.wire.touch(t.id, t.learned_ms);
            } else {
                state.wire.restore(t);
            }
        }
        self.stats = stats;
        new.len()
    }

    /// Decodes one datagram from `exporter`, appending its records to `out`.
    pub fn decode(
        &mut self,
        exporter: IpAddr,
        data: &[u8],
        out: &mut Vec<FlowRecord>,
    ) -> Result<Outcome, DecodeError> {
        self.decode_either(exporter, data, out, None)
    }

    /// [`Decoder::decode`] for the flow table: a datagram of compiled
    /// templates (with compiled templates on) goes to `compact`, its flow
    /// records in compact form; any other datagram's records go to `out`.
    /// One datagram's records all go to the one or all to the other.
    pub fn decode_split(
        &mut self,
        exporter: IpAddr,
        data: &[u8],
        out: &mut Vec<FlowRecord>,
        compact: &mut Vec<Compact>,
    ) -> Result<Outcome, DecodeError> {
        self.decode_either(exporter, data, out, Some(compact))
    }

    fn decode_either(
        &mut self,
        exporter: IpAddr,
        data: &[u8],
        out: &mut Vec<FlowRecord>,
        compact: Option<&mut Vec<Compact>>,
    ) -> Result<Outcome, DecodeError> {
        let frame = framing::frame(data)?;
        let key = StreamKey {
            exporter,
            version: frame.version,
            domain: frame.domain,
        };
        // the crate's state of streams the table evicted (while decoding the
        // previous datagram) goes before the crate sees another one
        if !self.streams.evicted.is_empty() {
            self.forget_evicted();
        }
        if self.compiled
            && frame.version >= 9
            && let Some(o) = self.decode_compiled(key, &frame, out, compact)
        {
            return Ok(o);
        }
        let (state, evicted) = self.streams.get(key);
        if evicted {
            self.stats.streams_evicted += 1;
        }
        // the crate parses this datagram: what it holds may change
        self.crate_epoch += 1;
        // Templates with variable-length fields are ours to decode (see `varlen`).
        let wire_sets = if frame.version >= 9 {
            varlen::sets(&frame.msg, frame.version)
        } else {
            Vec::new()
        };
        let mut learnt_var = 0;
        for (id, body) in &wire_sets {
            if *id <= 3 {
                learnt_var += state
                    .var
                    .learn(frame.version, *id, body, self.max_templates);
            }
        }
        let var = state.var.clone();
        let ours: Vec<(u16, &[u8])> = wire_sets
            .iter()
            .filter(|(id, _)| *id >= 256 && var.get(*id).is_some())
            .copied()
            .collect();
        let mut ctx = Ctx::of(exporter, &frame, state);
        if let Some(raw) = frame.v5_sampling {
            // v5 header: 2 bits mode, 14 bits interval; 0 means not sampled
            ctx.sampling = Some(u32::from(raw & 0x3FFF));
        }
        let result = self.parser.parse_from_source(key, &frame.msg);
        let packet = result.packets.into_iter().next();
        // The crate refuses v9 templates with variable-length fields; those are ours, not an error.
        let handled = !ours.is_empty() || learnt_var > 0;
        if packet.is_none() && !handled {
            return Err(result
                .error
                .map(DecodeError::from)
                .unwrap_or(DecodeError::Malformed {
                    detail: "no export message decoded".into(),
                }));
        }
        let partial_error = result
            .error
            .map(DecodeError::from)
            .filter(|_| !handled || packet.is_some());
        self.stats.trailing_bytes += frame.trailing as u64;
        let announced = std::mem::take(&mut state.sampling);
        let mut em = Emitter::new(ctx, &mut self.catalog, out, announced, &self.rules);
        let mut cursor = 0usize;
        match &packet {
            Some(NetflowPacket::V5(v5)) => {
                for f in &v5.flowsets {
                    em.legacy(LegacyFlow::from_v5(f));
                }
            }
            Some(NetflowPacket::V7(v7)) => {
                for f in &v7.flowsets {
                    em.legacy(LegacyFlow::from_v7(f));
                }
            }
            Some(NetflowPacket::V9(v9)) => {
                for set in &v9.flowsets {
                    let tid = set.header.flowset_id;
                    if var.get(tid).is_some() {
                        continue;
                    }
                    em.ours_until(&wire_sets, &mut cursor, Some(tid), &var, &self.registry);
                    em.v9_set(tid, &set.body);
                }
            }
            Some(NetflowPacket::IPFix(ipfix)) => {
                for set in &ipfix.flowsets {
                    let tid = set.header.header_id;
                    if var.get(tid).is_some() {
                        continue;
                    }
                    em.ours_until(&wire_sets, &mut cursor, Some(tid), &var, &self.registry);
                    em.ipfix_set(tid, &set.body);
                }
            }
            _ => {}
        }
        em.ours_until(&wire_sets, &mut cursor, None, &var, &self.registry);
        let Emitter {
            ctx,
            options,
            start,
            crate_data_sets,
            sampling: announced,
            counts,
            ..
        } = em;
        // Data sets the crate neither decoded nor reported: held until their template comes.
        let wire_data_sets = wire_sets
            .iter()
            .filter(|(id, _)| *id >= 256 && var.get(*id).is_none())
            .count();
        let missing = wire_data_sets.saturating_sub(crate_data_sets);
        let decoded = out.len() - start;
        // Sequence: v5/v7 count flows, v9 packets, IPFIX data records (RFC 7011 §3.1).
        let units = match frame.version {
            5 | 7 => Some(u32::from(frame.count)),
            9 => Some(1),
            _ if missing == 0 => u32::try_from(decoded).ok(),
            _ => None,
        };
        let (state, _) = self.streams.get(key);
        if state.sampling != announced {
            self.generation += 1;
        }
        state.sampling = announced;
        if frame.version >= 9 {
            let now = wall_ms();
            for (id, body) in wire_sets.iter().filter(|(id, _)| *id <= 3) {
                if state
                    .wire
                    .learn(frame.version, *id, body, self.max_templates, now)
                {
                    self.generation += 1;
                }
            }
        }
        state.system_init_ms = ctx.system_init_ms;
        if self.compiled && frame.version >= 9 {
            // compile the data templates the crate now holds
            let crate_parser = self.parser.get_parser(&key);
            for (id, body) in wire_sets.iter().filter(|(id, _)| *id <= 3) {
                state.plans.learn(
                    frame.version,
                    *id,
                    body,
                    self.max_templates,
                    &mut self.catalog,
                    &self.registry,
                    |tid| match crate_parser {
                        Some(p) if frame.version == 10 => p.has_ipfix_template(tid),
                        Some(p) => p.has_v9_template(tid),
                        None => false,
                    },
                );
            }
        }
        let sequence = observe(
            &mut self.stats,
            &mut state.seq,
            frame.sequence,
            units,
            frame.uptime_ms,
        );
        Ok(Outcome {
            version: frame.version,
            domain: frame.domain,
            flows: decoded - options,
            options,
            trailing: frame.trailing,
            sequence,
            missing_templates: missing,
            partial_error,
            sampling: counts,
        })
    }
}

/// Wall time, Unix milliseconds (when templates were learnt).
fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Ctx {
    /// The context of a message: its header and what its stream learnt before.
    fn of(exporter: IpAddr, frame: &framing::Frame<'_>, state: &streams::StreamState) -> Self {
        Ctx {
            exporter,
            version: frame.version,
            domain: frame.domain,
            export_ms: frame.export_ms,
            uptime_ms: frame.uptime_ms,
            sampling: None,
            system_init_ms: state.system_init_ms,
        }
    }
}

/// Sequence tracking of one message, with the decoder's totals kept in step.
fn observe(
    stats: &mut DecodeStats,
    seq: &mut sequence::SeqState,
    number: u32,
    units: Option<u32>,
    uptime: Option<u32>,
) -> SeqEvent {
    let before = (seq.gaps, seq.lost, seq.late, seq.restarts);
    let event = seq.observe(number, units, uptime);
    stats.seq_gaps += seq.gaps - before.0;
    stats.seq_lost += seq.lost - before.1;
    stats.seq_late += seq.late - before.2;
    stats.restarts += seq.restarts - before.3;
    event
}

/// Turns the sets of one message into records, in order.
struct Emitter<'a> {
    ctx: Ctx,
    catalog: &'a mut FieldCatalog,
    out: &'a mut Vec<FlowRecord>,
    /// Where compiled sets' records go in compact form, when the caller takes that.
    compact: Option<&'a mut Vec<Compact>>,
    /// The stream's sampling announcements (moved in for the message, learnt from in order).
    sampling: sampling::Announced,
    rules: &'a sampling::Rules,
    counts: sampling::SourceCounts,
    options: usize,
    /// Data sets the crate handed back (decoded or without template).
    crate_data_sets: usize,
    start: usize,
}

impl<'a> Emitter<'a> {
    fn new(
        ctx: Ctx,
        catalog: &'a mut FieldCatalog,
        out: &'a mut Vec<FlowRecord>,
        sampling: sampling::Announced,
        rules: &'a sampling::Rules,
    ) -> Self {
        let start = out.len();
        Emitter {
            ctx,
            catalog,
            out,
            compact: None,
            sampling,
            rules,
            counts: sampling::SourceCounts::default(),
            options: 0,
            crate_data_sets: 0,
            start,
        }
    }

    fn learn(&mut self, l: normalize::Learnt, announced: &crate::decode::sampling::Announcement) {
        match l.resolved {
            Some(r) => self.counts.count(r),
            // options data announces rates for the records after it
            None => self.sampling.learn(announced),
        }
        if l.system_init_ms.is_some() {
            self.ctx.system_init_ms = l.system_init_ms;
        }
    }

    fn push(&mut self, b: Builder) {
        let kind_options = b.kind() == RecordKind::Options;
        let (r, l, st) = b.finish(&self.ctx, &self.sampling, self.rules);
        self.learn(l, st.announcement());
        self.out.push(r);
        if kind_options {
            self.options += 1;
        }
    }

    fn v9_record<'v>(
        &mut self,
        kind: RecordKind,
        tid: u16,
        scope: &[ScopeDataField],
        rec: impl ExactSizeIterator<Item = &'v (V9Field, FieldValue)>,
    ) {
        let mut b = Builder::new(kind, &self.ctx, Some(tid), rec.len() + scope.len());
        for s in scope {
            scope_field(&mut b, s);
        }
        for (f, v) in rec {
            let (id, name) = self.catalog.v9(*f);
            b.field(id, name, v);
        }
        self.push(b);
    }

    fn ipfix_record<'v>(
        &mut self,
        kind: RecordKind,
        tid: u16,
        rec: impl ExactSizeIterator<Item = &'v (IPFixField, FieldValue)>,
    ) {
        let mut b = Builder::new(kind, &self.ctx, Some(tid), rec.len());
        for (f, v) in rec {
            let (id, name) = self.catalog.ipfix(f);
            b.field(id, name, v);
        }
        self.push(b);
    }

    /// One data set of a compiled template (records shorter than the plan are padding).
    fn compiled_set(&mut self, tid: u16, plan: &compiled::Plan, body: &[u8]) {
        if self.compact.is_some() {
            return self.compiled_set_compact(tid, plan, body);
        }
        let n = body.len() / plan.rec_len.max(1);
        let start = self.out.len();
        // the set's records made in place in one pass (no record built
        // aside and copied in), then filled in order
        let ctx = &self.ctx;
        self.out.extend(
            std::iter::repeat_with(|| normalize::new_record(RecordKind::Flow, ctx, Some(tid)))
                .take(n),
        );
        let Emitter {
            ctx,
            out,
            sampling,
            rules,
            counts,
            ..
        } = self;
        for (rec, r) in body.chunks_exact(plan.rec_len).zip(&mut out[start..]) {
            let mut st = normalize::Fill::default();
            plan.decode(rec, r, &mut st);
            let l = st.finish(r, ctx, sampling, rules);
            // as `learn`, for flow records: count the rate's source, keep the exporter's boot time
            if let Some(res) = l.resolved {
                counts.count(res);
            }
            if l.system_init_ms.is_some() {
                ctx.system_init_ms = l.system_init_ms;
            }
        }
    }

    /// [`Emitter::compiled_set`] into compact records: straight from the
    /// bytes when every field the plan reads has a fast slot, else through
    /// a full record each and its compact form.
    fn compiled_set_compact(&mut self, tid: u16, plan: &compiled::Plan, body: &[u8]) {
        let Emitter {
            ctx,
            compact: Some(out),
            sampling,
            rules,
            counts,
            ..
        } = self
        else {
            return;
        };
        let fresh = Compact {
            exporter: crate::record::addr16(ctx.exporter),
            domain: ctx.domain,
            ..Compact::default()
        };
        if plan.all_fast() {
            // nothing in a compiled datagram changes what the exporter announced
            let announced = compiled::Plan::announced(sampling, ctx);
            plan.decode_compact_set(body, fresh, out, ctx, announced, rules, |res| {
                counts.count(res)
            });
            return;
        }
        for rec in body.chunks_exact(plan.rec_len) {
            let mut r = normalize::new_record(RecordKind::Flow, ctx, Some(tid));
            let mut st = normalize::Fill::default();
            plan.decode(rec, &mut r, &mut st);
            let l = st.finish(&mut r, ctx, sampling, rules);
            if let Some(res) = l.resolved {
                counts.count(res);
            }
            if l.system_init_ms.is_some() {
                ctx.system_init_ms = l.system_init_ms;
            }
            out.push(Compact::of(&r));
        }
    }

    fn v9_set(&mut self, tid: u16, body: &V9Body) {
        if tid >= 256 && !matches!(body, V9Body::NoTemplate(_)) {
            self.crate_data_sets += 1;
        }
        match body {
            V9Body::Data(d) => {
                for rec in &d.fields {
                    self.v9_record(RecordKind::Flow, tid, &[], rec.iter());
                }
            }
            V9Body::OptionsData(d) => {
                for rec in &d.fields {
                    self.v9_record(
                        RecordKind::Options,
                        tid,
                        &rec.scope_fields,
                        rec.options_fields.iter(),
                    );
                }
            }
            _ => {}
        }
    }

    fn ipfix_set(&mut self, tid: u16, body: &IpfixBody) {
        if tid >= 256 && !matches!(body, IpfixBody::NoTemplate(_)) {
            self.crate_data_sets += 1;
        }
        match body {
            IpfixBody::Data(d) => {
                for rec in &d.fields {
                    self.ipfix_record(RecordKind::Flow, tid, rec.iter());
                }
            }
            IpfixBody::OptionsData(d) => {
                for rec in &d.fields {
                    self.ipfix_record(RecordKind::Options, tid, rec.iter());
                }
            }
            IpfixBody::V9Data(d) => {
                for rec in &d.fields {
                    self.v9_record(RecordKind::Flow, tid, &[], rec.iter());
                }
            }
            IpfixBody::V9OptionsData(d) => {
                for rec in &d.fields {
                    self.v9_record(
                        RecordKind::Options,
                        tid,
                        &rec.scope_fields,
                        rec.options_fields.iter(),
                    );
                }
            }
            _ => {}
        }
    }

    /// Emits the variable-length sets from `cursor` up to the next wire set with id `stop`.
    fn ours_until(
        &mut self,
        wire: &[(u16, &[u8])],
        cursor: &mut usize,
        stop: Option<u16>,
        var: &varlen::VarTemplates,
        registry: &EnterpriseFieldRegistry,
    ) {
        while let Some((id, body)) = wire.get(*cursor) {
            *cursor += 1;
            if Some(*id) == stop {
                return;
            }
            if let Some(t) = var.get(*id).filter(|_| *id >= 256) {
                self.var_set(*id, t, body, registry);
            }
        }
    }

    fn var_set(
        &mut self,
        tid: u16,
        t: &varlen::VarTemplate,
        body: &[u8],
        registry: &EnterpriseFieldRegistry,
    ) {
        let kind = if t.options {
            RecordKind::Options
        } else {
            RecordKind::Flow
        };
        for rec in varlen::decode_set(self.ctx.version, t, body, registry) {
            let mut b = Builder::new(kind, &self.ctx, Some(tid), rec.len());
            for (f, v) in &rec {
                match f {
                    varlen::AnyField::V9(f) => {
                        let (id, name) = self.catalog.v9(*f);
                        b.field(id, name, v);
                    }
                    varlen::AnyField::Ipfix(f) => {
                        let (id, name) = self.catalog.ipfix(f);
                        b.field(id, name, v);
                    }
                }
            }
            self.push(b);
        }
    }
}

fn scope_field(b: &mut Builder, s: &ScopeDataField) {
    let (name, bytes) = match s {
        ScopeDataField::System(v) => ("scope_system", v),
        ScopeDataField::Interface(v) => ("scope_interface", v),
        ScopeDataField::LineCard(v) => ("scope_line_card", v),
        ScopeDataField::NetFlowCache(v) => ("scope_netflow_cache", v),
        ScopeDataField::Template(v) => ("scope_template", v),
        ScopeDataField::Unknown(_, v) => ("scope_unknown", v),
    };
    let value = match value::be_uint(bytes) {
        Some(n) => {
            if let (ScopeDataField::Interface(_), Ok(i)) = (s, u32::try_from(n)) {
                b.scope_interface(i);
            }
            Value::U64(n)
        }
        None => Value::Bytes(bytes.clone()),
    };
    b.raw(Arc::from(name), value);
}

/// The fixed v5/v7 record, in one shape.
struct LegacyFlow {
    src: std::net::Ipv4Addr,
    dst: std::net::Ipv4Addr,
    next_hop: std::net::Ipv4Addr,
    input: u16,
    output: u16,
    packets: u32,
    octets: u32,
    first: u32,
    last: u32,
    src_port: u16,
    dst_port: u16,
    tcp_flags: u8,
    protocol: u8,
    tos: u8,
    src_as: u16,
    dst_as: u16,
    src_mask: u8,
    dst_mask: u8,
}

impl LegacyFlow {
    fn from_v5(f: &netflow_parser::static_versions::v5::FlowSet) -> Self {
        LegacyFlow {
            src: f.src_addr,
            dst: f.dst_addr,
            next_hop: f.next_hop,
            input: f.input,
            output: f.output,
            packets: f.d_pkts,
            octets: f.d_octets,
            first: f.first,
            last: f.last,
            src_port: f.src_port,
            dst_port: f.dst_port,
            tcp_flags: f.tcp_flags,
            protocol: f.protocol_number,
            tos: f.tos,
            src_as: f.src_as,
            dst_as: f.dst_as,
            src_mask: f.src_mask,
            dst_mask: f.dst_mask,
        }
    }

    fn from_v7(f: &netflow_parser::static_versions::v7::FlowSet) -> Self {
        LegacyFlow {
            src: f.src_addr,
            dst: f.dst_addr,
            next_hop: f.next_hop,
            input: f.input,
            output: f.output,
            packets: f.d_pkts,
            octets: f.d_octets,
            first: f.first,
            last: f.last,
            src_port: f.src_port,
            dst_port: f.dst_port,
            tcp_flags: f.tcp_flags,
            protocol: f.protocol_number,
            tos: f.tos,
            src_as: f.src_as,
            dst_as: f.dst_as,
            src_mask: f.src_mask,
            dst_mask: f.dst_mask,
        }
    }
}

impl Emitter<'_> {
    /// A v5/v7 record: the header's rate, then the configured rules.
    fn legacy(&mut self, f: LegacyFlow) {
        let header = match self.ctx.sampling {
            Some(n) => sampling::Resolved::Rate(n, sampling::SamplingSource::Header),
            None => sampling::Resolved::Unknown,
        };
        let in_if = Some(u32::from(f.input));
        let r = self
            .rules
            .apply(self.ctx.exporter, self.ctx.domain, in_if, header);
        self.counts.count(r);
        self.out.push(legacy_record(&self.ctx, f, r));
    }
}

/// A v5/v7 record (Cisco's fixed format) as a FlowRecord.
fn legacy_record(ctx: &Ctx, f: LegacyFlow, sampling: sampling::Resolved) -> FlowRecord {
    let mut r = FlowRecord::new(RecordKind::Flow, ctx.exporter, ctx.version);
    r.observation_domain = ctx.domain;
    r.export_time_ms = ctx.export_ms;
    r.src_addr = Some(IpAddr::V4(f.src));
    r.dst_addr = Some(IpAddr::V4(f.dst));
    r.next_hop = Some(IpAddr::V4(f.next_hop));
    r.src_port = Some(f.src_port);
    r.dst_port = Some(f.dst_port);
    r.protocol = Some(f.protocol);
    r.tcp_flags = Some(u16::from(f.tcp_flags));
    r.tos = Some(f.tos);
    r.in_if = Some(u32::from(f.input));
    r.out_if = Some(u32::from(f.output));
    r.src_as = Some(u32::from(f.src_as));
    r.dst_as = Some(u32::from(f.dst_as));
    r.src_mask = Some(f.src_mask);
    r.dst_mask = Some(f.dst_mask);
    r.raw_bytes = Some(u64::from(f.octets));
    r.raw_packets = Some(u64::from(f.packets));
    let mut mult = 1;
    if let sampling::Resolved::Rate(n, src) = sampling {
        r.sampling_interval = Some(n);
        r.sampling_source = Some(src);
        mult = u64::from(n.max(1));
    }
    r.bytes = Some(u64::from(f.octets) * mult);
    r.packets = Some(u64::from(f.packets) * mult);
    if let Some(up) = ctx.uptime_ms {
        r.first_ms = Some(time::uptime_to_unix_ms(ctx.export_ms, up, f.first));
        r.last_ms = Some(time::uptime_to_unix_ms(ctx.export_ms, up, f.last));
    }
    r.icmp_type = normalize::icmp_from_ports(r.src_port, r.dst_port);
    r
}
