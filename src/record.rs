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
