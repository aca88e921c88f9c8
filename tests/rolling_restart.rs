//! A rolling restart loses nothing (docs/operations.md): a steady stream
//! from several exporters; a second instance starts on the same port and
//! takes the traffic over, the first gets SIGTERM; the two outputs together
//! account for every packet sent. In a test binary of its own, so no other
//! test competes with the stream for the two cores.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::serve::{Serve, flow_end_packets, fresh_state_dir, restart_envs};

/// The drop counters of an instance's /metrics (for the failure message).
fn drops(metrics: &str) -> String {
    let (_, page) = common::http_get(metrics, "/metrics");
    page.lines()
        .filter(|l| {
            l.contains("dropped") || l.contains("kernel_drops") || l.contains("pending_sets_total")
        })
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A steady stream from several exporters; a second instance starts on the
/// same port and takes over, the first is stopped: nothing is lost.
#[test]
fn rolling_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = fresh_state_dir();
    let port = common::free_udp_port();
    let (out_a, out_b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let a = Serve::start(&restart_envs(port, &out_a, &state));
    let metrics_a = a.metrics_addr();
    // templates only at the start of each stream: after the handover the
    // second instance decodes with what the first saved
    let generator = Command::new(env!("CARGO_BIN_EXE_flowhook"))
        .args([
            "generate",
            "--target",
            &format!("127.0.0.1:{port}"),
            "--rate",
            "2000",
            // few records per datagram: the test binary is a debug build
            "--records",
            "5",
            "--duration",
            "6s",
            "--exporters",
            "4",
            "--export-version",
            "10",
            "--flows",
            "2000",
            "--template-every",
            "1000000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let b = Serve::start(&restart_envs(port, &out_b, &state));
    let metrics_b = b.metrics_addr();
    b.logged("new datagrams come here from now on");
    let drops_a = drops(&metrics_a);
    std::thread::sleep(Duration::from_millis(500));
    assert!(a.stop().success());
    let sent = generator.wait_with_output().unwrap();
    assert!(sent.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&sent.stdout).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let drops_b = drops(&metrics_b);
    assert!(b.stop().success());
    let (pa, pb) = (flow_end_packets(&out_a), flow_end_packets(&out_b));
    let total: u64 = pa.values().chain(pb.values()).sum();
    assert!(
        pa.values().sum::<u64>() > 0 && pb.values().sum::<u64>() > 0,
        "both instances took part: {pa:?} {pb:?}"
    );
    assert_eq!(
        total,
        summary["packets"].as_u64().unwrap(),
        "every packet sent is accounted once across the two outputs: {pa:?} {pb:?}; drops of the first: {drops_a}; of the second: {drops_b}"
    );
}
