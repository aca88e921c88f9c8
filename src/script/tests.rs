//! Script runner tests: reload keeps a broken script's previous version,
//! a full queue drops (counted) without blocking, and conversion checks.

use std::sync::Arc;
use std::sync::mpsc::sync_channel;
use std::time::Duration;

use super::*;
use crate::flow::{FlowTable, TableConfig};
use crate::output::OutputMsg;
use crate::record::{FlowRecord, RecordKind};

fn cfg(dir: &std::path::Path) -> HostConfig {
    HostConfig {
        dir: dir.to_path_buf(),
        deadline: Duration::from_millis(50),
        memory_limit: 16 << 20,
        max_consecutive_timeouts: 1000,
        alert_rate_per_sec: 1000,
        enable: vec![],
        disable: vec![],
        conf: Default::default(),
        have_local_networks: false,
        alerts: Default::default(),
    }
}

/// Events of one UDP flow (protocolDetected, then flowEnd at shutdown).
fn events(port: u16) -> Vec<FlowEvent> {
    let mut r = FlowRecord::new(RecordKind::Flow, "192.0.2.1".parse().unwrap(), 9);
    r.src_addr = Some("10.0.0.1".parse().unwrap());
    r.dst_addr = Some("10.0.0.2".parse().unwrap());
    r.src_port = Some(port);
    r.dst_port = Some(53);
    r.protocol = Some(17);
    r.bytes = Some(10);
    r.packets = Some(1);
    let mut t = FlowTable::new(TableConfig::default());
    let mut ev = Vec::new();
    t.ingest(&[r], 1_700_000_000_000, &mut ev);
    t.end_all(&mut ev);
    ev
}

fn lines_of(rx: &std::sync::mpsc::Receiver<OutputMsg>) -> Vec<serde_json::Value> {
    let mut v = Vec::new();
    while let Ok(OutputMsg::Lines(l)) = rx.recv_timeout(Duration::from_secs(5)) {
        v.extend(
            String::from_utf8(l.buf)
                .unwrap()
                .lines()
                .map(|x| serde_json::from_str::<serde_json::Value>(x).unwrap()),
        );
    }
    v
}

#[test]
fn reload_keeps_previous_version_of_a_broken_script() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tag.lua");
    std::fs::write(
        &path,
        r#"return { hooks = { flowEnd = function() flow.triggerAlert(0, "v1") end } }"#,
    )
    .unwrap();
    let (tx, rx) = sync_channel(1024);
    let (runner, errors) =
        ScriptRunner::start(cfg(dir.path()), 1, 64, Some(tx), Arc::new(|_| false)).unwrap();
    assert!(errors.is_empty());
    for e in events(1000) {
        runner.submit(e).unwrap();
    }
    std::fs::write(
        &path,
        "return { hooks = { flowEnd = function( oops end } }\n",
    )
    .unwrap();
    let report = runner.reload();
    assert_eq!(report.failed.len(), 1);
    assert!(
        report.failed[0].to_string().contains("tag.lua:1:"),
        "{}",
        report.failed[0]
    );
    for e in events(1001) {
        runner.submit(e).unwrap();
    }
    std::fs::write(
        &path,
        r#"return { hooks = { flowEnd = function() flow.triggerAlert(0, "v2") end } }"#,
    )
    .unwrap();
    assert!(runner.reload().failed.is_empty());
    for e in events(1002) {
        runner.submit(e).unwrap();
    }
    runner.shutdown();
    let msgs: Vec<String> = lines_of(&rx)
        .iter()
        .filter_map(|l| l["message"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        msgs,
        vec!["v1", "v1", "v2"],
        "old version kept, no event lost"
    );
}

/// A runner whose only script spins until its deadline on every call: slow workers.
fn slow_runner(dir: &Path, workers: usize, queue: usize) -> ScriptRunner {
    std::fs::write(
        dir.join("slow.lua"),
        "return { hooks = { all = function() while true do end end } }",
    )
    .unwrap();
    ScriptRunner::start(cfg(dir), workers, queue, None, Arc::new(|_| false))
        .unwrap()
        .0
}

#[test]
fn full_queue_drops_and_counts_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let runner = slow_runner(dir.path(), 1, 8);
    let (mut taken, mut dropped, mut ends_dropped) = (0, 0, 0);
    for p in 0..200u16 {
        for e in events(2000 + p) {
            let end = e.kind == EventKind::FlowEnd;
            match runner.submit(e) {
                Ok(()) => taken += 1,
                Err(_) => {
                    dropped += 1;
                    ends_dropped += usize::from(end);
                }
            }
        }
    }
    runner.shutdown();
    // a waiting submit would have taken every event; refusals show it did not wait
    assert!(dropped > 300, "taken {taken}, dropped {dropped}");
    assert!(
        ends_dropped < dropped,
        "protocolDetected goes before flowEnd"
    );
}

#[test]
fn batches_drop_what_a_full_queue_cannot_take() {
    let dir = tempfile::tempdir().unwrap();
    let runner = slow_runner(dir.path(), 2, 16);
    let mut staging = runner.staging();
    let (mut refused, mut ends_refused, mut total) = (0, 0, 0);
    for p in 0..100u16 {
        let batch = events(3000 + p);
        total += batch.len();
        runner.submit_batch(batch.into_iter(), &mut staging, |e| {
            refused += 1;
            ends_refused += usize::from(e.kind == EventKind::FlowEnd);
        });
        assert!(staging.iter().all(|s| s.is_empty()), "staging handed on");
    }
    runner.shutdown();
    assert!(refused > total / 2, "refused {refused} of {total}");
    assert!(ends_refused < refused, "flowEnd goes last");
}

#[test]
fn describe_renders_lua_values() {
    let lua = mlua::Lua::new();
    let v: mlua::Value = lua
        .load(r#"return { a = 1, b = "x", c = { true } }"#)
        .eval()
        .unwrap();
    let mut s = String::new();
    sandbox::describe(&v, 0, &mut s);
    assert!(
        s.contains("a = 1") && s.contains("b = \"x\"") && s.contains("[1] = true"),
        "{s}"
    );
}
