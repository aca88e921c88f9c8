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
    pub sampling: Option<u32>,
    pub system_init_ms: Option<i64>,
}

#[derive(Default)]
struct Parts {
    src4: Option<IpAddr>,
    src6: Option<IpAddr>,
    dst4: Option<IpAddr>,
    dst6: Option<IpAddr>,
    nh4: Option<IpAddr>,
    nh6: Option<IpAddr>,
    start_abs: Option<i64>,
    end_abs: Option<i64>,
    start_up: Option<u64>,
    end_up: Option<u64>,
    start_delta_us: Option<u64>,
    end_delta_us: Option<u64>,
    system_init_ms: Option<i64>,
    sampling: Option<u32>,
    pkt_interval: Option<u64>,
    pkt_space: Option<u64>,
    initiator_octets: Option<u64>,
    responder_octets: Option<u64>,
    initiator_packets: Option<u64>,
    responder_packets: Option<u64>,
    ntop_l7: Option<u64>,
}

/// Builds one record field by field.
pub struct Builder {
    rec: FlowRecord,
    p: Parts,
}

fn pick(v4: Option<IpAddr>, v6: Option<IpAddr>) -> Option<IpAddr> {
    match (v4, v6) {
        (Some(a), Some(b)) if b.is_unspecified() => Some(a),
        (Some(a), Some(b)) if a.is_unspecified() => Some(b),
        (Some(a), _) => Some(a),
        (None, b) => b,
    }
}

fn u8_of(v: &FieldValue) -> Option<u8> {
    as_u64(v).and_then(|x| u8::try_from(x).ok())
}
fn u16_of(v: &FieldValue) -> Option<u16> {
    as_u64(v).and_then(|x| u16::try_from(x).ok())
}
fn u32_of(v: &FieldValue) -> Option<u32> {
    as_u64(v).and_then(|x| u32::try_from(x).ok())
}

impl Builder {
    pub fn new(kind: RecordKind, ctx: &Ctx, template_id: Option<u16>, capacity: usize) -> Self {
        let mut rec = FlowRecord::new(kind, ctx.exporter, ctx.version);
        rec.observation_domain = ctx.domain;
        rec.template_id = template_id;
        rec.export_time_ms = ctx.export_ms;
        rec.fields.reserve(capacity);
        Builder {
            rec,
            p: Parts::default(),
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
        let r = &mut self.rec;
        let p = &mut self.p;
        match (id.pen, id.ie) {
            (0, 1) => r.raw_bytes = as_u64(v),
            (0, 2) => r.raw_packets = as_u64(v),
            (0, 4) => r.protocol = u8_of(v),
            (0, 5) => r.tos = u8_of(v),
            (0, 6) => r.tcp_flags = u16_of(v),
            (0, 7) => r.src_port = u16_of(v),
            (0, 8) => p.src4 = as_ip(v),
            (0, 9) | (0, 29) => r.src_mask = u8_of(v),
            (0, 10) => r.in_if = u32_of(v),
            (0, 11) => r.dst_port = u16_of(v),
            (0, 12) => p.dst4 = as_ip(v),
            (0, 13) | (0, 30) => r.dst_mask = u8_of(v),
            (0, 14) => r.out_if = u32_of(v),
            (0, 15) => p.nh4 = as_ip(v),
            (0, 16) => r.src_as = u32_of(v),
            (0, 17) => r.dst_as = u32_of(v),
            (0, 21) => p.end_up = as_u64(v),
            (0, 22) => p.start_up = as_u64(v),
            (0, 27) => p.src6 = as_ip(v),
            (0, 28) => p.dst6 = as_ip(v),
            (0, 34) | (0, 50) => p.sampling = u32_of(v),
            (0, 58) => r.vlan = u16_of(v),
            (0, 243) if r.vlan.is_none() => {
                r.vlan = u16_of(v);
            }
            (0, 61) => r.direction = u8_of(v),
            (0, 62) => p.nh6 = as_ip(v),
            (0, 85) => r.total_bytes = as_u64(v),
            (0, 86) => r.total_packets = as_u64(v),
            (0, 95) => {
                let mut b = Vec::new();
                let _ = v.write_be_bytes(&mut b);
                r.application_id = application_id(&b);
            }
            (0, 136) => r.flow_end_reason = u8_of(v),
            (0, 150) | (0, 151) => set_abs(p, id.ie == 150, as_time_ms(v, 1000)),
            (0, 152) | (0, 153) => set_abs(p, id.ie == 152, as_time_ms(v, 1)),
            (0, 154..=157) => set_abs(p, id.ie.is_multiple_of(2), as_time_ms(v, 0)),
            (0, 158) => p.start_delta_us = as_u64(v),
            (0, 159) => p.end_delta_us = as_u64(v),
            (0, 160) => p.system_init_ms = as_u64(v).and_then(|x| i64::try_from(x).ok()),
            (0, 231) => p.initiator_octets = as_u64(v),
            (0, 232) => p.responder_octets = as_u64(v),
            (0, 298) => p.initiator_packets = as_u64(v),
            (0, 299) => p.responder_packets = as_u64(v),
            (0, 239) => r.biflow_direction = u8_of(v),
            (0, 305) => p.pkt_interval = as_u64(v),
            (0, 306) => p.pkt_space = as_u64(v),
            (PEN_REVERSE, 1) => r.rev_bytes = as_u64(v),
            (PEN_REVERSE, 2) => r.rev_packets = as_u64(v),
            (PEN_REVERSE, 6) => r.rev_tcp_flags = u16_of(v),
            (PEN_NTOP, 118) => p.ntop_l7 = as_u64(v),
            (PEN_NTOP, 119) => r.application_name = as_text(v).filter(|t| !t.is_empty()),
            _ => {}
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
        r.fields.push((name, value));
    }

    /// Completes the record: addresses, times, counters with sampling applied.
    /// Returns what an options record teaches about the exporter.
    pub fn finish(self, ctx: &Ctx) -> (FlowRecord, Learnt) {
        let Builder { mut rec, p } = self;
        rec.src_addr = pick(p.src4, p.src6);
        rec.dst_addr = pick(p.dst4, p.dst6);
        rec.next_hop = pick(p.nh4, p.nh6);

        // Sampling: from the record itself, else what the exporter said before.
        let own_sampling = p.sampling.or_else(|| match (p.pkt_interval, p.pkt_space) {
            (Some(i), Some(s)) if i > 0 => u32::try_from((i + s) / i).ok(),
            _ => None,
        });
        let learnt = Learnt {
            sampling: own_sampling,
            system_init_ms: p.system_init_ms,
        };
        if rec.kind == RecordKind::Flow {
            rec.sampling_interval = own_sampling.or(ctx.sampling);
        } else {
            rec.sampling_interval = own_sampling;
        }
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
        let init = p.system_init_ms.or(ctx.system_init_ms);
        let from_up = |t: u64| -> Option<i64> {
            match (ctx.version, ctx.uptime_ms, init) {
                (10, _, Some(init)) => Some(time::init_relative_to_unix_ms(init, t)),
                (10, _, None) => None,
                (_, Some(up), _) => Some(time::uptime_to_unix_ms(ctx.export_ms, up, t as u32)),
                _ => None,
            }
        };
        rec.first_ms = p
            .start_abs
            .or_else(|| {
                p.start_delta_us
                    .map(|d| time::delta_us_to_unix_ms(ctx.export_ms, d))
            })
            .or_else(|| p.start_up.and_then(from_up));
        rec.last_ms = p
            .end_abs
            .or_else(|| {
                p.end_delta_us
                    .map(|d| time::delta_us_to_unix_ms(ctx.export_ms, d))
            })
            .or_else(|| p.end_up.and_then(from_up));
        (rec, learnt)
    }
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
        p.start_abs = p.start_abs.or(ms);
    } else {
        p.end_abs = p.end_abs.or(ms);
    }
}
