//! Restarts lose nothing (docs/operations.md): templates and sampling
//! announcements survive a restart through the state file; a state file that
//! cannot be used is reported with its path and why, and the service starts
//! and learns templates again; a template redefined after a restore replaces
//! the restored one. (The rolling restart is in `tests/rolling_restart.rs`,
//! a binary of its own so nothing else competes with its stream.)

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant};

use common::export::*;
use common::serve::{Serve, flow_end_packets, fresh_state_dir, restart_envs};

/// Sends `datagrams` from `from` (a loopback address: one exporter each).
fn send(from: &str, port: u16, datagrams: &[Vec<u8>]) {
    let s = UdpSocket::bind(format!("{from}:0")).unwrap();
    for d in datagrams {
        s.send_to(d, ("127.0.0.1", port)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// v9 template 259 (IPv4 5-tuple, 32-bit counters, uptime times).
fn v9_template() -> Vec<u8> {
    set(
        0,
        &template(
            259,
            &[
                (8, 4),
                (12, 4),
                (7, 2),
                (11, 2),
                (4, 1),
                (1, 4),
                (2, 4),
                (22, 4),
                (21, 4),
            ],
        ),
    )
}

fn v9_flow(n: u8, packets: u32, bytes: u32) -> Vec<u8> {
    let mut r = vec![10, 9, 0, n, 192, 0, 2, 25];
    r.extend_from_slice(&u16b(30000 + u16::from(n)));
    r.extend_from_slice(&u16b(25));
    r.push(6);
    r.extend_from_slice(&bytes.to_be_bytes());
    r.extend_from_slice(&packets.to_be_bytes());
    r.extend_from_slice(&3_500_000u32.to_be_bytes());
    r.extend_from_slice(&3_590_000u32.to_be_bytes());
    r
}

/// The two exporters' templates (and the IPFIX one's PSAMP selector, 1 in 256).
fn templates() -> (Vec<u8>, Vec<u8>) {
    let ipfix_t = ipfix(
        1,
        0,
        &[
            psamp_template(),
            set(2, &template(256, &flow_fields(Some((302, 8))))),
            set(PSAMP_OPTIONS, &psamp(1, 1, 256)),
        ],
    );
    let v9_t = v9(0, 0, &[v9_template()], 1);
    (ipfix_t, v9_t)
}

/// Data only, for both exporters: `n` datagrams each (every record
/// different: the flow table does not count a repeated record twice).
fn data(n: u32) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let id = 1u64.to_be_bytes();
    let ipfix_d = (0..n)
        .map(|i| {
            let r = flow(1 + (i % 5) as u8, 1000 + u64::from(i), 10, &id);
            ipfix(1, 1 + i, &[set(256, &r)])
        })
        .collect();
    let v9_d = (0..n)
        .map(|i| {
            v9(
                0,
                1 + i,
                &[set(259, &v9_flow(1 + (i % 5) as u8, 7, 700 + i))],
                1,
            )
        })
        .collect();
    (ipfix_d, v9_d)
}

fn state_file_holds(dir: &Path, streams: usize) -> bool {
    flowhook::state::load(dir)
        .ok()
        .flatten()
        .is_some_and(|s| s.len() >= streams)
}

#[test]
fn templates_and_sampling_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = fresh_state_dir();
    let port = common::free_udp_port();
    let (ipfix_t, v9_t) = templates();

    let a = Serve::start(&restart_envs(port, &dir.path().join("a.jsonl"), &state));
    send("127.0.0.2", port, &[ipfix_t]);
    send("127.0.0.3", port, &[v9_t]);
    wait_until("the state file with both streams", || {
        state_file_holds(&state, 2)
    });
    assert!(a.stop().success());

    // a new process, the same state directory, data only
    let out = dir.path().join("b.jsonl");
    let b = Serve::start(&restart_envs(port, &out, &state));
    let line = b.logged("state restored");
    assert!(line.contains("templates=3"), "{line}");
    let (ipfix_d, v9_d) = data(20);
    send("127.0.0.2", port, &ipfix_d);
    send("127.0.0.3", port, &v9_d);
    std::thread::sleep(Duration::from_millis(300));
    assert!(b.stop().success());
    let got = flow_end_packets(&out);
    // IPFIX: 20 records of 10 packets at 1 in 256 (the selector restored too)
    assert_eq!(got.get("127.0.0.2"), Some(&(20 * 10 * 256)), "{got:?}");
    // v9: 20 records of 7 packets, unsampled
    assert_eq!(got.get("127.0.0.3"), Some(&(20 * 7)), "{got:?}");
}

#[test]
fn a_template_redefined_after_a_restore_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = fresh_state_dir();
    let port = common::free_udp_port();
    let a = Serve::start(&restart_envs(port, &dir.path().join("a.jsonl"), &state));
    send("127.0.0.3", port, &[v9(0, 0, &[v9_template()], 1)]);
    wait_until("the state file", || state_file_holds(&state, 1));
    assert!(a.stop().success());

    let out = dir.path().join("b.jsonl");
    let b = Serve::start(&restart_envs(port, &out, &state));
    b.logged("state restored");
    // template 259 again, now with 64-bit counters in front of the tuple
    let redefined = set(
        0,
        &template(
            259,
            &[(2, 8), (1, 8), (8, 4), (12, 4), (7, 2), (11, 2), (4, 1)],
        ),
    );
    let rec = |n: u8| {
        let mut r = 3u64.to_be_bytes().to_vec();
        r.extend_from_slice(&300u64.to_be_bytes());
        r.extend_from_slice(&[10, 9, 1, n, 192, 0, 2, 26]);
        r.extend_from_slice(&u16b(31000));
        r.extend_from_slice(&u16b(26));
        r.push(17);
        r
    };
    send(
        "127.0.0.3",
        port,
        &[
            v9(0, 1, &[redefined], 1),
            v9(0, 2, &[set(259, &[rec(1), rec(2)].concat())], 2),
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(b.stop().success());
    assert_eq!(flow_end_packets(&out).get("127.0.0.3"), Some(&6));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("\"srv.port\":26"),
        "decoded with the new layout: {text}"
    );
}

#[test]
fn unusable_state_files_are_reported_and_ignored() {
    let good = flowhook::state::encode(Vec::new(), 0);
    type Damage = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Damage)> = vec![
        (
            "checksum",
            Box::new(|p: &Path| {
                let mut g = flowhook::state::encode(Vec::new(), 0);
                let n = g.len() - 2;
                g[n] ^= 1;
                std::fs::write(p, g).unwrap()
            }),
        ),
        (
            "truncated",
            Box::new({
                let g = good.clone();
                move |p: &Path| std::fs::write(p, &g[..g.len() - 4]).unwrap()
            }),
        ),
        (
            "bad header",
            Box::new(|p: &Path| std::fs::write(p, b"").unwrap()),
        ),
        (
            "format version 7",
            Box::new(|p: &Path| std::fs::write(p, b"flowhook-state 7 2 00000000\n{}").unwrap()),
        ),
        (
            "cannot read",
            Box::new(|p: &Path| std::fs::create_dir_all(p).unwrap()),
        ),
    ];
    for (why, damage) in cases {
        let dir = tempfile::tempdir().unwrap();
        let state = fresh_state_dir();
        std::fs::create_dir_all(&state).unwrap();
        let file = flowhook::state::path(&state);
        damage(&file);
        let port = common::free_udp_port();
        let out = dir.path().join("out.jsonl");
        let s = Serve::spawn(&restart_envs(port, &out, &state));
        let line = s.logged("ignored: templates are learnt again");
        assert!(
            line.contains(&file.display().to_string()) && line.contains(why),
            "{why}: {line}"
        );
        s.logged("flowhook serving");
        let (ipfix_t, _) = templates();
        let (ipfix_d, _) = data(3);
        send("127.0.0.2", port, &[ipfix_t]);
        send("127.0.0.2", port, &ipfix_d);
        std::thread::sleep(Duration::from_millis(300));
        assert!(s.stop().success());
        assert_eq!(
            flow_end_packets(&out).get("127.0.0.2"),
            Some(&(3 * 10 * 256)),
            "{why}: templates learnt again"
        );
    }
}
