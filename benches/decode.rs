//! Decode throughput: one datagram through `Decoder::decode` (templates
//! already learnt), per export version, and JSON encoding of the records.
//! Run: `cargo bench --bench decode`. Numbers go to docs/performance.md.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowhook::decode::{Decoder, DecoderLimits};

const RECORDS: usize = 24;

fn v5() -> Vec<u8> {
    let mut m = vec![0u8; 24];
    m[1] = 5;
    m[3] = RECORDS as u8;
    m[4..8].copy_from_slice(&100_000u32.to_be_bytes());
    m[8..12].copy_from_slice(&1_700_000_000u32.to_be_bytes());
    for i in 0..RECORDS {
        let mut r = [0u8; 48];
        r[0..4].copy_from_slice(&[10, 0, 0, i as u8]);
        r[4..8].copy_from_slice(&[192, 0, 2, 1]);
        r[16..20].copy_from_slice(&5u32.to_be_bytes());
        r[20..24].copy_from_slice(&1500u32.to_be_bytes());
        r[24..28].copy_from_slice(&90_000u32.to_be_bytes());
        r[28..32].copy_from_slice(&99_000u32.to_be_bytes());
        r[32..34].copy_from_slice(&40_000u16.to_be_bytes());
        r[34..36].copy_from_slice(&443u16.to_be_bytes());
        r[38] = 6;
        m.extend_from_slice(&r);
    }
    m
}

/// Template 256: src4, dst4, sport, dport, proto, bytes(8), packets(8), start/end ms, in/out if.
const FIELDS: &[(u16, u16)] = &[
    (8, 4),
    (12, 4),
    (7, 2),
    (11, 2),
    (4, 1),
    (1, 8),
    (2, 8),
    (152, 8),
    (153, 8),
    (10, 4),
    (14, 4),
];

fn record(i: usize) -> Vec<u8> {
    let mut r = vec![10, 0, 0, i as u8, 192, 0, 2, 1];
    r.extend_from_slice(&40_000u16.to_be_bytes());
    r.extend_from_slice(&443u16.to_be_bytes());
    r.push(6);
    r.extend_from_slice(&1500u64.to_be_bytes());
    r.extend_from_slice(&5u64.to_be_bytes());
    r.extend_from_slice(&1_700_000_000_000u64.to_be_bytes());
    r.extend_from_slice(&1_700_000_001_000u64.to_be_bytes());
    r.extend_from_slice(&1u32.to_be_bytes());
    r.extend_from_slice(&2u32.to_be_bytes());
    r
}

fn template_set(id: u16) -> Vec<u8> {
    let mut b = 256u16.to_be_bytes().to_vec();
    b.extend_from_slice(&(FIELDS.len() as u16).to_be_bytes());
    for (t, l) in FIELDS {
        b.extend_from_slice(&t.to_be_bytes());
        b.extend_from_slice(&l.to_be_bytes());
    }
    set(id, &b)
}

fn set(id: u16, body: &[u8]) -> Vec<u8> {
    let mut s = id.to_be_bytes().to_vec();
    s.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    s.extend_from_slice(body);
    s
}

fn data_set() -> Vec<u8> {
    set(256, &(0..RECORDS).flat_map(record).collect::<Vec<_>>())
}

fn v9(sets: &[Vec<u8>]) -> Vec<u8> {
    let mut m = vec![0, 9, 0, RECORDS as u8];
    m.extend_from_slice(&100_000u32.to_be_bytes());
    m.extend_from_slice(&1_700_000_000u32.to_be_bytes());
    m.extend_from_slice(&1u32.to_be_bytes());
    m.extend_from_slice(&0u32.to_be_bytes());
    sets.iter().for_each(|s| m.extend_from_slice(s));
    m
}

fn ipfix(sets: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = sets.concat();
    let mut m = vec![0, 10];
    m.extend_from_slice(&((16 + body.len()) as u16).to_be_bytes());
    m.extend_from_slice(&1_700_000_000u32.to_be_bytes());
    m.extend_from_slice(&1u32.to_be_bytes());
    m.extend_from_slice(&0u32.to_be_bytes());
    m.extend_from_slice(&body);
    m
}

fn bench(c: &mut Criterion) {
    let exporter: IpAddr = "192.0.2.10".parse().unwrap();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(RECORDS as u64));
    let cases = [
        ("v5", v5(), None),
        ("v9", v9(&[data_set()]), Some(v9(&[template_set(0)]))),
        (
            "ipfix",
            ipfix(&[data_set()]),
            Some(ipfix(&[template_set(2)])),
        ),
    ];
    for (name, data, tpl) in &cases {
        let mut d = Decoder::new(&DecoderLimits::default()).unwrap();
        let mut out = Vec::with_capacity(RECORDS);
        if let Some(t) = tpl {
            d.decode(exporter, t, &mut out).unwrap();
        }
        out.clear();
        d.decode(exporter, data, &mut out).unwrap();
        assert_eq!(out.len(), RECORDS, "{name}");
        g.bench_function(*name, |b| {
            b.iter(|| {
                out.clear();
                d.decode(exporter, black_box(data), &mut out).unwrap();
                black_box(out.len())
            })
        });
    }
    // The compiled-template hot path (serve and replay without output.records).
    for (name, data, tpl) in cases.iter().skip(1) {
        let mut d = Decoder::new(&DecoderLimits::default()).unwrap();
        d.set_compiled(true);
        let mut out = Vec::with_capacity(RECORDS);
        d.decode(exporter, tpl.as_ref().unwrap(), &mut out).unwrap();
        out.clear();
        d.decode(exporter, data, &mut out).unwrap();
        assert_eq!(out.len(), RECORDS, "{name} compiled");
        assert!(
            out[0].fields.is_empty(),
            "{name}: the compiled path decoded"
        );
        g.bench_function(format!("{name}_compiled"), |b| {
            b.iter(|| {
                out.clear();
                d.decode(exporter, black_box(data), &mut out).unwrap();
                black_box(out.len())
            })
        });
    }
    // What serve and replay run: compact records for the flow table.
    for (name, data, tpl) in cases.iter().skip(1) {
        let mut d = Decoder::new(&DecoderLimits::default()).unwrap();
        d.set_compiled(true);
        let (mut out, mut compact) = (Vec::new(), Vec::with_capacity(RECORDS));
        d.decode_split(exporter, tpl.as_ref().unwrap(), &mut out, &mut compact)
            .unwrap();
        d.decode_split(exporter, data, &mut out, &mut compact)
            .unwrap();
        assert_eq!(compact.len(), RECORDS, "{name} compact");
        assert!(out.is_empty(), "{name}: the compact path decoded");
        g.bench_function(format!("{name}_compact"), |b| {
            b.iter(|| {
                compact.clear();
                d.decode_split(exporter, black_box(data), &mut out, &mut compact)
                    .unwrap();
                black_box(compact.len())
            })
        });
    }
    // The decoder crate alone on the same IPFIX message, for the ratio.
    let mut bare = netflow_parser::NetflowParser::default();
    let _ = bare.parse_bytes(cases[2].2.as_ref().unwrap());
    g.bench_function("ipfix_crate_only", |b| {
        b.iter(|| black_box(bare.parse_bytes(black_box(&cases[2].1)).packets.len()))
    });
    let mut d = Decoder::new(&DecoderLimits::default()).unwrap();
    let mut out = Vec::new();
    d.decode(exporter, &cases[2].2.clone().unwrap(), &mut out)
        .unwrap();
    out.clear();
    d.decode(exporter, &cases[2].1, &mut out).unwrap();
    let mut buf = Vec::with_capacity(64 * 1024);
    g.bench_function("ipfix_json_encode", |b| {
        b.iter(|| {
            buf.clear();
            for r in &out {
                serde_json::to_writer(&mut buf, r).unwrap();
                buf.push(b'\n');
            }
            black_box(buf.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
