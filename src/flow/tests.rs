//! Flow table tests: client/server choice, each event's trigger, counting,
//! eviction and the shutdown flush, on hand-made records.

use super::*;
use crate::record::{FlowRecord, RecordKind};

const T0: i64 = 1_700_000_000_000;

fn rec(src: &str, sp: u16, dst: &str, dp: u16, proto: u8, bytes: u64, packets: u64) -> FlowRecord {
    let mut r = FlowRecord::new(RecordKind::Flow, "192.0.2.1".parse().unwrap(), 9);
    r.src_addr = Some(src.parse().unwrap());
    r.dst_addr = Some(dst.parse().unwrap());
    r.src_port = Some(sp);
    r.dst_port = Some(dp);
    r.protocol = Some(proto);
    r.bytes = Some(bytes);
    r.packets = Some(packets);
    r.first_ms = Some(T0);
    r.last_ms = Some(T0 + 1000);
    r
}

fn tcp(src: &str, sp: u16, dst: &str, dp: u16, flags: u16, bytes: u64, packets: u64) -> FlowRecord {
    let mut r = rec(src, sp, dst, dp, 6, bytes, packets);
    r.tcp_flags = Some(flags);
    r
}

fn table() -> FlowTable {
    FlowTable::new(TableConfig {
        max_flows: 100,
        idle_timeout_ms: 60_000,
        periodic_ms: 60_000,
        end_grace_ms: 5_000,
    })
}

fn kinds(ev: &[FlowEvent]) -> Vec<&'static str> {
    ev.iter().map(|e| e.kind.name()).collect()
}

#[test]
fn two_directions_make_one_flow_with_client_and_server() {
    let mut t = table();
    let mut ev = Vec::new();
    // softflowd-style: both directions in one datagram, server's record first, same times
    t.ingest(
        &[
            tcp("10.0.0.2", 443, "10.0.0.1", 40000, 0x1b, 3000, 4),
            tcp("10.0.0.1", 40000, "10.0.0.2", 443, 0x1b, 500, 5),
        ],
        T0,
        &mut ev,
    );
    assert_eq!(kinds(&ev), vec!["protocolDetected"]);
    let f = &ev[0].flow;
    assert_eq!(
        (f.cli_ip.to_string().as_str(), f.cli_port),
        ("10.0.0.1", 40000)
    );
    assert_eq!(
        (f.srv_ip.to_string().as_str(), f.srv_port),
        ("10.0.0.2", 443)
    );
    assert_eq!(
        (
            f.cli2srv_bytes,
            f.srv2cli_bytes,
            f.cli2srv_packets,
            f.srv2cli_packets
        ),
        (500, 3000, 5, 4)
    );
    assert_eq!(&*f.l7, "TLS");
    assert_eq!(t.len(), 1);
}

#[test]
fn syn_without_ack_marks_the_client_even_on_high_ports() {
    let mut t = table();
    let mut ev = Vec::new();
    t.ingest(
        &[tcp("10.0.0.9", 50000, "10.0.0.1", 40000, 0x02, 60, 1)],
        T0,
        &mut ev,
    );
    assert_eq!(ev[0].flow.cli_port, 50000);
}

#[test]
fn earlier_start_beats_ports() {
    let mut t = table();
    let mut ev = Vec::new();
    let mut late = rec("10.0.0.1", 5000, "10.0.0.2", 53, 17, 100, 1);
    late.first_ms = Some(T0 + 500);
    let mut early = rec("10.0.0.2", 53, "10.0.0.1", 5000, 17, 100, 1);
    early.first_ms = Some(T0);
    t.ingest(&[late, early], T0, &mut ev);
    assert_eq!(
        ev[0].flow.cli_port, 53,
        "the side that started first is the client"
    );
}

#[test]
fn biflow_direction_wins() {
    let mut t = table();
    let mut ev = Vec::new();
    let mut r = rec("10.0.0.2", 443, "10.0.0.1", 40000, 6, 100, 1);
    r.biflow_direction = Some(2); // reverse initiator: the destination started it
    r.rev_bytes = Some(7);
    r.rev_packets = Some(1);
    t.ingest(&[r], T0, &mut ev);
    let f = &ev[0].flow;
    assert_eq!(f.cli_port, 40000);
    assert_eq!((f.cli2srv_bytes, f.srv2cli_bytes), (7, 100));
}

#[test]
fn refused_connection_status_and_end_after_grace() {
    let mut t = table();
    let mut ev = Vec::new();
    t.ingest(
        &[
            tcp("10.0.0.1", 40001, "10.0.0.2", 25, 0x02, 60, 1),
            tcp("10.0.0.2", 25, "10.0.0.1", 40001, 0x14, 40, 1),
        ],
        T0,
        &mut ev,
    );
    assert_eq!(kinds(&ev), vec!["protocolDetected", "statusChanged"]);
    assert_eq!(
        ev[1].flow.status.names()[0].as_ref(),
        "tcp_connection_refused"
    );
    ev.clear();
    t.advance(T0 + 4_999, &mut ev);
    assert!(ev.is_empty(), "waits for the grace time");
    t.advance(T0 + 5_000, &mut ev);
    assert_eq!(kinds(&ev), vec!["flowEnd"]);
    assert_eq!(ev[0].flow.end_reason, Some(EndReason::TcpRst));
    assert_eq!(ev[0].flow.score, 10);
    assert!(t.is_empty());
}

#[test]
fn fin_both_ways_ends_flow_and_new_records_make_a_new_one() {
    let mut t = table();
    let mut ev = Vec::new();
    t.ingest(
        &[
            tcp("10.0.0.1", 40002, "10.0.0.2", 80, 0x1b, 100, 3),
            tcp("10.0.0.2", 80, "10.0.0.1", 40002, 0x1b, 200, 3),
        ],
        T0,
        &mut ev,
    );
    t.advance(T0 + 10_000, &mut ev);
    assert_eq!(kinds(&ev), vec!["protocolDetected", "flowEnd"]);
    assert_eq!(ev[1].flow.end_reason, Some(EndReason::TcpFin));
    ev.clear();
    t.ingest(
        &[tcp("10.0.0.1", 40002, "10.0.0.2", 80, 0x02, 60, 1)],
        T0 + 20_000,
        &mut ev,
    );
    assert_eq!(kinds(&ev), vec!["protocolDetected"]);
}

#[test]
fn idle_timeout_and_periodic_updates() {
    let mut t = FlowTable::new(TableConfig {
        max_flows: 10,
        idle_timeout_ms: 120_000,
        periodic_ms: 30_000,
        end_grace_ms: 5_000,
    });
    let mut ev = Vec::new();
    t.ingest(
        &[rec("10.0.0.1", 5000, "10.0.0.2", 53, 17, 80, 1)],
        T0,
        &mut ev,
    );
    t.advance(T0 + 30_000, &mut ev);
    t.ingest(
        &[rec("10.0.0.1", 5000, "10.0.0.2", 53, 17, 80, 1)],
        T0 + 59_000,
        &mut ev,
    );
    t.advance(T0 + 60_000, &mut ev);
    assert_eq!(
        kinds(&ev),
        vec!["protocolDetected", "periodicUpdate", "periodicUpdate"]
    );
    ev.clear();
    t.advance(T0 + 59_000 + 119_999, &mut ev);
    assert_eq!(
        kinds(&ev),
        vec!["periodicUpdate", "periodicUpdate", "periodicUpdate"]
    );
    assert_eq!(
        ev[2].time_ms,
        T0 + 150_000,
        "each event at the time it was due"
    );
    ev.clear();
    t.advance(T0 + 59_000 + 120_000, &mut ev);
    assert_eq!(
        kinds(&ev),
        vec!["statusChanged", "flowEnd"],
        "unidirectional at the end"
    );
    assert_eq!(ev[1].flow.end_reason, Some(EndReason::Idle));
}

#[test]
fn exporter_end_reason_ends_the_flow() {
    let mut t = table();
    let mut ev = Vec::new();
    let mut r = rec("10.0.0.1", 5000, "10.0.0.2", 123, 17, 90, 1);
    r.flow_end_reason = Some(3);
    t.ingest(&[r], T0, &mut ev);
    t.advance(T0 + 5_000, &mut ev);
    assert_eq!(
        ev.last().unwrap().flow.end_reason,
        Some(EndReason::EndOfFlow)
    );
    assert_eq!(&*ev[0].flow.l7, "NTP");
}

#[test]
fn active_timeout_records_are_summed_and_repeats_not_double_counted() {
    let mut t = table();
    let mut ev = Vec::new();
    for k in 0..3 {
        let mut r = rec("10.0.0.1", 40003, "10.0.0.2", 22, 6, 1000, 10);
        r.first_ms = Some(T0 + k * 60_000);
        r.last_ms = Some(T0 + (k + 1) * 60_000);
        r.flow_end_reason = Some(2);
        t.ingest(&[r.clone()], T0 + (k + 1) * 60_000, &mut ev);
        // the same datagram again (retransmitted, duplicated)
        t.ingest(&[r], T0 + (k + 1) * 60_000, &mut ev);
    }
    ev.clear();
    t.end_all(&mut ev);
    let end = ev.iter().find(|e| e.kind == EventKind::FlowEnd).unwrap();
    assert_eq!(
        (end.flow.cli2srv_bytes, end.flow.cli2srv_packets),
        (3000, 30)
    );
    assert_eq!(end.flow.first_ms, T0);
    assert_eq!(end.flow.last_ms, T0 + 180_000);
    assert_eq!(end.flow.end_reason, Some(EndReason::Shutdown));
}

#[test]
fn total_counters_count_growth() {
    let mut t = table();
    let mut ev = Vec::new();
    for (k, total) in [(0i64, 100u64), (1, 250), (2, 400)] {
        let mut r = rec("10.0.0.1", 40004, "10.0.0.2", 443, 6, 0, 0);
        r.bytes = None;
        r.packets = None;
        r.total_bytes = Some(total);
        r.total_packets = Some(total / 10);
        r.last_ms = Some(T0 + k * 1000);
        t.ingest(&[r], T0 + k * 1000, &mut ev);
    }
    t.end_all(&mut ev);
    let end = ev.iter().find(|e| e.kind == EventKind::FlowEnd).unwrap();
    assert_eq!(
        (end.flow.cli2srv_bytes, end.flow.cli2srv_packets),
        (400, 40)
    );
}

#[test]
fn full_table_evicts_least_recently_updated() {
    let mut t = FlowTable::new(TableConfig {
        max_flows: 3,
        ..TableConfig::default()
    });
    let mut ev = Vec::new();
    for p in 0..3u16 {
        t.ingest(
            &[rec("10.0.0.1", 1000 + p, "10.0.0.2", 53, 17, 1, 1)],
            T0 + i64::from(p),
            &mut ev,
        );
    }
    // refresh the first one
    t.ingest(
        &[rec("10.0.0.1", 1000, "10.0.0.2", 53, 17, 1, 1)],
        T0 + 10,
        &mut ev,
    );
    ev.clear();
    t.ingest(
        &[rec("10.0.0.1", 2000, "10.0.0.2", 53, 17, 1, 1)],
        T0 + 11,
        &mut ev,
    );
    let end = ev.iter().find(|e| e.kind == EventKind::FlowEnd).unwrap();
    assert_eq!(end.flow.end_reason, Some(EndReason::Evicted));
    assert_eq!(end.flow.cli_port, 1001);
    assert_eq!(t.len(), 3);
    assert_eq!(t.stats.evicted, 1);
}

#[test]
fn shutdown_ends_every_flow_once_with_pending_reasons_kept() {
    let mut t = table();
    let mut ev = Vec::new();
    t.ingest(&[rec("10.0.0.1", 1, "10.0.0.2", 2, 17, 1, 1)], T0, &mut ev);
    t.ingest(
        &[
            tcp("10.0.0.1", 3, "10.0.0.2", 80, 0x02, 1, 1),
            tcp("10.0.0.2", 80, "10.0.0.1", 3, 0x14, 1, 1),
        ],
        T0,
        &mut ev,
    );
    ev.clear();
    t.end_all(&mut ev);
    let ends: Vec<_> = ev
        .iter()
        .filter(|e| e.kind == EventKind::FlowEnd)
        .map(|e| e.flow.end_reason.unwrap())
        .collect();
    assert_eq!(ends, vec![EndReason::Shutdown, EndReason::TcpRst]);
    assert!(t.is_empty());
}

#[test]
fn unanswered_syn_is_no_response() {
    let mut t = table();
    let mut ev = Vec::new();
    t.ingest(
        &[tcp("10.0.0.1", 40005, "10.0.0.3", 22, 0x02, 120, 2)],
        T0,
        &mut ev,
    );
    t.end_all(&mut ev);
    let end = ev.iter().find(|e| e.kind == EventKind::FlowEnd).unwrap();
    assert!(end.flow.status.has(status::TCP_NO_RESPONSE));
}

#[test]
fn flow_entry_stays_small() {
    // the table's per-flow memory target is 256 bytes: slab entry (two
    // cache lines) and its cold line (the enrichment's two pointers in it)
    // + LRU links + index (8-byte buckets, at most half full) + timer entry
    assert_eq!(table::flow_entry_bytes(), 192);
    let per_flow = table::flow_entry_bytes() + 8 + 17 + 16;
    assert!(per_flow <= 256, "{per_flow} bytes per flow");
}

#[test]
fn event_json_uses_the_flat_vocabulary() {
    let mut t = table();
    let mut ev = Vec::new();
    t.ingest(
        &[rec("10.0.0.1", 5000, "10.0.0.2", 53, 17, 80, 1)],
        T0,
        &mut ev,
    );
    let v: serde_json::Value = serde_json::to_value(&ev[0]).unwrap();
    assert_eq!(v["event"], "protocolDetected");
    assert_eq!(v["time"], "2023-11-14T22:13:20.000Z");
    for k in [
        "cli.ip",
        "srv.ip",
        "cli.port",
        "srv.port",
        "proto.l4",
        "proto.l7",
        "cli2srv.bytes",
        "srv2cli.bytes",
        "cli2srv.packets",
        "srv2cli.packets",
        "first_seen",
        "last_seen",
        "duration",
        "exporter",
        "observation_domain",
        "in_if",
        "out_if",
        "status",
        "score",
        "key",
    ] {
        assert!(v["flow"].get(k).is_some(), "missing {k}");
    }
    assert_eq!(v["flow"]["proto.l4"], "UDP");
    assert_eq!(v["flow"]["proto.l7"], "DNS");
}

/// Times from the wire saturate: a huge start delta beside a far end time
/// neither overflows the table's arithmetic nor the event's duration.
#[test]
fn extreme_times_saturate() {
    let mut t = table();
    let mut r = rec("10.0.0.1", 40000, "10.0.0.2", 443, 6, 100, 1);
    r.first_ms = Some(i64::MIN / 2 - 7);
    r.last_ms = Some(i64::MAX / 2 + 7);
    r.flow_end_reason = Some(2);
    let mut ev = Vec::new();
    t.ingest(&[r], T0, &mut ev);
    t.end_all(&mut ev);
    let end = ev.iter().find(|e| e.kind == EventKind::FlowEnd).unwrap();
    assert_eq!(end.flow.duration_ms(), i64::MAX);
    let mut line = Vec::new();
    super::json::event(&mut line, end);
    assert_eq!(line, serde_json::to_vec(end).unwrap());
}

#[test]
fn unwanted_events_are_counted_not_built() {
    let mut t = table();
    t.set_wanted([false; 4]);
    let mut ev = Vec::new();
    t.ingest(
        &[tcp("10.0.0.1", 40005, "10.0.0.3", 22, 0x02, 120, 2)],
        T0,
        &mut ev,
    );
    assert!(ev.is_empty());
    assert_eq!(t.stats.skipped[EventKind::ProtocolDetected as usize], 1);
    // flowEnd is always built: its end reason is counted
    t.end_all(&mut ev);
    assert_eq!(
        ev.iter().map(|e| e.kind).collect::<Vec<_>>(),
        vec![EventKind::FlowEnd]
    );
    assert!(t.stats.skipped[EventKind::StatusChanged as usize] >= 1);
}

/// A xorshift64 sequence from `seed` (the flow module's tests' random inputs).
pub(crate) fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}
