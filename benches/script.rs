//! Lua hook costs on one core: an empty hook, the reference ntopng script on
//! `protocolDetected`, and the timing instrumentation on its own.
//! Run: `cargo bench --bench script`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flowhook::enrich::GeoInfo;
use flowhook::flow::{EventKind, FlowEvent, FlowTable, TableConfig};
use flowhook::output::Lines;
use flowhook::record::{FlowRecord, RecordKind};
use flowhook::script::{HostConfig, ScriptHost, ScriptSource};
use flowhook::telemetry::HookTimer;

const REFERENCE: &str = r#"local user_scripts = require("user_scripts")
local script = { hooks = {}, gui = { i18n_title = "Suspicious Countries",
  i18n_description = "Trigger an alert when at least one among the client and server is from a suspicious country" } }
function script.hooks.protocolDetected()
  local cli_geo = flow.getClientGeolocation()
  local srv_geo = flow.getServerGeolocation()
  if cli_geo["cli.country"] == "CN" or srv_geo["srv.country"] == "CN" then
    tprint("From China")
  end
end
return(script)
"#;

fn host(src: &str) -> ScriptHost {
    let cfg = HostConfig {
        dir: std::env::temp_dir(),
        deadline: Duration::from_millis(10),
        memory_limit: 64 << 20,
        max_consecutive_timeouts: 10,
        alert_rate_per_sec: 1000,
        enable: vec![],
        disable: vec![],
        conf: Default::default(),
        have_local_networks: false,
        alerts: Default::default(),
    };
    let s = ScriptSource {
        name: "bench".into(),
        path: "bench.lua".into(),
        source: src.as_bytes().to_vec(),
        plugin: None,
    };
    let (h, errors) = ScriptHost::new(&cfg, &[s]).unwrap();
    assert!(errors.is_empty());
    h
}

fn event() -> FlowEvent {
    let mut r = FlowRecord::new(RecordKind::Flow, "192.0.2.1".parse().unwrap(), 9);
    r.src_addr = Some("10.0.0.1".parse().unwrap());
    r.dst_addr = Some("81.2.69.142".parse().unwrap());
    r.src_port = Some(40000);
    r.dst_port = Some(443);
    r.protocol = Some(6);
    r.bytes = Some(10);
    r.packets = Some(1);
    let mut t = FlowTable::new(TableConfig::default());
    let mut ev = Vec::new();
    t.ingest(&[r], 1_700_000_000_000, &mut ev);
    let mut e = ev.remove(0);
    assert_eq!(e.kind, EventKind::ProtocolDetected);
    // a server in Great Britain: the reference script reads both tables and logs nothing
    e.flow.srv_geo = Arc::new(GeoInfo {
        country: Some(Arc::from("GB")),
        city: Some(Arc::from("London")),
        asn: Some(20712),
        ..GeoInfo::default()
    });
    e
}

fn bench(c: &mut Criterion) {
    // measure with the Prometheus recorder `serve` installs, so histograms really record
    let _ = flowhook::telemetry::exporter::install();
    let mut g = c.benchmark_group("script");
    g.throughput(Throughput::Elements(1));
    let ev = event();
    let mut lines = Lines::default();
    let mut empty = host("return { hooks = { protocolDetected = function() end } }");
    g.bench_function("empty_hook_event", |b| {
        b.iter(|| {
            empty.handle(black_box(ev.clone()), |_| false, &mut lines);
        })
    });
    let mut reference = host(REFERENCE);
    g.bench_function("reference_script_protocolDetected", |b| {
        b.iter(|| {
            reference.handle(black_box(ev.clone()), |_| false, &mut lines);
        })
    });
    let mut none = host("return { hooks = { flowEnd = function() end } }");
    g.bench_function("event_without_matching_hook", |b| {
        b.iter(|| {
            none.handle(black_box(ev.clone()), |_| false, &mut lines);
        })
    });
    let timer = HookTimer::new("bench", "protocolDetected");
    // the host reads the clock at the start of a call for the deadline anyway;
    // timing adds one clock read at the end and the bucket count
    let started = Instant::now();
    g.bench_function("timing_instrumentation_per_call", |b| {
        b.iter(|| {
            timer.record(black_box(started.elapsed()));
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
