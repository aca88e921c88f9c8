//! Unit tests of the alert sinks' formats, filters and queue.

use std::sync::Arc;

use serde_json::{Value, json};

use super::alertmanager::{Alertmanager, endpoint, fingerprint, labels};
use super::queue::{Deliver, Queue};
use super::syslog::{Header, syslog_severity};
use super::webhook::{alertmanager_body, flowhook_body};
use super::{AlertRecord, Filter, Item};
use crate::config::AlertmanagerConfig;
use crate::telemetry::DeliveryTelemetry;

fn rec(flow: u64, srv: &str, status: Option<&str>) -> AlertRecord {
    AlertRecord {
        time_ms: 1_700_000_000_123,
        flow_key: flow,
        script: "suspicious_countries".into(),
        status: status.map(str::to_string),
        severity: "warning",
        score: 50,
        message: "server in \"CN\"]".into(),
        info: json!({"srv_country": "CN"}),
        exporter: "192.0.2.1".parse().unwrap(),
        cli_ip: "10.0.0.1".parse().unwrap(),
        srv_ip: srv.parse().unwrap(),
        cli_port: 50000,
        srv_port: 443,
        proto: 6,
        l7: "TLS".into(),
        bytes: 1200,
        packets: 9,
        json: format!("{{\"event\":\"alert\",\"flow\":{flow}}}").into(),
    }
}

#[test]
fn filter_by_severity_and_script() {
    let f = Filter::new("error", &[]);
    assert!(!f.accepts("x", "warning"));
    assert!(f.accepts("x", "error"));
    assert!(f.accepts("x", "emergency"));
    let f = Filter::new("info", &["blocklist".to_string()]);
    assert!(f.accepts("blocklist", "info"));
    assert!(!f.accepts("elephant_flow", "critical"));
}

#[test]
fn alertmanager_labels_and_endpoint() {
    let extra = [("site".to_string(), "fra1".to_string())].into();
    let l = labels(&rec(1, "175.16.199.1", Some("suspicious_country")), &extra);
    assert_eq!(l["alertname"], "suspicious_country");
    assert_eq!(l["script"], "suspicious_countries");
    assert_eq!(l["srv_ip"], "175.16.199.1");
    assert_eq!(l["srv_port"], "443");
    assert_eq!(l["proto_l4"], "TCP");
    assert_eq!(l["proto_l7"], "TLS");
    assert_eq!(l["site"], "fra1");
    // triggerAlert: named after the script
    let l2 = labels(&rec(1, "175.16.199.1", None), &extra);
    assert_eq!(l2["alertname"], "suspicious_countries");
    assert_ne!(fingerprint(&l), fingerprint(&l2));
    assert_eq!(endpoint("http://am:9093/"), "http://am:9093/api/v2/alerts");
    assert_eq!(
        endpoint("http://am:9093/am/api/v2/alerts"),
        "http://am:9093/am/api/v2/alerts"
    );
}

fn am(resolve_on_flow_end: bool, max_tracked_flows: usize) -> Alertmanager {
    let cfg = AlertmanagerConfig {
        resolve_on_flow_end,
        max_tracked_flows,
        ..Default::default()
    };
    let client = super::http::Client::new(
        &cfg.http(),
        "http://127.0.0.1:9/api/v2/alerts",
        "alertmanager",
    )
    .unwrap();
    Alertmanager::new(client, &cfg)
}

fn body(b: &super::http::Chunked<Value>) -> Vec<Value> {
    b.items.clone()
}

#[test]
fn alertmanager_alerts_fire_until_the_resolve_timeout() {
    let mut a = am(false, 10);
    let (b, n) = a
        .prepare(vec![Item::Alert(Arc::new(rec(
            1,
            "175.16.199.1",
            Some("suspicious_country"),
        )))])
        .unwrap();
    assert_eq!(n, 1);
    let v = body(&b);
    assert_eq!(v[0]["startsAt"], "2023-11-14T22:13:20.123Z");
    let ends = v[0]["endsAt"].as_str().unwrap();
    let now = super::http::rfc3339(super::http::now_ms());
    // five minutes ahead of now (the event time is in the past)
    assert!(ends > now.as_str(), "{ends} vs {now}");
    assert_eq!(v[0]["annotations"]["summary"], "server in \"CN\"]");
    assert_eq!(
        v[0]["annotations"]["description"],
        "TCP 10.0.0.1:50000 -> 175.16.199.1:443 (TLS), 1200 bytes, 9 packets, exporter 192.0.2.1"
    );
    assert_eq!(
        serde_json::from_str::<Value>(v[0]["annotations"]["info"].as_str().unwrap()).unwrap(),
        json!({"srv_country": "CN"})
    );
    // without resolve_on_flow_end a flow's end sends nothing
    assert!(a.prepare(vec![Item::FlowEnded(1)]).is_none());
    assert_eq!(a.tracked(), 0);
}

#[test]
fn alertmanager_resolves_when_the_last_flow_of_an_alert_ends() {
    let mut a = am(true, 10);
    let st = Some("suspicious_country");
    let (_, n) = a
        .prepare(vec![
            Item::Alert(Arc::new(rec(1, "175.16.199.1", st))),
            // a second flow of the same pair: the same alert
            Item::Alert(Arc::new(rec(2, "175.16.199.1", st))),
            Item::Alert(Arc::new(rec(3, "175.16.199.2", st))),
        ])
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(a.tracked(), 3);
    // flow 1 ends: flow 2 still raises the same alert
    assert!(a.prepare(vec![Item::FlowEnded(1)]).is_none());
    let (b, n) = a
        .prepare(vec![Item::FlowEnded(2), Item::FlowEnded(3)])
        .unwrap();
    assert_eq!(n, 2);
    let v = body(&b);
    let now = super::http::rfc3339(super::http::now_ms() + 1000);
    for x in &v {
        assert!(x["endsAt"].as_str().unwrap() <= now.as_str(), "{x}");
        assert!(x["endsAt"].as_str().unwrap() >= x["startsAt"].as_str().unwrap());
    }
    assert_eq!(a.tracked(), 0);
    // a flow that never alerted
    assert!(a.prepare(vec![Item::FlowEnded(99)]).is_none());
}

#[test]
fn alertmanager_tracks_a_bounded_number_of_flows() {
    let mut a = am(true, 2);
    for f in 0..5 {
        a.prepare(vec![Item::Alert(Arc::new(rec(f, "175.16.199.1", None)))]);
    }
    assert_eq!(a.tracked(), 2);
}

#[test]
fn webhook_bodies() {
    let (a, b) = (
        rec(1, "175.16.199.1", Some("x")),
        rec(2, "175.16.199.2", Some("x")),
    );
    let v: Value = serde_json::from_slice(&flowhook_body(&[&a, &b])).unwrap();
    assert_eq!(
        v,
        json!([{"event": "alert", "flow": 1}, {"event": "alert", "flow": 2}])
    );
    let v: Value = serde_json::from_slice(&alertmanager_body(&[&a, &b])).unwrap();
    assert_eq!(v["version"], "4");
    assert_eq!(v["status"], "firing");
    assert_eq!(v["groupLabels"], json!({"alertname": "x"}));
    assert_eq!(v["commonLabels"]["srv_port"], "443");
    assert!(v["commonLabels"].get("srv_ip").is_none());
    assert_eq!(v["alerts"].as_array().unwrap().len(), 2);
    assert_eq!(v["alerts"][1]["labels"]["srv_ip"], "175.16.199.2");
    assert_eq!(v["alerts"][0]["fingerprint"].as_str().unwrap().len(), 16);
}

#[test]
fn syslog_messages_follow_rfc5424() {
    let h = Header {
        facility: 16,
        hostname: "probe1".into(),
        app_name: "flowhook".into(),
        procid: 42,
    };
    let m = String::from_utf8(h.alert(&rec(0xabc, "175.16.199.1", Some("suspicious_country"))))
        .unwrap();
    // local0 (16) * 8 + warning (4)
    assert!(
        m.starts_with("<132>1 2023-11-14T22:13:20.123Z probe1 flowhook 42 alert [flowhook@32473 script=\"suspicious_countries\" status=\"suspicious_country\" severity=\"warning\" score=\"50\""),
        "{m}"
    );
    assert!(m.contains(" flow_key=\"0000000000000abc\""), "{m}");
    assert!(
        m.contains(" info=\"{\\\"srv_country\\\":\\\"CN\\\"}\"] "),
        "{m}"
    );
    assert!(
        m.ends_with("] suspicious_country: server in \"CN\"] (TCP 10.0.0.1:50000 -> 175.16.199.1:443 (TLS), 1200 bytes, 9 packets, exporter 192.0.2.1)"),
        "{m}"
    );
    let e = String::from_utf8(h.event(b"{\"event\":\"flowEnd\"}")).unwrap();
    assert!(e.starts_with("<134>1 "), "{e}");
    assert!(
        e.ends_with(" probe1 flowhook 42 event - {\"event\":\"flowEnd\"}"),
        "{e}"
    );
    assert_eq!(syslog_severity("info"), 6);
    assert_eq!(syslog_severity("emergency"), 0);
}

/// A sink that fails `fail` times, then records what it got.
struct Flaky {
    fail: usize,
    got: Arc<std::sync::Mutex<Vec<u64>>>,
}

impl Deliver for Flaky {
    type Batch = Vec<u64>;
    fn prepare(&mut self, items: Vec<Item>) -> Option<(Vec<u64>, usize)> {
        let keys: Vec<u64> = items
            .into_iter()
            .filter_map(|i| match i {
                Item::FlowEnded(k) => Some(k),
                _ => None,
            })
            .collect();
        let n = keys.len();
        Some((keys, n))
    }
    fn send(&mut self, batch: &mut Vec<u64>) -> Result<(), super::queue::Failure> {
        if self.fail > 0 {
            self.fail -= 1;
            return Err(super::queue::Failure {
                code: "connect",
                retry: true,
                detail: "down".into(),
                status: None,
            });
        }
        self.got.lock().unwrap().extend(batch.iter());
        Ok(())
    }
}

#[test]
fn a_full_queue_drops_its_oldest_and_delivery_retries() {
    let q = Arc::new(Queue::new(
        3,
        DeliveryTelemetry::new("webhook", "http://unit.test/q"),
    ));
    for k in 0..5 {
        q.push(Item::FlowEnded(k));
    }
    assert_eq!(q.depth(), 3);
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let t = super::queue::spawn(
        "webhook",
        q.clone(),
        Flaky {
            fail: 2,
            got: got.clone(),
        },
        10,
        std::time::Duration::ZERO,
        std::time::Duration::from_millis(500),
    )
    .unwrap();
    // two failures, then the three newest arrive, in order
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while got.lock().unwrap().len() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(*got.lock().unwrap(), vec![2, 3, 4]);
    assert_eq!(q.depth(), 0);
    // after close nothing is taken in, and the thread ends
    q.close(std::time::Instant::now() + std::time::Duration::from_secs(1));
    q.push(Item::FlowEnded(9));
    t.join().unwrap();
    assert_eq!(*got.lock().unwrap(), vec![2, 3, 4]);
}

#[test]
fn shutdown_gives_up_at_the_deadline() {
    let q = Arc::new(Queue::new(
        10,
        DeliveryTelemetry::new("webhook", "http://unit.test/deadline"),
    ));
    q.push(Item::FlowEnded(1));
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let t = super::queue::spawn(
        "webhook",
        q.clone(),
        Flaky {
            fail: usize::MAX,
            got: got.clone(),
        },
        10,
        std::time::Duration::ZERO,
        std::time::Duration::from_secs(30),
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let started = std::time::Instant::now();
    q.close(started + std::time::Duration::from_millis(300));
    t.join().unwrap();
    // the 30 s backoff did not hold the shutdown
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(got.lock().unwrap().is_empty());
}
