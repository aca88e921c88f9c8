//! Flow table: cost per record (new flows, updates of live flows) and memory
//! per tracked flow. Run: `cargo bench --bench flow`. The memory line is
//! printed first: resident memory before and after one million flows.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, Throughput};
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

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn memory() {
    const N: u32 = 1_000_000;
    let records: Vec<Vec<FlowRecord>> = (0..N / 100).map(|b| (0..100).map(|i| rec(b * 100 + i)).collect()).collect();
    let before = rss_bytes();
    let mut t = FlowTable::new(TableConfig { max_flows: N as usize, ..TableConfig::default() });
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
    let mut t = FlowTable::new(TableConfig { max_flows: 100_000, ..TableConfig::default() });
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
    g.finish();
}

fn main() {
    memory();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
