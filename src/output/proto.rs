//! The Protobuf encoding of the output (`proto/flowhook.proto`), for the
//! Kafka sink's `format = "protobuf"`.
//!
//! In: one JSON line of the output (an event, an alert or a record, as the
//! file sink writes it). Out: the bytes of the matching `flowhook.v1`
//! message. Keys the schema does not name go to `extra_json`, so nothing
//! the JSON holds is lost.

use std::net::IpAddr;

use serde_json::{Map, Value};

/// `flowhook.v1.Flow`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Flow {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(bytes = "vec", tag = "2")]
    pub cli_ip: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub srv_ip: Vec<u8>,
    #[prost(uint32, tag = "4")]
    pub cli_port: u32,
    #[prost(uint32, tag = "5")]
    pub srv_port: u32,
    #[prost(uint32, tag = "6")]
    pub proto: u32,
    #[prost(string, tag = "7")]
    pub proto_l7: String,
    #[prost(uint64, tag = "8")]
    pub cli2srv_bytes: u64,
    #[prost(uint64, tag = "9")]
    pub srv2cli_bytes: u64,
    #[prost(uint64, tag = "10")]
    pub cli2srv_packets: u64,
    #[prost(uint64, tag = "11")]
    pub srv2cli_packets: u64,
    #[prost(uint32, tag = "12")]
    pub cli2srv_tcp_flags: u32,
    #[prost(uint32, tag = "13")]
    pub srv2cli_tcp_flags: u32,
    #[prost(uint64, tag = "14")]
    pub first_seen_ms: u64,
    #[prost(uint64, tag = "15")]
    pub last_seen_ms: u64,
    #[prost(uint64, tag = "16")]
    pub duration_ms: u64,
    #[prost(bytes = "vec", tag = "17")]
    pub exporter: Vec<u8>,
    #[prost(uint32, tag = "18")]
    pub observation_domain: u32,
    #[prost(uint32, tag = "19")]
    pub vlan: u32,
    #[prost(uint32, tag = "20")]
    pub in_if: u32,
    #[prost(uint32, tag = "21")]
    pub out_if: u32,
    #[prost(uint32, tag = "22")]
    pub sampling_interval: u32,
    #[prost(string, tag = "23")]
    pub sampling_source: String,
    #[prost(string, tag = "24")]
    pub cli_country: String,
    #[prost(string, tag = "25")]
    pub cli_city: String,
    #[prost(double, optional, tag = "26")]
    pub cli_latitude: Option<f64>,
    #[prost(double, optional, tag = "27")]
    pub cli_longitude: Option<f64>,
    #[prost(uint32, tag = "28")]
    pub cli_asn: u32,
    #[prost(string, tag = "29")]
    pub cli_as_name: String,
    #[prost(string, tag = "30")]
    pub cli_network: String,
    #[prost(bool, tag = "31")]
    pub cli_private: bool,
    #[prost(bool, tag = "32")]
    pub cli_local: bool,
    #[prost(string, tag = "33")]
    pub srv_country: String,
    #[prost(string, tag = "34")]
    pub srv_city: String,
    #[prost(double, optional, tag = "35")]
    pub srv_latitude: Option<f64>,
    #[prost(double, optional, tag = "36")]
    pub srv_longitude: Option<f64>,
    #[prost(uint32, tag = "37")]
    pub srv_asn: u32,
    #[prost(string, tag = "38")]
    pub srv_as_name: String,
    #[prost(string, tag = "39")]
    pub srv_network: String,
    #[prost(bool, tag = "40")]
    pub srv_private: bool,
    #[prost(bool, tag = "41")]
    pub srv_local: bool,
    #[prost(string, repeated, tag = "42")]
    pub status: Vec<String>,
    #[prost(uint32, tag = "43")]
    pub score: u32,
    #[prost(uint32, tag = "44")]
    pub cli_score: u32,
    #[prost(uint32, tag = "45")]
    pub srv_score: u32,
    #[prost(string, tag = "46")]
    pub end_reason: String,
    #[prost(string, tag = "47")]
    pub extra_json: String,
}

/// `flowhook.v1.Event`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(string, tag = "1")]
    pub event: String,
    #[prost(uint64, tag = "2")]
    pub time_ms: u64,
    #[prost(message, optional, tag = "3")]
    pub flow: Option<Flow>,
}

/// `flowhook.v1.Alert`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Alert {
    #[prost(uint64, tag = "1")]
    pub time_ms: u64,
    #[prost(string, tag = "2")]
    pub script: String,
    #[prost(string, tag = "3")]
    pub status: String,
    #[prost(string, tag = "4")]
    pub severity: String,
    #[prost(uint32, tag = "5")]
    pub score: u32,
    #[prost(string, tag = "6")]
    pub message: String,
    #[prost(string, tag = "7")]
    pub info_json: String,
    #[prost(message, optional, tag = "8")]
    pub flow: Option<Flow>,
}

/// `flowhook.v1.Record`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Record {
    #[prost(string, tag = "1")]
    pub record: String,
    #[prost(bytes = "vec", tag = "2")]
    pub exporter: Vec<u8>,
    #[prost(uint32, tag = "3")]
    pub version: u32,
    #[prost(uint32, tag = "4")]
    pub observation_domain: u32,
    #[prost(uint32, tag = "5")]
    pub template_id: u32,
    #[prost(uint64, tag = "6")]
    pub export_time_ms: u64,
    #[prost(bytes = "vec", tag = "7")]
    pub src_addr: Vec<u8>,
    #[prost(bytes = "vec", tag = "8")]
    pub dst_addr: Vec<u8>,
    #[prost(uint32, tag = "9")]
    pub src_port: u32,
    #[prost(uint32, tag = "10")]
    pub dst_port: u32,
    #[prost(uint32, tag = "11")]
    pub protocol: u32,
    #[prost(uint64, tag = "12")]
    pub bytes: u64,
    #[prost(uint64, tag = "13")]
    pub packets: u64,
    #[prost(uint32, tag = "14")]
    pub tcp_flags: u32,
    #[prost(uint32, tag = "15")]
    pub in_if: u32,
    #[prost(uint32, tag = "16")]
    pub out_if: u32,
    #[prost(uint64, tag = "17")]
    pub first_ms: u64,
    #[prost(uint64, tag = "18")]
    pub last_ms: u64,
    #[prost(uint32, tag = "19")]
    pub src_as: u32,
    #[prost(uint32, tag = "20")]
    pub dst_as: u32,
    #[prost(bytes = "vec", tag = "21")]
    pub next_hop: Vec<u8>,
    #[prost(uint32, tag = "22")]
    pub sampling_interval: u32,
    #[prost(uint32, tag = "23")]
    pub tos: u32,
    #[prost(string, tag = "24")]
    pub extra_json: String,
}

/// What a line is, from its first key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Event,
    Alert,
    Record,
}

impl LineKind {
    /// Classifies a line of the output without parsing it (every line
    /// starts with its kind: `{"event":"alert"`, `{"event":`, `{"record":`).
    pub fn of(line: &[u8]) -> Option<LineKind> {
        if line.starts_with(b"{\"event\":\"alert\"") {
            Some(LineKind::Alert)
        } else if line.starts_with(b"{\"event\":") {
            Some(LineKind::Event)
        } else if line.starts_with(b"{\"record\":") {
            Some(LineKind::Record)
        } else {
            None
        }
    }
}

/// Why a line could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode line as protobuf: {0}")]
pub struct ProtoError(String);

/// Encodes one JSON line of the output as its `flowhook.v1` message.
pub fn encode(kind: LineKind, line: &[u8], out: &mut Vec<u8>) -> Result<(), ProtoError> {
    use prost::Message;
    let v: Value = serde_json::from_slice(line).map_err(|e| ProtoError(e.to_string()))?;
    let Value::Object(mut m) = v else {
        return Err(ProtoError("not a JSON object".into()));
    };
    out.clear();
    let r = match kind {
        LineKind::Event => Event {
            event: take_str(&mut m, "event"),
            time_ms: take_time(&mut m, "time"),
            flow: take_flow(&mut m)?,
        }
        .encode(out),
        LineKind::Alert => {
            m.remove("event");
            Alert {
                time_ms: take_time(&mut m, "time"),
                script: take_str(&mut m, "script"),
                status: take_str(&mut m, "status"),
                severity: take_str(&mut m, "severity"),
                score: take_u64(&mut m, "score") as u32,
                message: take_str(&mut m, "message"),
                info_json: m
                    .remove("info")
                    .map_or_else(|| "null".into(), |v| v.to_string()),
                flow: take_flow(&mut m)?,
            }
            .encode(out)
        }
        LineKind::Record => record(&mut m).encode(out),
    };
    r.map_err(|e| ProtoError(e.to_string()))
}

fn take_str(m: &mut Map<String, Value>, k: &str) -> String {
    match m.remove(k) {
        Some(Value::String(s)) => s,
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

fn take_u64(m: &mut Map<String, Value>, k: &str) -> u64 {
    m.remove(k).and_then(|v| v.as_u64()).unwrap_or(0)
}

fn take_u32(m: &mut Map<String, Value>, k: &str) -> u32 {
    take_u64(m, k).min(u64::from(u32::MAX)) as u32
}

fn take_bool(m: &mut Map<String, Value>, k: &str) -> bool {
    m.remove(k).and_then(|v| v.as_bool()).unwrap_or(false)
}

fn take_f64(m: &mut Map<String, Value>, k: &str) -> Option<f64> {
    m.remove(k).and_then(|v| v.as_f64())
}

/// Seconds with a fraction (`first_seen`) as milliseconds.
fn take_secs_ms(m: &mut Map<String, Value>, k: &str) -> u64 {
    take_f64(m, k).map_or(0, |s| (s * 1000.0).round().max(0.0) as u64)
}

/// An address as 16 bytes, IPv4 mapped; empty when absent.
fn take_ip(m: &mut Map<String, Value>, k: &str) -> Vec<u8> {
    match m.remove(k) {
        Some(Value::String(s)) => match s.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => v4.to_ipv6_mapped().octets().to_vec(),
            Ok(IpAddr::V6(v6)) => v6.octets().to_vec(),
            Err(_) => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// An RFC 3339 UTC time (`2026-11-29T07:26:01.798Z`) as Unix milliseconds.
fn take_time(m: &mut Map<String, Value>, k: &str) -> u64 {
    match m.remove(k) {
        Some(Value::String(s)) => parse_rfc3339_ms(&s).unwrap_or(0),
        _ => 0,
    }
}

/// The times the output writes: `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || *b.last()? != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let frac = s.get(19..s.len() - 1)?;
    let ms = match frac.strip_prefix('.') {
        Some(f) if !f.is_empty() && f.bytes().all(|c| c.is_ascii_digit()) => {
            let f3: String = f.chars().chain("00".chars()).take(3).collect();
            f3.parse::<i64>().ok()?
        }
        None if frac.is_empty() => 0,
        _ => return None,
    };
    // days from the civil date (proleptic Gregorian)
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let t = ((days * 24 + h) * 60 + mi) * 60 + sec;
    u64::try_from(t * 1000 + ms).ok()
}

/// IP protocol numbers of the names `proto.l4` uses.
fn l4_number(v: Option<Value>) -> u32 {
    match v {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0) as u32,
        Some(Value::String(s)) => match s.as_str() {
            "ICMP" => 1,
            "IGMP" => 2,
            "TCP" => 6,
            "UDP" => 17,
            "GRE" => 47,
            "ESP" => 50,
            "AH" => 51,
            "ICMPv6" => 58,
            "SCTP" => 132,
            other => other.parse().unwrap_or(0),
        },
        _ => 0,
    }
}

fn rest(m: Map<String, Value>) -> String {
    if m.is_empty() {
        String::new()
    } else {
        Value::Object(m).to_string()
    }
}

fn take_flow(m: &mut Map<String, Value>) -> Result<Option<Flow>, ProtoError> {
    let Some(v) = m.remove("flow") else {
        return Ok(None);
    };
    let Value::Object(mut f) = v else {
        return Err(ProtoError("`flow` is not an object".into()));
    };
    let f = &mut f;
    let flow = Flow {
        key: take_str(f, "key"),
        cli_ip: take_ip(f, "cli.ip"),
        srv_ip: take_ip(f, "srv.ip"),
        cli_port: take_u32(f, "cli.port"),
        srv_port: take_u32(f, "srv.port"),
        proto: l4_number(f.remove("proto.l4")),
        proto_l7: take_str(f, "proto.l7"),
        cli2srv_bytes: take_u64(f, "cli2srv.bytes"),
        srv2cli_bytes: take_u64(f, "srv2cli.bytes"),
        cli2srv_packets: take_u64(f, "cli2srv.packets"),
        srv2cli_packets: take_u64(f, "srv2cli.packets"),
        cli2srv_tcp_flags: take_u32(f, "cli2srv.tcp_flags"),
        srv2cli_tcp_flags: take_u32(f, "srv2cli.tcp_flags"),
        first_seen_ms: take_secs_ms(f, "first_seen"),
        last_seen_ms: take_secs_ms(f, "last_seen"),
        duration_ms: take_secs_ms(f, "duration"),
        exporter: take_ip(f, "exporter"),
        observation_domain: take_u32(f, "observation_domain"),
        vlan: take_u32(f, "vlan"),
        in_if: take_u32(f, "in_if"),
        out_if: take_u32(f, "out_if"),
        sampling_interval: take_u32(f, "sampling_interval"),
        sampling_source: take_str(f, "sampling_source"),
        cli_country: take_str(f, "cli.country"),
        cli_city: take_str(f, "cli.city"),
        cli_latitude: take_f64(f, "cli.latitude"),
        cli_longitude: take_f64(f, "cli.longitude"),
        cli_asn: take_u32(f, "cli.asn"),
        cli_as_name: take_str(f, "cli.as_name"),
        cli_network: take_str(f, "cli.network"),
        cli_private: take_bool(f, "cli.private"),
        cli_local: take_bool(f, "cli.local"),
        srv_country: take_str(f, "srv.country"),
        srv_city: take_str(f, "srv.city"),
        srv_latitude: take_f64(f, "srv.latitude"),
        srv_longitude: take_f64(f, "srv.longitude"),
        srv_asn: take_u32(f, "srv.asn"),
        srv_as_name: take_str(f, "srv.as_name"),
        srv_network: take_str(f, "srv.network"),
        srv_private: take_bool(f, "srv.private"),
        srv_local: take_bool(f, "srv.local"),
        status: match f.remove("status") {
            Some(Value::Array(a)) => a
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => s,
                    v => v.to_string(),
                })
                .collect(),
            _ => Vec::new(),
        },
        score: take_u32(f, "score"),
        cli_score: take_u32(f, "cli.score"),
        srv_score: take_u32(f, "srv.score"),
        end_reason: take_str(f, "end_reason"),
        extra_json: String::new(),
    };
    Ok(Some(Flow {
        extra_json: rest(std::mem::take(f)),
        ..flow
    }))
}

fn record(m: &mut Map<String, Value>) -> Record {
    let r = Record {
        record: take_str(m, "record"),
        exporter: take_ip(m, "exporter"),
        version: take_u32(m, "version"),
        observation_domain: take_u32(m, "observation_domain"),
        template_id: take_u32(m, "template_id"),
        export_time_ms: take_time(m, "export_time"),
        src_addr: take_ip(m, "src_addr"),
        dst_addr: take_ip(m, "dst_addr"),
        src_port: take_u32(m, "src_port"),
        dst_port: take_u32(m, "dst_port"),
        protocol: take_u32(m, "protocol"),
        bytes: take_u64(m, "bytes"),
        packets: take_u64(m, "packets"),
        tcp_flags: take_u32(m, "tcp_flags"),
        in_if: take_u32(m, "in_if"),
        out_if: take_u32(m, "out_if"),
        first_ms: take_time(m, "first"),
        last_ms: take_time(m, "last"),
        src_as: take_u32(m, "src_as"),
        dst_as: take_u32(m, "dst_as"),
        next_hop: take_ip(m, "next_hop"),
        sampling_interval: take_u32(m, "sampling_interval"),
        tos: take_u32(m, "tos"),
        extra_json: String::new(),
    };
    Record {
        extra_json: rest(std::mem::take(m)),
        ..r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use std::net::Ipv6Addr;

    /// The address of 16 bytes as the JSON writes it.
    fn ip_of(b: &[u8]) -> Option<IpAddr> {
        let a: [u8; 16] = b.try_into().ok()?;
        let v6 = Ipv6Addr::from(a);
        Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
    }

    #[test]
    fn times_parse_like_the_writer_writes_them() {
        for ms in [
            0i64,
            1,
            999,
            951_782_400_000,
            1_795_937_161_798,
            4_102_444_799_999,
        ] {
            let s = crate::record::rfc3339_ms(ms);
            assert_eq!(parse_rfc3339_ms(&s), Some(ms as u64), "{s}");
        }
        assert_eq!(
            parse_rfc3339_ms("2026-11-29T07:26:01Z"),
            Some(1_795_937_161_000)
        );
        assert_eq!(parse_rfc3339_ms("2026-11-29 07:26:01Z"), None);
        assert_eq!(parse_rfc3339_ms("garbage"), None);
    }

    #[test]
    fn an_event_line_round_trips_every_key() {
        let line = br#"{"event":"flowEnd","time":"2026-11-29T07:26:01.798Z","flow":{"key":"0d0eb1d8b8e58729","cli.ip":"10.0.0.180","srv.ip":"2001:db8::1","cli.port":34028,"srv.port":25,"proto.l4":"TCP","proto.l7":"SMTP","cli2srv.bytes":3172,"srv2cli.bytes":7320,"cli2srv.packets":13,"srv2cli.packets":30,"cli2srv.tcp_flags":2,"srv2cli.tcp_flags":24,"first_seen":1795937159.64,"last_seen":1795937160.82,"duration":1.18,"exporter":"127.0.0.2","observation_domain":1,"vlan":0,"in_if":5,"out_if":13,"sampling_interval":0,"srv.country":"CN","srv.latitude":0.0,"srv.longitude":104.0,"cli.private":true,"cli.local":false,"srv.private":false,"srv.local":false,"status":["blacklisted"],"score":100,"end_reason":"idle","future.key":7}}"#;
        assert_eq!(LineKind::of(line), Some(LineKind::Event));
        let mut out = Vec::new();
        encode(LineKind::Event, line, &mut out).unwrap();
        let e = Event::decode(&out[..]).unwrap();
        assert_eq!(e.event, "flowEnd");
        assert_eq!(e.time_ms, 1_795_937_161_798);
        let f = e.flow.unwrap();
        assert_eq!(f.key, "0d0eb1d8b8e58729");
        assert_eq!(ip_of(&f.cli_ip), Some("10.0.0.180".parse().unwrap()));
        assert_eq!(ip_of(&f.srv_ip), Some("2001:db8::1".parse().unwrap()));
        assert_eq!((f.proto, f.proto_l7.as_str(), f.srv_port), (6, "SMTP", 25));
        assert_eq!((f.cli2srv_bytes, f.srv2cli_packets), (3172, 30));
        assert_eq!(
            (f.first_seen_ms, f.last_seen_ms, f.duration_ms),
            (1_795_937_159_640, 1_795_937_160_820, 1180)
        );
        assert_eq!(f.srv_latitude, Some(0.0), "a latitude of 0 stays present");
        assert_eq!(f.cli_latitude, None);
        assert_eq!(f.srv_country, "CN");
        assert!(f.cli_private && !f.srv_private);
        assert_eq!(f.status, vec!["blacklisted"]);
        assert_eq!((f.score, f.end_reason.as_str()), (100, "idle"));
        assert_eq!(f.extra_json, r#"{"future.key":7}"#);
    }

    #[test]
    fn alert_and_record_lines() {
        let line = br#"{"event":"alert","time":"2026-11-29T07:26:01.000Z","script":"blocklist","status":"blacklisted","severity":"error","score":100,"message":"m","info":{"list":"x"},"flow":{"key":"00000000000000ff","proto.l4":"ICMPv6"}}"#;
        assert_eq!(LineKind::of(line), Some(LineKind::Alert));
        let mut out = Vec::new();
        encode(LineKind::Alert, line, &mut out).unwrap();
        let a = Alert::decode(&out[..]).unwrap();
        assert_eq!(
            (a.script.as_str(), a.severity.as_str(), a.score),
            ("blocklist", "error", 100)
        );
        assert_eq!(a.info_json, r#"{"list":"x"}"#);
        assert_eq!(a.flow.unwrap().proto, 58);
        let line = br#"{"record":"flow","exporter":"127.0.0.2","version":9,"observation_domain":1,"template_id":256,"export_time":"2026-11-29T07:26:01.000Z","src_addr":"10.0.0.0","dst_addr":"198.18.0.0","src_port":32768,"dst_port":443,"protocol":6,"bytes":64,"packets":1,"raw_bytes":64,"first":"2026-11-29T07:26:00.000Z","fields":{"in_bytes":64}}"#;
        assert_eq!(LineKind::of(line), Some(LineKind::Record));
        encode(LineKind::Record, line, &mut out).unwrap();
        let r = Record::decode(&out[..]).unwrap();
        assert_eq!(
            (r.version, r.template_id, r.dst_port, r.bytes),
            (9, 256, 443, 64)
        );
        assert_eq!(r.first_ms, 1_795_937_160_000);
        assert_eq!(r.extra_json, r#"{"fields":{"in_bytes":64},"raw_bytes":64}"#);
        assert!(encode(LineKind::Event, b"{not json", &mut out).is_err());
    }
}
