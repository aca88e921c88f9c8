//! Alert delivery against real parts: softflowd exports sessions to servers
//! the generated City database places in CN; `flowhook serve` with the
//! shipped `suspicious_countries` script raises an alert per session, and
//! delivers it to
//! - a real Prometheus Alertmanager (Debian's `prometheus-alertmanager`),
//!   stopped and restarted mid-run: what was raised meanwhile arrives after
//!   it returns, flows go on meanwhile, nothing is dropped;
//! - a real rsyslog (its own configuration, UDP and TCP inputs), whose file
//!   the test parses as RFC 5424;
//! - HTTP receivers in the test: one that fails with 500 before it accepts
//!   (retried and counted), one that refuses with 400 (dropped and counted).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use common::serve::Serve;
use common::traffic::{softflowd_replay, tcp_sessions};
use common::{
    eventually, free_tcp_port, free_udp_port, have, http_get, samples, shipped_scripts, sum,
};

/// A child process killed when the test ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn metrics(serve: &Serve) -> Vec<common::Sample> {
    let (code, text) = http_get(&serve.metrics_addr(), "/metrics");
    assert_eq!(code, 200);
    samples(&text)
}

/// flowhook serving the shipped scripts with the City fixture, listening on `port`.
fn serve(dir: &Path, port: u16, extra: &[(&str, String)]) -> Serve {
    let geo = common::mmdb::write_all(dir);
    let mut env = vec![
        ("FLOWHOOK__INGEST__LISTEN", format!("127.0.0.1:{port}")),
        (
            "FLOWHOOK__OUTPUT__PATH",
            dir.join("out.jsonl").display().to_string(),
        ),
        ("FLOWHOOK__OUTPUT__EVENTS", "flowEnd".into()),
        ("FLOWHOOK__GEO__CITY_DB", geo.city.display().to_string()),
        ("FLOWHOOK__SCRIPTS__DIR", shipped_scripts()),
        ("FLOWHOOK__FLOW__END_GRACE_SECS", "0".into()),
    ];
    env.extend(extra.iter().cloned());
    Serve::start(&env)
}

/// Sessions from `clients` (10.1.0.x) to the CN servers `175.16.199.<n>`, and one to GB.
fn export(dir: &Path, port: u16, tag: &str, t0: u64, cn: &[u8]) -> Vec<(String, String)> {
    let mut pairs: Vec<((String, u16), (String, u16))> = cn
        .iter()
        .map(|n| {
            (
                (format!("10.1.0.{n}"), 40000 + u16::from(*n)),
                (format!("175.16.199.{n}"), 443),
            )
        })
        .collect();
    pairs.push((("10.1.0.99".into(), 40099), ("81.2.69.142".into(), 443)));
    let refs: Vec<_> = pairs
        .iter()
        .map(|((c, cp), (s, sp))| ((c.as_str(), *cp), (s.as_str(), *sp)))
        .collect();
    let t = tcp_sessions(t0, &refs);
    let pcap = dir.join(format!("{tag}.pcap"));
    std::fs::write(&pcap, &t.pcap).unwrap();
    softflowd_replay(&pcap, port, tag);
    cn.iter()
        .map(|n| (format!("10.1.0.{n}"), format!("175.16.199.{n}")))
        .collect()
}

// ---------------------------------------------------------------- Alertmanager

/// Routes everything to a receiver that notifies no one.
const AM_QUIET: &str =
    "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n";

fn start_alertmanager(dir: &Path, port: u16, config: &str) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = dir.join("am.yml");
    std::fs::write(&cfg, config).unwrap();
    let p = Proc(
        Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr = format!("127.0.0.1:{port}");
    eventually(30, "alertmanager ready", || {
        std::net::TcpStream::connect(&addr)
            .ok()
            .and_then(|_| (http_get(&addr, "/-/ready").0 == 200).then_some(()))
    });
    p
}

/// The firing alerts Alertmanager holds, by (cli_ip, srv_ip).
fn am_alerts(port: u16) -> BTreeMap<(String, String), Value> {
    let (code, body) = http_get(&format!("127.0.0.1:{port}"), "/api/v2/alerts");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let l = &a["labels"];
            (
                (
                    l["cli_ip"].as_str().unwrap().to_string(),
                    l["srv_ip"].as_str().unwrap().to_string(),
                ),
                a.clone(),
            )
        })
        .collect()
}

fn pairs_in(alerts: &BTreeMap<(String, String), Value>, want: &[(String, String)]) -> bool {
    want.iter().all(|p| alerts.contains_key(p))
}

#[test]
fn alerts_reach_alertmanager_and_survive_its_restart() {
    if !have("prometheus-alertmanager", "--version") || !have("softflowd", "-h") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let am_port = free_tcp_port();
    let mut am = Some(start_alertmanager(
        &dir.path().join("am1"),
        am_port,
        AM_QUIET,
    ));
    let port = free_udp_port();
    let serve = serve(
        dir.path(),
        port,
        &[
            (
                "FLOWHOOK__ALERTMANAGER__URL",
                format!("http://127.0.0.1:{am_port}"),
            ),
            (
                "FLOWHOOK__ALERTMANAGER__SCRIPTS",
                "suspicious_countries".into(),
            ),
            ("FLOWHOOK__ALERTMANAGER__LABELS__SITE", "lab".into()),
            ("FLOWHOOK__ALERTMANAGER__BACKOFF_MAX", "1s".into()),
            ("FLOWHOOK__ALERTMANAGER__RESOLVE_TIMEOUT", "10m".into()),
        ],
    );

    // one alert per (client, server) pair, with its labels and annotations
    let first = export(dir.path(), port, "h", 1_700_000_000, &[1, 2, 3]);
    let alerts = eventually(30, "the first alerts in Alertmanager", || {
        let a = am_alerts(am_port);
        pairs_in(&a, &first).then_some(a)
    });
    assert_eq!(alerts.len(), 3, "{alerts:#?}");
    for ((cli, srv), a) in &alerts {
        let l = &a["labels"];
        assert_eq!(l["alertname"], "suspicious_country", "{a}");
        assert_eq!(l["script"], "suspicious_countries");
        assert_eq!(l["severity"], "warning");
        assert_eq!(l["exporter"], "127.0.0.1");
        assert_eq!(l["srv_port"], "443");
        assert_eq!(l["proto_l4"], "TCP");
        assert!(l["proto_l7"].is_string());
        assert_eq!(l["site"], "lab");
        let ann = &a["annotations"];
        assert_eq!(ann["summary"], "flow with server in CN");
        let d = ann["description"].as_str().unwrap();
        assert!(
            d.starts_with(&format!("TCP {cli}:")) && d.contains(&format!("-> {srv}:443")),
            "{d}"
        );
        let info: Value = serde_json::from_str(ann["info"].as_str().unwrap()).unwrap();
        assert_eq!(info["srv_country"], "CN");
        // raised moments ago, firing for resolve_timeout (10 minutes)
        let t = |k: &str| humantime::parse_rfc3339(a[k].as_str().unwrap()).unwrap();
        let now = std::time::SystemTime::now();
        let ago = now.duration_since(t("startsAt")).unwrap();
        assert!(ago < Duration::from_secs(120), "{a}");
        let ahead = t("endsAt").duration_since(now).unwrap();
        assert!(
            ahead > Duration::from_secs(420) && ahead <= Duration::from_secs(600),
            "{a}"
        );
        assert_eq!(a["status"]["state"], "active");
        // flowhook computes Alertmanager's own fingerprint of the labels
        let labels: BTreeMap<String, String> = serde_json::from_value(l.clone()).unwrap();
        assert_eq!(
            a["fingerprint"].as_str().unwrap(),
            format!(
                "{:016x}",
                flowhook::alert::alertmanager::fingerprint(&labels)
            )
        );
    }

    // Alertmanager goes away; flows and scripts go on, alerts queue
    drop(am.take());
    let second = export(dir.path(), port, "i", 1_700_000_100, &[11, 12, 13, 14]);
    let out = dir.path().join("out.jsonl");
    eventually(30, "the second sessions' flowEnd lines", || {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        second
            .iter()
            .all(|(_, srv)| {
                text.lines()
                    .any(|l| l.contains("\"flowEnd\"") && l.contains(&format!("\"{srv}\"")))
            })
            .then_some(())
    });
    eventually(30, "failed attempts and queued alerts", || {
        let m = metrics(&serve);
        let f = [("sink", "alertmanager"), ("code", "connect")];
        (sum(&m, "flowhook_sink_failed_total", &f) >= 1.0
            && sum(&m, "flowhook_sink_queue_depth", &[("sink", "alertmanager")]) == 4.0)
            .then_some(())
    });

    // back on the same address, with empty memory: the queued alerts arrive
    let _am = start_alertmanager(&dir.path().join("am2"), am_port, AM_QUIET);
    let alerts = eventually(30, "the queued alerts in the new Alertmanager", || {
        let a = am_alerts(am_port);
        pairs_in(&a, &second).then_some(a)
    });
    assert_eq!(alerts.len(), 4, "{alerts:#?}");
    let m = metrics(&serve);
    let am_sink = [("sink", "alertmanager")];
    assert_eq!(sum(&m, "flowhook_sink_dropped_total", &am_sink), 0.0);
    assert_eq!(sum(&m, "flowhook_sink_sent_total", &am_sink), 7.0);
    assert_eq!(sum(&m, "flowhook_sink_queue_depth", &am_sink), 0.0);
    assert!(sum(&m, "flowhook_sink_request_duration_seconds_count", &am_sink) >= 3.0);
    assert!(serve.stop().success());
}

#[test]
fn alertmanager_resolves_alerts_when_their_flows_end() {
    if !have("prometheus-alertmanager", "--version") || !have("softflowd", "-h") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Alertmanager notifies this receiver, resolved alerts included
    let (hook, notes) = receiver(|_| 200);
    let am_port = free_tcp_port();
    let _am = start_alertmanager(
        &dir.path().join("am"),
        am_port,
        &format!(
            "route:\n  receiver: hook\n  group_by: [alertname, srv_ip]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: http://127.0.0.1:{hook}/am\n        send_resolved: true\n"
        ),
    );
    let port = free_udp_port();
    let serve = serve(
        dir.path(),
        port,
        &[
            (
                "FLOWHOOK__ALERTMANAGER__URL",
                format!("http://127.0.0.1:{am_port}"),
            ),
            (
                "FLOWHOOK__ALERTMANAGER__SCRIPTS",
                "suspicious_countries".into(),
            ),
            ("FLOWHOOK__ALERTMANAGER__RESOLVE_ON_FLOW_END", "true".into()),
            // the flows end (FIN) a few seconds after they alerted, so
            // Alertmanager has notified them as firing before they resolve
            ("FLOWHOOK__FLOW__END_GRACE_SECS", "6".into()),
        ],
    );
    let cn = export(dir.path(), port, "r", 1_700_000_000, &[5, 6]);
    let starts_of = |srv: &str| {
        notes
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, b)| {
                let v: Value = serde_json::from_slice(b).unwrap();
                v["alerts"].as_array().unwrap().clone()
            })
            .find(|a| a["labels"]["srv_ip"] == srv)
            .map(|a| a["startsAt"].as_str().unwrap().to_string())
            .unwrap()
    };
    // (srv_ip, status) pairs Alertmanager notified
    let seen = || {
        let mut out = Vec::new();
        for (_, body) in notes.lock().unwrap().iter() {
            let v: Value = serde_json::from_slice(body).unwrap();
            for a in v["alerts"].as_array().unwrap() {
                out.push((
                    a["labels"]["srv_ip"].as_str().unwrap().to_string(),
                    a["status"].as_str().unwrap().to_string(),
                    a["endsAt"].as_str().unwrap().to_string(),
                ));
            }
        }
        out
    };
    let notified = eventually(45, "resolved notifications", || {
        let s = seen();
        cn.iter()
            .all(|(_, srv)| s.iter().any(|(ip, st, _)| ip == srv && st == "resolved"))
            .then_some(s)
    });
    for (_, srv) in &cn {
        let firing = notified
            .iter()
            .position(|(ip, st, _)| ip == srv && st == "firing");
        let resolved = notified
            .iter()
            .position(|(ip, st, _)| ip == srv && st == "resolved");
        assert!(firing < resolved && firing.is_some(), "{notified:?}");
        // resolved at the flow's end (6 s of end grace), not by resolve_timeout (5 minutes)
        let ends = humantime::parse_rfc3339(&notified[resolved.unwrap()].2).unwrap();
        let starts = humantime::parse_rfc3339(&starts_of(srv)).unwrap();
        let lasted = ends.duration_since(starts).unwrap();
        assert!(lasted < Duration::from_secs(120), "{lasted:?} {notified:?}");
    }
    // and Alertmanager lists them no more
    assert!(am_alerts(am_port).is_empty());
    assert!(serve.stop().success());
}

#[test]
fn shipped_alertmanager_routes_check_out() {
    if !have("amtool", "--version") {
        return;
    }
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/alertmanager/alertmanager.yml");
    let out = Command::new("amtool")
        .arg("check-config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // where flowhook's alerts go, by their labels
    for (labels, receiver) in [
        (
            &[
                "alertname=suspicious_country",
                "script=suspicious_countries",
                "severity=warning",
            ][..],
            "security",
        ),
        (
            &[
                "alertname=blocklisted_host",
                "script=blocklist",
                "severity=critical",
            ],
            "security-pager",
        ),
        (
            &[
                "alertname=elephant_flow",
                "script=elephant_flow",
                "severity=info",
            ],
            "archive",
        ),
        (
            &[
                "alertname=long_lived",
                "script=long_lived",
                "severity=warning",
            ],
            "netops",
        ),
        (
            &["alertname=FlowhookAlertSinkFailing", "severity=warning"],
            "platform",
        ),
    ] {
        let out = Command::new("amtool")
            .args(["config", "routes", "test", "--config.file"])
            .arg(&cfg)
            .args(labels)
            .output()
            .unwrap();
        let got = String::from_utf8_lossy(&out.stdout);
        assert_eq!(got.trim(), receiver, "{labels:?}");
    }
}

// ---------------------------------------------------------------------- syslog

/// One RFC 5424 message, parsed.
#[derive(Debug)]
struct Syslog5424 {
    pri: u32,
    timestamp: String,
    hostname: String,
    app: String,
    procid: String,
    msgid: String,
    sd: BTreeMap<String, String>,
    sd_id: String,
    msg: String,
}

/// Parses `<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD [MSG]` (RFC 5424 section 6).
fn parse_5424(s: &str) -> Result<Syslog5424, String> {
    let rest = s.strip_prefix('<').ok_or("no PRI")?;
    let (pri, rest) = rest.split_once('>').ok_or("PRI not closed")?;
    let pri: u32 = pri.parse().map_err(|_| "PRI not a number")?;
    if pri > 191 {
        return Err("PRI out of range".into());
    }
    let rest = rest.strip_prefix("1 ").ok_or("VERSION is not 1")?;
    let mut parts = rest.splitn(6, ' ');
    let mut next = || parts.next().ok_or("header cut short").map(str::to_string);
    let (timestamp, hostname, app, procid, msgid, rest) =
        (next()?, next()?, next()?, next()?, next()?, next()?);
    humantime::parse_rfc3339(&timestamp).map_err(|e| format!("TIMESTAMP {timestamp}: {e}"))?;
    for f in [&hostname, &app, &procid, &msgid] {
        if f.is_empty() || !f.bytes().all(|b| (33..=126).contains(&b)) {
            return Err(format!("bad header field `{f}`"));
        }
    }
    let mut sd = BTreeMap::new();
    let mut sd_id = String::new();
    let msg;
    if let Some(r) = rest.strip_prefix("- ") {
        msg = r.to_string();
    } else {
        let mut c = rest.strip_prefix('[').ok_or("no SD")?.chars().peekable();
        while let Some(&ch) = c.peek() {
            if ch == ' ' || ch == ']' {
                break;
            }
            sd_id.push(ch);
            c.next();
        }
        loop {
            match c.next() {
                Some(']') => break,
                Some(' ') => {}
                _ => return Err("SD element not closed".into()),
            }
            let mut name = String::new();
            for ch in c.by_ref() {
                if ch == '=' {
                    break;
                }
                name.push(ch);
            }
            if c.next() != Some('"') {
                return Err(format!("SD-PARAM {name}: no opening quote"));
            }
            let mut value = String::new();
            loop {
                match c.next().ok_or("SD-PARAM not closed")? {
                    '\\' => value.push(c.next().ok_or("dangling escape")?),
                    '"' => break,
                    ']' => return Err("unescaped ] in SD-PARAM".into()),
                    ch => value.push(ch),
                }
            }
            sd.insert(name, value);
        }
        let r: String = c.collect();
        msg = r.strip_prefix(' ').unwrap_or(&r).to_string();
    }
    Ok(Syslog5424 {
        pri,
        timestamp,
        hostname,
        app,
        procid,
        msgid,
        sd,
        sd_id,
        msg,
    })
}

/// rsyslogd, also where `/usr/sbin` is not on the PATH.
fn rsyslogd() -> &'static str {
    if Path::new("/usr/sbin/rsyslogd").exists() {
        "/usr/sbin/rsyslogd"
    } else {
        "rsyslogd"
    }
}

/// Runs rsyslogd with `conf` (a config body; `{out}` and `{work}` filled in)
/// and waits until it accepts TCP connections on `tcp`.
fn run_rsyslog(dir: &Path, conf: &str, tcp: u16) -> (Proc, PathBuf) {
    let out = dir.join("received.log");
    let work = dir.join("rsyslog-work");
    std::fs::create_dir_all(&work).unwrap();
    let path = dir.join("rsyslog.conf");
    std::fs::write(
        &path,
        conf.replace("{out}", &out.display().to_string())
            .replace("{work}", &work.display().to_string()),
    )
    .unwrap();
    let p = Proc(
        Command::new(rsyslogd())
            .args(["-n", "-f"])
            .arg(&path)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    eventually(30, "rsyslog listening on TCP", || {
        std::net::TcpStream::connect(("127.0.0.1", tcp)).ok()
    });
    (p, out)
}

fn start_rsyslog(dir: &Path, udp: u16, tcp: u16) -> (Proc, PathBuf) {
    let conf = format!(
        r#"global(workDirectory="{{work}}")
module(load="imudp")
module(load="imtcp")
template(name="seen" type="string" string="%inputname%|%protocol-version%|%app-name%|%msgid%|%rawmsg%\n")
ruleset(name="flowhook") {{
  action(type="omfile" file="{{out}}" template="seen" flushOnTXEnd="on" asyncWriting="off")
}}
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="flowhook")
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="flowhook")
"#
    );
    run_rsyslog(dir, &conf, tcp)
}

#[test]
fn alerts_and_events_reach_rsyslog_over_udp_and_tcp() {
    if !have(rsyslogd(), "-v") || !have("softflowd", "-h") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (udp, tcp) = (free_udp_port(), free_tcp_port());
    let (_rsyslog, received) = start_rsyslog(dir.path(), udp, tcp);
    let port = free_udp_port();
    let serve = serve(
        dir.path(),
        port,
        &[
            (
                "FLOWHOOK__SYSLOG__TARGET",
                format!("udp://127.0.0.1:{udp},tcp://127.0.0.1:{tcp}"),
            ),
            ("FLOWHOOK__SYSLOG__FACILITY", "local3".into()),
            ("FLOWHOOK__SYSLOG__APP_NAME", "flowhook-test".into()),
            ("FLOWHOOK__SYSLOG__HOSTNAME", "probe1".into()),
            ("FLOWHOOK__SYSLOG__EVENTS", "true".into()),
        ],
    );
    let cn = export(dir.path(), port, "s", 1_700_000_000, &[1, 2]);
    // per input: the alert of each CN session and the three flowEnd events
    let seen = eventually(30, "alerts and events in rsyslog's file", || {
        let text = std::fs::read_to_string(&received).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let count = |input: &str, msgid: &str| {
            lines
                .iter()
                .filter(|l| {
                    l.starts_with(&format!("{input}|")) && l.contains(&format!("|{msgid}|"))
                })
                .count()
        };
        (["imudp", "imtcp"]
            .iter()
            .all(|i| count(i, "alert") >= 2 && count(i, "event") >= 3))
        .then_some(lines)
    });
    let mut alerts = BTreeMap::<&str, BTreeSet<(String, String)>>::new();
    for line in &seen {
        let mut f = line.splitn(5, '|');
        let (input, version, app, msgid, raw) = (
            f.next().unwrap(),
            f.next().unwrap(),
            f.next().unwrap(),
            f.next().unwrap(),
            f.next().unwrap(),
        );
        // rsyslog itself parsed it as RFC 5424
        assert_eq!((version, app), ("1", "flowhook-test"), "{line}");
        let m = parse_5424(raw).unwrap_or_else(|e| panic!("{e}: {raw}"));
        assert_eq!(m.msgid, msgid);
        assert_eq!(
            (m.hostname.as_str(), m.app.as_str()),
            ("probe1", "flowhook-test")
        );
        assert!(m.procid.parse::<u32>().is_ok(), "{m:?}");
        match msgid {
            "alert" => {
                assert_eq!(m.sd_id, "flowhook@32473");
                if m.sd["script"] != "suspicious_countries" {
                    continue;
                }
                // local3 (19) * 8 + warning (4)
                assert_eq!(m.pri, 19 * 8 + 4, "{m:?}");
                let at = humantime::parse_rfc3339(&m.timestamp).unwrap();
                let age = std::time::SystemTime::now().duration_since(at).unwrap();
                assert!(age < Duration::from_secs(120), "{m:?}");
                assert_eq!(m.sd["status"], "suspicious_country");
                assert_eq!(m.sd["severity"], "warning");
                assert_eq!(m.sd["srv_port"], "443");
                assert_eq!(m.sd["proto_l4"], "TCP");
                assert_eq!(m.sd["exporter"], "127.0.0.1");
                let info: Value = serde_json::from_str(&m.sd["info"]).unwrap();
                assert_eq!(info["srv_country"], "CN");
                assert!(
                    m.msg
                        .starts_with("suspicious_country: flow with server in CN (TCP "),
                    "{m:?}"
                );
                alerts
                    .entry(if input == "imudp" { "udp" } else { "tcp" })
                    .or_default()
                    .insert((m.sd["cli_ip"].clone(), m.sd["srv_ip"].clone()));
            }
            "event" => {
                assert_eq!(m.pri, 19 * 8 + 6, "{m:?}");
                let ev: Value = serde_json::from_str(&m.msg).unwrap();
                assert_eq!(ev["event"], "flowEnd");
            }
            other => panic!("unexpected MSGID {other}"),
        }
    }
    let want: BTreeSet<_> = cn.into_iter().collect();
    assert_eq!(alerts.get("udp"), Some(&want));
    assert_eq!(alerts.get("tcp"), Some(&want));
    let m = metrics(&serve);
    assert_eq!(
        sum(&m, "flowhook_sink_dropped_total", &[("sink", "syslog")]),
        0.0
    );
    assert!(sum(&m, "flowhook_sink_sent_total", &[("sink", "syslog")]) >= 10.0);
    assert!(serve.stop().success());
}

// --------------------------------------------------------------------- webhook

/// What an HTTP receiver got: (headers lower-cased, body) per request.
type Requests = Arc<Mutex<Vec<(BTreeMap<String, String>, Vec<u8>)>>>;

/// An HTTP/1.1 receiver answering `status(n)` to its n-th request (from 0).
fn receiver(status: impl Fn(usize) -> u16 + Send + Sync + 'static) -> (u16, Requests) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got: Requests = Default::default();
    let g = got.clone();
    let status = Arc::new(status);
    std::thread::spawn(move || {
        for conn in l.incoming().map_while(Result::ok) {
            let (g, status) = (g.clone(), status.clone());
            std::thread::spawn(move || {
                let mut w = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut headers = BTreeMap::new();
                    loop {
                        let mut h = String::new();
                        r.read_line(&mut h).unwrap();
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        let (k, v) = h.split_once(':').unwrap();
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                    }
                    headers.insert(":request".into(), line.trim_end().to_string());
                    let n: usize = headers["content-length"].parse().unwrap();
                    let mut body = vec![0; n];
                    r.read_exact(&mut body).unwrap();
                    let i = {
                        let mut g = g.lock().unwrap();
                        g.push((headers, body));
                        g.len() - 1
                    };
                    let code = status(i);
                    let reply = if code == 200 { "ok" } else { "try later" };
                    write!(
                        w,
                        "HTTP/1.1 {code} X\r\nContent-Length: {}\r\n\r\n{reply}",
                        reply.len()
                    )
                    .unwrap();
                }
            });
        }
    });
    (port, got)
}

#[test]
fn webhooks_get_json_alerts_with_retries_and_refusals_counted() {
    if !have("softflowd", "-h") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // fails its first three requests, then accepts
    let (ok_port, ok_got) = receiver(|n| if n < 3 { 500 } else { 200 });
    // refuses everything
    let (bad_port, bad_got) = receiver(|_| 400);
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let port = free_udp_port();
    let serve = serve(
        dir.path(),
        port,
        &[
            (
                "FLOWHOOK__WEBHOOK__URL",
                format!("http://127.0.0.1:{ok_port}/hook,http://127.0.0.1:{bad_port}/hook"),
            ),
            ("FLOWHOOK__WEBHOOK__SCRIPTS", "suspicious_countries".into()),
            ("FLOWHOOK__WEBHOOK__MIN_SEVERITY", "warning".into()),
            ("FLOWHOOK__WEBHOOK__BACKOFF_MAX", "1s".into()),
            ("FLOWHOOK__WEBHOOK__MAX_BATCH", "2".into()),
            (
                "FLOWHOOK__WEBHOOK__BEARER_TOKEN_FILE",
                token.display().to_string(),
            ),
            ("FLOWHOOK__WEBHOOK__HEADERS__X_SITE", "lab".into()),
        ],
    );
    let cn = export(dir.path(), port, "w", 1_700_000_000, &[1, 2, 3]);
    // labels leave webhook paths out (they often hold tokens)
    let ok_target = format!("http://127.0.0.1:{ok_port}/…");
    let bad_target = format!("http://127.0.0.1:{bad_port}/…");
    let m = eventually(30, "every alert delivered or refused", || {
        let m = metrics(&serve);
        (sum(&m, "flowhook_sink_sent_total", &[("target", &ok_target)]) == 3.0
            && sum(
                &m,
                "flowhook_sink_dropped_total",
                &[("target", &bad_target)],
            ) == 3.0)
            .then_some(m)
    });
    // the failing receiver: three 500s retried, then everything arrived
    let f = |t: &str, code: &str| {
        sum(
            &m,
            "flowhook_sink_failed_total",
            &[("target", t), ("code", code)],
        )
    };
    assert_eq!(f(&ok_target, "http_5xx"), 3.0);
    assert_eq!(
        sum(&m, "flowhook_sink_dropped_total", &[("target", &ok_target)]),
        0.0
    );
    // the refusing one: no retry, every alert dropped as rejected
    assert!(f(&bad_target, "http_4xx") >= 2.0);
    assert_eq!(
        sum(
            &m,
            "flowhook_sink_dropped_total",
            &[("target", &bad_target), ("reason", "rejected")]
        ),
        3.0
    );
    assert_eq!(
        bad_got.lock().unwrap().len() as f64,
        f(&bad_target, "http_4xx")
    );
    let got = ok_got.lock().unwrap();
    let mut pairs = BTreeSet::new();
    for (i, (h, body)) in got.iter().enumerate() {
        assert_eq!(h[":request"], "POST /hook HTTP/1.1");
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["authorization"], "Bearer s3cret");
        // environment keys cannot hold `-`: TOML can (`headers = { "X-Site" = "lab" }`)
        assert_eq!(h["x_site"], "lab");
        let v: Value = serde_json::from_slice(body).unwrap();
        let list = v.as_array().unwrap();
        assert!((1..=2).contains(&list.len()), "{v}");
        for a in list {
            // each element is the alert line of the JSON output
            assert_eq!(a["event"], "alert");
            assert_eq!(a["script"], "suspicious_countries");
            assert_eq!(a["status"], "suspicious_country");
            assert_eq!(a["info"]["srv_country"], "CN");
            if i >= 3 {
                pairs.insert((
                    a["flow"]["cli.ip"].as_str().unwrap().to_string(),
                    a["flow"]["srv.ip"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    assert_eq!(pairs, cn.into_iter().collect());
    // the same alerts are in the JSON output
    let out = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    assert_eq!(
        out.lines()
            .filter(
                |l| l.contains("\"suspicious_country\"") && l.starts_with("{\"event\":\"alert\"")
            )
            .count(),
        3
    );
    drop(got);
    assert!(serve.stop().success());
}

// ------------------------------------------------------------------------- TLS

/// A private CA and a certificate it signed for localhost / 127.0.0.1:
/// (ca.pem, server.pem, server.key).
fn private_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=flowhook test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

/// rsyslog's TLS network driver (Debian's `rsyslog-gnutls`).
fn have_gtls() -> bool {
    let found = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ]
    .iter()
    .any(|d| Path::new(d).join("rsyslog/lmnsd_gtls.so").exists());
    if !found {
        assert!(
            std::env::var("CI").map(|v| v != "true").unwrap_or(true),
            "rsyslog-gnutls is not installed; ./run-tests.sh installs it"
        );
        eprintln!("SKIPPED: rsyslog-gnutls not installed");
    }
    found
}

#[test]
fn tls_syslog_reaches_rsyslog_with_a_private_ca_and_unknown_issuers_are_refused() {
    if !have(rsyslogd(), "-v")
        || !have("softflowd", "-h")
        || !have("openssl", "version")
        || !have_gtls()
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(dir.path());
    let tls = free_tcp_port();
    let conf = format!(
        r#"global(workDirectory="{{work}}" DefaultNetstreamDriverCAFile="{ca}" DefaultNetstreamDriverCertFile="{cert}" DefaultNetstreamDriverKeyFile="{key}")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
template(name="seen" type="string" string="%inputname%|%protocol-version%|%app-name%|%msgid%|%rawmsg%\n")
ruleset(name="flowhook") {{
  action(type="omfile" file="{{out}}" template="seen" flushOnTXEnd="on" asyncWriting="off")
}}
input(type="imtcp" address="127.0.0.1" port="{tls}" ruleset="flowhook")
"#,
        ca = ca.display(),
        cert = cert.display(),
        key = key.display(),
    );
    let (rsyslog, received) = run_rsyslog(dir.path(), &conf, tls);
    let port = free_udp_port();
    let serve = serve(
        dir.path(),
        port,
        &[
            ("FLOWHOOK__SYSLOG__TARGET", format!("tls://localhost:{tls}")),
            ("FLOWHOOK__SYSLOG__TLS__CA_FILE", ca.display().to_string()),
            ("FLOWHOOK__SYSLOG__SCRIPTS", "suspicious_countries".into()),
            // the same listener as an HTTPS endpoint, without the private CA:
            // the handshake must fail on the certificate
            (
                "FLOWHOOK__WEBHOOK__URL",
                format!("https://localhost:{tls}/hook"),
            ),
            ("FLOWHOOK__WEBHOOK__BACKOFF_MAX", "1s".into()),
        ],
    );
    let cn = export(dir.path(), port, "t", 1_700_000_000, &[7, 8]);
    let lines = eventually(30, "TLS syslog alerts in rsyslog's file", || {
        let text = std::fs::read_to_string(&received).unwrap_or_default();
        let l: Vec<String> = text
            .lines()
            .filter(|l| l.contains("|alert|"))
            .map(str::to_string)
            .collect();
        (l.len() >= 2).then_some(l)
    });
    let mut got = BTreeSet::new();
    for l in &lines {
        let raw = l.splitn(5, '|').nth(4).unwrap();
        let m = parse_5424(raw).unwrap_or_else(|e| panic!("{e}: {raw}"));
        assert!(l.starts_with("imtcp|1|flowhook|alert|"), "{l}");
        got.insert((m.sd["cli_ip"].clone(), m.sd["srv_ip"].clone()));
    }
    assert_eq!(got, cn.into_iter().collect());
    // the collector restarts: the old connection is noticed as closed and
    // replaced, and what is raised meanwhile arrives
    drop(rsyslog);
    let (_rsyslog, _) = run_rsyslog(dir.path(), &conf, tls);
    let later = export(dir.path(), port, "u", 1_700_000_100, &[9, 10]);
    eventually(30, "alerts after rsyslog's restart", || {
        let text = std::fs::read_to_string(&received).unwrap_or_default();
        later
            .iter()
            .all(|(_, srv)| text.contains(&format!("srv_ip=\"{srv}\"")))
            .then_some(())
    });
    let m = eventually(30, "the webhook's TLS failures", || {
        let m = metrics(&serve);
        (sum(
            &m,
            "flowhook_sink_failed_total",
            &[("sink", "webhook"), ("code", "tls")],
        ) >= 2.0)
            .then_some(m)
    });
    assert_eq!(
        sum(&m, "flowhook_sink_sent_total", &[("sink", "webhook")]),
        0.0
    );
    // the closed connection was noticed before writing: nothing failed or got lost
    assert_eq!(
        sum(&m, "flowhook_sink_dropped_total", &[("sink", "syslog")]),
        0.0
    );
    assert_eq!(
        sum(&m, "flowhook_sink_sent_total", &[("sink", "syslog")]),
        4.0
    );
    assert!(serve.stop().success());
}
