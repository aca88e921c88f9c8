//! The flow table of one shard: stitches records into bidirectional flows and
//! turns their life into lifecycle events.
//!
//! In: batches of flow records (one datagram's worth), in their [`Compact`]
//! form or as [`FlowRecord`]s converted on the way in, and clock ticks
//! (wall clock in `serve`, capture time in `replay`). Out: [`FlowEvent`]s in
//! the order they happen. Bounded by `max_flows`: when full, the least
//! recently updated flow ends with reason `evicted`. The rules (client/server
//! choice, counting, when each event fires) are in `docs/lifecycle.md`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use super::classify;
use super::event::{EndReason, EventKind, FlowEvent, FlowView};
use super::index::FlowIndex;
use super::key::{Addr, FlowKey, KeyHasher, ip};
use super::sources::Sources;
use super::status::{self, StatusSet};
use crate::enrich::{Enricher, GeoInfo};
use crate::record::{Compact, FlowRecord, Has, RecordKind};

/// Table settings (from `[flow]`).
#[derive(Debug, Clone)]
pub struct TableConfig {
    pub max_flows: usize,
    /// No record for this long (plus the exporter's observed active timeout) ends a flow.
    pub idle_timeout_ms: i64,
    /// `periodicUpdate` interval.
    pub periodic_ms: i64,
    /// After an end signal (FIN both ways, RST, IE 136), how long to wait for the other direction's records.
    pub end_grace_ms: i64,
}

impl Default for TableConfig {
    fn default() -> Self {
        Self::from_config(&crate::config::FlowConfig::default(), 1)
    }
}

impl TableConfig {
    /// The settings of one of `shards` tables from `[flow]`.
    pub fn from_config(c: &crate::config::FlowConfig, shards: usize) -> Self {
        TableConfig {
            max_flows: (c.max_flows / shards.max(1)).max(1),
            idle_timeout_ms: c.idle_timeout_secs as i64 * 1000,
            periodic_ms: c.periodic_update_secs as i64 * 1000,
            end_grace_ms: c.end_grace_secs as i64 * 1000,
        }
    }
}

/// How sure the client/server choice is (stronger evidence replaces weaker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Decision {
    /// The first record seen; nothing better known.
    FirstSeen,
    /// One side uses a service port, the other an ephemeral one.
    Port,
    /// The earlier start time.
    StartTime,
    /// A SYN without ACK, or an ICMP request.
    Syn,
    /// RFC 5103 biflowDirection or a biflow/initiator record.
    Exporter,
}

const NIL: u32 = u32::MAX;

/// A flow's key as its entry keeps it: the exporter and observation domain
/// as the table's [`Sources`] id (the full [`FlowKey`] is rebuilt for the
/// stable hash and the snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    a_addr: Addr,
    b_addr: Addr,
    src: u32,
    a_port: u16,
    b_port: u16,
    vlan: u16,
    proto: u8,
}

impl Key {
    fn of(k: &FlowKey, src: u32) -> Key {
        Key {
            a_addr: k.a_addr,
            b_addr: k.b_addr,
            src,
            a_port: k.a_port,
            b_port: k.b_port,
            vlan: k.vlan,
            proto: k.proto,
        }
    }
}

/// One tracked flow: what a record's update reads and writes. Side 0 is
/// the key's `a`, side 1 its `b`. Two cache lines exactly, aligned to them,
/// so the second pass of `ingest` prefetches two lines per record; what
/// usual updates never touch is in [`Cold`], beside the slab.
#[derive(Debug, Clone)]
#[repr(align(64))]
struct Flow {
    key: Key,
    first_ms: i64,
    last_ms: i64,
    updated_ms: i64,
    bytes: [u64; 2],
    packets: [u64; 2],
    /// Fingerprint of the last counted record per side, so a repeated record is not counted twice.
    last_counted: [u32; 2],
    flags: [u8; 2],
    in_if: u32,
    out_if: u32,
    l7: u16,
    ending: Option<EndReason>,
    /// [`CLI_IS_A`], [`DETECTED`] and [`TOUCHED`].
    bits: u8,
    decision: Decision,
    /// Moves on when the flow ends and when its slot is taken again: even
    /// while the slot holds a live flow, odd while it is free.
    generation: u32,
}

/// The rest of a tracked flow, one cache line per slab slot: read when an
/// event is built, written by records that carry running totals or
/// sampling, by a live TCP status, and when the flow starts.
#[derive(Debug, Clone)]
#[repr(align(64))]
struct Cold {
    status: StatusSet,
    /// Last running totals seen per side (bytes, packets), for exporters that send totals.
    totals: [(u64, u64); 2],
    /// Sampling interval of the last record (1 in N; 0 or 1: not sampled).
    sampling: u32,
    sampling_source: Option<crate::record::SamplingSource>,
    /// Enrichment of side a and side b, looked up when the flow was created
    /// (taken by the flow's `flowEnd`, so the last snapshot costs no
    /// reference-count updates).
    geo: [Option<Arc<GeoInfo>>; 2],
}

const _: () = assert!(std::mem::size_of::<Flow>() == 128 && std::mem::size_of::<Cold>() == 64);

/// [`Flow::bits`]: the client is side a.
const CLI_IS_A: u8 = 1;
/// [`Flow::bits`]: `protocolDetected` was sent.
const DETECTED: u8 = 2;
/// [`Flow::bits`]: a record of the datagram being taken updated the flow
/// (it is in `touched`; cleared when the datagram's events are out).
const TOUCHED: u8 = 4;

impl Flow {
    #[inline]
    fn cli_is_a(&self) -> bool {
        self.bits & CLI_IS_A != 0
    }

    #[inline]
    fn set_cli_is_a(&mut self, yes: bool) {
        self.bits = (self.bits & !CLI_IS_A) | if yes { CLI_IS_A } else { 0 };
    }

    #[inline]
    fn detected(&self) -> bool {
        self.bits & DETECTED != 0
    }

    /// Indexes of the client's side and the server's.
    #[inline]
    fn sides(&self) -> (usize, usize) {
        if self.cli_is_a() { (0, 1) } else { (1, 0) }
    }

    /// The slot holds a live flow (see `generation`).
    #[inline]
    fn live(&self) -> bool {
        self.generation.is_multiple_of(2)
    }
}

/// A record of the datagram being ingested, between the passes.
#[derive(Debug, Clone, Copy)]
struct Pending {
    n: u32,
    /// Its source NIL when the source had no live flow in the first pass.
    key: Key,
    src_is_a: bool,
    hash: u64,
    /// The index's candidate slot (second pass), or NIL.
    slot: u32,
}

/// Counters of a table (read by telemetry).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableStats {
    pub started: u64,
    pub ended: u64,
    pub evicted: u64,
    pub records: u64,
    pub records_without_tuple: u64,
    pub duplicates: u64,
    /// Events of kinds nobody takes ([`FlowTable::set_wanted`]): counted, not built.
    pub skipped: [u64; 4],
}

/// The flow table.
pub struct FlowTable {
    cfg: TableConfig,
    index: FlowIndex,
    /// The current datagram's records between passes (capacity kept).
    keys: Vec<Pending>,
    /// [`FlowTable::ingest`]'s records in compact form (capacity kept).
    compact: Vec<Compact>,
    slab: Vec<Flow>,
    /// Per slab slot, the part of the flow usual updates do not touch.
    cold: Vec<Cold>,
    /// Exporter and observation domain of the flows' keys.
    sources: Sources,
    /// The keys' stable hashes, with the exporter's part kept.
    hasher: KeyHasher,
    /// LRU links (previous, next) per slab slot, apart from the slab: an
    /// update touches its neighbours' links, and in this dense array those
    /// stay in cache where the 200-byte flow entries would not.
    links: Vec<[u32; 2]>,
    free: Vec<u32>,
    lru_head: u32,
    lru_tail: u32,
    live: usize,
    periodic: BinaryHeap<Reverse<(i64, u32, u32)>>,
    ending: BinaryHeap<Reverse<(i64, u32, u32)>>,
    l7_names: Vec<Arc<str>>,
    l7_index: rustc_hash::FxHashMap<Arc<str>, u16>,
    /// Longest active timeout seen from exporters (records ended by IE 136 = 2).
    active_timeout_ms: i64,
    /// Flows the datagram being taken updated, each once ([`TOUCHED`]).
    touched: Vec<u32>,
    now_ms: i64,
    enricher: Option<Enricher>,
    no_geo: Arc<GeoInfo>,
    /// Event kinds built (indexed by `EventKind as usize`); `flowEnd` always is.
    wanted: [bool; 4],
    pub stats: TableStats,
}

const MAX_L7_NAMES: usize = 4096;

/// Flows whose slab space is reserved up front (larger tables grow past it).
const MAX_RESERVED_FLOWS: usize = 1 << 22;

impl FlowTable {
    /// A table; `enricher` looks up both sides of each new flow.
    pub fn new(cfg: TableConfig) -> Self {
        Self::with_enricher(cfg, None)
    }

    pub fn with_enricher(cfg: TableConfig, enricher: Option<Enricher>) -> Self {
        // The slab and its links are reserved for the table's bound (up to
        // 4 Mi flows) once, so they never move while growing (a copy of every
        // flow per doubling); untouched capacity is not resident.
        let reserve = cfg.max_flows.clamp(1, MAX_RESERVED_FLOWS);
        let slab = Vec::with_capacity(reserve);
        let links = Vec::with_capacity(reserve);
        let cold = Vec::with_capacity(reserve);
        let mut t = FlowTable {
            cfg,
            index: FlowIndex::new(),
            keys: Vec::new(),
            compact: Vec::new(),
            slab,
            cold,
            sources: Sources::default(),
            hasher: KeyHasher::new(),
            links,
            free: Vec::new(),
            lru_head: NIL,
            lru_tail: NIL,
            live: 0,
            periodic: BinaryHeap::new(),
            ending: BinaryHeap::new(),
            l7_names: Vec::new(),
            l7_index: rustc_hash::FxHashMap::default(),
            active_timeout_ms: 0,
            touched: Vec::new(),
            now_ms: 0,
            enricher,
            no_geo: Arc::new(GeoInfo::default()),
            wanted: [true; 4],
            stats: TableStats::default(),
        };
        t.intern("Unknown");
        for name in classify::names() {
            t.intern(name);
        }
        t
    }

    /// Flows being tracked.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The table's clock, Unix ms.
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    fn intern(&mut self, name: &str) -> u16 {
        if let Some(i) = self.l7_index.get(name) {
            return *i;
        }
        if self.l7_names.len() >= MAX_L7_NAMES {
            return 0;
        }
        let a: Arc<str> = Arc::from(name);
        let i = self.l7_names.len() as u16;
        self.l7_names.push(a.clone());
        self.l7_index.insert(a, i);
        i
    }

    // ---- LRU list (most recently updated at the tail) ----

    fn unlink(&mut self, i: u32) {
        let [p, n] = self.links[i as usize];
        if p == NIL {
            self.lru_head = n
        } else {
            self.links[p as usize][1] = n
        }
        if n == NIL {
            self.lru_tail = p
        } else {
            self.links[n as usize][0] = p
        }
        self.links[i as usize] = [NIL, NIL];
    }

    fn push_tail(&mut self, i: u32) {
        self.links[i as usize] = [self.lru_tail, NIL];
        if self.lru_tail == NIL {
            self.lru_head = i
        } else {
            self.links[self.lru_tail as usize][1] = i
        }
        self.lru_tail = i;
    }

    fn find(&self, key: &Key, hash: u64) -> Option<u32> {
        self.index.find(hash, |i| self.slab[i as usize].key == *key)
    }

    /// The full key of flow `i`.
    fn full_key(&self, i: u32) -> FlowKey {
        let k = &self.slab[i as usize].key;
        let (exporter, domain) = self.sources.source(k.src);
        FlowKey {
            exporter: *exporter,
            a_addr: k.a_addr,
            b_addr: k.b_addr,
            domain,
            a_port: k.a_port,
            b_port: k.b_port,
            vlan: k.vlan,
            proto: k.proto,
        }
    }

    /// A new flow of `key` from `exporter` and `domain` (`key.src` is set here).
    fn insert(
        &mut self,
        mut key: Key,
        exporter: &Addr,
        domain: u32,
        hash: u64,
        now: i64,
        out: &mut Vec<FlowEvent>,
    ) -> u32 {
        if self.live >= self.cfg.max_flows.max(1) && self.lru_head != NIL {
            let victim = self.lru_head;
            self.stats.evicted += 1;
            self.end(victim, EndReason::Evicted, out);
        }
        key.src = self.sources.hold(exporter, domain);
        let flow = Flow {
            key,
            first_ms: i64::MAX,
            last_ms: i64::MIN,
            updated_ms: now,
            bytes: [0; 2],
            packets: [0; 2],
            last_counted: [0; 2],
            flags: [0; 2],
            in_if: 0,
            out_if: 0,
            l7: 0,
            ending: None,
            bits: CLI_IS_A,
            decision: Decision::FirstSeen,
            generation: 0,
        };
        let cold = Cold {
            status: StatusSet::default(),
            totals: [(0, 0); 2],
            sampling: 0,
            sampling_source: None,
            geo: match &mut self.enricher {
                Some(e) => [
                    Some(e.lookup(ip(&key.a_addr))),
                    Some(e.lookup(ip(&key.b_addr))),
                ],
                None => [Some(self.no_geo.clone()), Some(self.no_geo.clone())],
            },
        };
        let i = match self.free.pop() {
            Some(i) => {
                let generation = self.slab[i as usize].generation.wrapping_add(1);
                self.slab[i as usize] = Flow { generation, ..flow };
                self.cold[i as usize] = cold;
                i
            }
            None => {
                self.slab.push(flow);
                self.links.push([NIL, NIL]);
                self.cold.push(cold);
                (self.slab.len() - 1) as u32
            }
        };
        self.index.insert(hash, i);
        self.push_tail(i);
        self.live += 1;
        self.stats.started += 1;
        self.periodic.push(Reverse((
            now + self.cfg.periodic_ms,
            i,
            self.slab[i as usize].generation,
        )));
        i
    }

    /// Takes one datagram's records at table time `now`; events go to `out`.
    /// Options records are not the table's; flow records are taken in their
    /// compact form (the exporter's application name interned here).
    pub fn ingest(&mut self, records: &[FlowRecord], now: i64, out: &mut Vec<FlowEvent>) {
        let mut compact = std::mem::take(&mut self.compact);
        compact.clear();
        for r in records.iter().filter(|r| r.kind == RecordKind::Flow) {
            let mut c = Compact::of(r);
            if c.has.any(Has::SRC)
                && c.has.any(Has::DST)
                && let Some(n) = r.application_name.as_deref().filter(|n| !n.is_empty())
            {
                c.l7 = self.intern(n);
                c.has.0 |= Has::APP;
            }
            compact.push(c);
        }
        self.ingest_compact(&compact, now, out);
        self.compact = compact;
    }

    /// Takes one datagram's records as `Decoder::decode_split` gives them:
    /// in compact form, or (when `compact` is empty) as full records.
    pub fn ingest_split(
        &mut self,
        full: &[FlowRecord],
        compact: &[Compact],
        now: i64,
        out: &mut Vec<FlowEvent>,
    ) {
        if compact.is_empty() {
            self.ingest(full, now, out);
        } else {
            self.ingest_compact(compact, now, out);
        }
    }

    /// [`FlowTable::ingest`] for flow records in compact form (what compiled templates decode to).
    pub fn ingest_compact(&mut self, records: &[Compact], now: i64, out: &mut Vec<FlowEvent>) {
        self.advance(now, out);
        // sources freed here, never between the passes (see `Sources`)
        self.sources.collect();
        self.touched.clear();
        // Three passes so the cache misses of a datagram's records overlap:
        // keys and hashes (prefetching index buckets), lookups (prefetching
        // flow entries), then the updates in record order.
        let mut keys = std::mem::take(&mut self.keys);
        keys.clear();
        // a datagram's records share their source: looked up once
        let mut last_source: Option<(Addr, u32, u32)> = None;
        let hasher = &mut self.hasher;
        for (n, r) in records.iter().enumerate() {
            self.stats.records += 1;
            let Some((key, src_is_a)) = FlowKey::of_compact(r) else {
                self.stats.records_without_tuple += 1;
                continue;
            };
            let hash = hasher.hash(&key);
            self.index.prefetch(hash);
            let src = match last_source {
                Some((e, d, id)) if e == key.exporter && d == key.domain => id,
                _ => {
                    let id = self.sources.get(&key.exporter, key.domain).unwrap_or(NIL);
                    last_source = Some((key.exporter, key.domain, id));
                    id
                }
            };
            keys.push(Pending {
                n: n as u32,
                key: Key::of(&key, src),
                src_is_a,
                hash,
                slot: NIL,
            });
        }
        // The second pass reads only the index: the first entry whose hash
        // tag matches is the flow almost always, and its cache lines are
        // fetched while the other records' are; the keys are compared in the
        // third pass, when the entries are in cache.
        for k in keys.iter_mut() {
            if let Some(i) = self.index.find(k.hash, |_| true) {
                let f = (&self.slab[i as usize] as *const Flow).cast::<u8>();
                // the entry is aligned to cache lines: these are all of its lines
                for off in (0..std::mem::size_of::<Flow>()).step_by(64) {
                    super::index::prefetch(f.wrapping_add(off));
                }
                k.slot = i;
            }
        }
        for k in &keys {
            let r = &records[k.n as usize];
            // the candidate is the flow when its key is the record's and it
            // is live (an earlier record of this datagram may have ended it)
            let known = k.slot != NIL && {
                let f = &self.slab[k.slot as usize];
                f.key == k.key && f.live()
            };
            let i = if known {
                k.slot
            } else {
                // a source first seen in this datagram has its id by now
                let mut key = k.key;
                if key.src == NIL {
                    key.src = self.sources.get(&r.exporter, r.domain).unwrap_or(NIL);
                }
                let found = (key.src != NIL).then(|| self.find(&key, k.hash)).flatten();
                match found {
                    Some(i) => i,
                    None => self.insert(key, &r.exporter, r.domain, k.hash, now, out),
                }
            };
            let f = &mut self.slab[i as usize];
            if f.bits & TOUCHED == 0 {
                f.bits |= TOUCHED;
                self.touched.push(i);
            }
            self.apply(i, r, k.src_is_a, now);
            self.unlink(i);
            self.push_tail(i);
        }
        self.keys = keys;
        // Events after the whole datagram: both directions of a conversation usually
        // travel together, so the client/server choice is settled first.
        let touched = std::mem::take(&mut self.touched);
        for &i in &touched {
            let f = &mut self.slab[i as usize];
            f.bits &= !TOUCHED;
            let changed = self.live_statuses(i);
            let f = &mut self.slab[i as usize];
            if !f.detected() {
                f.bits |= DETECTED;
                self.push_event(i, EventKind::ProtocolDetected, out);
            }
            if changed {
                self.push_event(i, EventKind::StatusChanged, out);
            }
            if self.slab[i as usize].ending.is_some() {
                let due = now + self.cfg.end_grace_ms;
                self.ending
                    .push(Reverse((due, i, self.slab[i as usize].generation)));
            }
        }
        self.touched = touched;
    }

    fn apply(&mut self, i: u32, r: &Compact, src_is_a: bool, now: i64) {
        let side = if src_is_a { 0 } else { 1 };
        let other = 1 - side;
        let (first, last) = (r.first(), r.last());
        if r.end_reason() == Some(2)
            && let (Some(a), Some(b)) = (first, last)
        {
            self.active_timeout_ms = self
                .active_timeout_ms
                .max(b.saturating_sub(a).clamp(0, 3_600_000));
        }
        let f = &mut self.slab[i as usize];
        let fresh = f.first_ms == i64::MAX
            && f.last_ms == i64::MIN
            && f.packets == [0, 0]
            && f.bytes == [0, 0];
        let prev_first = f.first_ms;
        f.updated_ms = now;
        // Counters: deltas add up; running totals count their growth.
        let (mut b, mut p) = (r.bytes(), r.packets());
        if b.is_none()
            && let Some(tb) = r.total_bytes()
        {
            let tp = r.total_packets().unwrap_or(0);
            let totals = &mut self.cold[i as usize].totals;
            let (ob, op) = totals[side];
            b = Some(if tb >= ob { tb - ob } else { tb });
            p = Some(if tp >= op { tp - op } else { tp });
            totals[side] = (tb, tp);
        }
        let fp = fingerprint(r);
        if fp != 0 && f.last_counted[side] == fp {
            // the same record again (duplicate datagram or re-export of a counted interval)
        } else {
            f.last_counted[side] = fp;
            f.bytes[side] = f.bytes[side].saturating_add(b.unwrap_or(0));
            f.packets[side] = f.packets[side].saturating_add(p.unwrap_or(0));
            f.bytes[other] = f.bytes[other].saturating_add(r.rev_bytes);
            f.packets[other] = f.packets[other].saturating_add(r.rev_packets);
        }
        if r.has.any(Has::SAMPLING) {
            let c = &mut self.cold[i as usize];
            c.sampling = r.sampling_interval;
            c.sampling_source = r.sampling_source;
        }
        let flags = r.tcp_flags as u8;
        f.flags[side] |= flags;
        f.flags[other] |= r.rev_tcp_flags as u8;
        if let Some(t) = first {
            f.first_ms = f.first_ms.min(t);
        }
        if let Some(t) = last.or(first) {
            f.last_ms = f.last_ms.max(t);
        }
        if r.has.any(Has::APP) {
            f.l7 = r.l7;
        }

        // Client/server choice, strongest evidence first (docs/lifecycle.md).
        let (evidence, src_is_client) = if let Some(d) = r.biflow().filter(|d| *d == 1 || *d == 2) {
            (Decision::Exporter, d == 1)
        } else if r.has.any(Has::REV_BYTES | Has::REV_PACKETS) {
            (Decision::Exporter, true)
        } else if f.key.proto == 6 && flags & 0x02 != 0 && flags & 0x10 == 0 {
            (Decision::Syn, true)
        } else if let Some(t) = r.icmp_type().filter(|_| matches!(f.key.proto, 1 | 58)) {
            (Decision::Syn, super::key::icmp_request(f.key.proto, t))
        } else if !fresh && f.decision > Decision::FirstSeen {
            // port evidence cannot beat what is known (and costs lookups)
            (Decision::FirstSeen, true)
        } else {
            let (sp, dp) = (r.src_port, r.dst_port);
            let (s_svc, d_svc) = (
                classify::is_service_port(f.key.proto, sp),
                classify::is_service_port(f.key.proto, dp),
            );
            if s_svc != d_svc {
                (Decision::Port, d_svc)
            } else if sp != dp && sp != 0 && dp != 0 {
                (Decision::Port, dp < sp)
            } else {
                (Decision::FirstSeen, true)
            }
        };
        let client_is_a = src_is_client == (side == 0);
        if fresh || evidence > f.decision {
            f.decision = evidence;
            f.set_cli_is_a(client_is_a);
        } else if f.decision < Decision::Syn && f.cli_is_a() != (side == 0) {
            // A record from the side that is not the client yet, which started earlier: it is the client.
            if let Some(t) = first
                && t < prev_first
            {
                f.decision = Decision::StartTime;
                f.set_cli_is_a(side == 0);
            }
        }
        let is_cli_record = f.cli_is_a() == (side == 0);
        if is_cli_record || (f.in_if == 0 && f.out_if == 0) {
            f.in_if = r.in_if().unwrap_or(f.in_if);
            f.out_if = r.out_if().unwrap_or(f.out_if);
        }

        // End signals: the exporter's end reason, or TCP.
        if f.ending.is_none() {
            f.ending = match r.end_reason() {
                Some(1) => Some(EndReason::ExporterIdle),
                Some(3) => Some(EndReason::EndOfFlow),
                Some(4) => Some(EndReason::ForcedEnd),
                Some(5) => Some(EndReason::LackOfResources),
                _ => None,
            };
        }
        if f.key.proto == 6 {
            let rst = (f.flags[0] | f.flags[1]) & 0x04 != 0;
            let fin_both = f.flags[0] & 0x01 != 0 && f.flags[1] & 0x01 != 0;
            if rst {
                f.ending = Some(EndReason::TcpRst);
            } else if fin_both && f.ending.is_none() {
                f.ending = Some(EndReason::TcpFin);
            }
        }
    }

    /// Statuses visible while the flow is alive (each needs an RST seen);
    /// returns whether one was newly set.
    fn live_statuses(&mut self, i: u32) -> bool {
        let f = &self.slab[i as usize];
        // both need an RST: most updates stop here
        if f.key.proto != 6 || (f.flags[0] | f.flags[1]) & 0x04 == 0 {
            return false;
        }
        let (c, s) = f.sides();
        let cli_syn = f.flags[c] & 0x02 != 0;
        let srv_syn = f.flags[s] & 0x02 != 0;
        let srv_rst = f.flags[s] & 0x04 != 0;
        let status = &mut self.cold[i as usize].status;
        if cli_syn && srv_rst && !srv_syn {
            status.set(status::TCP_CONNECTION_REFUSED)
        } else if cli_syn && srv_syn {
            status.set(status::TCP_RESET)
        } else {
            false
        }
    }

    /// Statuses decided at the end; returns whether any changed.
    fn end_statuses(&mut self, i: u32) -> bool {
        let f = &self.slab[i as usize];
        let status = &mut self.cold[i as usize].status;
        let before = *status;
        let (c, s) = f.sides();
        if f.bytes == [0, 0] {
            status.set(status::ZERO_BYTES);
        }
        if f.packets[s] == 0 && f.packets[c] > 0 {
            if f.key.proto == 6 && f.flags[c] & 0x02 != 0 {
                status.set(status::TCP_NO_RESPONSE);
            } else if !status.has(status::TCP_CONNECTION_REFUSED) {
                status.set(status::UNIDIRECTIONAL);
            }
        }
        *status != before
    }

    fn end(&mut self, i: u32, reason: EndReason, out: &mut Vec<FlowEvent>) {
        let hash = self.hash_of(i);
        if !self.slab[i as usize].detected() {
            self.slab[i as usize].bits |= DETECTED;
            self.push_event(i, EventKind::ProtocolDetected, out);
        }
        if self.end_statuses(i) {
            self.push_event(i, EventKind::StatusChanged, out);
        }
        let (c, s) = self.slab[i as usize].sides();
        let geo = &mut self.cold[i as usize].geo;
        let geo = [geo[c].take(), geo[s].take()];
        let mut flow = self.view(i, hash, geo);
        flow.end_reason = Some(reason);
        out.push(FlowEvent {
            kind: EventKind::FlowEnd,
            time_ms: self.now_ms,
            flow,
        });
        self.unlink(i);
        self.index.remove(hash, i);
        self.sources.release(self.slab[i as usize].key.src);
        self.slab[i as usize].generation = self.slab[i as usize].generation.wrapping_add(1);
        self.free.push(i);
        self.live -= 1;
        self.stats.ended += 1;
    }

    fn alive(&self, i: u32, generation: u32) -> bool {
        // a slot's generation moves on when its flow ends, so stale timer entries never match
        self.slab[i as usize].generation == generation
    }

    /// Moves the clock to `now` (never backwards), firing what is due in time
    /// order, each at the time it was due: ends after an end signal's grace
    /// time, idle timeouts, periodic updates.
    pub fn advance(&mut self, now: i64, out: &mut Vec<FlowEvent>) {
        let now = now.max(self.now_ms);
        let idle = self.cfg.idle_timeout_ms + self.active_timeout_ms;
        loop {
            let end_due = self.ending.peek().map(|Reverse((d, _, _))| *d);
            let idle_due =
                (self.lru_head != NIL).then(|| self.slab[self.lru_head as usize].updated_ms + idle);
            let periodic_due = self.periodic.peek().map(|Reverse((d, _, _))| *d);
            let Some(due) = [end_due, idle_due, periodic_due]
                .into_iter()
                .flatten()
                .min()
                .filter(|d| *d <= now)
            else {
                break;
            };
            self.now_ms = self.now_ms.max(due);
            if end_due == Some(due) {
                let Some(Reverse((_, i, generation))) = self.ending.pop() else {
                    break;
                };
                if !self.alive(i, generation) {
                    continue;
                }
                let f = &self.slab[i as usize];
                match f.ending {
                    Some(r) if f.updated_ms + self.cfg.end_grace_ms <= due => self.end(i, r, out),
                    Some(_) => self.ending.push(Reverse((
                        f.updated_ms + self.cfg.end_grace_ms,
                        i,
                        generation,
                    ))),
                    None => {}
                }
            } else if idle_due == Some(due) {
                let i = self.lru_head;
                self.end(i, EndReason::Idle, out);
            } else {
                let Some(Reverse((_, i, generation))) = self.periodic.pop() else {
                    break;
                };
                if !self.alive(i, generation) {
                    continue;
                }
                if self.slab[i as usize].ending.is_none() {
                    self.push_event(i, EventKind::PeriodicUpdate, out);
                }
                let next = due + self.cfg.periodic_ms.max(1);
                self.periodic.push(Reverse((next, i, generation)));
            }
        }
        self.now_ms = now;
    }

    /// Ends every flow (shutdown, end of a replayed capture), least recently updated first.
    pub fn end_all(&mut self, out: &mut Vec<FlowEvent>) {
        while self.end_some(usize::MAX, out) {}
    }

    /// Flows a shutdown ends per [`FlowTable::end_some`] call (`serve` and `replay`).
    pub const SHUTDOWN_CHUNK: usize = 1024;

    /// Ends up to `max` flows the way [`FlowTable::end_all`] does, least
    /// recently updated first; true while flows remain. A shutdown ends the
    /// table in chunks so its events go out in bounded, reused buffers.
    pub fn end_some(&mut self, max: usize, out: &mut Vec<FlowEvent>) -> bool {
        // The index bucket each end removes is fetched a few flows ahead
        // (a cache miss per flow otherwise: flows end in LRU order, their
        // buckets are anywhere). Only the head leaves the list, so `ahead`
        // stays on it.
        const AHEAD: usize = 8;
        let mut ahead = self.lru_head;
        for _ in 0..AHEAD.min(max) {
            ahead = self.prefetch_bucket(ahead);
        }
        for _ in 0..max {
            if self.lru_head == NIL {
                break;
            }
            ahead = self.prefetch_bucket(ahead);
            let i = self.lru_head;
            let reason = self.slab[i as usize].ending.unwrap_or(EndReason::Shutdown);
            self.end(i, reason, out);
        }
        if self.lru_head != NIL {
            return true;
        }
        self.periodic.clear();
        self.ending.clear();
        false
    }

    /// Prefetches the index bucket of flow `i` (nothing for `NIL`) and returns the next in LRU order.
    fn prefetch_bucket(&self, i: u32) -> u32 {
        if i == NIL {
            return NIL;
        }
        self.index.prefetch(self.hash_of(i));
        self.links[i as usize][1]
    }

    /// Which event kinds anything takes (`serve` without scripts: what the
    /// output writes); the others are counted in `stats.skipped` and never
    /// built. `flowEnd` is always built (its end reason is counted).
    pub fn set_wanted(&mut self, mut kinds: [bool; 4]) {
        kinds[EventKind::FlowEnd as usize] = true;
        self.wanted = kinds;
    }

    fn push_event(&mut self, i: u32, kind: EventKind, out: &mut Vec<FlowEvent>) {
        if self.wanted[kind as usize] {
            out.push(self.event(i, kind));
        } else {
            self.stats.skipped[kind as usize] += 1;
        }
    }

    fn event(&self, i: u32, kind: EventKind) -> FlowEvent {
        let hash = self.hash_of(i);
        let (c, s) = self.slab[i as usize].sides();
        let geo = &self.cold[i as usize].geo;
        FlowEvent {
            kind,
            time_ms: self.now_ms,
            flow: self.view(i, hash, [geo[c].clone(), geo[s].clone()]),
        }
    }

    /// The stable hash of flow `i`'s key (recomputed rather than stored:
    /// 8 bytes less per flow).
    fn hash_of(&self, i: u32) -> u64 {
        self.full_key(i).stable_hash()
    }

    /// The snapshot of flow `i`, whose key hashes to `hash`, with the
    /// client's and the server's enrichment.
    fn view(&self, i: u32, hash: u64, [cli_geo, srv_geo]: [Option<Arc<GeoInfo>>; 2]) -> FlowView {
        let f = &self.slab[i as usize];
        let cold = &self.cold[i as usize];
        let (exporter, domain) = self.sources.source(f.key.src);
        let (c, s) = f.sides();
        let (cli_addr, cli_port, srv_addr, srv_port) = if f.cli_is_a() {
            (&f.key.a_addr, f.key.a_port, &f.key.b_addr, f.key.b_port)
        } else {
            (&f.key.b_addr, f.key.b_port, &f.key.a_addr, f.key.a_port)
        };
        let l7 = if f.l7 != 0 {
            self.l7_names[f.l7 as usize].clone()
        } else {
            let name = classify::by_port(f.key.proto, srv_port);
            match self.l7_index.get(name) {
                Some(i) => self.l7_names[*i as usize].clone(),
                None => Arc::from(name),
            }
        };
        let score: u32 = (0..5u8)
            .filter(|b| cold.status.has(*b))
            .map(|b| u32::from(status::builtin_score(b)))
            .sum::<u32>();
        let first = if f.first_ms == i64::MAX {
            f.updated_ms
        } else {
            f.first_ms
        };
        let last = if f.last_ms == i64::MIN {
            f.updated_ms
        } else {
            f.last_ms
        };
        FlowView {
            key: hash,
            exporter: ip(exporter),
            observation_domain: domain,
            vlan: f.key.vlan,
            cli_ip: ip(cli_addr),
            srv_ip: ip(srv_addr),
            cli_port,
            srv_port,
            proto: f.key.proto,
            l7,
            cli2srv_bytes: f.bytes[c],
            srv2cli_bytes: f.bytes[s],
            cli2srv_packets: f.packets[c],
            srv2cli_packets: f.packets[s],
            cli_tcp_flags: f.flags[c],
            srv_tcp_flags: f.flags[s],
            first_ms: first,
            last_ms: last.max(first),
            in_if: f.in_if,
            out_if: f.out_if,
            sampling_interval: cold.sampling,
            sampling_source: cold.sampling_source,
            cli_geo: cli_geo.unwrap_or_else(|| self.no_geo.clone()),
            srv_geo: srv_geo.unwrap_or_else(|| self.no_geo.clone()),
            status: cold.status,
            score: score.min(u32::from(status::MAX_SCORE)) as u16,
            cli_score: 0,
            srv_score: 0,
            end_reason: None,
        }
    }
}

/// Identity of a record's counted interval (0: nothing to compare): its
/// times, counters and ports, present or not, mixed into 32 bits (kept per
/// flow and side only to be compared with the next record's; it appears in
/// no output).
#[inline]
fn fingerprint(r: &Compact) -> u32 {
    const WHICH: u32 = Has::FIRST
        | Has::LAST
        | Has::BYTES
        | Has::PACKETS
        | Has::TOTAL_BYTES
        | Has::REV_BYTES
        | Has::SRC_PORT
        | Has::DST_PORT;
    if !r.has.any(Has::FIRST | Has::LAST) {
        return 0;
    }
    // three independent lanes, two folded 64×64→128-bit multiplies (the
    // wyhash mix): a few instructions and a short dependency chain, where
    // hashing field after field made a chain of nine multiplies
    let x = (r.first_ms as u64) ^ (r.last_ms as u64).rotate_left(32) ^ u64::from(r.has.0 & WHICH);
    let y = r.bytes
        ^ r.packets.rotate_left(32)
        ^ (u64::from(r.src_port) << 16 | u64::from(r.dst_port)).rotate_left(16);
    let z = r.total_bytes ^ r.rev_bytes.rotate_left(32);
    let h = fold(x ^ 0x243f_6a88_85a3_08d3, y ^ 0x1319_8a2e_0370_7344)
        ^ fold(z ^ 0xa409_3822_299f_31d0, 0x082e_fa98_ec4e_6c89);
    let h = fold(h, 0x4528_21e6_38d0_1377);
    (h as u32) | 1
}

/// The two halves of the 128-bit product, xor-ed.
#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let m = u128::from(a) * u128::from(b);
    (m as u64) ^ ((m >> 64) as u64)
}

/// Size of one tracked flow in the table's slab (for docs/performance.md).
pub const fn flow_entry_bytes() -> usize {
    std::mem::size_of::<Flow>() + std::mem::size_of::<Cold>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record and the next of its flow and side differ in a field or
    /// two by a little: their fingerprints must differ (a match would
    /// leave the second uncounted). Every field, small steps, many bases.
    #[test]
    fn fingerprint_tells_neighbouring_records_apart() {
        let mut next = crate::flow::tests::xorshift(0x9e37_79b9_7f4a_7c15u64);
        let mut same = 0;
        for _ in 0..100_000 {
            let mut r = Compact::default();
            r.has.0 = Has::FIRST | Has::LAST | Has::BYTES | Has::PACKETS | Has::SRC_PORT;
            r.first_ms = 1_795_000_000_000 + (next() % 86_400_000) as i64;
            r.last_ms = r.first_ms + (next() % 120_000) as i64;
            r.bytes = next() % 1_000_000;
            r.packets = next() % 1_000;
            r.src_port = next() as u16;
            r.dst_port = next() as u16;
            let base = fingerprint(&r);
            assert_ne!(base, 0);
            let d = 1 + next() % 64;
            for field in 0..8 {
                let mut n = r;
                match field {
                    0 => n.first_ms += d as i64,
                    1 => n.last_ms += d as i64,
                    2 => n.bytes += d,
                    3 => n.packets += d,
                    4 => n.src_port = n.src_port.wrapping_add(d as u16),
                    5 => n.dst_port = n.dst_port.wrapping_add(d as u16),
                    6 => {
                        n.first_ms += d as i64;
                        n.last_ms += d as i64;
                    }
                    _ => {
                        n.bytes += d * 1500;
                        n.packets += d;
                    }
                }
                same += usize::from(fingerprint(&n) == base);
            }
        }
        // 800,000 pairs, one chance in 2^32 each: none expected
        assert_eq!(same, 0);
        // without times there is nothing to compare
        let mut r = Compact::default();
        r.has.0 = Has::BYTES;
        assert_eq!(fingerprint(&r), 0);
    }
}
