//! `flowhook replay`: determinism (two runs, identical bytes), active-timeout
//! stitching (one long flow exported in several records ends as one flow
//! with summed counters), timers on the capture clock. Captures are generated
//! here.

mod common;

use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_flowhook");

use common::v9::{Rec, v9};

const T0: u32 = 1_700_000_000;

/// A capture with: a long SSH flow exported at three active timeouts and then
/// its end; a short DNS exchange; a refused TCP connection; and, much later,
/// a datagram that moves the capture clock past every idle timeout.
fn capture() -> Vec<u8> {
    let ssh = |bytes, first_up, last_up, end| Rec {
        src: [10, 0, 0, 1],
        dst: [10, 0, 0, 2],
        sport: 40000,
        dport: 22,
        proto: 6,
        flags: 0x18,
        bytes,
        packets: 10,
        first_up,
        last_up,
        end,
    };
    let ssh_back = |bytes, first_up, last_up, end| Rec {
        src: [10, 0, 0, 2],
        dst: [10, 0, 0, 1],
        sport: 22,
        dport: 40000,
        ..ssh(bytes, first_up, last_up, end)
    };
    let mut p = common::Pcap::new();
    let us = |s: u32| u64::from(T0 + s) * 1_000_000;
    let exp = [192, 0, 2, 10];
    let mut seq = 0;
    let mut send = |p: &mut common::Pcap, at: u32, recs: &[Rec], tpl: bool| {
        // exporter uptime: 1000 s at T0
        p.udp(
            us(at),
            exp,
            50000,
            [127, 0, 0, 1],
            2055,
            &v9(1_000_000 + at * 1000, T0 + at, seq, recs, tpl),
        );
        seq += 1;
    };
    // active timeout every 60 s: first/last advance with each interval
    send(
        &mut p,
        60,
        &[
            ssh(1000, 1_000_000, 1_060_000, 2),
            ssh_back(5000, 1_000_000, 1_060_000, 2),
        ],
        true,
    );
    send(
        &mut p,
        61,
        &[
            Rec {
                src: [10, 0, 0, 1],
                dst: [10, 0, 0, 53],
                sport: 5353,
                dport: 53,
                proto: 17,
                flags: 0,
                bytes: 70,
                packets: 1,
                first_up: 1_060_500,
                last_up: 1_060_500,
                end: 1,
            },
            Rec {
                src: [10, 0, 0, 53],
                dst: [10, 0, 0, 1],
                sport: 53,
                dport: 5353,
                proto: 17,
                flags: 0,
                bytes: 200,
                packets: 1,
                first_up: 1_060_510,
                last_up: 1_060_510,
                end: 1,
            },
        ],
        false,
    );
    send(
        &mut p,
        120,
        &[
            ssh(1000, 1_060_000, 1_120_000, 2),
            ssh_back(5000, 1_060_000, 1_120_000, 2),
        ],
        false,
    );
    send(
        &mut p,
        121,
        &[
            Rec {
                src: [10, 0, 0, 1],
                dst: [10, 0, 0, 3],
                sport: 40001,
                dport: 25,
                proto: 6,
                flags: 0x02,
                bytes: 60,
                packets: 1,
                first_up: 1_121_000,
                last_up: 1_121_000,
                end: 3,
            },
            Rec {
                src: [10, 0, 0, 3],
                dst: [10, 0, 0, 1],
                sport: 25,
                dport: 40001,
                proto: 6,
                flags: 0x14,
                bytes: 40,
                packets: 1,
                first_up: 1_121_001,
                last_up: 1_121_001,
                end: 3,
            },
        ],
        false,
    );
    send(
        &mut p,
        180,
        &[
            ssh(1000, 1_120_000, 1_180_000, 2),
            ssh_back(5000, 1_120_000, 1_180_000, 2),
        ],
        false,
    );
    send(
        &mut p,
        200,
        &[
            ssh(500, 1_180_000, 1_200_000, 3),
            ssh_back(700, 1_180_000, 1_200_000, 3),
        ],
        false,
    );
    // an unrelated flow much later, so the capture clock runs past the timeouts
    send(
        &mut p,
        900,
        &[Rec {
            src: [10, 0, 0, 7],
            dst: [10, 0, 0, 8],
            sport: 1234,
            dport: 123,
            proto: 17,
            flags: 0,
            bytes: 76,
            packets: 1,
            first_up: 1_900_000,
            last_up: 1_900_000,
            end: 0,
        }],
        false,
    );
    p.bytes().to_vec()
}

fn replay(path: &std::path::Path, envs: &[(&str, &str)]) -> Vec<u8> {
    let mut cmd = Command::new(BIN);
    cmd.arg("replay").arg(path);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn events(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn replay_is_byte_identical_run_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.pcap");
    std::fs::write(&path, capture()).unwrap();
    let all = [(
        "FLOWHOOK__OUTPUT__EVENTS",
        "protocolDetected,statusChanged,periodicUpdate,flowEnd",
    )];
    let a = replay(&path, &all);
    let b = replay(&path, &all);
    assert!(!a.is_empty());
    assert_eq!(a, b);
}

#[test]
fn active_timeout_records_stitch_into_one_flow() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.pcap");
    std::fs::write(&path, capture()).unwrap();
    let ev = events(&replay(
        &path,
        &[(
            "FLOWHOOK__OUTPUT__EVENTS",
            "protocolDetected,statusChanged,periodicUpdate,flowEnd",
        )],
    ));
    let of = |port: u64, kind: &str| -> Vec<&Value> {
        ev.iter()
            .filter(|e| e["event"] == kind && e["flow"]["srv.port"] == port)
            .collect()
    };
    let ssh_end = of(22, "flowEnd");
    assert_eq!(ssh_end.len(), 1, "one flowEnd for the stitched SSH flow");
    let f = &ssh_end[0]["flow"];
    assert_eq!(f["cli.ip"], "10.0.0.1");
    assert_eq!(f["cli2srv.bytes"], 3500);
    assert_eq!(f["srv2cli.bytes"], 15700);
    assert_eq!(f["cli2srv.packets"], 40);
    assert_eq!(f["end_reason"], "end_of_flow");
    assert_eq!(f["first_seen"], 1_700_000_000.0);
    assert_eq!(f["last_seen"], 1_700_000_200.0);
    assert_eq!(of(22, "protocolDetected").len(), 1);
    // periodicUpdate every 60 s of capture time while alive (created at +60 s, ended by +205 s)
    let periodic: Vec<&str> = of(22, "periodicUpdate")
        .iter()
        .map(|e| e["time"].as_str().unwrap())
        .collect();
    assert_eq!(
        periodic,
        vec!["2023-11-14T22:15:20.000Z", "2023-11-14T22:16:20.000Z"]
    );
    // ends after the grace time, on the capture clock
    assert_eq!(
        ssh_end[0]["time"], "2023-11-14T22:16:45.000Z",
        "last record at +200 s, end grace 5 s"
    );

    let dns = of(53, "flowEnd");
    assert_eq!(dns.len(), 1);
    assert_eq!(dns[0]["flow"]["proto.l7"], "DNS");
    assert_eq!(dns[0]["flow"]["srv2cli.bytes"], 200);
    let refused = of(25, "statusChanged");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["flow"]["status"][0], "tcp_connection_refused");
    // the NTP flow seen last is still alive when the capture ends
    let ntp = of(123, "flowEnd");
    assert_eq!(ntp[0]["flow"]["end_reason"], "shutdown");
    let ends = ev.iter().filter(|e| e["event"] == "flowEnd").count();
    assert_eq!(ends, 4);
}
