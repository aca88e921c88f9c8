//! A rolling restart loses nothing (docs/operations.md): a steady stream
//! from several exporters; a second instance starts on the same port and
//! takes the traffic over, the first gets SIGTERM; the two outputs together
//! account for every packet sent. In a test binary of its own, so no other
//! test competes with the stream for the two cores.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::serve::{Serve, fresh_state_dir};

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn envs(port: u16, out: &Path, state: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("FLOWHOOK__INGEST__LISTEN", format!("127.0.0.1:{port}")),
        ("FLOWHOOK__OUTPUT__PATH", out.display().to_string()),
        ("FLOWHOOK__STATE__DIR", state.display().to_string()),
        ("FLOWHOOK__STATE__WRITE_INTERVAL", "100ms".into()),
        ("FLOWHOOK__SCRIPTS__DIR", "/nonexistent".into()),
    ]
}

/// Packets accounted in an output file (`flowEnd` events), per exporter.
fn packets(out: &Path) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    let text = std::fs::read_to_string(out).unwrap_or_default();
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        if v["event"] != "flowEnd" {
            continue;
        }
        let f = &v["flow"];
        let n = f["cli2srv.packets"].as_u64().unwrap() + f["srv2cli.packets"].as_u64().unwrap();
        *m.entry(f["exporter"].as_str().unwrap().to_string())
            .or_default() += n;
    }
    m
}

/// The drop counters of an instance's /metrics (for the failure message).
fn drops(metrics: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(metrics) else {
        return "(metrics unreachable)".into();
    };
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut page = String::new();
    let _ = s.read_to_string(&mut page);
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
    let port = free_port();
    let (out_a, out_b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let a = Serve::start(&envs(port, &out_a, &state));
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
    let b = Serve::start(&envs(port, &out_b, &state));
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
    let (pa, pb) = (packets(&out_a), packets(&out_b));
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
