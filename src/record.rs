//! The normalized flow record: what the decode stage produces for every flow
//! (and options) data record, whatever the export version or vendor.
//!
//! In: filled by `decode::normalize`. Out: consumed by the output sinks (JSON
//! lines) and, from the lifecycle stage on, by the flow table. The field list
//! and the Information Elements each field comes from are documented in
//! `docs/flow-record.md`; keep the two in step.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

/// Whether a record describes traffic or exporter metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    /// A flow data record.
    Flow,
    /// An options data record (sampling, interface or application tables, exporter statistics).
    Options,
}

/// Where a record's sampling rate came from (docs/flow-record.md, "Sampling").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplingSource {
    /// The NetFlow v5/v7 header.
    Header = 0,
    /// The data record itself (`samplingInterval`, `samplerRandomInterval`, PSAMP fields).
    Record = 1,
    /// Options data: a sampler (`samplerId`) or the exporter's rate without an id.
    Options = 2,
    /// Options data of a PSAMP selector (`selectorId`, RFC 5476).
    Selector = 3,
    /// A `[[sampling]]` rule of the configuration.
    Config = 4,
}

impl SamplingSource {
    pub fn as_str(self) -> &'static str {
        match self {
            SamplingSource::Header => "header",
            SamplingSource::Record => "record",
            SamplingSource::Options => "options",
            SamplingSource::Selector => "selector",
            SamplingSource::Config => "config",
        }
    }
}

/// A decoded field value, kept close to the wire type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Unsigned integer (counters, identifiers, flags).
    U64(u64),
    /// Signed integer.
    I64(i64),
    /// IEEE float.
    F64(f64),
    /// IPv4 or IPv6 address.
    Ip(IpAddr),
    /// MAC address.
    Mac([u8; 6]),
    /// Text (lossy UTF-8, control characters removed).
    Str(String),
    /// Opaque octets, rendered as lowercase hex.
    Bytes(Vec<u8>),
    /// An absolute time, milliseconds since the Unix epoch (rendered RFC 3339).
    TimeMs(i64),
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::U64(v) => s.serialize_u64(*v),
            Value::I64(v) => s.serialize_i64(*v),
            Value::F64(v) if v.is_finite() => s.serialize_f64(*v),
            Value::F64(_) => s.serialize_none(),
            Value::Ip(v) => s.collect_str(v),
            Value::Mac(m) => s.collect_str(&format_args!(
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            )),
            Value::Str(v) => s.serialize_str(v),
            Value::Bytes(b) => s.serialize_str(&hex(b)),
            Value::TimeMs(ms) => s.serialize_str(&rfc3339_ms(*ms)),
        }
    }
}

/// Lowercase hex of a byte string.
pub fn hex(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len() * 2);
    for byte in b {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// RFC 3339 UTC text with millisecond precision for a Unix time in milliseconds.
/// Times before 1970 or beyond year 9999 are clamped to those bounds.
pub fn rfc3339_ms(ms: i64) -> String {
    let ms = ms.clamp(0, 253_402_300_799_999) as u64;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// One normalized flow or options record.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowRecord {
    /// Flow or options data.
    pub kind: RecordKind,
    /// Address the export datagram came from.
    pub exporter: IpAddr,
    /// Export protocol version: 5, 7, 9 or 10 (IPFIX).
    pub version: u16,
    /// IPFIX observation domain id, NetFlow v9 source id, v5 engine type/id (`type << 8 | id`).
    pub observation_domain: u32,
    /// Template (set) id the record was decoded with; `None` for v5/v7.
    pub template_id: Option<u16>,
    /// Export time from the message header, Unix milliseconds.
    pub export_time_ms: i64,
    pub src_addr: Option<IpAddr>,
    pub dst_addr: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub protocol: Option<u8>,
    /// Octets with the sampling interval applied.
    pub bytes: Option<u64>,
    /// Packets with the sampling interval applied.
    pub packets: Option<u64>,
    /// Octets as exported (before sampling correction).
    pub raw_bytes: Option<u64>,
    /// Packets as exported (before sampling correction).
    pub raw_packets: Option<u64>,
    /// Cumulative (total) octets when the exporter sends those (IE 85), raw.
    pub total_bytes: Option<u64>,
    /// Cumulative (total) packets (IE 86), raw.
    pub total_packets: Option<u64>,
    /// Reverse-direction octets (RFC 5103 or NSEL responder octets), sampling applied.
    pub rev_bytes: Option<u64>,
    /// Reverse-direction packets, sampling applied.
    pub rev_packets: Option<u64>,
    /// Sampling interval in force for this record (1 in N); as exported, 0 = not sampled.
    pub sampling_interval: Option<u32>,
    /// Where `sampling_interval` came from (set whenever it is).
    pub sampling_source: Option<SamplingSource>,
    pub tcp_flags: Option<u16>,
    pub rev_tcp_flags: Option<u16>,
    pub in_if: Option<u32>,
    pub out_if: Option<u32>,
    pub next_hop: Option<IpAddr>,
    pub src_as: Option<u32>,
    pub dst_as: Option<u32>,
    pub src_mask: Option<u8>,
    pub dst_mask: Option<u8>,
    pub tos: Option<u8>,
    /// 0 ingress, 1 egress (IE 61).
    pub direction: Option<u8>,
    /// RFC 5103 biflowDirection (IE 239): 0 arbitrary, 1 initiator, 2 reverse initiator, 3 perimeter.
    pub biflow_direction: Option<u8>,
    /// Flow start, Unix milliseconds.
    pub first_ms: Option<i64>,
    /// Flow end, Unix milliseconds.
    pub last_ms: Option<i64>,
    /// IE 136 flowEndReason.
    pub flow_end_reason: Option<u8>,
    /// IE 95 applicationId as `engine..selector` (or `engine..pen..selector`), or an nProbe L7 id.
    pub application_id: Option<String>,
    /// Application name when the exporter sends one (nProbe L7_PROTO_NAME, NBAR name).
    pub application_name: Option<String>,
    pub vlan: Option<u16>,
    /// ICMP type (from the first ICMP type field, else the destination
    /// port's high byte when the source port is 0); read by the flow stage,
    /// not written (the fields carry it).
    pub icmp_type: Option<u8>,
    /// Every decoded field by name, in wire order.
    pub fields: Vec<(Arc<str>, Value)>,
}

impl FlowRecord {
    /// An empty record of `kind` from `exporter`, with every field unset.
    pub fn new(kind: RecordKind, exporter: IpAddr, version: u16) -> Self {
        FlowRecord {
            kind,
            exporter,
            version,
            observation_domain: 0,
            template_id: None,
            export_time_ms: 0,
            src_addr: None,
            dst_addr: None,
            src_port: None,
            dst_port: None,
            protocol: None,
            bytes: None,
            packets: None,
            raw_bytes: None,
            raw_packets: None,
            total_bytes: None,
            total_packets: None,
            rev_bytes: None,
            rev_packets: None,
            sampling_interval: None,
            sampling_source: None,
            tcp_flags: None,
            rev_tcp_flags: None,
            in_if: None,
            out_if: None,
            next_hop: None,
            src_as: None,
            dst_as: None,
            src_mask: None,
            dst_mask: None,
            tos: None,
            direction: None,
            biflow_direction: None,
            first_ms: None,
            last_ms: None,
            flow_end_reason: None,
            application_id: None,
            application_name: None,
            vlan: None,
            icmp_type: None,
            fields: Vec::new(),
        }
    }
}

/// Fields are written in a fixed order; unset optional fields are left out.
impl Serialize for FlowRecord {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Fields<'a>(&'a [(Arc<str>, Value)]);
        impl Serialize for Fields<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(self.0.len()))?;
                for (k, v) in self.0 {
                    m.serialize_entry(&**k, v)?;
                }
                m.end()
            }
        }
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("record", &self.kind)?;
        m.serialize_entry("exporter", &self.exporter)?;
        m.serialize_entry("version", &self.version)?;
        m.serialize_entry("observation_domain", &self.observation_domain)?;
        if let Some(t) = self.template_id {
            m.serialize_entry("template_id", &t)?;
        }
        m.serialize_entry("export_time", &rfc3339_ms(self.export_time_ms))?;
        macro_rules! opt {
            ($($name:literal => $field:expr),* $(,)?) => {$(
                if let Some(v) = &$field { m.serialize_entry($name, v)?; }
            )*};
        }
        opt! {
            "src_addr" => self.src_addr,
            "dst_addr" => self.dst_addr,
            "src_port" => self.src_port,
            "dst_port" => self.dst_port,
            "protocol" => self.protocol,
            "bytes" => self.bytes,
            "packets" => self.packets,
            "raw_bytes" => self.raw_bytes,
            "raw_packets" => self.raw_packets,
            "total_bytes" => self.total_bytes,
            "total_packets" => self.total_packets,
            "rev_bytes" => self.rev_bytes,
            "rev_packets" => self.rev_packets,
            "tcp_flags" => self.tcp_flags,
            "rev_tcp_flags" => self.rev_tcp_flags,
            "in_if" => self.in_if,
            "out_if" => self.out_if,
            "next_hop" => self.next_hop,
            "src_as" => self.src_as,
            "dst_as" => self.dst_as,
            "src_mask" => self.src_mask,
            "dst_mask" => self.dst_mask,
            "tos" => self.tos,
            "direction" => self.direction,
            "biflow_direction" => self.biflow_direction,
        }
        if let Some(ms) = self.first_ms {
            m.serialize_entry("first", &rfc3339_ms(ms))?;
        }
        if let Some(ms) = self.last_ms {
            m.serialize_entry("last", &rfc3339_ms(ms))?;
        }
        opt! {
            "sampling_interval" => self.sampling_interval,
            "sampling_source" => self.sampling_source,
            "flow_end_reason" => self.flow_end_reason,
            "application_id" => self.application_id,
            "application_name" => self.application_name,
            "vlan" => self.vlan,
        }
        m.serialize_entry("fields", &Fields(&self.fields))?;
        m.end()
    }
}

/// An address in 16 bytes, IPv4 mapped into IPv6 (how the compact record
/// and the flow key hold addresses).
pub fn addr16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// What the flow table reads of a flow record, in a fixed layout with no
/// heap part (152 bytes where a [`FlowRecord`] takes 400): the hot
/// path's record. Records of compiled templates are decoded straight into
/// it; any other record is converted with [`Compact::of`]. Absent values are
/// 0 with their bit in `has` clear (the bits the table needs to tell absent
/// from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Compact {
    /// Addresses in 16 bytes, IPv4 mapped into IPv6 ([`addr16`]).
    pub exporter: [u8; 16],
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Counters with the sampling interval applied.
    pub bytes: u64,
    pub packets: u64,
    pub total_bytes: u64,
    pub total_packets: u64,
    pub rev_bytes: u64,
    pub rev_packets: u64,
    pub first_ms: i64,
    pub last_ms: i64,
    pub domain: u32,
    pub in_if: u32,
    pub out_if: u32,
    pub sampling_interval: u32,
    pub src_port: u16,
    pub dst_port: u16,
    pub vlan: u16,
    pub tcp_flags: u16,
    pub rev_tcp_flags: u16,
    /// The exporter's application name, interned by the flow table (with [`Has::APP`]).
    pub l7: u16,
    pub protocol: u8,
    pub end_reason: u8,
    pub biflow: u8,
    pub icmp_type: u8,
    pub sampling_source: Option<SamplingSource>,
    pub has: Has,
}

/// Which of a [`Compact`] record's values are present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Has(pub u32);

impl Has {
    pub const SRC: u32 = 1;
    pub const DST: u32 = 1 << 1;
    pub const SRC_PORT: u32 = 1 << 2;
    pub const DST_PORT: u32 = 1 << 3;
    pub const BYTES: u32 = 1 << 4;
    pub const PACKETS: u32 = 1 << 5;
    pub const TOTAL_BYTES: u32 = 1 << 6;
    pub const TOTAL_PACKETS: u32 = 1 << 7;
    pub const REV_BYTES: u32 = 1 << 8;
    pub const REV_PACKETS: u32 = 1 << 9;
    pub const FIRST: u32 = 1 << 10;
    pub const LAST: u32 = 1 << 11;
    pub const IN_IF: u32 = 1 << 12;
    pub const OUT_IF: u32 = 1 << 13;
    pub const SAMPLING: u32 = 1 << 14;
    pub const END_REASON: u32 = 1 << 15;
    pub const BIFLOW: u32 = 1 << 16;
    pub const ICMP: u32 = 1 << 17;
    pub const APP: u32 = 1 << 18;

    #[inline(always)]
    pub fn any(self, bits: u32) -> bool {
        self.0 & bits != 0
    }

    /// The value of `v` (0 when absent), marking `bit` present when it is there.
    #[inline(always)]
    pub fn set<T: Default>(&mut self, bit: u32, v: Option<T>) -> T {
        match v {
            Some(v) => {
                self.0 |= bit;
                v
            }
            None => T::default(),
        }
    }
}

impl Compact {
    #[inline(always)]
    fn opt<T: Copy>(&self, bit: u32, v: T) -> Option<T> {
        self.has.any(bit).then_some(v)
    }

    pub fn first(&self) -> Option<i64> {
        self.opt(Has::FIRST, self.first_ms)
    }
    pub fn last(&self) -> Option<i64> {
        self.opt(Has::LAST, self.last_ms)
    }
    pub fn bytes(&self) -> Option<u64> {
        self.opt(Has::BYTES, self.bytes)
    }
    pub fn packets(&self) -> Option<u64> {
        self.opt(Has::PACKETS, self.packets)
    }
    pub fn total_bytes(&self) -> Option<u64> {
        self.opt(Has::TOTAL_BYTES, self.total_bytes)
    }
    pub fn total_packets(&self) -> Option<u64> {
        self.opt(Has::TOTAL_PACKETS, self.total_packets)
    }
    pub fn rev_bytes(&self) -> Option<u64> {
        self.opt(Has::REV_BYTES, self.rev_bytes)
    }
    pub fn rev_packets(&self) -> Option<u64> {
        self.opt(Has::REV_PACKETS, self.rev_packets)
    }
    pub fn src_port(&self) -> Option<u16> {
        self.opt(Has::SRC_PORT, self.src_port)
    }
    pub fn dst_port(&self) -> Option<u16> {
        self.opt(Has::DST_PORT, self.dst_port)
    }
    pub fn in_if(&self) -> Option<u32> {
        self.opt(Has::IN_IF, self.in_if)
    }
    pub fn out_if(&self) -> Option<u32> {
        self.opt(Has::OUT_IF, self.out_if)
    }
    pub fn end_reason(&self) -> Option<u8> {
        self.opt(Has::END_REASON, self.end_reason)
    }
    pub fn biflow(&self) -> Option<u8> {
        self.opt(Has::BIFLOW, self.biflow)
    }
    pub fn icmp_type(&self) -> Option<u8> {
        self.opt(Has::ICMP, self.icmp_type)
    }

    /// The compact form of a record. The application name is left to the
    /// flow table, which interns it.
    pub fn of(r: &FlowRecord) -> Compact {
        let mut has = Has::default();
        Compact {
            exporter: addr16(r.exporter),
            src: has.set(Has::SRC, r.src_addr.map(addr16)),
            dst: has.set(Has::DST, r.dst_addr.map(addr16)),
            bytes: has.set(Has::BYTES, r.bytes),
            packets: has.set(Has::PACKETS, r.packets),
            total_bytes: has.set(Has::TOTAL_BYTES, r.total_bytes),
            total_packets: has.set(Has::TOTAL_PACKETS, r.total_packets),
            rev_bytes: has.set(Has::REV_BYTES, r.rev_bytes),
            rev_packets: has.set(Has::REV_PACKETS, r.rev_packets),
            first_ms: has.set(Has::FIRST, r.first_ms),
            last_ms: has.set(Has::LAST, r.last_ms),
            domain: r.observation_domain,
            in_if: has.set(Has::IN_IF, r.in_if),
            out_if: has.set(Has::OUT_IF, r.out_if),
            sampling_interval: has.set(Has::SAMPLING, r.sampling_interval),
            src_port: has.set(Has::SRC_PORT, r.src_port),
            dst_port: has.set(Has::DST_PORT, r.dst_port),
            vlan: r.vlan.unwrap_or(0),
            tcp_flags: r.tcp_flags.unwrap_or(0),
            rev_tcp_flags: r.rev_tcp_flags.unwrap_or(0),
            l7: 0,
            protocol: r.protocol.unwrap_or(0),
            end_reason: has.set(Has::END_REASON, r.flow_end_reason),
            biflow: has.set(Has::BIFLOW, r.biflow_direction),
            icmp_type: has.set(Has::ICMP, r.icmp_type),
            sampling_source: r.sampling_source,
            has,
        }
    }
}

#[cfg(test)]
mod tests {
    /// The sizes docs/architecture.md gives.
    #[test]
    fn compact_record_is_under_half_the_full_one() {
        let (c, f) = (
            std::mem::size_of::<super::Compact>(),
            std::mem::size_of::<super::FlowRecord>(),
        );
        assert_eq!(c, 152);
        assert_eq!(f, 400);
    }
}
