//! The Kafka sink against a real Kafka-protocol broker (`tansu`) and an
//! independent consumer (librdkafka from PyPI's `confluent-kafka`):
//! - softflowd exports sessions (some to CN servers, so the shipped
//!   `suspicious_countries` script alerts): every event and alert line of
//!   the file output arrives in its topic, byte for byte, once, keyed by its
//!   flow key, one flow's events in one partition in their order;
//! - `format = "protobuf"`: the messages decode with `protoc` and the
//!   repository's `proto/flowhook.proto` into the file output's values;
//! - the broker down at start (flowhook ready, events queued, delivered when
//!   it comes up), and stopped mid-stream (SIGSTOP: it answers nothing)
//!   with a small queue: the UDP path goes on, what the queue cannot hold is
//!   dropped and counted, the rest is delivered once when it goes on;
//! - two instances with disjoint exporters publishing to one topic: a
//!   consumer sees both instances' flows, none twice.

mod common;

#[cfg(not(feature = "kafka"))]
#[test]
fn kafka_sink_is_built() {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "the tests run without the `kafka` feature: ./run-tests.sh builds with --features kafka"
        );
    }
    eprintln!("SKIPPED: built without the `kafka` feature (./run-tests.sh builds with it)");
}

#[cfg(feature = "kafka")]
mod with_kafka {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;
    use std::process::Command;
    use std::time::{Duration, Instant};

    use serde_json::Value;

    use crate::common::kafka::{Broker, Msg, available, consume};
    use crate::common::serve::Serve;
    use crate::common::traffic::{softflowd_replay, tcp_sessions};
    use crate::common::{
        self, eventually, free_udp_port, have, http_get, samples, shipped_scripts, sum,
    };

    fn kafka_metric(serve: &Serve, name: &str, topic: &str, extra: &[(&str, &str)]) -> f64 {
        let (code, text) = http_get(&serve.metrics_addr(), "/metrics");
        assert_eq!(code, 200);
        let mut f = vec![("sink", "kafka"), ("target", topic)];
        f.extend_from_slice(extra);
        sum(&samples(&text), name, &f)
    }

    /// flowhook with the shipped scripts and the City fixture, writing to
    /// `out.jsonl` in `dir` and to the broker at `brokers`.
    fn serve(dir: &Path, port: u16, brokers: &str, extra: &[(&str, String)]) -> Serve {
        let geo = common::mmdb::write_all(dir);
        let mut env = vec![
            ("FLOWHOOK__INGEST__LISTEN", format!("127.0.0.1:{port}")),
            (
                "FLOWHOOK__OUTPUT__PATH",
                dir.join("out.jsonl").display().to_string(),
            ),
            ("FLOWHOOK__GEO__CITY_DB", geo.city.display().to_string()),
            ("FLOWHOOK__SCRIPTS__DIR", shipped_scripts()),
            ("FLOWHOOK__FLOW__END_GRACE_SECS", "0".into()),
            ("FLOWHOOK__KAFKA__BROKERS", brokers.to_string()),
            ("FLOWHOOK__KAFKA__STATISTICS_INTERVAL", "1s".into()),
        ];
        env.extend(extra.iter().cloned());
        Serve::start(&env)
    }

    /// Sessions from 10.<net>.0.x to the CN servers 175.16.199.x (alerted by
    /// `suspicious_countries`) and to 81.2.69.x (GB), exported by softflowd.
    fn export(dir: &Path, port: u16, tag: &str, net: u8, n: u8) {
        let pairs: Vec<((String, u16), (String, u16))> = (1..=n)
            .map(|i| {
                let srv = if i % 2 == 0 {
                    format!("175.16.199.{i}")
                } else {
                    format!("81.2.69.{i}")
                };
                (
                    (format!("10.{net}.0.{i}"), 40000 + u16::from(i)),
                    (srv, 443),
                )
            })
            .collect();
        let refs: Vec<_> = pairs
            .iter()
            .map(|((c, cp), (s, sp))| ((c.as_str(), *cp), (s.as_str(), *sp)))
            .collect();
        let t = tcp_sessions(1_700_000_000, &refs);
        let pcap = dir.join(format!("{tag}.pcap"));
        std::fs::write(&pcap, &t.pcap).unwrap();
        softflowd_replay(&pcap, port, tag);
    }

    /// The file output's lines.
    fn lines(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("out.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn flow_key(line: &str) -> String {
        let v: Value = serde_json::from_str(line).unwrap();
        v["flow"]["key"].as_str().unwrap().to_string()
    }

    fn sorted(v: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut v: Vec<String> = v.into_iter().collect();
        v.sort();
        v
    }

    #[test]
    fn events_and_alerts_arrive_as_in_the_file_keyed_and_in_order() {
        if !available() || !have("softflowd", "-h") {
            return;
        }
        let broker = Broker::start();
        let dir = tempfile::tempdir().unwrap();
        let port = free_udp_port();
        let s = serve(
            dir.path(),
            port,
            &broker.address(),
            &[
                (
                    "FLOWHOOK__OUTPUT__EVENTS",
                    "protocolDetected,statusChanged,periodicUpdate,flowEnd".into(),
                ),
                ("FLOWHOOK__OUTPUT__RECORDS", "true".into()),
            ],
        );
        export(dir.path(), port, "k", 1, 12);
        eventually(30, "12 flowEnd events in the file", || {
            (flow_ends(dir.path()) >= 12).then_some(())
        });
        assert!(s.stop().success());

        let file = lines(dir.path());
        let (records, file): (Vec<String>, Vec<String>) = file
            .into_iter()
            .partition(|l| l.starts_with("{\"record\":"));
        let (alerts, events): (Vec<String>, Vec<String>) = file
            .iter()
            .cloned()
            .partition(|l| l.starts_with("{\"event\":\"alert\""));
        assert_eq!(alerts.len(), 6, "one alert per CN session: {alerts:#?}");
        assert!(events.len() >= 24, "protocolDetected and flowEnd per flow");

        let got_events = consume(&broker.address(), &["flowhook.events"], 0, false);
        let got_alerts = consume(&broker.address(), &["flowhook.alerts"], 0, false);
        // every line once, byte for byte
        assert_eq!(
            sorted(got_events.iter().map(|m| m.value.clone())),
            sorted(events.clone())
        );
        assert_eq!(
            sorted(got_alerts.iter().map(|m| m.value.clone())),
            sorted(alerts.clone())
        );
        // keyed by the flow key; one flow, one partition, its events in order
        let mut by_key: BTreeMap<String, Vec<&Msg>> = BTreeMap::new();
        for m in got_events.iter().chain(&got_alerts) {
            assert_eq!(m.key, flow_key(&m.value), "{m:?}");
            assert_eq!(m.key.len(), 16);
        }
        for m in &got_events {
            by_key.entry(m.key.clone()).or_default().push(m);
        }
        assert_eq!(by_key.len(), 12);
        let partitions: BTreeSet<i64> = got_events.iter().map(|m| m.partition).collect();
        assert!(
            partitions.len() > 1,
            "12 keys over 4 partitions use more than one"
        );
        for (key, msgs) in &by_key {
            let parts: BTreeSet<i64> = msgs.iter().map(|m| m.partition).collect();
            assert_eq!(parts.len(), 1, "{key} in one partition");
            let mut in_kafka = msgs.clone();
            in_kafka.sort_by_key(|m| m.offset);
            let in_kafka: Vec<&str> = in_kafka.iter().map(|m| m.value.as_str()).collect();
            let in_file: Vec<&str> = events
                .iter()
                .filter(|l| flow_key(l) == *key)
                .map(String::as_str)
                .collect();
            assert_eq!(in_kafka, in_file, "{key}: the file's order");
        }
        // one flow's alert is in the alerts topic under the same key as its events
        for a in &got_alerts {
            assert!(by_key.contains_key(&a.key));
        }
        // the decoded records, each under the key of the flow it went into
        assert!(records.len() >= 24, "softflowd exports each direction");
        let got_records = consume(&broker.address(), &["flowhook.records"], 0, false);
        assert_eq!(
            sorted(got_records.iter().map(|m| m.value.clone())),
            sorted(records)
        );
        for r in &got_records {
            assert!(
                by_key.contains_key(&r.key),
                "a record keyed by its flow: {r:?}"
            );
        }
    }

    #[test]
    fn protobuf_messages_decode_with_the_shipped_schema() {
        if !available() || !have("softflowd", "-h") || !have("protoc", "--version") {
            return;
        }
        let broker = Broker::start();
        let dir = tempfile::tempdir().unwrap();
        let port = free_udp_port();
        let s = serve(
            dir.path(),
            port,
            &broker.address(),
            &[("FLOWHOOK__KAFKA__FORMAT", "protobuf".into())],
        );
        export(dir.path(), port, "p", 2, 4);
        eventually(30, "4 flowEnd events in the file", || {
            (flow_ends(dir.path()) >= 4).then_some(())
        });
        assert!(s.stop().success());
        let file = lines(dir.path());
        let by_key: BTreeMap<String, Value> = file
            .iter()
            .filter(|l| l.starts_with("{\"event\":\"flowEnd\""))
            .map(|l| (flow_key(l), serde_json::from_str(l).unwrap()))
            .collect();
        let alerts = file
            .iter()
            .filter(|l| l.starts_with("{\"event\":\"alert\""))
            .count();
        assert_eq!(alerts, 2);

        let proto = concat!(env!("CARGO_MANIFEST_DIR"), "/proto");
        let decode = |ty: &str, hex: &str| -> String {
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            let mut c = Command::new("protoc")
                .args([
                    "-I",
                    proto,
                    &format!("--decode=flowhook.v1.{ty}"),
                    "flowhook.proto",
                ])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&bytes).unwrap();
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "protoc: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        let events = consume(&broker.address(), &["flowhook.events"], 0, true);
        assert_eq!(events.len(), by_key.len());
        for m in &events {
            let text = decode("Event", &m.value);
            let json = &by_key[&m.key];
            let f = &json["flow"];
            assert!(text.contains("event: \"flowEnd\""), "{text}");
            assert!(text.contains(&format!("key: \"{}\"", m.key)), "{text}");
            for (field, key) in [
                ("cli_port", "cli.port"),
                ("srv_port", "srv.port"),
                ("cli2srv_bytes", "cli2srv.bytes"),
                ("srv2cli_packets", "srv2cli.packets"),
            ] {
                let want = format!("{field}: {}", f[key]);
                assert!(text.contains(&want), "{want} in {text}");
            }
            assert!(text.contains("proto: 6"), "{text}");
            let end = f["end_reason"].as_str().unwrap();
            assert!(text.contains(&format!("end_reason: \"{end}\"")), "{text}");
            if f["srv.country"] == "CN" {
                assert!(text.contains("srv_country: \"CN\""), "{text}");
            }
            // 16-byte addresses, IPv4 mapped
            assert!(
                text.contains(
                    "cli_ip: \"\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\377\\377\\n\\002"
                ),
                "{text}"
            );
        }
        let got_alerts = consume(&broker.address(), &["flowhook.alerts"], 0, true);
        assert_eq!(got_alerts.len(), 2);
        for m in &got_alerts {
            let text = decode("Alert", &m.value);
            assert!(text.contains("script: \"suspicious_countries\""), "{text}");
            assert!(text.contains("srv_country: \"CN\""), "{text}");
        }
    }

    /// `flowhook generate` from 127.0.0.2: `flows` flows in 30-record datagrams.
    fn generate(port: u16, flows: u32) {
        let out = Command::new(env!("CARGO_BIN_EXE_flowhook"))
            .args(["generate", "--target", &format!("127.0.0.1:{port}")])
            .args(["--datagrams", &(flows / 30).to_string()])
            .args(["--flows", &flows.to_string(), "--rate", "2000"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// An empty scripts directory: no scripts run.
    fn empty_dir(dir: &Path) -> String {
        let d = dir.join("no-scripts");
        std::fs::create_dir_all(&d).unwrap();
        d.display().to_string()
    }

    fn flow_ends(dir: &Path) -> usize {
        lines(dir)
            .iter()
            .filter(|l| l.starts_with("{\"event\":\"flowEnd\""))
            .count()
    }

    #[test]
    fn a_broker_down_at_start_or_stopped_mid_stream_blocks_nothing() {
        if !available() {
            return;
        }
        let mut broker = Broker::at(common::free_tcp_port());
        let dir = tempfile::tempdir().unwrap();
        let port = free_udp_port();
        let s = serve(
            dir.path(),
            port,
            &broker.address(),
            &[
                ("FLOWHOOK__SCRIPTS__DIR", empty_dir(dir.path())),
                ("FLOWHOOK__FLOW__IDLE_TIMEOUT_SECS", "1".into()),
                ("FLOWHOOK__KAFKA__QUEUE_MESSAGES", "1000".into()),
            ],
        );
        // no broker: serving and ready all the same, events queue
        assert_eq!(http_get(&s.metrics_addr(), "/readyz").0, 200);
        generate(port, 600);
        eventually(30, "600 flowEnd lines", || {
            (flow_ends(dir.path()) >= 600).then_some(())
        });
        eventually(10, "600 events queued", || {
            (kafka_metric(&s, "flowhook_sink_queue_depth", "flowhook.events", &[]) == 600.0)
                .then_some(())
        });
        assert_eq!(
            kafka_metric(&s, "flowhook_sink_sent_total", "flowhook.events", &[]),
            0.0
        );

        // the broker comes up: the queued events arrive
        broker.up();
        eventually(60, "600 events delivered", || {
            (kafka_metric(&s, "flowhook_sink_sent_total", "flowhook.events", &[]) == 600.0)
                .then_some(())
        });
        let first = consume(&broker.address(), &["flowhook.events"], 0, false);
        assert_eq!(first.len(), 600);
        eventually(
            10,
            "the client's statistics to report the broker up",
            || {
                let (_, text) = http_get(&s.metrics_addr(), "/metrics");
                (sum(&samples(&text), "flowhook_kafka_broker_up", &[]) >= 1.0).then_some(())
            },
        );

        // stopped mid-stream: 1500 more flows, the queue holds 1000
        broker.pause();
        let before = kafka_metric(&s, "flowhook_sink_sent_total", "flowhook.events", &[]);
        generate(port, 1500);
        eventually(30, "2100 flowEnd lines: the UDP path went on", || {
            (flow_ends(dir.path()) >= 2100).then_some(())
        });
        let dropped = eventually(10, "drops counted", || {
            let d = kafka_metric(
                &s,
                "flowhook_sink_dropped_total",
                "flowhook.events",
                &[("reason", "queue_full")],
            );
            let held = kafka_metric(&s, "flowhook_sink_queue_depth", "flowhook.events", &[]);
            (d > 0.0 && d + held == 1500.0).then_some(d)
        });
        assert_eq!(dropped, 500.0, "the queue held 1000 of 1500");
        let (code, text) = http_get(&s.metrics_addr(), "/metrics");
        assert_eq!(code, 200);
        assert_eq!(
            sum(&samples(&text), "flowhook_decode_errors_total", &[]),
            0.0
        );

        // back: the 1000 queued arrive, once each
        broker.resume();
        eventually(60, "the queued events delivered", || {
            (kafka_metric(&s, "flowhook_sink_sent_total", "flowhook.events", &[])
                == before + 1000.0)
                .then_some(())
        });
        let all = consume(&broker.address(), &["flowhook.events"], 0, false);
        assert_eq!(all.len(), 1600);
        let unique: BTreeSet<&str> = all.iter().map(|m| m.value.as_str()).collect();
        assert_eq!(unique.len(), 1600, "none twice");
        let file: BTreeSet<String> = lines(dir.path()).into_iter().collect();
        assert!(all.iter().all(|m| file.contains(&m.value)));
        assert_eq!(
            kafka_metric(&s, "flowhook_sink_failed_total", "flowhook.events", &[]),
            0.0
        );
        assert!(s.stop().success());
    }

    #[test]
    fn shutdown_waits_its_deadline_and_reports_what_it_could_not_deliver() {
        if !available() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_udp_port();
        // a port where no broker will ever listen
        let nowhere = format!("127.0.0.1:{}", common::free_tcp_port());
        let s = serve(
            dir.path(),
            port,
            &nowhere,
            &[
                ("FLOWHOOK__SCRIPTS__DIR", empty_dir(dir.path())),
                ("FLOWHOOK__FLOW__IDLE_TIMEOUT_SECS", "1".into()),
                ("FLOWHOOK__KAFKA__FLUSH_TIMEOUT", "2s".into()),
            ],
        );
        generate(port, 90);
        eventually(30, "90 events queued", || {
            (kafka_metric(&s, "flowhook_sink_queue_depth", "flowhook.events", &[]) == 90.0)
                .then_some(())
        });
        let t = Instant::now();
        s.signal(libc::SIGTERM);
        let line = s.wait_for("messages were not delivered");
        assert!(line.contains("kafka: 90 messages"), "{line}");
        assert!(
            t.elapsed() >= Duration::from_secs(2) && t.elapsed() < Duration::from_secs(9),
            "the flush deadline, within the shutdown limit: {:?}",
            t.elapsed()
        );
        assert!(
            s.stop().success(),
            "an undelivered queue is reported, not a failure"
        );
    }

    #[test]
    fn two_instances_with_disjoint_exporters_share_the_topics() {
        if !available() || !have("softflowd", "-h") {
            return;
        }
        let broker = Broker::start();
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (pa, pb) = (free_udp_port(), free_udp_port());
        let a = serve(da.path(), pa, &broker.address(), &[]);
        let b = serve(
            db.path(),
            pb,
            &broker.address(),
            &[("FLOWHOOK__SCRIPTS__DIR", empty_dir(db.path()))],
        );
        // softflowd (127.0.0.1) to one, the generator (127.0.0.2) to the other
        export(da.path(), pa, "a", 3, 10);
        generate(pb, 300);
        eventually(30, "softflowd's 10 flows ended", || {
            (flow_ends(da.path()) >= 10).then_some(())
        });
        assert!(a.stop().success());
        assert!(b.stop().success(), "the generator's flows end at shutdown");
        let mut want: Vec<String> = lines(da.path())
            .into_iter()
            .chain(lines(db.path()))
            .filter(|l| !l.starts_with("{\"event\":\"alert\""))
            .collect();
        assert_eq!(want.len(), 310);
        want.sort();
        let got = consume(&broker.address(), &["flowhook.events"], 0, false);
        let exporters: BTreeSet<String> = got
            .iter()
            .map(|m| {
                let v: Value = serde_json::from_str(&m.value).unwrap();
                v["flow"]["exporter"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(
            exporters,
            BTreeSet::from(["127.0.0.1".to_string(), "127.0.0.2".to_string()])
        );
        assert_eq!(
            sorted(got.into_iter().map(|m| m.value)),
            want,
            "each flow once"
        );
    }
}
