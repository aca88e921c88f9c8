//! Compiled templates: the hot path of NetFlow v9 and IPFIX data decoding.
//!
//! When a template arrives (and the decoder crate has accepted it), it is
//! compiled once into a plan: for every field that normalization reads, its
//! offset, its length and what it sets ([`Target`]); every other field is
//! skipped. A data record is then a handful of big-endian loads into the
//! record ([`Builder::apply`], the same mapping the crate path uses), with no
//! per-field allocation. Fields nothing reads on this path (the `fields` map,
//! `application_id`) are not decoded: the crate path, kept for `decode` and
//! `output.records`, fills them.
//!
//! A template is compiled only where the crate's typing of each field read is
//! known to equal a plain big-endian read (the `typed_as_*` checks below);
//! anything else (variable-length fields, enterprise fields, signed or
//! unusual lengths) stays on the crate path. `tests/differential.rs` runs the
//! vendor corpus, the mutation corpus and generated streams through both
//! paths and demands identical records.
//!
//! For the flow table's compact records, a plan whose slots all fit their
//! destinations also reads them through 8-byte windows (`quick`).
//!
//! In: template sets (to compile) and data set bodies with their plan. Out:
//! records appended through the caller's [`Builder`] sink.

use rustc_hash::FxHashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netflow_parser::V9Field;
use netflow_parser::variable_versions::enterprise_registry::EnterpriseFieldRegistry;
use netflow_parser::variable_versions::field_value::FieldDataType;
use netflow_parser::variable_versions::ipfix::lookup::IPFixField;

use super::fields::FieldCatalog;
use super::normalize::{
    Ctx, Fill, IcmpRule, Scalar, Target, TimeFields, icmp_from_ports, icmp_rule, target, times,
};
use super::sampling::{Announced, Announcement, Resolved, Rules};
use super::value::ntp_to_unix_ms;
use super::varlen::WireField;
use crate::record::{Compact, FlowRecord, Has};

mod quick;
use quick::Quick;

/// What one step of a plan does with its bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    /// Unsigned big-endian integer, masked as the crate types it.
    Uint(Target, u64),
    /// Unsigned integer times `unit` ms (absolute seconds or milliseconds).
    Time(Target, i64),
    /// NTP timestamp (seconds, fraction).
    Ntp(Target),
    Ip4(Target),
    Ip6(Target),
    /// The record's ICMP type field.
    Icmp(IcmpRule),
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Step {
    off: u16,
    len: u16,
    op: Op,
}

/// Where one field of a record is: offset and length (length 0: absent).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct At {
    off: u16,
    len: u16,
}

impl At {
    /// The slot's big-endian value: one 8-byte load shifted down when the
    /// record has 8 bytes from the slot on (slots hold 1 to 8 bytes), else
    /// byte by byte ([`be`]).
    #[inline(always)]
    fn get(self, rec: &[u8]) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        let (o, l) = (usize::from(self.off), usize::from(self.len));
        Some(match rec.get(o..o + 8) {
            Some(w) if l <= 8 => {
                let w: [u8; 8] = w.try_into().unwrap_or_default();
                u64::from_be_bytes(w) >> ((8 - l) * 8)
            }
            _ => be(&rec[o..o + l]),
        })
    }
}

/// A destination [`Fast`] has a slot for (its index in [`Fast::at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dest {
    RawBytes,
    RawPackets,
    Protocol,
    Tos,
    TcpFlags,
    SrcPort,
    DstPort,
    InIf,
    OutIf,
    SrcAs,
    DstAs,
    SrcMask,
    DstMask,
    Direction,
    EndReason,
    StartUp,
    EndUp,
    StartDelta,
    EndDelta,
    StartAbs,
    EndAbs,
    /// Addresses: 4 or 16 bytes.
    Src4,
    Dst4,
    Src6,
    Dst6,
    Nh4,
    Nh6,
}

const DESTS: usize = Dest::Nh6 as usize + 1;

/// The fields most templates carry, each read by its own line of straight
/// code: no dispatch per field, and the branches on which fields a template
/// has go the same way for every record of a set. A destination that more
/// than one field of the template sets (the first or the last wins) stays in
/// [`Plan::rest`], in wire order, with everything else.
#[derive(Debug, Clone, PartialEq, Default)]
struct Fast {
    at: [At; DESTS],
    tcp_mask: u64,
    /// Units of the absolute times in ms (0: an NTP timestamp).
    start_unit: i64,
    end_unit: i64,
}

/// The destination a step writes, when [`Fast`] has a slot for it.
fn fast_dest(op: Op) -> Option<Dest> {
    use Target as T;
    Some(match op {
        Op::Uint(t, mask) => {
            if mask != u64::MAX && t != T::TcpFlags {
                return None;
            }
            match t {
                T::RawBytes => Dest::RawBytes,
                T::RawPackets => Dest::RawPackets,
                T::Protocol => Dest::Protocol,
                T::Tos => Dest::Tos,
                T::TcpFlags => Dest::TcpFlags,
                T::SrcPort => Dest::SrcPort,
                T::DstPort => Dest::DstPort,
                T::InIf => Dest::InIf,
                T::OutIf => Dest::OutIf,
                T::SrcAs => Dest::SrcAs,
                T::DstAs => Dest::DstAs,
                T::SrcMask => Dest::SrcMask,
                T::DstMask => Dest::DstMask,
                T::Direction => Dest::Direction,
                T::EndReason => Dest::EndReason,
                T::StartUp => Dest::StartUp,
                T::EndUp => Dest::EndUp,
                T::StartDeltaUs => Dest::StartDelta,
                T::EndDeltaUs => Dest::EndDelta,
                _ => return None,
            }
        }
        Op::Time(T::Time { start: true, .. }, _) | Op::Ntp(T::Time { start: true, .. }) => {
            Dest::StartAbs
        }
        Op::Time(T::Time { .. }, _) | Op::Ntp(T::Time { .. }) => Dest::EndAbs,
        Op::Ip4(t) | Op::Ip6(t) => match t {
            T::Src4 => Dest::Src4,
            T::Dst4 => Dest::Dst4,
            T::Src6 => Dest::Src6,
            T::Dst6 => Dest::Dst6,
            T::Nh4 => Dest::Nh4,
            T::Nh6 => Dest::Nh6,
            _ => return None,
        },
        _ => return None,
    })
}

impl Fast {
    /// Splits `steps` into the fast slots and the rest (in order).
    fn split(steps: Vec<Step>) -> (Fast, Vec<Step>) {
        let mut uses = [0u8; DESTS];
        for d in steps.iter().filter_map(|s| fast_dest(s.op)) {
            uses[d as usize] = uses[d as usize].saturating_add(1);
        }
        let mut f = Fast::default();
        let mut rest = Vec::new();
        for s in steps {
            let Some(d) = fast_dest(s.op).filter(|d| uses[*d as usize] == 1) else {
                rest.push(s);
                continue;
            };
            f.at[d as usize] = At {
                off: s.off,
                len: s.len,
            };
            match (d, s.op) {
                (Dest::TcpFlags, Op::Uint(_, mask)) => f.tcp_mask = mask,
                (Dest::StartAbs, Op::Time(_, unit)) => f.start_unit = unit,
                (Dest::EndAbs, Op::Time(_, unit)) => f.end_unit = unit,
                _ => {}
            }
        }
        (f, rest)
    }

    #[inline(always)]
    fn get(&self, d: Dest, rec: &[u8]) -> Option<u64> {
        self.at[d as usize].get(rec)
    }

    #[inline(always)]
    fn ip(&self, d: Dest, rec: &[u8]) -> Option<IpAddr> {
        let a = self.at[d as usize];
        let o = usize::from(a.off);
        match a.len {
            0 => None,
            4 => Some(IpAddr::V4(Ipv4Addr::from(be(&rec[o..o + 4]) as u32))),
            _ => {
                let mut b = [0u8; 16];
                b.copy_from_slice(&rec[o..o + 16]);
                Some(IpAddr::V6(Ipv6Addr::from(b)))
            }
        }
    }

    /// The address of one side in 16 bytes (IPv4 mapped), from its IPv4
    /// and IPv6 slots: what `normalize::pick` chooses (the one that is
    /// not unspecified when both are there, else IPv4), without `IpAddr`.
    #[inline(always)]
    fn addr(&self, d4: Dest, d6: Dest, rec: &[u8]) -> Option<[u8; 16]> {
        let (a4, a6) = (self.at[d4 as usize], self.at[d6 as usize]);
        let v4 = |a: At| {
            let o = usize::from(a.off);
            let mut m = [0u8; 16];
            m[10] = 0xff;
            m[11] = 0xff;
            m[12..].copy_from_slice(&rec[o..o + 4]);
            m
        };
        let v6 = |a: At| {
            let o = usize::from(a.off);
            let mut m = [0u8; 16];
            m.copy_from_slice(&rec[o..o + 16]);
            m
        };
        // a slot holds 4 bytes or 16 (`Plan::compile` takes no other length)
        let get = |a: At| match a.len {
            0 => None,
            4 => Some(v4(a)),
            _ => Some(v6(a)),
        };
        let unspecified = |m: &[u8; 16], a: At| match a.len {
            4 => m[12..] == [0; 4],
            _ => *m == [0; 16],
        };
        let (x, y) = (get(a4), get(a6));
        let x = x.map(|m| (m, unspecified(&m, a4)));
        let y = y.map(|m| (m, unspecified(&m, a6)));
        match (x, y) {
            (Some((a, _)), Some((_, true))) => Some(a),
            (Some((_, true)), Some((b, _))) => Some(b),
            (Some((a, _)), _) => Some(a),
            (None, b) => b.map(|(b, _)| b),
        }
    }

    /// The record's time fields, as `Fill::apply` converts them.
    #[inline(always)]
    fn times(&self, rec: &[u8]) -> TimeFields {
        let g = |d| self.get(d, rec);
        TimeFields {
            start_abs: g(Dest::StartAbs).and_then(|v| abs_time(v, self.start_unit)),
            end_abs: g(Dest::EndAbs).and_then(|v| abs_time(v, self.end_unit)),
            start_up: g(Dest::StartUp),
            end_up: g(Dest::EndUp),
            start_delta_us: g(Dest::StartDelta),
            end_delta_us: g(Dest::EndDelta),
        }
    }

    /// Sets every slot's destination of one record, converting as
    /// [`Fill::apply`] does. `r` and `b` are fresh (every field unset), so an
    /// absent slot writes the `None` that is already there.
    #[inline(always)]
    fn decode(&self, rec: &[u8], r: &mut FlowRecord, b: &mut Fill) {
        let g = |d| self.get(d, rec);
        r.raw_bytes = g(Dest::RawBytes);
        r.raw_packets = g(Dest::RawPackets);
        r.protocol = g(Dest::Protocol).and_then(u8_);
        r.src_port = g(Dest::SrcPort).and_then(u16_);
        r.dst_port = g(Dest::DstPort).and_then(u16_);
        r.tcp_flags = g(Dest::TcpFlags).and_then(|v| u16_(v & self.tcp_mask));
        r.in_if = g(Dest::InIf).and_then(u32_);
        r.out_if = g(Dest::OutIf).and_then(u32_);
        r.tos = g(Dest::Tos).and_then(u8_);
        r.src_as = g(Dest::SrcAs).and_then(u32_);
        r.dst_as = g(Dest::DstAs).and_then(u32_);
        r.src_mask = g(Dest::SrcMask).and_then(u8_);
        r.dst_mask = g(Dest::DstMask).and_then(u8_);
        r.direction = g(Dest::Direction).and_then(u8_);
        r.flow_end_reason = g(Dest::EndReason).and_then(u8_);
        let p = &mut b.p;
        p.t = self.times(rec);
        p.src4 = self.ip(Dest::Src4, rec);
        p.dst4 = self.ip(Dest::Dst4, rec);
        p.src6 = self.ip(Dest::Src6, rec);
        p.dst6 = self.ip(Dest::Dst6, rec);
        p.nh4 = self.ip(Dest::Nh4, rec);
        p.nh6 = self.ip(Dest::Nh6, rec);
    }
}

impl Fast {
    /// One record straight into its compact form: what [`Fast::decode`],
    /// `Fill::finish` and [`Compact::of`] make of a record of a plan with no
    /// other steps, without the full record in between.
    #[inline(always)]
    fn decode_compact(
        &self,
        rec: &[u8],
        c: &mut Compact,
        ctx: &Ctx,
        announced: Resolved,
        rules: &Rules,
    ) -> Resolved {
        let g = |d| self.get(d, rec);
        let h = &mut c.has;
        let src_port = g(Dest::SrcPort).and_then(u16_);
        let dst_port = g(Dest::DstPort).and_then(u16_);
        let in_if = g(Dest::InIf).and_then(u32_);
        c.src_port = h.set(Has::SRC_PORT, src_port);
        c.dst_port = h.set(Has::DST_PORT, dst_port);
        c.in_if = h.set(Has::IN_IF, in_if);
        c.out_if = h.set(Has::OUT_IF, g(Dest::OutIf).and_then(u32_));
        c.end_reason = h.set(Has::END_REASON, g(Dest::EndReason).and_then(u8_));
        c.icmp_type = h.set(Has::ICMP, icmp_from_ports(src_port, dst_port));
        c.protocol = g(Dest::Protocol).and_then(u8_).unwrap_or(0);
        c.tcp_flags = g(Dest::TcpFlags)
            .and_then(|v| u16_(v & self.tcp_mask))
            .unwrap_or(0);
        c.src = h.set(Has::SRC, self.addr(Dest::Src4, Dest::Src6, rec));
        c.dst = h.set(Has::DST, self.addr(Dest::Dst4, Dest::Dst6, rec));
        let counters = (g(Dest::RawBytes), g(Dest::RawPackets));
        finish_compact(c, in_if, counters, self.times(rec), ctx, announced, rules)
    }
}

/// What both compact decoders ([`Fast::decode_compact`] and `quick`) make
/// alike of a record, as `Fill::finish` and [`Compact::of`] do: the sampling
/// rate resolved (`announced`, the exporter's for a record that announces
/// nothing, then the configured rules), the raw counters scaled by it, the
/// times. Returns how the rate was resolved.
#[inline(always)]
fn finish_compact(
    c: &mut Compact,
    in_if: Option<u32>,
    (bytes, packets): (Option<u64>, Option<u64>),
    t: TimeFields,
    ctx: &Ctx,
    announced: Resolved,
    rules: &Rules,
) -> Resolved {
    let h = &mut c.has;
    let resolved = rules.apply(ctx.exporter, ctx.domain, in_if, announced);
    let mut mult = 1;
    if let Resolved::Rate(n, src) = resolved {
        c.sampling_interval = h.set(Has::SAMPLING, Some(n));
        c.sampling_source = Some(src);
        mult = u64::from(n.max(1));
    }
    c.bytes = h.set(Has::BYTES, bytes.map(|b| b.saturating_mul(mult)));
    c.packets = h.set(Has::PACKETS, packets.map(|p| p.saturating_mul(mult)));
    let (first, last) = times(ctx, ctx.system_init_ms, t);
    c.first_ms = h.set(Has::FIRST, first);
    c.last_ms = h.set(Has::LAST, last);
    resolved
}

/// A template compiled for decoding its data records.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    fast: Fast,
    /// [`Fast`] as 8-byte windows, when its slots allow ([`Plan::decode_compact_set`]).
    quick: Option<Quick>,
    /// The steps [`Fast`] has no slot for, in wire order.
    rest: Vec<Step>,
    /// Bytes of one record.
    pub rec_len: usize,
    /// The template as defined on the wire (to recognise a refresh of it).
    fields: Vec<WireField>,
}

/// The crate keeps only the defined TCP flags (bits 0-8) of `tcpControlBits`.
const TCP_FLAGS_MASK: u64 = 0x01ff;

/// The mask the crate's typing applies to a big-endian read.
fn uint_mask(t: FieldDataType) -> u64 {
    match t {
        FieldDataType::TcpControlBits => TCP_FLAGS_MASK,
        _ => u64::MAX,
    }
}

/// Typed by the crate as an unsigned integer whose value is the plain
/// big-endian read (under [`uint_mask`]).
fn typed_as_uint(t: FieldDataType, len: u16) -> bool {
    match t {
        FieldDataType::UnsignedDataNumber => (1..=8).contains(&len),
        FieldDataType::DurationSeconds | FieldDataType::DurationMillis => {
            matches!(len, 2 | 4 | 8)
        }
        FieldDataType::ProtocolType | FieldDataType::FlowEndReason => len == 1,
        FieldDataType::TcpControlBits => matches!(len, 1 | 2),
        _ => false,
    }
}

/// Typed so that the crate's value is certainly not an unsigned integer (ICMP name matching skips it).
fn typed_as_non_integer(t: FieldDataType) -> bool {
    matches!(
        t,
        FieldDataType::String
            | FieldDataType::Ip4Addr
            | FieldDataType::Ip6Addr
            | FieldDataType::MacAddr
            | FieldDataType::Float64
    )
}

#[inline]
fn be(b: &[u8]) -> u64 {
    match *b {
        [x] => u64::from(x),
        [a, b] => u64::from(u16::from_be_bytes([a, b])),
        [a, b, c, d] => u64::from(u32::from_be_bytes([a, b, c, d])),
        [a, b, c, d, e, f, g, h] => u64::from_be_bytes([a, b, c, d, e, f, g, h]),
        _ => b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)),
    }
}

// Conversions of a slot's value as `Fill::apply` makes them.
fn u8_(v: u64) -> Option<u8> {
    u8::try_from(v).ok()
}

fn u16_(v: u64) -> Option<u16> {
    u16::try_from(v).ok()
}

fn u32_(v: u64) -> Option<u32> {
    u32::try_from(v).ok()
}

/// An absolute time field in ms: seconds or milliseconds times `unit`, or an NTP timestamp (`unit` 0).
fn abs_time(v: u64, unit: i64) -> Option<i64> {
    if unit == 0 {
        Some(ntp_to_unix_ms((v >> 32) as u32, v as u32))
    } else {
        i64::try_from(v).ok().map(|x| x.saturating_mul(unit))
    }
}

impl Plan {
    /// Compiles the (fixed-length) template `fields` of `version`; `None` when
    /// any field read by normalization is not certain to decode the crate's way.
    pub fn compile(
        version: u16,
        fields: &[WireField],
        catalog: &mut FieldCatalog,
        registry: &EnterpriseFieldRegistry,
    ) -> Option<Plan> {
        let mut steps = Vec::new();
        let mut off = 0usize;
        let mut icmp = false;
        for f in fields {
            if f.len == 65535 || f.len == 0 {
                return None;
            }
            let (id, name, ty) = if version == 9 {
                let v = V9Field::from(f.ie);
                let (id, name) = catalog.v9(v);
                (id, name, FieldDataType::from(v))
            } else {
                let x = IPFixField::new(f.ie, f.pen);
                let (id, name) = catalog.ipfix(&x);
                (id, name, x.to_field_data_type(registry))
            };
            let step = |op| Step {
                off: off as u16,
                len: f.len,
                op,
            };
            if let Some(t) = target(id) {
                if id.pen != 0 {
                    return None;
                }
                let ip = |t| match (ty, f.len) {
                    (FieldDataType::Ip4Addr | FieldDataType::Ip6Addr, 4) => Some(Op::Ip4(t)),
                    (FieldDataType::Ip4Addr | FieldDataType::Ip6Addr, 16) => Some(Op::Ip6(t)),
                    _ => None,
                };
                let op = match t {
                    // application_id is not read on this path
                    Target::AppId => None,
                    Target::NtopL7Name => return None,
                    Target::Src4
                    | Target::Dst4
                    | Target::Src6
                    | Target::Dst6
                    | Target::Nh4
                    | Target::Nh6 => Some(ip(t)?),
                    Target::Time { unit: 0, .. } => match (ty, f.len) {
                        (FieldDataType::DurationMicrosNTP | FieldDataType::DurationNanosNTP, 8) => {
                            Some(Op::Ntp(t))
                        }
                        _ => return None,
                    },
                    Target::Time { unit, .. } if typed_as_uint(ty, f.len) => {
                        Some(Op::Time(t, unit))
                    }
                    _ if typed_as_uint(ty, f.len) => Some(Op::Uint(t, uint_mask(ty))),
                    _ => return None,
                };
                if let Some(op) = op {
                    steps.push(step(op));
                }
            }
            if !icmp && let Some(rule) = icmp_rule(&name) {
                if typed_as_uint(ty, f.len) && uint_mask(ty) == u64::MAX {
                    steps.push(step(Op::Icmp(rule)));
                    icmp = true;
                } else if !typed_as_non_integer(ty) {
                    return None;
                }
            }
            off += usize::from(f.len);
        }
        (off > 0 && off <= u16::MAX as usize).then(|| {
            let (fast, rest) = Fast::split(steps);
            Plan {
                quick: Quick::of(&fast),
                fast,
                rest,
                rec_len: off,
                fields: fields.to_vec(),
            }
        })
    }

    /// Whether every field the plan reads has a fast slot: its records can
    /// be decoded straight into their compact form ([`Plan::decode_compact`]).
    pub fn all_fast(&self) -> bool {
        self.rest.is_empty()
    }

    /// Decodes one record of an [`Plan::all_fast`] plan into `c` (fresh:
    /// exporter and domain set, nothing else), the way [`Plan::decode`],
    /// `Fill::finish` and [`Compact::of`] would, `announced` being
    /// [`Plan::announced`]; returns how its sampling rate was resolved.
    #[inline]
    pub fn decode_compact(
        &self,
        rec: &[u8],
        c: &mut Compact,
        ctx: &Ctx,
        announced: Resolved,
        rules: &Rules,
    ) -> Resolved {
        debug_assert!(self.all_fast());
        self.fast.decode_compact(rec, c, ctx, announced, rules)
    }

    /// Every record of the data set `body` of an [`Plan::all_fast`] plan
    /// appended to `out` in compact form (each made in its place from
    /// `fresh`), as [`Plan::decode_compact`] makes it; `count` gets how each
    /// one's sampling rate was resolved. Through the plan's 8-byte windows
    /// when it has them: each record copied into a window buffer first, so
    /// every read is at a fixed place (no bounds checks, no per-slot
    /// pointers moving with the record).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn decode_compact_set(
        &self,
        body: &[u8],
        fresh: Compact,
        out: &mut Vec<Compact>,
        ctx: &Ctx,
        announced: Resolved,
        rules: &Rules,
        mut count: impl FnMut(Resolved),
    ) {
        debug_assert!(self.all_fast());
        out.reserve(body.len() / self.rec_len.max(1));
        let records = body.chunks_exact(self.rec_len);
        match &self.quick {
            Some(q) => {
                let mut win = [0u8; quick::WIN];
                let n = self.rec_len.min(quick::WIN);
                for rec in records {
                    win[..n].copy_from_slice(&rec[..n]);
                    // made in its place in `out` (a record is 150 bytes: not built aside and copied)
                    out.push(fresh);
                    let Some(c) = out.last_mut() else { continue };
                    count(q.decode(&win, c, ctx, announced, rules));
                }
            }
            None => {
                for rec in records {
                    out.push(fresh);
                    let Some(c) = out.last_mut() else { continue };
                    count(self.decode_compact(rec, c, ctx, announced, rules));
                }
            }
        }
    }

    /// The sampling rate of a record of an [`Plan::all_fast`] plan before
    /// the configured rules: it announces nothing, so it is the exporter's
    /// (the same for every record of a data set).
    pub fn announced(sampling: &Announced, ctx: &Ctx) -> Resolved {
        sampling.resolve(&Announcement::default(), ctx.sampling)
    }

    /// Decodes one record (`rec.len() >= rec_len`) into a fresh `r` and `b`
    /// (every field unset, as the data set's records are made).
    #[inline]
    pub fn decode(&self, rec: &[u8], r: &mut FlowRecord, b: &mut Fill) {
        // the fast slots and the rest set distinct destinations: their order does not matter
        self.fast.decode(rec, r, b);
        for s in &self.rest {
            let bytes = &rec[usize::from(s.off)..usize::from(s.off) + usize::from(s.len)];
            match s.op {
                Op::Uint(t, mask) => b.apply(r, t, Scalar::U(Some(be(bytes) & mask))),
                Op::Time(t, unit) => b.apply(
                    r,
                    t,
                    Scalar::Ms(
                        i64::try_from(be(bytes))
                            .ok()
                            .map(|x| x.saturating_mul(unit)),
                    ),
                ),
                Op::Ntp(t) => {
                    let v = be(bytes);
                    b.apply(
                        r,
                        t,
                        Scalar::Ms(Some(ntp_to_unix_ms((v >> 32) as u32, v as u32))),
                    )
                }
                Op::Ip4(t) => {
                    let a = Ipv4Addr::from(be(bytes) as u32);
                    b.apply(r, t, Scalar::Ip(Some(IpAddr::V4(a))))
                }
                Op::Ip6(t) => {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(bytes);
                    b.apply(r, t, Scalar::Ip(Some(IpAddr::V6(Ipv6Addr::from(o)))))
                }
                Op::Icmp(rule) => b.icmp(r, rule, be(bytes)),
            }
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Whether the (data) template set `body` only repeats templates compiled
/// exactly as defined (a periodic refresh: nothing to learn), calling
/// `each` with every template id it holds. Options template sets and
/// anything new, changed, withdrawn or truncated answer false.
pub fn is_refresh(version: u16, body: &[u8], plans: &Plans, mut each: impl FnMut(u16)) -> bool {
    let mut at = 0usize;
    let mut any = false;
    while at + 4 <= body.len() {
        let (Some(tid), Some(count)) = (u16_at(body, at), u16_at(body, at + 2)) else {
            return false;
        };
        if tid < 256 {
            break; // padding
        }
        let Some(plan) = plans.get(tid) else {
            return false;
        };
        if usize::from(count) != plan.fields.len() {
            return false;
        }
        at += 4;
        for f in &plan.fields {
            let (Some(raw_ie), Some(len)) = (u16_at(body, at), u16_at(body, at + 2)) else {
                return false;
            };
            at += 4;
            let (ie, pen) = if version == 10 && raw_ie & 0x8000 != 0 {
                let Some(p) = body.get(at..at + 4) else {
                    return false;
                };
                at += 4;
                (
                    raw_ie & 0x7fff,
                    Some(u32::from_be_bytes([p[0], p[1], p[2], p[3]])),
                )
            } else {
                (raw_ie, None)
            };
            if (ie, len, pen) != (f.ie, f.len, f.pen) {
                return false;
            }
        }
        each(tid);
        any = true;
    }
    any
}

/// Compiled templates of one stream, bounded like the crate's cache.
#[derive(Debug, Clone, Default)]
pub struct Plans {
    map: FxHashMap<u16, Plan>,
}

impl Plans {
    pub fn get(&self, id: u16) -> Option<&Plan> {
        self.map.get(&id)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The ids of the compiled templates.
    pub fn ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.map.keys().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Learns from one template set: every template it (re)defines or
    /// withdraws forgets its old plan; a data template the crate accepted
    /// (`accepted`) and that compiles gets a new one.
    #[allow(clippy::too_many_arguments)] // the decoder's parts, borrowed separately
    pub fn learn(
        &mut self,
        version: u16,
        set_id: u16,
        body: &[u8],
        cap: usize,
        catalog: &mut FieldCatalog,
        registry: &EnterpriseFieldRegistry,
        accepted: impl Fn(u16) -> bool,
    ) {
        for (tid, t) in super::varlen::parse_templates(version, set_id, body) {
            self.map.remove(&tid);
            let Some(t) = t.filter(|t| !t.options) else {
                continue;
            };
            if !accepted(tid) {
                continue;
            }
            if let Some(plan) = Plan::compile(version, &t.fields, catalog, registry) {
                if self.map.len() >= cap
                    && let Some(k) = self.map.keys().next().copied()
                {
                    self.map.remove(&k);
                }
                self.map.insert(tid, plan);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netflow_parser::FieldValue;

    /// The crate's value, read the way normalization reads integers, equals the plain read.
    #[test]
    fn whitelisted_types_read_like_the_crate() {
        use super::super::value::as_u64;
        let types = [
            FieldDataType::UnsignedDataNumber,
            FieldDataType::DurationSeconds,
            FieldDataType::DurationMillis,
            FieldDataType::ProtocolType,
            FieldDataType::FlowEndReason,
            FieldDataType::TcpControlBits,
        ];
        let mut probes: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        for x in [
            0u64,
            1,
            0x1234,
            0xffff,
            0x00ab_cdef,
            0xdead_beef,
            u64::MAX,
            0x0102_0304_0506_0708,
        ] {
            for len in 1..=8usize {
                probes.push(x.to_be_bytes()[8 - len..].to_vec());
            }
        }
        for w in 0..=0x0fffu16 {
            probes.push(w.to_be_bytes().to_vec());
        }
        let mut checked = 0;
        for ty in types {
            for p in &probes {
                let len = p.len() as u16;
                if !typed_as_uint(ty, len) {
                    continue;
                }
                let (_, v) = FieldValue::from_field_type(p, ty, len).unwrap();
                assert_eq!(as_u64(&v), Some(be(p) & uint_mask(ty)), "{ty:?} {p:?}");
                checked += 1;
            }
        }
        assert!(checked > 5000);
    }
}
