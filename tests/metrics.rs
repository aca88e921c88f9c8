//! Prometheus metrics with real parts: softflowd exports to a running
//! `serve` with the shipped scripts; `promtool check metrics` on its
//! `/metrics`; the hook histogram counts every script and hook that ran; a
//! real Prometheus server scrapes it with `deploy/prometheus/` and answers a
//! `histogram_quantile` query; docs/metrics.md and `/metrics` agree; loss
//! counters move by the right amounts; `/readyz` turns ready after scripts load.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http_get as get;
use common::serve::Serve;
use common::{free_tcp_port as free_port, have, samples, sum};

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Names of the metric families in docs/metrics.md.
fn documented() -> BTreeSet<String> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md"))
            .unwrap();
    doc.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("flowhook_"))
        .map(str::to_owned)
        .collect()
}

fn family(sample: &str) -> &str {
    for suffix in ["_bucket", "_count", "_sum"] {
        if let Some(base) = sample.strip_suffix(suffix)
            && base.ends_with("_seconds")
        {
            return base;
        }
    }
    sample
}

#[test]
fn scraped_by_promtool_and_a_real_prometheus() {
    if !have("softflowd", "-h")
        || !have("promtool", "--version")
        || !have("prometheus", "--version")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let traffic = common::traffic::generate(1_700_000_000);
    let pcap = dir.path().join("m.pcap");
    std::fs::write(&pcap, &traffic.pcap).unwrap();
    let geo = common::mmdb::write_all(dir.path());
    let cfg = dir.path().join("f.toml");
    // the blocklist script alerts on the GB server of the capture
    std::fs::write(
        &cfg,
        "[scripts.conf.blocklist]\nentries = [\"81.2.69.142\"]\n",
    )
    .unwrap();
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // with the Kafka sink built in, a real broker, so its series are on the page too
    let broker =
        (cfg!(feature = "kafka") && common::kafka::available()).then(common::kafka::Broker::start);
    let kafka: Vec<(&str, String)> = broker
        .iter()
        .flat_map(|b| {
            [
                ("FLOWHOOK__KAFKA__BROKERS", b.address()),
                ("FLOWHOOK__KAFKA__STATISTICS_INTERVAL", "1s".to_string()),
            ]
        })
        .collect();
    let serve = Serve::spawn(
        &[
            ("FLOWHOOK_CONFIG", cfg.display().to_string()),
            ("FLOWHOOK__INGEST__LISTEN", format!("127.0.0.1:{port}")),
            (
                "FLOWHOOK__OUTPUT__PATH",
                dir.path().join("out.jsonl").display().to_string(),
            ),
            ("FLOWHOOK__OUTPUT__EVENTS", "flowEnd".into()),
            ("FLOWHOOK__GEO__CITY_DB", geo.city.display().to_string()),
            ("FLOWHOOK__GEO__ASN_DB", geo.asn.display().to_string()),
            ("FLOWHOOK__SCRIPTS__DIR", common::shipped_scripts()),
            ("FLOWHOOK__FLOW__END_GRACE_SECS", "0".into()),
            ("FLOWHOOK__FLOW__PERIODIC_UPDATE_SECS", "1".into()),
            // an alert sink, so its series are on the page too
            (
                "FLOWHOOK__SYSLOG__TARGET",
                format!("udp://127.0.0.1:{}", common::free_udp_port()),
            ),
        ]
        .into_iter()
        .chain(kafka)
        .collect::<Vec<_>>(),
    );
    let addr = serve.metrics_addr();
    serve.wait_for("flowhook serving");
    // softflowd exports the capture as NetFlow v9 (control socket path ≤ 12 characters)
    let mut sf = Command::new("softflowd")
        .args(["-d", "-r"])
        .arg(&pcap)
        .args([
            "-n",
            &format!("127.0.0.1:{port}"),
            "-v",
            "9",
            "-c",
            "/tmp/sfm.ctl",
            "-p",
            "/tmp/sfm.pid",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while sf.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = sf.kill();
    let _ = sf.wait();
    // a datagram that cannot be decoded, and a reload, so those series move too
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(b"\x00\x09garbage", ("127.0.0.1", port))
        .unwrap();
    serve.signal(libc::SIGHUP);
    serve.wait_for("geolocation databases reloaded");
    // wait (bounded) until every flow has ended and reached the scripts
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let (code, text) = get(&addr, "/metrics");
        assert_eq!(code, 200);
        let s = samples(&text);
        let ended = sum(&s, "flowhook_flows_ended_total", &[]);
        let script_ends = sum(
            &s,
            "flowhook_script_calls_total",
            &[("script", "elephant_flow"), ("hook", "flowEnd")],
        );
        // with Kafka: the client's statistics have reported a round trip
        let kafka_ok = broker.is_none()
            || s.iter()
                .any(|(n, _, _)| n == "flowhook_kafka_broker_rtt_seconds");
        if (ended >= 6.0 && script_ends >= 6.0 && kafka_ok) || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let s = samples(&text);

    // promtool finds no problem
    let mut pt = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    pt.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let pt = pt.wait_with_output().unwrap();
    assert!(
        pt.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&pt.stdout),
        String::from_utf8_lossy(&pt.stderr)
    );
    assert!(
        pt.stdout.is_empty() && pt.stderr.is_empty(),
        "promtool reported: {}{}",
        String::from_utf8_lossy(&pt.stdout),
        String::from_utf8_lossy(&pt.stderr)
    );

    // the hook histogram has a count for every script and hook that ran
    let calls: Vec<_> = s
        .iter()
        .filter(|(n, _, v)| n == "flowhook_script_calls_total" && *v > 0.0)
        .collect();
    assert!(calls.len() >= 4, "{calls:?}");
    for (_, l, v) in &calls {
        let count = sum(
            &s,
            "flowhook_script_hook_duration_seconds_count",
            &[("script", &l["script"]), ("hook", &l["hook"])],
        );
        assert_eq!(count, *v, "histogram count of {l:?}");
    }
    assert!(
        sum(
            &s,
            "flowhook_script_calls_total",
            &[
                ("script", "suspicious_countries"),
                ("hook", "protocolDetected")
            ]
        ) >= 6.0
    );
    assert!(
        sum(
            &s,
            "flowhook_script_alerts_total",
            &[("script", "blocklist"), ("status", "blocklisted_host")]
        ) >= 1.0
    );
    assert!(
        sum(
            &s,
            "flowhook_decode_errors_total",
            &[("exporter", "127.0.0.1")]
        ) >= 1.0
    );
    assert!(
        sum(
            &s,
            "flowhook_decode_records_total",
            &[
                ("exporter", "127.0.0.1"),
                ("version", "9"),
                ("kind", "flow")
            ]
        ) >= 12.0
    );
    assert_eq!(
        sum(
            &s,
            "flowhook_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    // drift: docs/metrics.md and /metrics name the same families
    let on_page: BTreeSet<String> = s
        .iter()
        .map(|(n, _, _)| family(n).to_string())
        .filter(|n| n.starts_with("flowhook_"))
        .collect();
    let mut doc = documented();
    if broker.is_none() {
        // built without the Kafka sink: its own families cannot be on the page
        doc.retain(|n| !n.starts_with("flowhook_kafka_"));
    }
    let undocumented: Vec<_> = on_page.difference(&doc).collect();
    let missing: Vec<_> = doc.difference(&on_page).collect();
    assert!(
        undocumented.is_empty(),
        "on /metrics but not in docs/metrics.md: {undocumented:?}"
    );
    assert!(
        missing.is_empty(),
        "in docs/metrics.md but not on /metrics: {missing:?}"
    );

    // a real Prometheus with the shipped scrape config and rules
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    let rules = dir.path().join("alerts.yml");
    std::fs::copy(deploy.join("alerts.yml"), &rules).unwrap();
    let prom_cfg = std::fs::read_to_string(deploy.join("prometheus.yml"))
        .unwrap()
        .replace("flowhook:9754", &addr)
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s");
    assert!(
        prom_cfg.contains(&addr),
        "the shipped config names its target as flowhook:9754"
    );
    let prom_file = dir.path().join("prometheus.yml");
    std::fs::write(&prom_file, prom_cfg).unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let mut prom = Command::new("prometheus")
        .arg(format!("--config.file={}", prom_file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let query = "histogram_quantile(0.99, sum by (le, script, hook) (rate(flowhook_script_hook_duration_seconds_bucket[5m])))";
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut answer = String::new();
    let feeder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut seq = 0u32;
    let has_number = |body: &str| {
        body.split("\"value\":[")
            .skip(1)
            .any(|v| v.split('"').nth(1).is_some_and(|x| x != "NaN"))
    };
    while Instant::now() < deadline {
        // new flows keep the hooks running while Prometheus scrapes
        feeder
            .send_to(&v5(seq, (seq % 200) as u8 + 1), ("127.0.0.1", port))
            .unwrap();
        seq += 1;
        if TcpStream::connect(&web).is_ok() {
            let (code, body) = get(&web, &format!("/api/v1/query?query={}", urlencode(query)));
            if code == 200 && has_number(&body) {
                answer = body;
                break;
            }
            answer = body;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let _ = prom.kill();
    let _ = prom.wait();
    assert!(
        answer.contains("\"status\":\"success\"") && has_number(&answer),
        "Prometheus answered: {answer}"
    );
    assert!(serve.stop().success());
}

/// A v5 datagram with one record, from `seq`.
fn v5(seq: u32, src_last: u8) -> Vec<u8> {
    let mut m = vec![0u8; 24 + 48];
    m[1] = 5;
    m[3] = 1;
    m[4..8].copy_from_slice(&100_000u32.to_be_bytes());
    m[8..12].copy_from_slice(&(1_700_000_000u32 + seq).to_be_bytes());
    m[16..20].copy_from_slice(&seq.to_be_bytes());
    m[24..28].copy_from_slice(&[10, 0, 0, src_last]);
    m[28..32].copy_from_slice(&[10, 9, 9, 9]);
    m[61] = 17;
    m
}

#[test]
fn loss_counters_move_by_the_right_amounts() {
    let dir = tempfile::tempdir().unwrap();
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let serve = Serve::spawn(&[
        ("FLOWHOOK__INGEST__LISTEN", format!("127.0.0.1:{port}")),
        ("FLOWHOOK__INGEST__QUEUE_DATAGRAMS", "2".into()),
        ("FLOWHOOK__DECODE__SHARDS", "1".into()),
        ("FLOWHOOK__OUTPUT__ENABLED", "false".into()),
        ("FLOWHOOK__SCRIPTS__DIR", dir.path().display().to_string()),
    ]);
    let addr = serve.metrics_addr();
    serve.wait_for("flowhook serving");
    let scrape = || samples(&get(&addr, "/metrics").1);
    let wait_records = |exporter: &str, n: f64| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = scrape();
            if sum(
                &s,
                "flowhook_decode_records_total",
                &[("exporter", exporter)],
            ) >= n
                || Instant::now() > deadline
            {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // exporter 127.0.0.1: sequence 0, 5, 6, 20 (v5 counts flows, one per datagram): 4 + 13 lost
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    for (i, seq) in [0u32, 5, 6, 20].into_iter().enumerate() {
        a.send_to(&v5(seq, 1), ("127.0.0.1", port)).unwrap();
        wait_records("127.0.0.1", (i + 1) as f64);
    }
    let s = scrape();
    assert_eq!(sum(&s, "flowhook_decode_sequence_lost_total", &[]), 17.0);
    assert_eq!(sum(&s, "flowhook_decode_sequence_gaps_total", &[]), 2.0);
    // exporter 127.0.0.2 floods a queue of 2 with in-order datagrams
    let b = UdpSocket::bind("127.0.0.2:0").unwrap();
    const N: u32 = 3000;
    for seq in 0..N {
        b.send_to(&v5(seq, 2), ("127.0.0.1", port)).unwrap();
    }
    // a last one after the queue drained, so every dropped one sits before it
    std::thread::sleep(Duration::from_millis(300));
    b.send_to(&v5(N, 2), ("127.0.0.1", port)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let s = loop {
        let s = scrape();
        let received = sum(&s, "flowhook_ingest_datagrams_total", &[])
            + sum(&s, "flowhook_ingest_kernel_drops_total", &[]);
        if received >= f64::from(N + 1 + 4) || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let decoded = sum(
        &s,
        "flowhook_decode_records_total",
        &[("exporter", "127.0.0.2")],
    );
    let queue_full = sum(
        &s,
        "flowhook_ingest_datagrams_dropped_total",
        &[("reason", "queue_full")],
    );
    let kernel = sum(&s, "flowhook_ingest_kernel_drops_total", &[]);
    assert!(queue_full > 0.0, "a queue of 2 overflows");
    assert_eq!(
        decoded + queue_full + kernel,
        f64::from(N + 1),
        "every datagram is decoded or counted as dropped"
    );
    assert_eq!(
        sum(&s, "flowhook_decode_sequence_lost_total", &[]) - 17.0,
        queue_full + kernel,
        "what was dropped shows as sequence loss"
    );
    assert!(serve.stop().success());
}

#[test]
fn readyz_turns_ready_after_scripts_load() {
    let dir = tempfile::tempdir().unwrap();
    // setup() takes a second of CPU: the endpoint is up before the scripts are loaded
    std::fs::write(
        dir.path().join("slow.lua"),
        "return { setup = function() local t = os.clock() while os.clock() - t < 1 do end end, hooks = {} }\n",
    )
    .unwrap();
    let serve = Serve::spawn(&[
        ("FLOWHOOK__INGEST__LISTEN", "127.0.0.1:0".into()),
        ("FLOWHOOK__SCRIPTS__DIR", dir.path().display().to_string()),
        ("FLOWHOOK__SCRIPTS__DEADLINE", "1s".into()),
        ("FLOWHOOK__SCRIPTS__WORKERS", "1".into()),
    ]);
    let addr = serve.metrics_addr();
    assert_eq!(get(&addr, "/healthz").0, 200);
    assert_eq!(get(&addr, "/readyz").0, 503, "not ready while scripts load");
    serve.wait_for("flowhook serving");
    assert_eq!(get(&addr, "/readyz").0, 200);
    assert_eq!(get(&addr, "/nope").0, 404);
    assert!(serve.stop().success());
}
