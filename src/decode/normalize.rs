//! Normalization: one decoded data record (a list of typed fields) → one
//! [`FlowRecord`].
//!
//! In: `(FieldId, name, FieldValue)` triples in wire order plus the message
//! context ([`Ctx`]). Out: a `FlowRecord` with the normalized fields set and
//! every field kept by name. The mapping from Information Elements to record
//! fields is the table in `docs/flow-record.md`.

use std::net::IpAddr;
use std::sync::Arc;

use netflow_parser::FieldValue;

use super::fields::{FieldId, PEN_NTOP, PEN_REVERSE};
use super::sampling::{Announced, Announcement, Resolved, Rules};
use super::time;
use super::value::{application_id, as_ip, as_text, as_time_ms, as_u64, to_value};
use crate::record::{FlowRecord, RecordKind, Value};

/// What the message header and the exporter's earlier options data say.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub exporter: IpAddr,
    pub version: u16,
    pub domain: u32,
    pub export_ms: i64,
    pub uptime_ms: Option<u32>,
    /// Sampling interval learnt from options data or the v5 header.
    pub sampling: Option<u32>,
    /// systemInitTimeMilliseconds learnt from options data (IPFIX IE 160).
    pub system_init_ms: Option<i64>,
}

/// Sampling and clock facts an options record teaches about its exporter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Learnt {
    /// The rate resolved for a flow record (`None` for options data, whose
    /// announcement — [`Fill::announcement`] — teaches the stream).
    pub resolved: Option<Resolved>,
    pub system_init_ms: Option<i64>,
}

/// What a record's fields say that the record gets only when complete
/// ([`Fill::finish`]): addresses of both families, the time fields, sampling.
#[derive(Default)]
pub(super) struct Parts {
    pub(super) src4: Option<IpAddr>,
    pub(super) src6: Option<IpAddr>,
    pub(super) dst4: Option<IpAddr>,
    pub(super) dst6: Option<IpAddr>,
    pub(super) nh4: Option<IpAddr>,
    pub(super) nh6: Option<IpAddr>,
    pub(super) t: TimeFields,
    system_init_ms: Option<i64>,
    sampling: Announcement,
    initiator_octets: Option<u64>,
    responder_octets: Option<u64>,
    initiator_packets: Option<u64>,
    responder_packets: Option<u64>,
    ntop_l7: Option<u64>,
}

/// The record field an Information Element sets (the table of
/// `docs/flow-record.md`), shared by the crate path and compiled templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    RawBytes,
    RawPackets,
    Protocol,
    Tos,
    TcpFlags,
    SrcPort,
    DstPort,
    Src4,
    Dst4,
    Src6,
    Dst6,
    Nh4,
    Nh6,
    SrcMask,
    DstMask,
    InIf,
    OutIf,
    SrcAs,
    DstAs,
    EndUp,
    StartUp,
    Sampling,
    Vlan,
    Dot1qVlan,
    Direction,
    TotalBytes,
    TotalPackets,
    AppId,
    EndReason,
    /// Absolute flow start/end (IE 150-157): Unix seconds (`unit` 1000),
    /// milliseconds (1) or an NTP timestamp (0).
    Time {
        start: bool,
        unit: i64,
    },
    StartDeltaUs,
    EndDeltaUs,
    SystemInit,
    InitiatorOctets,
    ResponderOctets,
    InitiatorPackets,
    ResponderPackets,
    Biflow,
    PktInterval,
    PktSpace,
    SamplingSize,
    SamplingPopulation,
    /// `samplingProbability` (a float: decoded on the crate path only).
    SamplingProbability,
    SamplingTimeInterval,
    SelectorId,
    SamplerId,
    RevBytes,
    RevPackets,
    RevFlags,
    NtopL7,
    NtopL7Name,
}

/// Which record field the element `id` sets, if any.
pub fn target(id: FieldId) -> Option<Target> {
    use Target as T;
    Some(match (id.pen, id.ie) {
        (0, 1) => T::RawBytes,
        (0, 2) => T::RawPackets,
        (0, 4) => T::Protocol,
        (0, 5) => T::Tos,
        (0, 6) => T::TcpFlags,
        (0, 7) => T::SrcPort,
        (0, 8) => T::Src4,
        (0, 9) | (0, 29) => T::SrcMask,
        (0, 10) => T::InIf,
        (0, 11) => T::DstPort,
        (0, 12) => T::Dst4,
        (0, 13) | (0, 30) => T::DstMask,
        (0, 14) => T::OutIf,
        (0, 15) => T::Nh4,
        (0, 16) => T::SrcAs,
        (0, 17) => T::DstAs,
        (0, 21) => T::EndUp,
        (0, 22) => T::StartUp,
        (0, 27) => T::Src6,
        (0, 28) => T::Dst6,
        (0, 34) | (0, 50) => T::Sampling,
        (0, 58) => T::Vlan,
        (0, 243) => T::Dot1qVlan,
        (0, 61) => T::Direction,
        (0, 62) => T::Nh6,
        (0, 85) => T::TotalBytes,
        (0, 86) => T::TotalPackets,
        (0, 95) => T::AppId,
        (0, 136) => T::EndReason,
        (0, 150..=157) => T::Time {
            start: id.ie.is_multiple_of(2),
            unit: match id.ie {
                150 | 151 => 1000,
                152 | 153 => 1,
                _ => 0,
            },
        },
        (0, 158) => T::StartDeltaUs,
        (0, 159) => T::EndDeltaUs,
        (0, 160) => T::SystemInit,
        (0, 231) => T::InitiatorOctets,
        (0, 232) => T::ResponderOctets,
        (0, 298) => T::InitiatorPackets,
        (0, 299) => T::ResponderPackets,
        (0, 239) => T::Biflow,
        (0, 305) => T::PktInterval,
        (0, 306) => T::PktSpace,
        (0, 307) => T::SamplingTimeInterval,
        (0, 309) => T::SamplingSize,
        (0, 310) => T::SamplingPopulation,
        (0, 311) => T::SamplingProbability,
        (0, 302) => T::SelectorId,
        (0, 48) => T::SamplerId,
        (PEN_REVERSE, 1) => T::RevBytes,
        (PEN_REVERSE, 2) => T::RevPackets,
        (PEN_REVERSE, 6) => T::RevFlags,
        (PEN_NTOP, 118) => T::NtopL7,
        (PEN_NTOP, 119) => T::NtopL7Name,
        _ => return None,
    })
}

/// A field's value as normalization reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    U(Option<u64>),
    Ip(Option<IpAddr>),
    /// Absolute time, Unix ms.
    Ms(Option<i64>),
}

/// The scalar the crate's typed value gives for target `t`.
fn scalar_of(t: Target, v: &FieldValue) -> Scalar {
    match t {
        Target::Src4 | Target::Dst4 | Target::Src6 | Target::Dst6 | Target::Nh4 | Target::Nh6 => {
            Scalar::Ip(as_ip(v))
        }
        Target::Time { unit, .. } => Scalar::Ms(as_time_ms(v, unit)),
        _ => Scalar::U(as_u64(v)),
    }
}

/// How an ICMP field gives the ICMP type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpRule {
    /// The value is the type.
    Type,
    /// The value is type × 256 + code.
    TypeCode,
}

/// The rule of a field named `name`, when it carries the ICMP type.
pub fn icmp_rule(name: &str) -> Option<IcmpRule> {
    match name {
        "icmp_type" | "icmpTypeIPv4" | "icmpTypeIPv6" => Some(IcmpRule::Type),
        "icmpTypeCodeIPv4" | "icmpTypeCodeIPv6" | "icmp_type_code" => Some(IcmpRule::TypeCode),
        _ => None,
    }
}

/// Builds one record field by field (the crate path).
pub struct Builder {
    rec: FlowRecord,
    st: Fill,
}

/// What normalization keeps while a record's fields arrive, apart from the
/// record itself (the compiled path fills records in place with it).
#[derive(Default)]
pub struct Fill {
    pub(super) p: Parts,
    icmp_seen: bool,
}

/// An empty record of `kind` in the message context `ctx`.
pub fn new_record(kind: RecordKind, ctx: &Ctx, template_id: Option<u16>) -> FlowRecord {
    let mut rec = FlowRecord::new(kind, ctx.exporter, ctx.version);
    rec.observation_domain = ctx.domain;
    rec.template_id = template_id;
    rec.export_time_ms = ctx.export_ms;
    rec
}

fn pick(v4: Option<IpAddr>, v6: Option<IpAddr>) -> Option<IpAddr> {
    match (v4, v6) {
        (Some(a), Some(b)) if b.is_unspecified() => Some(a),
        (Some(a), Some(b)) if a.is_unspecified() => Some(b),
        (Some(a), _) => Some(a),
        (None, b) => b,
    }
}

impl Builder {
    pub fn new(kind: RecordKind, ctx: &Ctx, template_id: Option<u16>, capacity: usize) -> Self {
        let mut rec = new_record(kind, ctx, template_id);
        rec.fields.reserve(capacity);
        Builder {
            rec,
            st: Fill::default(),
        }
    }

    pub fn kind(&self) -> RecordKind {
        self.rec.kind
    }

    /// Adds a raw field that carries no IE meaning (v9 scope fields).
    pub fn raw(&mut self, name: Arc<str>, value: Value) {
        self.rec.fields.push((name, value));
    }

    /// Sets `in_if` from a v9 interface scope field.
    pub fn scope_interface(&mut self, v: u32) {
        self.rec.in_if.get_or_insert(v);
    }

    /// Adds one decoded field.
    pub fn field(&mut self, id: FieldId, name: Arc<str>, v: &FieldValue) {
        if let Some(t) = target(id) {
            match t {
                Target::AppId => {
                    let mut b = Vec::new();
                    let _ = v.write_be_bytes(&mut b);
                    self.rec.application_id = application_id(&b);
                }
                Target::NtopL7Name => {
                    self.rec.application_name = as_text(v).filter(|t| !t.is_empty())
                }
                Target::SamplingProbability => {
                    self.st.p.sampling.probability = match v {
                        FieldValue::Float64(f) => Some(*f),
                        _ => None,
                    }
                }
                _ => self.st.apply(&mut self.rec, t, scalar_of(t, v)),
            }
        }
        let value = match (id.pen, id.ie) {
            (0, 150..=153) | (0, 160) => match as_time_ms(
                v,
                if id.ie == 150 || id.ie == 151 {
                    1000
                } else {
                    1
                },
            ) {
                Some(ms) => Value::TimeMs(ms),
                None => to_value(v),
            },
            _ => match v {
                FieldValue::Vec(b) => match super::fields::vendor_kind(id) {
                    Some(kind) => vendor_value(kind, b),
                    None => to_value(v),
                },
                _ => to_value(v),
            },
        };
        if !self.st.icmp_seen
            && let Some(rule) = icmp_rule(&name)
            && let Value::U64(t) = value
        {
            self.st.icmp(&mut self.rec, rule, t);
        }
        self.rec.fields.push((name, value));
    }

    /// Completes the record: addresses, times, counters with sampling applied.
    /// Returns what an options record teaches about the exporter.
    pub fn finish(
        self,
        ctx: &Ctx,
        sampling: &Announced,
        rules: &Rules,
    ) -> (FlowRecord, Learnt, Fill) {
        let Builder { mut rec, mut st } = self;
        let learnt = st.finish(&mut rec, ctx, sampling, rules);
        (rec, learnt, st)
    }
}

impl Fill {
    /// The ICMP type from the first ICMP field of the record (see [`icmp_rule`]).
    pub fn icmp(&mut self, r: &mut FlowRecord, rule: IcmpRule, value: u64) {
        self.icmp_seen = true;
        r.icmp_type = match rule {
            IcmpRule::Type => u8::try_from(value).ok(),
            IcmpRule::TypeCode => Some((value >> 8) as u8),
        };
    }

    /// Sets the record field `t` maps to from a scalar value.
    #[inline]
    pub fn apply(&mut self, r: &mut FlowRecord, t: Target, s: Scalar) {
        let p = &mut self.p;
        let u = match s {
            Scalar::U(u) => u,
            _ => None,
        };
        let ip = match s {
            Scalar::Ip(a) => a,
            _ => None,
        };
        let u8_ = || u.and_then(|x| u8::try_from(x).ok());
        let u16_ = || u.and_then(|x| u16::try_from(x).ok());
        let u32_ = || u.and_then(|x| u32::try_from(x).ok());
        match t {
            Target::RawBytes => r.raw_bytes = u,
            Target::RawPackets => r.raw_packets = u,
            Target::Protocol => r.protocol = u8_(),
            Target::Tos => r.tos = u8_(),
            Target::TcpFlags => r.tcp_flags = u16_(),
            Target::SrcPort => r.src_port = u16_(),
            Target::DstPort => r.dst_port = u16_(),
            Target::Src4 => p.src4 = ip,
            Target::Dst4 => p.dst4 = ip,
            Target::Src6 => p.src6 = ip,
            Target::Dst6 => p.dst6 = ip,
            Target::Nh4 => p.nh4 = ip,
            Target::Nh6 => p.nh6 = ip,
            Target::SrcMask => r.src_mask = u8_(),
            Target::DstMask => r.dst_mask = u8_(),
            Target::InIf => r.in_if = u32_(),
            Target::OutIf => r.out_if = u32_(),
            Target::SrcAs => r.src_as = u32_(),
            Target::DstAs => r.dst_as = u32_(),
            Target::EndUp => p.t.end_up = u,
            Target::StartUp => p.t.start_up = u,
            Target::Sampling => p.sampling.interval = u32_(),
            Target::Vlan => r.vlan = u16_(),
            Target::Dot1qVlan => {
                if r.vlan.is_none() {
                    r.vlan = u16_();
                }
            }
            Target::Direction => r.direction = u8_(),
            Target::TotalBytes => r.total_bytes = u,
            Target::TotalPackets => r.total_packets = u,
            Target::EndReason => r.flow_end_reason = u8_(),
            Target::Time { start, .. } => {
                let ms = match s {
                    Scalar::Ms(ms) => ms,
                    _ => None,
                };
                set_abs(p, start, ms)
            }
            Target::StartDeltaUs => p.t.start_delta_us = u,
            Target::EndDeltaUs => p.t.end_delta_us = u,
            Target::SystemInit => p.system_init_ms = u.and_then(|x| i64::try_from(x).ok()),
            Target::InitiatorOctets => p.initiator_octets = u,
            Target::ResponderOctets => p.responder_octets = u,
            Target::InitiatorPackets => p.initiator_packets = u,
            Target::ResponderPackets => p.responder_packets = u,
            Target::Biflow => r.biflow_direction = u8_(),
            Target::PktInterval => p.sampling.pkt_interval = u,
            Target::PktSpace => p.sampling.pkt_space = u,
            Target::SamplingSize => p.sampling.size = u,
            Target::SamplingPopulation => p.sampling.population = u,
            Target::SamplingTimeInterval => p.sampling.time_interval = u,
            Target::SelectorId => p.sampling.selector_id = u,
            Target::SamplerId => p.sampling.sampler_id = u,
            Target::SamplingProbability => {}
            Target::RevBytes => r.rev_bytes = u,
            Target::RevPackets => r.rev_packets = u,
            Target::RevFlags => r.rev_tcp_flags = u16_(),
            Target::NtopL7 => p.ntop_l7 = u,
            Target::AppId | Target::NtopL7Name => {}
        }
    }

    /// Completes `rec`: addresses, times, counters with sampling applied.
    /// Returns what an options record teaches about the exporter.
    /// What the record announced about sampling.
    pub fn announcement(&self) -> &Announcement {
        &self.p.sampling
    }

    /// Completes `rec` (by reference: the fill is not moved per record).
    pub fn finish(
        &mut self,
        rec: &mut FlowRecord,
        ctx: &Ctx,
        sampling: &Announced,
        rules: &Rules,
    ) -> Learnt {
        let Fill { p, icmp_seen } = self;
        if !*icmp_seen {
            rec.icmp_type = icmp_from_ports(rec.src_port, rec.dst_port);
        }
        rec.src_addr = pick(p.src4, p.src6);
        rec.dst_addr = pick(p.dst4, p.dst6);
        rec.next_hop = pick(p.nh4, p.nh6);

        // Sampling (see `sampling`): a flow record's own rate, else what
        // the exporter announced, then the configured rules; an options
        // record reports the rate it announces.
        let resolved = if rec.kind == RecordKind::Flow {
            let r = sampling.resolve(&p.sampling, ctx.sampling);
            let r = rules.apply(ctx.exporter, ctx.domain, rec.in_if, r);
            if let Resolved::Rate(n, src) = r {
                rec.sampling_interval = Some(n);
                rec.sampling_source = Some(src);
            }
            Some(r)
        } else {
            if let Some(super::sampling::Rate::OneIn(n)) = p.sampling.rate() {
                rec.sampling_interval = Some(n);
                rec.sampling_source = Some(if p.sampling.selector_id.is_some() {
                    super::sampling::SamplingSource::Selector
                } else {
                    super::sampling::SamplingSource::Options
                });
            }
            None
        };
        let learnt = Learnt {
            resolved,
            system_init_ms: p.system_init_ms,
        };
        let mult = u64::from(rec.sampling_interval.unwrap_or(1).max(1));

        // Counters: delta counts first; NSEL initiator/responder counts when the exporter sends those instead.
        if rec.raw_bytes.is_none() {
            rec.raw_bytes = p.initiator_octets;
        }
        if rec.raw_packets.is_none() {
            rec.raw_packets = p.initiator_packets;
        }
        if rec.rev_bytes.is_none() {
            rec.rev_bytes = p.responder_octets;
        }
        if rec.rev_packets.is_none() {
            rec.rev_packets = p.responder_packets;
        }
        rec.bytes = rec.raw_bytes.map(|b| b.saturating_mul(mult));
        rec.packets = rec.raw_packets.map(|b| b.saturating_mul(mult));
        rec.rev_bytes = rec.rev_bytes.map(|b| b.saturating_mul(mult));
        rec.rev_packets = rec.rev_packets.map(|b| b.saturating_mul(mult));

        if rec.application_id.is_none() {
            rec.application_id = p.ntop_l7.map(|n| format!("0..{n}"));
        }

        // Times.
        (rec.first_ms, rec.last_ms) = times(ctx, p.system_init_ms.or(ctx.system_init_ms), p.t);
        learnt
    }
}

/// A record's time fields as they came (see [`times`]).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct TimeFields {
    pub(super) start_abs: Option<i64>,
    pub(super) end_abs: Option<i64>,
    pub(super) start_up: Option<u64>,
    pub(super) end_up: Option<u64>,
    pub(super) start_delta_us: Option<u64>,
    pub(super) end_delta_us: Option<u64>,
}

/// A record's start and end, Unix ms: absolute times first, then deltas
/// before the export time, then times relative to the exporter's boot
/// (`init`: its boot time when known, IPFIX; the header's uptime for v9).
#[inline]
pub(super) fn times(ctx: &Ctx, init: Option<i64>, t: TimeFields) -> (Option<i64>, Option<i64>) {
    let from_up = |v: u64| -> Option<i64> {
        match (ctx.version, ctx.uptime_ms, init) {
            (10, _, Some(init)) => Some(time::init_relative_to_unix_ms(init, v)),
            (10, _, None) => None,
            (_, Some(up), _) => Some(time::uptime_to_unix_ms(ctx.export_ms, up, v as u32)),
            _ => None,
        }
    };
    let one = |abs: Option<i64>, delta: Option<u64>, up: Option<u64>| {
        abs.or_else(|| delta.map(|d| time::delta_us_to_unix_ms(ctx.export_ms, d)))
            .or_else(|| up.and_then(from_up))
    };
    (
        one(t.start_abs, t.start_delta_us, t.start_up),
        one(t.end_abs, t.end_delta_us, t.end_up),
    )
}

/// The ICMP type when no ICMP field says: the high byte of the destination
/// port (how softflowd, nfdump and most v5/v9 exporters carry it), when the
/// source port is 0.
pub fn icmp_from_ports(src: Option<u16>, dst: Option<u16>) -> Option<u8> {
    dst.map(|p| (p >> 8) as u8)
        .filter(|_| src.unwrap_or(0) == 0)
}

fn vendor_value(kind: super::fields::VendorKind, b: &[u8]) -> Value {
    use super::fields::VendorKind;
    match kind {
        VendorKind::Text => {
            let t = b.iter().position(|c| *c == 0).map_or(b, |n| &b[..n]);
            Value::Str(
                String::from_utf8_lossy(t)
                    .chars()
                    .filter(|c| !c.is_control())
                    .collect(),
            )
        }
        VendorKind::Uint => super::value::be_uint(b)
            .map(Value::U64)
            .unwrap_or_else(|| Value::Bytes(b.to_vec())),
        VendorKind::Ip => match b.len() {
            4 | 16 => as_ip(&FieldValue::Vec(b.to_vec()))
                .map(Value::Ip)
                .unwrap_or_else(|| Value::Bytes(b.to_vec())),
            _ => Value::Bytes(b.to_vec()),
        },
    }
}

fn set_abs(p: &mut Parts, start: bool, ms: Option<i64>) {
    if start {
        p.t.start_abs = p.t.start_abs.or(ms);
    } else {
        p.t.end_abs = p.t.end_abs.or(ms);
    }
}
