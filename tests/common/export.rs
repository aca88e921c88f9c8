//! Export message builders for black-box tests: NetFlow v9 and IPFIX
//! messages made of template, options template and data sets, a router-like
//! IPv4 flow template, and IOS XR-style PSAMP selector options.

#![allow(dead_code)]

pub const T0: u32 = 1_700_000_000;

pub fn u16b(v: u16) -> [u8; 2] {
    v.to_be_bytes()
}

/// One set: id, length, body.
pub fn set(id: u16, body: &[u8]) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&u16b(id));
    s.extend_from_slice(&u16b(4 + body.len() as u16));
    s.extend_from_slice(body);
    s
}

/// A template record (IPFIX and v9 have the same layout for data templates).
pub fn template(id: u16, fields: &[(u16, u16)]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&u16b(id));
    b.extend_from_slice(&u16b(fields.len() as u16));
    for (ie, len) in fields {
        b.extend_from_slice(&u16b(*ie));
        b.extend_from_slice(&u16b(*len));
    }
    b
}

/// An IPFIX options template record (RFC 7011 §3.4.2.2).
pub fn ipfix_options_template(id: u16, scope: &[(u16, u16)], fields: &[(u16, u16)]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&u16b(id));
    b.extend_from_slice(&u16b((scope.len() + fields.len()) as u16));
    b.extend_from_slice(&u16b(scope.len() as u16));
    for (ie, len) in scope.iter().chain(fields) {
        b.extend_from_slice(&u16b(*ie));
        b.extend_from_slice(&u16b(*len));
    }
    b
}

/// A NetFlow v9 options template record (RFC 3954 §6.1).
pub fn v9_options_template(id: u16, scope: &[(u16, u16)], fields: &[(u16, u16)]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&u16b(id));
    b.extend_from_slice(&u16b(4 * scope.len() as u16));
    b.extend_from_slice(&u16b(4 * fields.len() as u16));
    for (ie, len) in scope.iter().chain(fields) {
        b.extend_from_slice(&u16b(*ie));
        b.extend_from_slice(&u16b(*len));
    }
    b
}

pub fn ipfix(domain: u32, seq: u32, sets: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = sets.concat();
    let mut m = Vec::new();
    m.extend_from_slice(&u16b(10));
    m.extend_from_slice(&u16b(16 + body.len() as u16));
    m.extend_from_slice(&T0.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&domain.to_be_bytes());
    m.extend_from_slice(&body);
    m
}

pub fn v9(source: u32, seq: u32, sets: &[Vec<u8>], records: u16) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&u16b(9));
    m.extend_from_slice(&u16b(records));
    m.extend_from_slice(&3_600_000u32.to_be_bytes());
    m.extend_from_slice(&T0.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&source.to_be_bytes());
    m.extend_from_slice(&sets.concat());
    m
}

/// The data template of the IPFIX tests: a 5-tuple, counters and times,
/// plus `extra` (a selector or sampler id) at the end.
pub fn flow_fields(extra: Option<(u16, u16)>) -> Vec<(u16, u16)> {
    let mut f = vec![
        (8, 4),   // sourceIPv4Address
        (12, 4),  // destinationIPv4Address
        (7, 2),   // sourceTransportPort
        (11, 2),  // destinationTransportPort
        (4, 1),   // protocolIdentifier
        (1, 8),   // octetDeltaCount
        (2, 8),   // packetDeltaCount
        (152, 8), // flowStartMilliseconds
        (153, 8), // flowEndMilliseconds
    ];
    f.extend(extra);
    f
}

/// One flow record for [`flow_fields`]: host `n` to a web server.
pub fn flow(n: u8, bytes: u64, packets: u64, extra: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(&[10, 0, 0, n]);
    r.extend_from_slice(&[192, 0, 2, 80]);
    r.extend_from_slice(&u16b(40000 + u16::from(n)));
    r.extend_from_slice(&u16b(443));
    r.push(6);
    r.extend_from_slice(&bytes.to_be_bytes());
    r.extend_from_slice(&packets.to_be_bytes());
    let ms = u64::from(T0) * 1000;
    r.extend_from_slice(&(ms - 5000).to_be_bytes());
    r.extend_from_slice(&(ms - 1000).to_be_bytes());
    r.extend_from_slice(extra);
    r
}

/// IOS XR's PSAMP options: scope selectorId; selectorAlgorithm 3 (random
/// n-out-of-N), samplingSize, samplingPopulation, samplerName.
pub const PSAMP_OPTIONS: u16 = 300;
pub fn psamp_template() -> Vec<u8> {
    set(
        3,
        &ipfix_options_template(
            PSAMP_OPTIONS,
            &[(302, 8)],
            &[(304, 2), (309, 4), (310, 4), (84, 20)],
        ),
    )
}

pub fn psamp(selector: u64, size: u32, population: u32) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(&selector.to_be_bytes());
    r.extend_from_slice(&u16b(3));
    r.extend_from_slice(&size.to_be_bytes());
    r.extend_from_slice(&population.to_be_bytes());
    let mut name = b"NETFLOW-SAMPLER-MAP".to_vec();
    name.resize(20, 0);
    r.extend_from_slice(&name);
    r
}
