//! Telemetry: the one place that touches `metrics` and operational logs.
//!
//! In: events from the stages (datagram received or dropped, records decoded,
//! decode failures, sequence loss). Out: counters through the `metrics` facade
//! (served by [`exporter`], listed in [`catalog`]) and rate-limited `tracing`
//! logs. Handles are registered once per stage instance, outside the hot loop.
//! Labels are a small fixed set (`listener` index, `reason` codes, `version`):
//! never addresses, ports or error text.

pub mod catalog;
pub mod exporter;
pub mod hooks;
pub mod probe;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, counter, gauge};
use rustc_hash::FxHashMap;

/// Allows one log line per key per interval; counts what it held back.
#[derive(Debug)]
pub struct RateLimit {
    every: Duration,
    last: HashMap<&'static str, (Instant, u64)>,
}

impl RateLimit {
    pub fn new(every: Duration) -> Self {
        RateLimit {
            every,
            last: HashMap::new(),
        }
    }

    /// `Some(suppressed_since_last)` when a line for `key` may be logged now.
    pub fn allow(&mut self, key: &'static str) -> Option<u64> {
        let now = Instant::now();
        match self.last.get_mut(key) {
            Some((t, n)) if now.duration_since(*t) < self.every => {
                *n += 1;
                None
            }
            Some((t, n)) => {
                let held = *n;
                *t = now;
                *n = 0;
                Some(held)
            }
            None => {
                self.last.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

/// Why a datagram was dropped before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The decoder shard's queue was full.
    QueueFull,
    /// The exporter is not in `ingest.allow`.
    NotAllowed,
    /// Larger than a UDP datagram can be (or than the receive buffer).
    Oversized,
}

impl DropReason {
    pub fn code(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::NotAllowed => "not_allowed",
            DropReason::Oversized => "oversized",
        }
    }
}

/// Counters of one UDP socket.
pub struct IngestTelemetry {
    pub received: Counter,
    pub bytes: Counter,
    dropped: [Counter; 3],
    logs: RateLimit,
}

impl IngestTelemetry {
    pub fn new(listener: &str) -> Self {
        let l = listener.to_string();
        let drop = |r: DropReason| counter!("flowhook_ingest_datagrams_dropped_total", "listener" => l.clone(), "reason" => r.code());
        IngestTelemetry {
            received: counter!("flowhook_ingest_datagrams_total", "listener" => l.clone()),
            bytes: counter!("flowhook_ingest_bytes_total", "listener" => l.clone()),
            dropped: [
                drop(DropReason::QueueFull),
                drop(DropReason::NotAllowed),
                drop(DropReason::Oversized),
            ],
            logs: RateLimit::new(Duration::from_secs(10)),
        }
    }

    /// `n` datagrams dropped for `reason`.
    pub fn dropped(&mut self, reason: DropReason, n: u64) {
        let i = match reason {
            DropReason::QueueFull => 0,
            DropReason::NotAllowed => 1,
            DropReason::Oversized => 2,
        };
        self.dropped[i].increment(n);
        if let Some(held) = self.logs.allow(reason.code()) {
            tracing::warn!(
                reason = reason.code(),
                dropped = n,
                suppressed = held,
                "datagrams dropped before decoding"
            );
        }
    }
}

/// Most distinct exporter label values; past it exporters share the label `other`.
pub const MAX_EXPORTER_LABELS: usize = 1024;

/// The `exporter` label of an address: its text while fewer than
/// [`MAX_EXPORTER_LABELS`] exporters have one, else `other`.
pub fn exporter_label(ip: std::net::IpAddr) -> String {
    use std::sync::{Mutex, OnceLock};
    static SEEN: OnceLock<Mutex<std::collections::HashSet<std::net::IpAddr>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if seen.contains(&ip) || (seen.len() < MAX_EXPORTER_LABELS && seen.insert(ip)) {
        ip.to_string()
    } else {
        "other".into()
    }
}

/// Pre-registers the series whose label values are known in advance, so
/// dashboards and alert rules see zeros instead of gaps.
pub fn register_known_series(scripts: &[String], geo_dbs: &[&'static str]) {
    use crate::flow::{EndReason, EventKind};
    for r in EndReason::ALL {
        counter!("flowhook_flows_ended_total", "reason" => r.name()).absolute(0);
    }
    for k in EventKind::ALL {
        counter!("flowhook_script_events_dropped_total", "hook" => k.name()).absolute(0);
    }
    for result in ["ok", "failed"] {
        counter!("flowhook_script_reloads_total", "result" => result).absolute(0);
        counter!("flowhook_geo_reloads_total", "result" => result).absolute(0);
        counter!("flowhook_state_writes_total", "result" => result).absolute(0);
    }
    for reason in ["read", "header", "version", "truncated", "checksum", "body"] {
        counter!("flowhook_state_load_errors_total", "reason" => reason).absolute(0);
    }
    counter!("flowhook_state_snapshots_deferred_total").absolute(0);
    counter!("flowhook_script_workers_replaced_total").absolute(0);
    counter!("flowhook_state_templates_restored_total").absolute(0);
    gauge!("flowhook_state_templates").set(0.0);
    for s in scripts {
        counter!("flowhook_script_alerts_suppressed_total", "script" => s.clone()).absolute(0);
        for k in EventKind::ALL {
            for kind in ["runtime", "timeout", "memory"] {
                counter!("flowhook_script_errors_total", "script" => s.clone(), "hook" => k.name(), "kind" => kind).absolute(0);
            }
        }
    }
    for db in geo_dbs {
        for result in ["found", "not_found", "error"] {
            counter!("flowhook_geo_lookups_total", "db" => *db, "result" => result).absolute(0);
        }
    }
}

/// Counters of one decoder shard.
pub struct DecodeTelemetry {
    // Fx, not SipHash: looked up per datagram, keyed by exporters we already accepted
    records: FxHashMap<(std::net::IpAddr, u16, bool), Counter>,
    sampling: FxHashMap<(std::net::IpAddr, usize), Counter>,
    /// Flow records (exporter, version) and sampling sources (exporter,
    /// source) counted but not added yet: consecutive datagrams mostly come
    /// from one exporter, so a batch adds to each counter once
    /// ([`DecodeTelemetry::publish`]).
    pending_records: Held<(std::net::IpAddr, u16)>,
    pending_sampling: Held<(std::net::IpAddr, usize)>,
    errors: FxHashMap<(std::net::IpAddr, &'static str), Counter>,
    pub seq_gaps: Counter,
    pub seq_lost: Counter,
    pub seq_late: Counter,
    pub restarts: Counter,
    pub trailing_bytes: Counter,
    pub missing_template_sets: Counter,
    pub streams: Gauge,
    templates: Gauge,
    pending_now: Gauge,
    template_counters: [Counter; 6],
    last_template_stats: [u64; 6],
    logs: RateLimit,
}

impl DecodeTelemetry {
    pub fn new(shard: usize) -> Self {
        let s = shard.to_string();
        DecodeTelemetry {
            records: FxHashMap::default(),
            sampling: FxHashMap::default(),
            pending_records: Held::default(),
            pending_sampling: Held::default(),
            errors: FxHashMap::default(),
            seq_gaps: counter!("flowhook_decode_sequence_gaps_total"),
            seq_lost: counter!("flowhook_decode_sequence_lost_total"),
            seq_late: counter!("flowhook_decode_sequence_late_total"),
            restarts: counter!("flowhook_decode_exporter_restarts_total"),
            trailing_bytes: counter!("flowhook_decode_trailing_bytes_total"),
            missing_template_sets: counter!("flowhook_decode_sets_without_template_total"),
            streams: gauge!("flowhook_decode_exporter_streams", "shard" => s.clone()),
            templates: gauge!("flowhook_decode_templates", "shard" => s.clone()),
            pending_now: gauge!("flowhook_decode_pending_sets", "shard" => s),
            template_counters: [
                counter!("flowhook_decode_template_events_total", "event" => "added"),
                counter!("flowhook_decode_template_events_total", "event" => "evicted"),
                counter!("flowhook_decode_template_events_total", "event" => "expired"),
                counter!("flowhook_decode_pending_sets_total", "result" => "held"),
                counter!("flowhook_decode_pending_sets_total", "result" => "replayed"),
                counter!("flowhook_decode_pending_sets_total", "result" => "dropped"),
            ],
            last_template_stats: [0; 6],
            logs: RateLimit::new(Duration::from_secs(10)),
        }
    }

    /// One datagram's flow records by where their sampling rate came from.
    pub fn sampling(
        &mut self,
        exporter: std::net::IpAddr,
        c: &crate::decode::sampling::SourceCounts,
    ) {
        use crate::decode::sampling::SourceCounts;
        for (i, n) in c.0.iter().enumerate().filter(|(_, n)| **n > 0) {
            if self.pending_sampling.add(&(exporter, i), *n) {
                continue;
            }
            let counter = self
                .sampling
                .entry((exporter, i))
                .or_insert_with(|| {
                    counter!(
                        "flowhook_decode_records_sampling_total",
                        "exporter" => exporter_label(exporter),
                        "source" => SourceCounts::LABELS[i]
                    )
                })
                .clone();
            self.pending_sampling.hold((exporter, i), counter, *n);
        }
        if self.sampling.len() > 4 * MAX_EXPORTER_LABELS {
            self.sampling.clear();
        }
    }

    /// Adds what the last datagrams counted to the shared counters (at the
    /// end of each batch).
    pub fn publish(&mut self) {
        self.pending_records.publish();
        self.pending_sampling.publish();
    }

    /// Template and held-data totals of the shard's decoder.
    pub fn template_stats(&mut self, t: &crate::decode::TemplateStats) {
        self.templates.set(t.templates as f64);
        self.pending_now.set(t.pending_now as f64);
        let now = [
            t.inserted,
            t.evicted,
            t.expired,
            t.pending_held,
            t.pending_replayed,
            t.pending_dropped,
        ];
        for ((n, last), counter) in now
            .iter()
            .zip(self.last_template_stats.iter_mut())
            .zip(&self.template_counters)
        {
            // totals of evicted exporters vanish; count only growth
            if *n > *last {
                counter.increment(*n - *last);
            }
            *last = *n;
        }
    }

    /// Records decoded in one datagram from `exporter`.
    pub fn records(
        &mut self,
        exporter: std::net::IpAddr,
        version: u16,
        flows: usize,
        options: usize,
    ) {
        for (is_flow, n) in [(true, flows), (false, options)] {
            if n == 0 {
                continue;
            }
            // flow records: added up while the exporter stays the same
            if is_flow && self.pending_records.add(&(exporter, version), n as u64) {
                continue;
            }
            let c = self.records.entry((exporter, version, is_flow)).or_insert_with(|| {
                counter!("flowhook_decode_records_total", "exporter" => exporter_label(exporter), "version" => version.to_string(), "kind" => if is_flow { "flow" } else { "options" })
            });
            if is_flow {
                self.pending_records
                    .hold((exporter, version), c.clone(), n as u64);
            } else {
                c.increment(n as u64);
            }
        }
        if self.records.len() > 4 * MAX_EXPORTER_LABELS {
            self.records.clear();
        }
    }

    /// A datagram (or part of one) that could not be decoded.
    pub fn error(
        &mut self,
        code: &'static str,
        exporter: std::net::IpAddr,
        detail: &dyn std::fmt::Display,
    ) {
        self.errors
            .entry((exporter, code))
            .or_insert_with(|| counter!("flowhook_decode_errors_total", "exporter" => exporter_label(exporter), "reason" => code))
            .increment(1);
        if self.errors.len() > 4 * MAX_EXPORTER_LABELS {
            self.errors.clear();
        }
        if let Some(held) = self.logs.allow(code) {
            tracing::warn!(reason = code, %exporter, suppressed = held, "decode error: {detail}");
        }
    }
}

/// Counters of one flow table shard.
pub struct FlowTelemetry {
    active: Gauge,
    started: Counter,
    evicted: Counter,
    events: [Counter; 4],
    ended: [Counter; crate::flow::EndReason::ALL.len()],
    last_started: u64,
    last_ended: u64,
    last_evicted: u64,
    last_skipped: [u64; 4],
    /// Events and ends counted since the last [`FlowTelemetry::publish`]
    /// (a shared counter touched per batch, not per event).
    pending_events: [u64; 4],
    pending_ended: [u64; crate::flow::EndReason::ALL.len()],
}

impl FlowTelemetry {
    pub fn new(shard: usize) -> Self {
        use crate::flow::EventKind;
        FlowTelemetry {
            active: gauge!("flowhook_flows_active", "shard" => shard.to_string()),
            started: counter!("flowhook_flows_started_total"),
            evicted: counter!("flowhook_flows_evicted_total"),
            events: EventKind::ALL
                .map(|k| counter!("flowhook_flow_events_total", "event" => k.name())),
            ended: crate::flow::EndReason::ALL
                .map(|r| counter!("flowhook_flows_ended_total", "reason" => r.name())),
            last_started: 0,
            last_ended: 0,
            last_evicted: 0,
            last_skipped: [0; 4],
            pending_events: [0; 4],
            pending_ended: [0; crate::flow::EndReason::ALL.len()],
        }
    }

    /// One lifecycle event emitted (published by [`FlowTelemetry::publish`]).
    #[inline]
    pub fn event(&mut self, e: &crate::flow::FlowEvent) {
        self.pending_events[e.kind as usize] += 1;
        if let Some(r) = e.flow.end_reason {
            self.pending_ended[r as usize] += 1;
        }
    }

    /// The events counted since the last call, onto the shared counters.
    pub fn publish(&mut self) {
        for (c, n) in self.events.iter().zip(&mut self.pending_events) {
            if *n > 0 {
                c.increment(std::mem::take(n));
            }
        }
        for (c, n) in self.ended.iter().zip(&mut self.pending_ended) {
            if *n > 0 {
                c.increment(std::mem::take(n));
            }
        }
    }

    /// The table's size and counters (and the events counted so far).
    pub fn table(&mut self, t: &crate::flow::FlowTable) {
        self.publish();
        // shared metrics are touched only when they move (this runs per batch)
        if t.stats.started != self.last_started || t.stats.ended != self.last_ended {
            self.active.set(t.len() as f64);
            self.last_ended = t.stats.ended;
        }
        if t.stats.started != self.last_started {
            self.started.increment(t.stats.started - self.last_started);
            self.last_started = t.stats.started;
        }
        if t.stats.evicted != self.last_evicted {
            self.evicted.increment(t.stats.evicted - self.last_evicted);
            self.last_evicted = t.stats.evicted;
        }
        // events nobody takes are not built, but they happened
        for (k, n) in t.stats.skipped.iter().enumerate() {
            if *n != self.last_skipped[k] {
                self.events[k].increment(n - self.last_skipped[k]);
                self.last_skipped[k] = *n;
            }
        }
    }
}

/// One counter's count held back while the key stays the same.
struct Held<K> {
    held: Option<(K, Counter, u64)>,
}

impl<K> Default for Held<K> {
    fn default() -> Self {
        Held { held: None }
    }
}

impl<K: PartialEq> Held<K> {
    /// Adds `n` when `key` is the key held (true); else publishes what is
    /// held (false: the caller looks the counter up and [`Held::hold`]s it).
    fn add(&mut self, key: &K, n: u64) -> bool {
        match &mut self.held {
            Some((k, _, held)) if k == key => {
                *held += n;
                true
            }
            _ => {
                self.publish();
                false
            }
        }
    }

    fn hold(&mut self, key: K, counter: Counter, n: u64) {
        self.publish();
        self.held = Some((key, counter, n));
    }

    fn publish(&mut self) {
        if let Some((_, c, n)) = self.held.take() {
            c.increment(n);
        }
    }
}

/// Counters of enrichment (one per worker).
/// The state file: writes, restores, snapshots put off.
pub struct StateTelemetry;

impl StateTelemetry {
    /// One write of the state file holding `templates` templates.
    pub fn written(res: &Result<(), crate::state::StateError>, templates: usize) {
        match res {
            Ok(()) => {
                counter!("flowhook_state_writes_total", "result" => "ok").increment(1);
                gauge!("flowhook_state_templates").set(templates as f64);
            }
            Err(e) => {
                counter!("flowhook_state_writes_total", "result" => "failed").increment(1);
                tracing::warn!("state file not written: {e}");
            }
        }
    }

    /// Templates restored (at start, or taken over from another instance).
    pub fn restored(templates: usize) {
        counter!("flowhook_state_templates_restored_total").increment(templates as u64);
    }

    /// The state file could not be used at start.
    pub fn load_failed(e: &crate::state::StateError) {
        counter!("flowhook_state_load_errors_total", "reason" => e.code()).increment(1);
        tracing::warn!("{e}; ignored: templates are learnt again from the exporters");
    }

    /// A shard's snapshot found the writer's queue full (sent on a later turn).
    pub fn snapshot_deferred() {
        counter!("flowhook_state_snapshots_deferred_total").increment(1);
    }
}

pub struct GeoTelemetry {
    lookups: HashMap<(&'static str, &'static str), Counter>,
    hits: Counter,
    misses: Counter,
}

impl Default for GeoTelemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl GeoTelemetry {
    pub fn new() -> Self {
        GeoTelemetry {
            lookups: HashMap::new(),
            hits: counter!("flowhook_geo_cache_total", "result" => "hit"),
            misses: counter!("flowhook_geo_cache_total", "result" => "miss"),
        }
    }

    /// One database lookup with its result (`found`, `not_found`, `error`).
    pub fn lookup(&mut self, db: &'static str, result: &'static str) {
        self.lookups
            .entry((db, result))
            .or_insert_with(
                || counter!("flowhook_geo_lookups_total", "db" => db, "result" => result),
            )
            .increment(1);
    }

    pub fn cache(&mut self, hit: bool) {
        if hit {
            self.hits.increment(1)
        } else {
            self.misses.increment(1)
        }
    }

    /// A database reload attempt (`ok`, `failed`).
    pub fn reload(result: &'static str, detail: Option<&dyn std::fmt::Display>) {
        counter!("flowhook_geo_reloads_total", "result" => result).increment(1);
        match detail {
            Some(d) => tracing::error!(
                "geolocation reload failed, the previous databases stay in service: {d}"
            ),
            None => tracing::info!("geolocation databases reloaded"),
        }
    }
}

pub use hooks::HookTimer;

/// Script outcomes (one per script host; call timings are [`HookTimer`]s).
#[derive(Default)]
pub struct ScriptTelemetry {
    errors: HashMap<(String, &'static str, &'static str), Counter>,
    logs: Option<RateLimit>,
}

impl ScriptTelemetry {
    /// A failed call: counted by kind (`runtime`, `timeout`, `memory`), logged with file and line (rate-limited).
    pub fn failed(
        &mut self,
        script: &str,
        hook: &'static str,
        kind: &'static str,
        e: &dyn std::fmt::Display,
    ) {
        self.errors
            .entry((script.to_string(), hook, kind))
            .or_insert_with(|| counter!("flowhook_script_errors_total", "script" => script.to_string(), "hook" => hook, "kind" => kind))
            .increment(1);
        let logs = self
            .logs
            .get_or_insert_with(|| RateLimit::new(Duration::from_secs(5)));
        if let Some(held) = logs.allow(kind) {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default().to_string();
            tracing::warn!(
                script,
                hook,
                kind,
                suppressed = held,
                "script error: {first}"
            );
        }
    }

    pub fn set_enabled(&mut self, script: &str, enabled: bool) {
        gauge!("flowhook_script_enabled", "script" => script.to_string()).set(if enabled {
            1.0
        } else {
            0.0
        });
    }

    /// The counter of `script`'s alerts of `status` at `severity` (the
    /// host keeps it: registered once per script, status and severity).
    pub fn alert_counter(script: &str, status: &str, severity: &'static str) -> Counter {
        counter!("flowhook_script_alerts_total", "script" => script.to_string(), "status" => status.to_string(), "severity" => severity)
    }

    pub fn suppressed(&mut self, script: &str) {
        counter!("flowhook_script_alerts_suppressed_total", "script" => script.to_string())
            .increment(1);
    }

    /// A scripts reload attempt.
    pub fn reloaded(ok: bool) {
        counter!("flowhook_script_reloads_total", "result" => if ok { "ok" } else { "failed" })
            .increment(1);
    }

    /// The counter of events of hook `k` that did not reach the scripts
    /// because a worker's queue was full (registered once, by the runner).
    /// A script worker stuck past its hard limit was replaced (its event lost).
    pub fn worker_replaced() {
        counter!("flowhook_script_workers_replaced_total").increment(1);
    }

    pub fn dropped_handle(k: crate::flow::EventKind) -> Counter {
        counter!("flowhook_script_events_dropped_total", "hook" => k.name())
    }
}

/// Counters of a sink.
pub struct SinkTelemetry {
    pub written: Counter,
    pub errors: Counter,
    logs: RateLimit,
}

impl SinkTelemetry {
    pub fn new(sink: &'static str) -> Self {
        SinkTelemetry {
            written: counter!("flowhook_sink_records_written_total", "sink" => sink),
            errors: counter!("flowhook_sink_write_errors_total", "sink" => sink),
            logs: RateLimit::new(Duration::from_secs(10)),
        }
    }

    pub fn write_failed(&mut self, detail: &dyn std::fmt::Display) {
        self.errors.increment(1);
        if let Some(held) = self.logs.allow("write") {
            tracing::error!(suppressed = held, "sink write failed: {detail}");
        }
    }
}

/// One alert delivery target's metrics (`flowhook_sink_…{sink,target}`).
#[derive(Clone)]
pub struct DeliveryTelemetry {
    sink: &'static str,
    target: String,
    pub sent: Counter,
    pub queue_full: Counter,
    pub rejected: Counter,
    pub shutdown: Counter,
    pub depth: metrics::Gauge,
    pub duration: metrics::Histogram,
}

/// Error codes of `flowhook_sink_failed_total`.
pub const DELIVERY_ERROR_CODES: [&str; 6] =
    ["connect", "timeout", "tls", "io", "http_4xx", "http_5xx"];

impl DeliveryTelemetry {
    /// Registers every series of `target` (so they read 0 before anything happens).
    pub fn new(sink: &'static str, target: &str) -> Self {
        let t = target.to_string();
        for code in DELIVERY_ERROR_CODES {
            counter!("flowhook_sink_failed_total", "sink" => sink, "target" => t.clone(), "code" => code).absolute(0);
        }
        let dropped = |reason: &'static str| {
            let c = counter!("flowhook_sink_dropped_total", "sink" => sink, "target" => t.clone(), "reason" => reason);
            c.absolute(0);
            c
        };
        let sent = counter!("flowhook_sink_sent_total", "sink" => sink, "target" => t.clone());
        sent.absolute(0);
        let depth = gauge!("flowhook_sink_queue_depth", "sink" => sink, "target" => t.clone());
        depth.set(0.0);
        DeliveryTelemetry {
            sink,
            sent,
            queue_full: dropped("queue_full"),
            rejected: dropped("rejected"),
            shutdown: dropped("shutdown"),
            depth,
            duration: metrics::histogram!("flowhook_sink_request_duration_seconds", "sink" => sink, "target" => t.clone()),
            target: t,
        }
    }

    /// The target's label value.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Counts a failed attempt with its stable code.
    pub fn failed(&self, code: &'static str) {
        counter!("flowhook_sink_failed_total", "sink" => self.sink, "target" => self.target.clone(), "code" => code).increment(1);
    }
}

/// Codes of `flowhook_sink_failed_total{sink="kafka"}`: why the client gave a message up.
pub const KAFKA_FAILURE_CODES: [&str; 6] = [
    "timeout",
    "too_large",
    "unknown_topic",
    "auth",
    "broker",
    "other",
];

/// Reasons of `flowhook_sink_dropped_total{sink="kafka"}`: messages never handed to the client, or left at shutdown.
pub const KAFKA_DROP_REASONS: [&str; 5] =
    ["queue_full", "too_large", "encode", "error", "shutdown"];

/// The Kafka sink's metrics for one topic (`flowhook_sink_…{sink="kafka",target=topic}`).
pub struct KafkaTopicTelemetry {
    pub sent: Counter,
    failed: [Counter; KAFKA_FAILURE_CODES.len()],
    dropped: [Counter; KAFKA_DROP_REASONS.len()],
    pub depth: Gauge,
}

impl KafkaTopicTelemetry {
    /// Registers every series of `topic`.
    pub fn new(topic: &str) -> Self {
        let t = topic.to_string();
        let failed = KAFKA_FAILURE_CODES.map(|code| {
            let c = counter!("flowhook_sink_failed_total", "sink" => "kafka", "target" => t.clone(), "code" => code);
            c.absolute(0);
            c
        });
        let dropped = KAFKA_DROP_REASONS.map(|reason| {
            let c = counter!("flowhook_sink_dropped_total", "sink" => "kafka", "target" => t.clone(), "reason" => reason);
            c.absolute(0);
            c
        });
        let sent = counter!("flowhook_sink_sent_total", "sink" => "kafka", "target" => t.clone());
        sent.absolute(0);
        let depth = gauge!("flowhook_sink_queue_depth", "sink" => "kafka", "target" => t);
        depth.set(0.0);
        KafkaTopicTelemetry {
            sent,
            failed,
            dropped,
            depth,
        }
    }

    /// Counts `n` messages the client gave up, by code (one of [`KAFKA_FAILURE_CODES`]).
    pub fn failed(&self, code: &str, n: u64) {
        let i = KAFKA_FAILURE_CODES
            .iter()
            .position(|c| *c == code)
            .unwrap_or(KAFKA_FAILURE_CODES.len() - 1);
        self.failed[i].increment(n);
    }

    /// Counts `n` dropped messages, by reason (one of [`KAFKA_DROP_REASONS`]).
    pub fn dropped(&self, reason: &str, n: u64) {
        if let Some(i) = KAFKA_DROP_REASONS.iter().position(|r| *r == reason) {
            self.dropped[i].increment(n);
        }
    }
}

/// A broker as the Kafka client's statistics saw it: up or not, and its
/// request round-trip times (mean and 99th percentile) when it answered.
pub fn kafka_broker(broker: &str, up: bool, rtt: Option<(f64, f64)>) {
    let b = broker.to_string();
    gauge!("flowhook_kafka_broker_up", "broker" => b.clone()).set(if up { 1.0 } else { 0.0 });
    if let Some((avg, p99)) = rtt {
        gauge!("flowhook_kafka_broker_rtt_seconds", "broker" => b.clone(), "stat" => "mean")
            .set(avg);
        gauge!("flowhook_kafka_broker_rtt_seconds", "broker" => b, "stat" => "p99").set(p99);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Datagrams' record counts kept back while the exporter stays the
    /// same add up, exporter by exporter and source by source, once
    /// published (the end of a batch).
    #[test]
    fn decode_counts_add_up_when_published() {
        use crate::decode::sampling::SourceCounts;
        let rec = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = rec.handle();
        metrics::with_local_recorder(&rec, || {
            let mut t = DecodeTelemetry::new(0);
            let (a, b): (std::net::IpAddr, std::net::IpAddr) = (
                "192.0.2.201".parse().unwrap(),
                "192.0.2.202".parse().unwrap(),
            );
            let mut header = SourceCounts::default();
            header.0[1] = 1;
            let mut none = SourceCounts::default();
            none.0[0] = 1;
            for (e, n, opts, s) in [
                (a, 30, 0, &header),
                (a, 30, 2, &header),
                (b, 5, 0, &none),
                (a, 1, 0, &none),
                (a, 4, 0, &none),
            ] {
                t.records(e, 9, n, opts);
                t.sampling(e, s);
            }
            t.publish();
            // a second batch onto the same counters
            t.records(b, 10, 7, 0);
            t.publish();
        });
        let text = handle.render();
        let value = |needle: &[&str]| -> f64 {
            text.lines()
                .filter(|l| l.starts_with("flowhook_decode_records"))
                .find(|l| needle.iter().all(|n| l.contains(n)))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
                .unwrap_or(-1.0)
        };
        let rec_total = "flowhook_decode_records_total{";
        let samp = "flowhook_decode_records_sampling_total{";
        let (ea, eb) = ("\"192.0.2.201\"", "\"192.0.2.202\"");
        assert_eq!(value(&[rec_total, ea, "\"flow\"", "\"9\""]), 65.0, "{text}");
        assert_eq!(value(&[rec_total, ea, "\"options\""]), 2.0, "{text}");
        assert_eq!(value(&[rec_total, eb, "\"flow\"", "\"9\""]), 5.0, "{text}");
        assert_eq!(value(&[rec_total, eb, "\"flow\"", "\"10\""]), 7.0, "{text}");
        assert_eq!(value(&[samp, ea, "\"header\""]), 2.0, "{text}");
        assert_eq!(value(&[samp, ea, "\"none\""]), 2.0, "{text}");
        assert_eq!(value(&[samp, eb, "\"none\""]), 1.0, "{text}");
    }

    #[test]
    fn rate_limit_holds_back_and_reports() {
        let mut r = RateLimit::new(Duration::from_secs(3600));
        assert_eq!(r.allow("a"), Some(0));
        assert_eq!(r.allow("a"), None);
        assert_eq!(r.allow("a"), None);
        assert_eq!(r.allow("b"), Some(0));
        let mut r = RateLimit::new(Duration::ZERO);
        assert_eq!(r.allow("a"), Some(0));
        assert_eq!(r.allow("a"), Some(0));
    }
}
