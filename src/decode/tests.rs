//! Decoder tests on hand-built NetFlow v9 and IPFIX messages.

use std::net::IpAddr;

use super::sequence::SeqEvent;
use super::*;

/// A v9 message builder (RFC 3954 §5).
struct V9 {
    sets: Vec<u8>,
    count: u16,
}

impl V9 {
    fn new() -> Self {
        V9 {
            sets: Vec::new(),
            count: 0,
        }
    }

    fn set(mut self, id: u16, body: &[u8], records: u16) -> Self {
        let mut b = body.to_vec();
        while !(b.len() + 4).is_multiple_of(4) {
            b.push(0);
        }
        self.sets.extend_from_slice(&id.to_be_bytes());
        self.sets
            .extend_from_slice(&((b.len() + 4) as u16).to_be_bytes());
        self.sets.extend_from_slice(&b);
        self.count += records;
        self
    }

    fn build(&self, seq: u32, source_id: u32) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&9u16.to_be_bytes());
        m.extend_from_slice(&self.count.to_be_bytes());
        m.extend_from_slice(&100_000u32.to_be_bytes()); // uptime ms
        m.extend_from_slice(&1_700_000_000u32.to_be_bytes());
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(&source_id.to_be_bytes());
        m.extend_from_slice(&self.sets);
        m
    }
}

fn template(id: u16, fields: &[(u16, u16)]) -> Vec<u8> {
    let mut b = id.to_be_bytes().to_vec();
    b.extend_from_slice(&(fields.len() as u16).to_be_bytes());
    for (t, l) in fields {
        b.extend_from_slice(&t.to_be_bytes());
        b.extend_from_slice(&l.to_be_bytes());
    }
    b
}

/// src4, dst4, bytes(4), packets(4), first(4), last(4)
const FLOW: &[(u16, u16)] = &[(8, 4), (12, 4), (1, 4), (2, 4), (22, 4), (21, 4)];

fn flow(src: [u8; 4], bytes: u32, packets: u32) -> Vec<u8> {
    let mut b = src.to_vec();
    b.extend_from_slice(&[192, 0, 2, 1]);
    b.extend_from_slice(&bytes.to_be_bytes());
    b.extend_from_slice(&packets.to_be_bytes());
    b.extend_from_slice(&94_000u32.to_be_bytes());
    b.extend_from_slice(&99_000u32.to_be_bytes());
    b
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn decoder() -> Decoder {
    Decoder::new(&DecoderLimits::default()).unwrap()
}

#[test]
fn v9_times_are_uptime_relative() {
    let mut d = decoder();
    let mut out = Vec::new();
    let m = V9::new()
        .set(0, &template(256, FLOW), 1)
        .set(256, &flow([10, 0, 0, 1], 500, 5), 1)
        .build(1, 0);
    let o = d.decode(ip("192.0.2.10"), &m, &mut out).unwrap();
    assert_eq!((o.flows, o.options), (1, 0));
    let r = &out[0];
    assert_eq!(r.src_addr, Some(ip("10.0.0.1")));
    assert_eq!(r.bytes, Some(500));
    // export 1_700_000_000 s at uptime 100 s: first at uptime 94 s, last at 99 s
    assert_eq!(r.first_ms, Some(1_700_000_000_000 - 6_000));
    assert_eq!(r.last_ms, Some(1_700_000_000_000 - 1_000));
}

#[test]
fn template_ids_are_scoped_per_exporter_and_source_id() {
    let mut d = decoder();
    let mut out = Vec::new();
    let a = V9::new().set(0, &template(256, FLOW), 1).build(1, 0);
    d.decode(ip("192.0.2.1"), &a, &mut out).unwrap();
    // Router B reuses id 256 with another layout.
    let b = V9::new()
        .set(0, &template(256, &[(8, 4), (1, 8)]), 1)
        .build(1, 0);
    d.decode(ip("192.0.2.2"), &b, &mut out).unwrap();
    let data = V9::new()
        .set(256, &flow([10, 0, 0, 9], 1234, 3), 1)
        .build(2, 0);
    let o = d.decode(ip("192.0.2.1"), &data, &mut out).unwrap();
    assert_eq!(o.flows, 1);
    assert_eq!(out.last().unwrap().bytes, Some(1234));
    // Same address, other source id: a different stream without the template.
    out.clear();
    let o = d
        .decode(
            ip("192.0.2.1"),
            &V9::new()
                .set(256, &flow([10, 0, 0, 9], 1, 1), 1)
                .build(1, 7),
            &mut out,
        )
        .unwrap();
    assert_eq!((o.flows, o.missing_templates), (0, 1));
}

#[test]
fn data_before_template_is_replayed_when_it_comes() {
    let mut d = decoder();
    let mut out = Vec::new();
    let data = V9::new()
        .set(256, &flow([10, 0, 0, 2], 42, 1), 1)
        .build(1, 0);
    let o = d.decode(ip("192.0.2.3"), &data, &mut out).unwrap();
    assert_eq!((o.flows, o.missing_templates), (0, 1));
    let tpl = V9::new().set(0, &template(256, FLOW), 1).build(2, 0);
    d.decode(ip("192.0.2.3"), &tpl, &mut out).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].bytes, Some(42));
}

#[test]
fn sampling_from_options_data_is_applied() {
    let mut d = decoder();
    let mut out = Vec::new();
    // options template 257: scope system (1) len 4, option sampling_interval (34) len 4
    let mut ot = 257u16.to_be_bytes().to_vec();
    ot.extend_from_slice(&4u16.to_be_bytes()); // scope length in bytes
    ot.extend_from_slice(&4u16.to_be_bytes()); // option length in bytes
    ot.extend_from_slice(&[0, 1, 0, 4, 0, 34, 0, 4]);
    let m = V9::new()
        .set(0, &template(256, FLOW), 1)
        .set(1, &ot, 1)
        .set(257, &[0, 0, 0, 0, 0, 0, 0, 100], 1)
        .set(256, &flow([10, 0, 0, 3], 10, 2), 1)
        .build(1, 0);
    let o = d.decode(ip("192.0.2.4"), &m, &mut out).unwrap();
    assert_eq!((o.flows, o.options), (1, 1));
    let f = out.iter().find(|r| r.kind == RecordKind::Flow).unwrap();
    assert_eq!(f.sampling_interval, Some(100));
    assert_eq!(
        (f.raw_bytes, f.bytes, f.packets),
        (Some(10), Some(1000), Some(200))
    );
    // later messages keep the learnt interval
    out.clear();
    d.decode(
        ip("192.0.2.4"),
        &V9::new()
            .set(256, &flow([10, 0, 0, 3], 1, 1), 1)
            .build(2, 0),
        &mut out,
    )
    .unwrap();
    assert_eq!(out[0].bytes, Some(100));
}

#[test]
fn sequence_gaps_and_restarts() {
    let mut d = decoder();
    let mut out = Vec::new();
    let tpl = V9::new().set(0, &template(256, FLOW), 1);
    d.decode(ip("192.0.2.5"), &tpl.build(10, 0), &mut out)
        .unwrap();
    let o = d
        .decode(ip("192.0.2.5"), &tpl.build(11, 0), &mut out)
        .unwrap();
    assert_eq!(o.sequence, SeqEvent::InOrder);
    let o = d
        .decode(ip("192.0.2.5"), &tpl.build(15, 0), &mut out)
        .unwrap();
    assert_eq!(o.sequence, SeqEvent::Gap { lost: 3 });
    assert_eq!((d.stats.seq_gaps, d.stats.seq_lost), (1, 3));
}

#[test]
fn v5_trailing_bytes_are_not_a_second_message() {
    let mut d = decoder();
    let mut out = Vec::new();
    let mut m = vec![0u8; 24 + 48];
    m[1] = 5;
    m[3] = 1;
    m[24..28].copy_from_slice(&[10, 1, 1, 1]);
    let mut twice = m.clone();
    twice.extend_from_slice(&m);
    let o = d.decode(ip("192.0.2.6"), &twice, &mut out).unwrap();
    assert_eq!((o.flows, o.trailing), (1, 72));
    assert_eq!(d.stats.trailing_bytes, 72);
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let mut d = decoder();
    let mut out = Vec::new();
    for bad in [&[][..], &[0, 9], &[0, 10, 0, 200, 1, 2, 3], &[0xff; 100]] {
        assert!(d.decode(ip("192.0.2.7"), bad, &mut out).is_err());
    }
    assert!(out.is_empty());
}

/// An IPFIX message (RFC 7011 §3) with one template and one data record.
fn ipfix(export_secs: u32, fields: &[(u16, u16)], record: &[u8]) -> Vec<u8> {
    let mut t = 256u16.to_be_bytes().to_vec();
    t.extend_from_slice(&(fields.len() as u16).to_be_bytes());
    for (id, len) in fields {
        t.extend_from_slice(&id.to_be_bytes());
        t.extend_from_slice(&len.to_be_bytes());
    }
    let mut sets = vec![0, 2];
    sets.extend_from_slice(&((t.len() + 4) as u16).to_be_bytes());
    sets.extend_from_slice(&t);
    sets.extend_from_slice(&256u16.to_be_bytes());
    sets.extend_from_slice(&((record.len() + 4) as u16).to_be_bytes());
    sets.extend_from_slice(record);
    let mut m = vec![0, 10];
    m.extend_from_slice(&((16 + sets.len()) as u16).to_be_bytes());
    m.extend_from_slice(&export_secs.to_be_bytes());
    m.extend_from_slice(&0u32.to_be_bytes());
    m.extend_from_slice(&0u32.to_be_bytes());
    m.extend_from_slice(&sets);
    m
}

fn ipfix_times(
    start_ie: u16,
    end_ie: u16,
    len: u16,
    start: &[u8],
    end: &[u8],
) -> (Option<i64>, Option<i64>) {
    let mut d = decoder();
    let mut out = Vec::new();
    let mut rec = vec![10, 0, 0, 1, 10, 0, 0, 2];
    rec.extend_from_slice(start);
    rec.extend_from_slice(end);
    let m = ipfix(
        1_700_000_100,
        &[(8, 4), (12, 4), (start_ie, len), (end_ie, len)],
        &rec,
    );
    d.decode(ip("192.0.2.9"), &m, &mut out).unwrap();
    (out[0].first_ms, out[0].last_ms)
}

const T0_MS: i64 = 1_700_000_000_000;

fn ntp(unix_ms: i64) -> Vec<u8> {
    let secs = (unix_ms / 1000 + super::value::NTP_UNIX_OFFSET_SECS) as u32;
    let frac = ((((unix_ms % 1000) as u64) << 32) / 1000 + 1) as u32;
    let mut b = secs.to_be_bytes().to_vec();
    b.extend_from_slice(&frac.to_be_bytes());
    b
}

#[test]
fn ipfix_absolute_time_variants() {
    let s = (T0_MS / 1000) as u32;
    assert_eq!(
        ipfix_times(150, 151, 4, &s.to_be_bytes(), &(s + 5).to_be_bytes()),
        (Some(T0_MS), Some(T0_MS + 5000))
    );
    let ms = T0_MS as u64;
    assert_eq!(
        ipfix_times(
            152,
            153,
            8,
            &(ms + 7).to_be_bytes(),
            &(ms + 1234).to_be_bytes()
        ),
        (Some(T0_MS + 7), Some(T0_MS + 1234))
    );
    assert_eq!(
        ipfix_times(154, 155, 8, &ntp(T0_MS + 250), &ntp(T0_MS + 750)),
        (Some(T0_MS + 250), Some(T0_MS + 750))
    );
    assert_eq!(
        ipfix_times(156, 157, 8, &ntp(T0_MS + 3), &ntp(T0_MS + 999)),
        (Some(T0_MS + 3), Some(T0_MS + 999))
    );
}

#[test]
fn ipfix_delta_and_sysuptime_times() {
    // delta microseconds before the export time (1_700_000_100 s)
    let export = 1_700_000_100_000i64;
    assert_eq!(
        ipfix_times(
            158,
            159,
            4,
            &5_000_000u32.to_be_bytes(),
            &1_000_000u32.to_be_bytes()
        ),
        (Some(export - 5000), Some(export - 1000))
    );
    // sysUpTime offsets with systemInitTimeMilliseconds in the same record
    let mut d = decoder();
    let mut out = Vec::new();
    let mut rec = vec![10, 0, 0, 1, 10, 0, 0, 2];
    rec.extend_from_slice(&(T0_MS as u64).to_be_bytes());
    rec.extend_from_slice(&1500u32.to_be_bytes());
    rec.extend_from_slice(&4500u32.to_be_bytes());
    let m = ipfix(
        1_700_000_100,
        &[(8, 4), (12, 4), (160, 8), (22, 4), (21, 4)],
        &rec,
    );
    d.decode(ip("192.0.2.9"), &m, &mut out).unwrap();
    assert_eq!(
        (out[0].first_ms, out[0].last_ms),
        (Some(T0_MS + 1500), Some(T0_MS + 4500))
    );
}

#[test]
fn compiled_path_follows_the_crates_template_cache() {
    // Two templates and one stream at most: the crate evicts its least
    // recently used template for a third (our plans may keep another one:
    // docs/compatibility.md) and forgets a stream for another exporter's.
    // The compiled path asks the crate only when the crate's state may have
    // changed; it must still decode a data set exactly when the crate holds
    // its template, step by step.
    let limits = DecoderLimits {
        max_exporters: 1,
        max_templates_per_exporter: 2,
        ..DecoderLimits::default()
    };
    let layouts: [&[(u16, u16)]; 3] = [FLOW, &FLOW[..5], &FLOW[..4]];
    let data = |id: u16, seq: u32| {
        let n = layouts[usize::from(id - 256)].len() * 4;
        V9::new()
            .set(id, &flow([10, 0, 0, 1], 100, 1)[..n], 1)
            .build(seq, 0)
    };
    let tpl = |id: u16, seq: u32| {
        V9::new()
            .set(0, &template(id, layouts[usize::from(id - 256)]), 1)
            .build(seq, 0)
    };
    let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
    let (mut fast, mut refused) = (0, 0);
    for first in [256u16, 257] {
        let mut d = Decoder::new(&limits).unwrap();
        d.set_compiled(true);
        let steps = [
            (a, 1, Some(first)),
            (a, 2, Some(513 - first)),
            (a, 3, None),
            (a, 4, None),
            // the crate path sees data of 256 (with data of a template not
            // known yet): 256 becomes the crate's most recently used
            (a, 5, Some(0)),
            // a third template: each cache of two drops one
            (a, 6, Some(258)),
            (a, 7, None),
            (a, 8, None),
            // another exporter: the stream table of one forgets the first
            (b, 1, Some(258)),
            (b, 2, None),
            (a, 9, None),
        ];
        let (mut out, mut compact) = (Vec::new(), Vec::new());
        for (from, seq, template) in steps {
            if let Some(id) = template {
                let msg = if id == 0 {
                    V9::new()
                        .set(256, &flow([10, 0, 0, 2], 1, 1), 1)
                        .set(258, &flow([10, 0, 0, 3], 1, 1)[..16], 1)
                        .build(seq, 0)
                } else {
                    tpl(id, seq)
                };
                d.decode_split(from, &msg, &mut out, &mut compact).unwrap();
                continue;
            }
            for id in 256..=258u16 {
                let key = StreamKey {
                    exporter: from,
                    version: 9,
                    domain: 0,
                };
                let held = d
                    .parser
                    .get_parser(&key)
                    .is_some_and(|p| p.has_v9_template(id));
                out.clear();
                compact.clear();
                let o = d
                    .decode_split(from, &data(id, seq), &mut out, &mut compact)
                    .unwrap();
                let step = format!("{first} first, {from} seq {seq}, data of {id}");
                assert_eq!(o.flows, usize::from(held), "{step}");
                assert_eq!(o.missing_templates, usize::from(!held), "{step}");
                fast += compact.len();
                refused += usize::from(!held);
            }
        }
    }
    assert!(fast >= 8, "the compiled path decoded {fast} records");
    assert!(refused >= 4, "only {refused} data sets without a template");
}
