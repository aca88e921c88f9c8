//! Black-box tests of the `flowhook` binary: `decode` on a generated capture,
//! `check` on good and broken configurations, `serve` receiving over UDP on
//! loopback and flushing on SIGTERM. Fixtures are generated here, so these
//! run on a fresh clone without `../shared`.

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use common::serve::Serve;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_flowhook");

/// A v5 datagram with `n` records from 10.0.0.i to 192.0.2.1, bytes = 100 + i.
fn v5(n: u8, seq: u32) -> Vec<u8> {
    let mut m = vec![0u8; 24];
    m[1] = 5;
    m[3] = n;
    m[4..8].copy_from_slice(&100_000u32.to_be_bytes());
    // export time moves with the sequence number, so repeated records are distinct intervals
    m[8..12].copy_from_slice(&(1_700_000_000u32 + seq).to_be_bytes());
    m[16..20].copy_from_slice(&seq.to_be_bytes());
    for i in 0..n {
        let mut r = [0u8; 48];
        r[0..4].copy_from_slice(&[10, 0, 0, i]);
        r[4..8].copy_from_slice(&[192, 0, 2, 1]);
        r[16..20].copy_from_slice(&1u32.to_be_bytes());
        r[20..24].copy_from_slice(&(100 + u32::from(i)).to_be_bytes());
        r[24..28].copy_from_slice(&99_000u32.to_be_bytes());
        r[28..32].copy_from_slice(&99_500u32.to_be_bytes());
        r[32..34].copy_from_slice(&1234u16.to_be_bytes());
        r[34..36].copy_from_slice(&80u16.to_be_bytes());
        r[38] = 6;
        m.extend_from_slice(&r);
    }
    m
}

#[test]
fn decode_prints_records_and_reports_bad_frames() {
    let dir = tempfile::tempdir().unwrap();
    let mut pcap = common::Pcap::new();
    pcap.udp(
        1_700_000_000_000_000,
        [192, 0, 2, 10],
        50000,
        [127, 0, 0, 1],
        2055,
        &v5(3, 0),
    );
    pcap.udp(
        1_700_000_000_001_000,
        [192, 0, 2, 10],
        50000,
        [127, 0, 0, 1],
        2055,
        &[0, 5, 0, 9, 1, 2, 3],
    );
    pcap.udp(
        1_700_000_000_002_000,
        [192, 0, 2, 11],
        50000,
        [127, 0, 0, 1],
        2055,
        &v5(2, 3),
    );
    let path = dir.path().join("x.pcap");
    std::fs::write(&path, pcap.bytes()).unwrap();
    let out = Command::new(BIN)
        .args(["decode"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["exporter"], "192.0.2.10");
    assert_eq!(lines[3]["exporter"], "192.0.2.11");
    assert_eq!(lines[1]["bytes"], 101);
    assert_eq!(lines[1]["src_addr"], "10.0.0.1");
    assert_eq!(lines[1]["protocol"], 6);
    assert_eq!(lines[1]["first"], "2023-11-14T22:13:19.000Z");
    for key in [
        "version",
        "observation_domain",
        "dst_addr",
        "src_port",
        "dst_port",
        "packets",
        "tcp_flags",
        "in_if",
        "out_if",
        "last",
        "sampling_interval",
        "fields",
    ] {
        assert!(lines[1].get(key).is_some(), "missing {key}");
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("frame 2: truncated"), "{err}");
}

#[test]
fn decode_of_a_missing_or_broken_capture_fails_clearly() {
    let out = Command::new(BIN)
        .args(["decode", "/nonexistent/x.pcap"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.pcap"));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("junk.pcap");
    std::fs::write(&p, b"this is not a capture at all").unwrap();
    let out = Command::new(BIN).arg("decode").arg(&p).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("junk.pcap"));
}

#[test]
fn check_prints_config_and_rejects_bad_keys_with_exit_2() {
    let out = Command::new(BIN)
        .arg("check")
        .env("FLOWHOOK__INGEST__LISTEN", "127.0.0.1:9995,[::1]:9995")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("\"127.0.0.1:9995\"") && text.contains("\"[::1]:9995\""),
        "{text}"
    );

    let out = Command::new(BIN)
        .arg("check")
        .env("FLOWHOOK__INGEST__QUEUE_DATAGRAMS", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ingest.queue_datagrams"));

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.toml");
    std::fs::write(&f, "[ingest]\nlistne = []\n").unwrap();
    let out = Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listne"));

    // serve refuses to start on the same errors
    let out = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn check_and_serve_name_an_unreadable_sink_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-ca.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    for (k, v) in [
        ("FLOWHOOK__ALERTMANAGER__TLS__CA_FILE", &missing),
        ("FLOWHOOK__ALERTMANAGER__TLS__CA_FILE", &garbage),
    ] {
        for cmd in ["check", "serve"] {
            let out = Command::new(BIN)
                .arg(cmd)
                .env("FLOWHOOK__ALERTMANAGER__URL", "https://am.example:9093")
                .env(k, v)
                .env("FLOWHOOK__INGEST__LISTEN", "127.0.0.1:0")
                .env("FLOWHOOK__METRICS__LISTEN", "127.0.0.1:0")
                .env("FLOWHOOK__STATE__ENABLED", "false")
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
            assert!(
                err.contains("alertmanager") && err.contains(&v.display().to_string()),
                "{cmd}: {err}"
            );
        }
    }
    // syslog over TLS with a token-less, file-less setup starts
    let out = Command::new(BIN)
        .arg("check")
        .env("FLOWHOOK__SYSLOG__TARGET", "tls://siem.example:6514")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn serve_receives_over_udp_and_flushes_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("flows.jsonl");
    let port = common::free_udp_port();
    let k = Serve::start(&[
        ("FLOWHOOK__INGEST__LISTEN", format!("127.0.0.1:{port}")),
        ("FLOWHOOK__OUTPUT__PATH", out.display().to_string()),
        ("FLOWHOOK__OUTPUT__FLUSH_INTERVAL", "10s".into()),
        ("FLOWHOOK__OUTPUT__RECORDS", "true".into()),
    ]);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    for seq in 0..20u32 {
        tx.send_to(&v5(10, seq * 10), ("127.0.0.1", port)).unwrap();
    }
    tx.send_to(b"garbage", ("127.0.0.1", port)).unwrap();
    // loopback delivery is synchronous: the datagrams sit in the socket buffer now.
    // The flush interval is long, so what reaches the file comes from the shutdown drain and flush.
    let status = k.stop();
    assert!(status.success(), "{status:?}");
    let text = std::fs::read_to_string(&out).unwrap();
    let all: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let records: Vec<&Value> = all.iter().filter(|l| l.get("record").is_some()).collect();
    assert_eq!(
        records.len(),
        200,
        "every accepted record is written on a clean shutdown"
    );
    assert!(
        records
            .iter()
            .all(|l| l["exporter"] == "127.0.0.1" && l["version"] == 5)
    );
    // 10 distinct conversations, each repeated 20 times: one flowEnd each, at shutdown
    let ends: Vec<&Value> = all.iter().filter(|l| l["event"] == "flowEnd").collect();
    assert_eq!(ends.len(), 10);
    for e in ends {
        assert_eq!(e["flow"]["end_reason"], "shutdown");
        assert_eq!(e["flow"]["cli2srv.packets"], 20);
        assert_eq!(e["flow"]["srv.port"], 80);
    }
}

#[test]
fn serve_drops_exporters_outside_the_allow_list() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("flows.jsonl");
    let port = common::free_udp_port();
    let k = Serve::start(&[
        ("FLOWHOOK__INGEST__LISTEN", format!("127.0.0.1:{port}")),
        ("FLOWHOOK__INGEST__ALLOW", "10.0.0.0/8,127.0.0.2/32".into()),
        ("FLOWHOOK__OUTPUT__RECORDS", "true".into()),
        ("FLOWHOOK__OUTPUT__EVENTS", "statusChanged".into()),
        ("FLOWHOOK__OUTPUT__PATH", out.display().to_string()),
    ]);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.send_to(&v5(1, 0), ("127.0.0.1", port)).unwrap();
    let allowed = UdpSocket::bind("127.0.0.2:0").unwrap();
    allowed.send_to(&v5(2, 0), ("127.0.0.1", port)).unwrap();
    assert!(k.stop().success());
    let text = std::fs::read_to_string(&out).unwrap();
    let exporters: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l.get("record").is_some())
        .map(|l| l["exporter"].clone())
        .collect();
    assert_eq!(
        exporters,
        vec![Value::from("127.0.0.2"), Value::from("127.0.0.2")]
    );
}

#[test]
fn output_file_is_reopened_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("flows.jsonl");
    let rotated = dir.path().join("flows.jsonl.1");
    let port = common::free_udp_port();
    let k = Serve::start(&[
        ("FLOWHOOK__INGEST__LISTEN", format!("127.0.0.1:{port}")),
        ("FLOWHOOK__OUTPUT__PATH", out.display().to_string()),
        ("FLOWHOOK__OUTPUT__RECORDS", "true".into()),
        ("FLOWHOOK__OUTPUT__FLUSH_INTERVAL", "100ms".into()),
    ]);
    let tx_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx_sock.send_to(&v5(1, 0), ("127.0.0.1", port)).unwrap();
    // the first record reaches the file (flushed within 100 ms)
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&out)
        .unwrap_or_default()
        .contains("\"record\"")
    {
        assert!(Instant::now() < deadline, "first record never written");
        std::thread::sleep(Duration::from_millis(20));
    }
    // logrotate: move the file away, then SIGHUP
    std::fs::rename(&out, &rotated).unwrap();
    k.signal(libc::SIGHUP);
    k.wait_for("output reopened");
    tx_sock.send_to(&v5(2, 1), ("127.0.0.1", port)).unwrap();
    assert!(k.stop().success());
    let old = std::fs::read_to_string(&rotated).unwrap();
    let new = std::fs::read_to_string(&out).unwrap();
    assert_eq!(old.lines().count(), 1, "{old}");
    assert!(new.lines().any(|l| l.contains("\"record\"")), "{new}");
    assert_eq!(
        new.lines().filter(|l| l.contains("\"flowEnd\"")).count(),
        2,
        "{new}"
    );
}
