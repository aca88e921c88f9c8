//! Flow table: cost per record (new flows, updates of live flows) and memory
//! per tracked flow. Run: `cargo bench --bench flow`. The memory line is
//! printed first: resident memory before and after one million flows.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

#[path = "../tests/common/mmdb.rs"]
mod mmdb;

use std::sync::Arc;

use criterion::{Criterion, Throughput};
use flowhook::config::GeoConfig;
use flowhook::enrich::{Enricher, GeoService};
use flowhook::flow::{FlowTable, TableConfig};
use flowhook::record::{FlowRecord, RecordKind};

const T0: i64 = 1_700_000_000_000;

fn rec(i: u32) -> FlowRecord {
    let mut r = FlowRecord::new(RecordKind::Flow, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 9);
    r.src_addr = Some(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)));
    r.dst_addr = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 80)));
    r.src_port = Some(40000 + (i % 20000) as u16);
    r.dst_port = Some(443);
    r.protocol = Some(6);
    r.tcp_flags = Some(0x18);
    r.bytes = Some(1500);
    r.packets = Some(3);
    r.first_ms = Some(T0);
    r.last_ms = Some(T0 + 1000);
    r
}

/// Server address number `i` of a realistic mix: 20,000 public servers, a few very popular.
fn server(i: u32) -> IpAddr {
    let k = (i.wrapping_mul(2_654_435_761) % 20_000) * (1 + i % 3) % 20_000;
    IpAddr::V4(Ipv4Addr::from(0x5000_0000u32 + k * 256 + 7))
}

/// A City database with 60,000 networks (a realistic tree depth) plus the fixtures' networks.
fn geo(dir: &std::path::Path) -> Arc<GeoService> {
    let f = mmdb::write_all(dir);
    let mut w = mmdb_writer::Writer::builder("GeoIP2-City")
        .description(&[("en", "bench")])
        .build();
    for k in 0..60_000u32 {
        let net = ipnet::Ipv4Net::new(Ipv4Addr::from(0x5000_0000u32 + k * 256), 24).unwrap();
        let cc = ["US", "DE", "CN", "BR", "IN", "GB"][(k % 6) as usize];
        w.insert(net, &serde_json::json!({"country": {"iso_code": cc}, "city": {"names": {"en": "Somewhere"}}, "location": {"latitude": 1.5, "longitude": 2.5}})).unwrap();
    }
    let city = dir.join("bench-city.mmdb");
    std::fs::write(&city, w.to_bytes().unwrap()).unwrap();
    let cfg = GeoConfig {
        city_db: Some(city),
        asn_db: Some(f.asn),
        ..GeoConfig::default()
    };
    Arc::new(GeoService::open(&cfg, &[]).unwrap())
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn memory() {
    const N: u32 = 1_000_000;
    let records: Vec<Vec<FlowRecord>> = (0..N / 100)
        .map(|b| (0..100).map(|i| rec(b * 100 + i)).collect())
        .collect();
    let before = rss_bytes();
    let mut t = FlowTable::new(TableConfig {
        max_flows: N as usize,
        ..TableConfig::default()
    });
    let mut ev = Vec::new();
    for batch in &records {
        t.ingest(batch, T0, &mut ev);
        ev.clear();
    }
    let after = rss_bytes();
    eprintln!(
        "flow table memory: {} flows, RSS +{} MiB, {} bytes per flow (slab entry {} bytes)",
        t.len(),
        (after - before) >> 20,
        (after - before) / u64::from(N),
        flowhook::flow::table::flow_entry_bytes()
    );
    black_box(&t);
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("flow");
    let batch: Vec<FlowRecord> = (0..100).map(rec).collect();
    g.throughput(Throughput::Elements(100));
    // updates of 100 live flows
    let mut t = FlowTable::new(TableConfig::default());
    let mut ev = Vec::new();
    t.ingest(&batch, T0, &mut ev);
    let mut now = T0;
    g.bench_function("update_100_live_flows", |b| {
        b.iter(|| {
            ev.clear();
            now += 1;
            t.ingest(black_box(&batch), now, &mut ev);
        })
    });
    // new flows: each iteration makes 100 flows; the table evicts to stay at its cap
    let mut t = FlowTable::new(TableConfig {
        max_flows: 100_000,
        ..TableConfig::default()
    });
    let mut n = 0u32;
    g.bench_function("create_100_flows", |b| {
        b.iter_batched(
            || {
                n = n.wrapping_add(100);
                (0..100).map(|i| rec(n + i)).collect::<Vec<_>>()
            },
            |batch| {
                ev.clear();
                t.ingest(&batch, T0, &mut ev);
            },
            criterion::BatchSize::SmallInput,
        )
    });
    // the same with enrichment of both sides of every new flow
    let dir = tempfile::tempdir().unwrap();
    let service = geo(dir.path());
    for (name, cache) in [
        ("create_100_flows_geo_warm", 65_536usize),
        ("create_100_flows_geo_cold", 1),
    ] {
        let mut t = FlowTable::with_enricher(
            TableConfig {
                max_flows: 100_000,
                ..TableConfig::default()
            },
            Some(Enricher::new(service.clone(), cache)),
        );
        let mut n = 0u32;
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    n = n.wrapping_add(100);
                    (0..100)
                        .map(|i| {
                            let mut r = rec(n + i);
                            r.dst_addr = Some(server(n + i));
                            r
                        })
                        .collect::<Vec<_>>()
                },
                |batch| {
                    ev.clear();
                    t.ingest(&batch, T0, &mut ev);
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    // the baseline with the same address mix, no enrichment
    let mut t = FlowTable::new(TableConfig {
        max_flows: 100_000,
        ..TableConfig::default()
    });
    let mut n = 0u32;
    g.bench_function("create_100_flows_same_mix_no_geo", |b| {
        b.iter_batched(
            || {
                n = n.wrapping_add(100);
                (0..100)
                    .map(|i| {
                        let mut r = rec(n + i);
                        r.dst_addr = Some(server(n + i));
                        r
                    })
                    .collect::<Vec<_>>()
            },
            |batch| {
                ev.clear();
                t.ingest(&batch, T0, &mut ev);
            },
            criterion::BatchSize::SmallInput,
        )
    });
    // the flowEnd lines of 100 flows (what every flow costs the output)
    let mut t = FlowTable::new(TableConfig::default());
    let mut ev = Vec::new();
    t.ingest(&batch, T0, &mut ev);
    ev.clear();
    t.end_all(&mut ev);
    let ends: Vec<_> = ev
        .into_iter()
        .filter(|e| e.kind == flowhook::flow::EventKind::FlowEnd)
        .collect();
    assert_eq!(ends.len(), 100);
    let mut line = Vec::with_capacity(128 * 1024);
    g.bench_function("encode_100_flow_end_lines", |b| {
        b.iter(|| {
            line.clear();
            for e in black_box(&ends) {
                flowhook::flow::json::event(&mut line, e);
                line.push(b'\n');
            }
            black_box(line.len())
        })
    });
    g.finish();
}

fn main() {
    memory();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
