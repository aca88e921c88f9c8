//! The script sandbox under `serve`: a script stuck inside C functions the
//! instruction hook cannot reach (large `table.sort`s) on one worker is
//! replaced by the watchdog; the flows of the other worker keep their
//! events, `/readyz` stays 200, and SIGTERM still ends the process within
//! its timeout.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::serve::Serve;
use common::v9::{Rec, v9};

const STUCK: &str = r#"
-- 900,000 bytes as numbers, sorted three times: long C calls, built by C
-- calls too (no Lua loop at load), a handful of Lua instructions in all
local s = string.rep("\1\200\50\7\255\3\99\13\250", 100000)
local script = { hooks = {} }
function script.hooks.protocolDetected(now)
  if flow.getInfo()["srv.port"] == 9999 then
    local a = { s:byte(1, -1) }
    table.sort(a)
    local b = { s:byte(1, -1) }
    table.sort(b)
    local c = { s:byte(1, -1) }
    table.sort(c)
  end
end
return script
"#;

const VICTIM: &str = r#"
local script = { hooks = {} }
function script.hooks.flowEnd(now)
  flow.triggerAlert(0, "seen " .. flow.getInfo()["srv.port"])
end
return script
"#;

#[test]
fn a_stuck_worker_is_replaced_and_the_rest_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(scripts.join("stuck.lua"), STUCK).unwrap();
    std::fs::write(scripts.join("victim.lua"), VICTIM).unwrap();
    let out = dir.path().join("out.jsonl");
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = Serve::start(&[
        ("FLOWHOOK__INGEST__LISTEN", format!("127.0.0.1:{port}")),
        ("FLOWHOOK__OUTPUT__PATH", out.display().to_string()),
        ("FLOWHOOK__SCRIPTS__DIR", scripts.display().to_string()),
        ("FLOWHOOK__SCRIPTS__WORKERS", "2".into()),
        ("FLOWHOOK__SCRIPTS__DEADLINE", "10ms".into()),
        ("FLOWHOOK__SCRIPTS__MEMORY_LIMIT_MB", "256".into()),
        ("FLOWHOOK__SCRIPTS__ALERT_RATE_PER_SEC", "100000".into()),
        ("FLOWHOOK__FLOW__SHUTDOWN_TIMEOUT_SECS", "10".into()),
    ]);
    let metrics = s.metrics_addr();
    // 40 flows, one of them to port 9999 (the stuck one)
    let recs: Vec<Rec> = (0..40u16)
        .map(|i| Rec {
            src: [10, 0, 1, (i % 200) as u8],
            dst: [192, 0, 2, 1],
            sport: 20000 + i,
            dport: if i == 7 { 9999 } else { 1000 + i },
            proto: 17,
            flags: 0,
            bytes: 100,
            packets: 1,
            first_up: 1_000,
            last_up: 2_000,
            end: 0,
        })
        .collect();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for (i, chunk) in recs.chunks(10).enumerate() {
        let d = v9(10_000, 1_700_000_000, i as u32, chunk, i == 0);
        sock.send_to(&d, ("127.0.0.1", port)).unwrap();
    }
    s.wait_for("script worker stuck in one hook call");
    assert_eq!(
        common::http_get(&metrics, "/readyz").0,
        200,
        "ready while a worker is stuck"
    );
    std::thread::sleep(Duration::from_millis(300));
    let (_, page) = common::http_get(&metrics, "/metrics");
    assert!(
        page.lines()
            .any(|l| l.starts_with("flowhook_script_workers_replaced_total") && !l.ends_with(" 0")),
        "{page}"
    );
    let t = Instant::now();
    assert!(s.stop().success());
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "stopped in {:?}",
        t.elapsed()
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let seen = text.lines().filter(|l| l.contains("\"seen ")).count();
    assert_eq!(
        seen, 40,
        "every flow's flowEnd reached the victim script: {text}"
    );
}
