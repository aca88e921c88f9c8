//! Export message encoding for the load generator: NetFlow v5 (Cisco's fixed
//! format), NetFlow v9 (RFC 3954) and IPFIX (RFC 7011) with a router-like
//! template pair (IPv4 id 256, IPv6 id 257).
//!
//! In: a [`Header`] and [`FlowSample`]s. Out: one export message appended to
//! a caller's reused buffer (no allocation once the buffer has grown).

use std::net::IpAddr;

/// Template id of the IPv4 template.
pub const TEMPLATE_V4: u16 = 256;
/// Template id of the IPv6 template.
pub const TEMPLATE_V6: u16 = 257;

/// Fields after the addresses, shared by both templates: (IE, v9 length, IPFIX length).
/// Times are IE 22/21 (sysUptime ms) in v9 and IE 152/153 (Unix ms) in IPFIX.
const COMMON: &[(u16, u16, u16)] = &[
    (7, 2, 2),   // sourceTransportPort
    (11, 2, 2),  // destinationTransportPort
    (4, 1, 1),   // protocolIdentifier
    (6, 1, 2),   // tcpControlBits
    (5, 1, 1),   // ipClassOfService
    (10, 4, 4),  // ingressInterface
    (14, 4, 4),  // egressInterface
    (1, 8, 8),   // octetDeltaCount
    (2, 8, 8),   // packetDeltaCount
    (95, 4, 4),  // applicationId
    (136, 1, 1), // flowEndReason
];

/// One flow record to encode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowSample {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    pub tcp_flags: u8,
    pub tos: u8,
    pub in_if: u32,
    pub out_if: u32,
    pub bytes: u64,
    pub packets: u64,
    /// Flow start and end, milliseconds of exporter uptime.
    pub first_up: u32,
    pub last_up: u32,
    /// applicationId (IE 95): classification engine 3 (IANA L4 port) and the port.
    pub app_port: u16,
    /// IE 136: 2 = active timeout.
    pub end_reason: u8,
}

/// Message header values.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub uptime_ms: u32,
    pub unix_ms: i64,
    /// v5: flows before this one; v9: packets before; IPFIX: data records before.
    pub sequence: u32,
    /// v9 source id, IPFIX observation domain, v5 engine id.
    pub domain: u32,
}

fn put16(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_be_bytes());
}
fn put32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_be_bytes());
}
fn put64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_be_bytes());
}

fn set16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Unix ms of an uptime value, given the header's uptime and Unix time.
fn unix_of(h: &Header, up: u32) -> u64 {
    (h.unix_ms - i64::from(h.uptime_ms.wrapping_sub(up) as i32)).max(0) as u64
}

/// Appends one template record (RFC 3954 §5.2 / RFC 7011 §3.4.1).
fn template(b: &mut Vec<u8>, id: u16, v6: bool, ipfix: bool) {
    put16(b, id);
    put16(b, (2 + COMMON.len() + 2) as u16);
    let (s, d, alen) = if v6 { (27, 28, 16) } else { (8, 12, 4) };
    for (ie, len) in [(s, alen), (d, alen)] {
        put16(b, ie);
        put16(b, len);
    }
    for (ie, l9, lx) in COMMON {
        put16(b, *ie);
        put16(b, if ipfix { *lx } else { *l9 });
    }
    let (start, end, tlen) = if ipfix { (152, 153, 8) } else { (22, 21, 4) };
    for ie in [start, end] {
        put16(b, ie);
        put16(b, tlen);
    }
}

/// Bytes of one data record of the template of `v6`.
pub fn record_len(v6: bool, ipfix: bool) -> usize {
    let addr = if v6 { 32 } else { 8 };
    let common: u16 = COMMON
        .iter()
        .map(|(_, l9, lx)| if ipfix { *lx } else { *l9 })
        .sum();
    addr + usize::from(common) + if ipfix { 16 } else { 8 }
}

fn record(b: &mut Vec<u8>, h: &Header, f: &FlowSample, ipfix: bool) {
    match (f.src, f.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            b.extend_from_slice(&s.octets());
            b.extend_from_slice(&d.octets());
        }
        (s, d) => {
            for a in [s, d] {
                let o = match a {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                    IpAddr::V6(v6) => v6.octets(),
                };
                b.extend_from_slice(&o);
            }
        }
    }
    put16(b, f.src_port);
    put16(b, f.dst_port);
    b.push(f.proto);
    if ipfix {
        put16(b, u16::from(f.tcp_flags));
    } else {
        b.push(f.tcp_flags);
    }
    b.push(f.tos);
    put32(b, f.in_if);
    put32(b, f.out_if);
    put64(b, f.bytes);
    put64(b, f.packets);
    b.extend_from_slice(&[3, 0]);
    put16(b, f.app_port);
    b.push(f.end_reason);
    if ipfix {
        put64(b, unix_of(h, f.first_up));
        put64(b, unix_of(h, f.last_up));
    } else {
        put32(b, f.first_up);
        put32(b, f.last_up);
    }
}

/// A NetFlow v9 message: the template FlowSet when `templates`, then one data
/// FlowSet per address family present in `flows` (in order of appearance).
pub fn v9(b: &mut Vec<u8>, h: &Header, flows: &[FlowSample], templates: bool) {
    let start = b.len();
    put16(b, 9);
    put16(b, 0); // count, set below
    put32(b, h.uptime_ms);
    put32(b, (h.unix_ms / 1000) as u32);
    put32(b, h.sequence);
    put32(b, h.domain);
    let mut count = 0u16;
    if templates {
        let at = b.len();
        put16(b, 0);
        put16(b, 0);
        template(b, TEMPLATE_V4, false, false);
        template(b, TEMPLATE_V6, true, false);
        let len = (b.len() - at) as u16;
        set16(b, at + 2, len);
        count += 2;
    }
    count += data_sets(b, h, flows, false);
    set16(b, start + 2, count);
}

/// An IPFIX message, laid out like [`v9`].
pub fn ipfix(b: &mut Vec<u8>, h: &Header, flows: &[FlowSample], templates: bool) {
    let start = b.len();
    put16(b, 10);
    put16(b, 0); // length, set below
    put32(b, (h.unix_ms / 1000) as u32);
    put32(b, h.sequence);
    put32(b, h.domain);
    if templates {
        let at = b.len();
        put16(b, 2);
        put16(b, 0);
        template(b, TEMPLATE_V4, false, true);
        template(b, TEMPLATE_V6, true, true);
        let len = (b.len() - at) as u16;
        set16(b, at + 2, len);
    }
    data_sets(b, h, flows, true);
    let len = (b.len() - start) as u16;
    set16(b, start + 2, len);
}

/// Data sets for `flows`, one per run of the same address family; returns the records written.
fn data_sets(b: &mut Vec<u8>, h: &Header, flows: &[FlowSample], ipfix: bool) -> u16 {
    let mut n = 0u16;
    let mut i = 0;
    while i < flows.len() {
        let v6 = !flows[i].src.is_ipv4();
        let at = b.len();
        put16(b, if v6 { TEMPLATE_V6 } else { TEMPLATE_V4 });
        put16(b, 0);
        while i < flows.len() && flows[i].src.is_ipv4() != v6 {
            record(b, h, &flows[i], ipfix);
            n += 1;
            i += 1;
        }
        let len = (b.len() - at) as u16;
        set16(b, at + 2, len);
    }
    n
}

/// A NetFlow v5 message (IPv4 flows only; at most 30).
pub fn v5(b: &mut Vec<u8>, h: &Header, flows: &[FlowSample]) {
    put16(b, 5);
    put16(b, flows.len() as u16);
    put32(b, h.uptime_ms);
    put32(b, (h.unix_ms / 1000) as u32);
    put32(b, ((h.unix_ms % 1000) * 1_000_000) as u32);
    put32(b, h.sequence);
    b.push(0); // engine type
    b.push(h.domain as u8); // engine id
    put16(b, 0); // not sampled
    for f in flows {
        let (IpAddr::V4(s), IpAddr::V4(d)) = (f.src, f.dst) else {
            continue;
        };
        b.extend_from_slice(&s.octets());
        b.extend_from_slice(&d.octets());
        b.extend_from_slice(&[0, 0, 0, 0]); // next hop
        put16(b, f.in_if as u16);
        put16(b, f.out_if as u16);
        put32(b, f.packets as u32);
        put32(b, f.bytes as u32);
        put32(b, f.first_up);
        put32(b, f.last_up);
        put16(b, f.src_port);
        put16(b, f.dst_port);
        b.push(0);
        b.push(f.tcp_flags);
        b.push(f.proto);
        b.push(f.tos);
        put16(b, 0); // src as
        put16(b, 0); // dst as
        b.push(0); // src mask
        b.push(0); // dst mask
        put16(b, 0);
    }
}
