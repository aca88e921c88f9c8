//! Zero heap allocations per record in steady state: a counting global
//! allocator around the hot path (compiled-template decode and the flow
//! table) over a generated v9 and IPFIX stream, once templates are known
//! and flows are live.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use flowhook::decode::{Decoder, DecoderLimits};
use flowhook::flow::{FlowTable, TableConfig};
use flowhook::generate::{GenConfig, run};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn steady_state_allocates_nothing_per_record() {
    let dir = tempfile::tempdir().unwrap();
    for version in [9u16, 10] {
        let path = dir.path().join(format!("s{version}.pcap"));
        // 3000 flows in 100 blocks: every datagram after the first pass updates live flows
        let cfg = GenConfig {
            version,
            flows: 3000,
            datagrams: Some(1200),
            template_every: 1_000_000,
            pcap: Some(path.clone()),
            send: false,
            start_unix_ms: Some(1_700_000_000_000),
            ..GenConfig::default()
        };
        run(&cfg, |_| {}).unwrap();
        let mut datagrams = Vec::new();
        flowhook::capture::for_each_datagram(&path, |d| datagrams.push(d)).unwrap();
        let mut dec = Decoder::new(&DecoderLimits::default()).unwrap();
        dec.set_compiled(true);
        let mut table = FlowTable::new(TableConfig::default());
        let mut recs = Vec::with_capacity(64);
        let mut compact = Vec::with_capacity(64);
        let mut events = Vec::with_capacity(4096);
        // warm-up: templates, every flow created, buffers grown
        let warm = 400;
        // as `serve` and `replay` take them: compact records when the templates are compiled
        let mut feed = |d: &flowhook::capture::CapturedDatagram,
                        recs: &mut Vec<_>,
                        compact: &mut Vec<_>,
                        events: &mut Vec<_>| {
            recs.clear();
            compact.clear();
            dec.decode_split(d.exporter, &d.payload, recs, compact)
                .unwrap();
            table.ingest_split(recs, compact, d.time_ms, events);
        };
        for d in &datagrams[..warm] {
            feed(d, &mut recs, &mut compact, &mut events);
            events.clear();
        }
        let before = ALLOCS.load(Ordering::Relaxed);
        let mut records = 0u64;
        for d in &datagrams[warm..] {
            feed(d, &mut recs, &mut compact, &mut events);
            records += (recs.len() + compact.len()) as u64;
            assert!(
                events.is_empty(),
                "live flows only: no lifecycle event expected"
            );
        }
        let allocs = ALLOCS.load(Ordering::Relaxed) - before;
        assert!(records >= 20_000, "v{version}: {records} records");
        assert!(
            recs.is_empty() && !compact.is_empty(),
            "v{version}: the compiled path decoded, into compact records"
        );
        assert_eq!(
            allocs, 0,
            "v{version}: {allocs} heap allocations over {records} steady-state records"
        );
    }
}
