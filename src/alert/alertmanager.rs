//! Alertmanager sink: alerts POSTed to `/api/v2/alerts`.
//!
//! In: queued [`Item`]s (alerts; ends of flows that alerted, when
//! `resolve_on_flow_end`). Out: JSON arrays of Alertmanager alerts. Each
//! alert's labels identify it (`alertname` = status key or script, `script`,
//! `severity`, `exporter`, `cli_ip`, `srv_ip`, `srv_port`, `proto_l4`,
//! `proto_l7`, plus the configured static labels), so the flows of one
//! (client, server, port) pair that raise the same status make one alert.
//! `endsAt` lies `resolve_timeout` ahead: the alert resolves by itself
//! unless raised again. With `resolve_on_flow_end` the sink remembers which
//! flows raised which alert (at most `max_tracked_flows` flows) and sends the
//! alert again with `endsAt` = now once the last of them has ended.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use super::http::{Chunked, Client, now_ms, rfc3339};
use super::queue::{Deliver, Failure};
use super::{AlertRecord, Item};
use crate::config::AlertmanagerConfig;

/// The labels of `rec`, with `extra` (static labels) added.
pub fn labels(rec: &AlertRecord, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut l = extra.clone();
    for (k, v) in [
        ("alertname", rec.name().to_string()),
        ("script", rec.script.to_string()),
        ("severity", rec.severity.to_string()),
        ("exporter", rec.exporter.to_string()),
        ("cli_ip", rec.cli_ip.to_string()),
        ("srv_ip", rec.srv_ip.to_string()),
        ("srv_port", rec.srv_port.to_string()),
        ("proto_l4", rec.l4().into_owned()),
        ("proto_l7", rec.l7.to_string()),
    ] {
        l.insert(k.to_string(), v);
    }
    l
}

/// The annotations of `rec`: `summary` (the script's message, else the
/// alert's name), `description` (the flow on one line), `info` (JSON).
pub fn annotations(rec: &AlertRecord) -> BTreeMap<&'static str, String> {
    let summary = if rec.message.is_empty() {
        rec.name().to_string()
    } else {
        rec.message().into_owned()
    };
    BTreeMap::from([
        ("summary", summary),
        ("description", rec.flow_summary()),
        ("info", rec.info_text()),
    ])
}

/// Alertmanager's identity of an alert: the fingerprint Prometheus computes
/// for a label set (FNV-1a 64 over the names in order and their values,
/// each followed by the byte 0xff), so it equals the `fingerprint`
/// Alertmanager reports.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> u64 {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    let mut h = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for (k, v) in labels {
        add(k.as_bytes());
        add(&[0xff]);
        add(v.as_bytes());
        add(&[0xff]);
    }
    h
}

struct Live {
    /// Tracked flows that raised it and have not ended.
    flows: u32,
    alert: Value,
    /// When it was last raised (wall clock, ms).
    last_ms: i64,
    /// A flow that could not be tracked raised it too: it resolves by its `endsAt`.
    untracked: bool,
}

pub struct Alertmanager {
    client: Client,
    static_labels: BTreeMap<String, String>,
    resolve_ms: i64,
    track: bool,
    max_tracked: usize,
    /// Tracked flow → the alerts it raised, and when it last raised one.
    by_flow: HashMap<u64, (Vec<u64>, i64)>,
    live: HashMap<u64, Live>,
    last_sweep: i64,
}

impl Alertmanager {
    pub fn new(client: Client, cfg: &AlertmanagerConfig) -> Self {
        Alertmanager {
            client,
            static_labels: cfg.labels.clone(),
            resolve_ms: cfg.resolve_timeout.as_millis() as i64,
            track: cfg.resolve_on_flow_end,
            max_tracked: cfg.max_tracked_flows,
            by_flow: HashMap::new(),
            live: HashMap::new(),
            last_sweep: 0,
        }
    }

    /// The Alertmanager alert for `rec`, firing until `resolve_timeout` from now.
    fn firing(&self, rec: &AlertRecord, now: i64) -> (u64, Value) {
        let labels = labels(rec, &self.static_labels);
        let fp = fingerprint(&labels);
        let v = json!({
            "labels": labels,
            "annotations": annotations(rec),
            "startsAt": rfc3339(rec.time_ms),
            "endsAt": rfc3339(rec.time_ms.max(now) + self.resolve_ms),
        });
        (fp, v)
    }

    /// Forgets flows that raised nothing for `resolve_timeout` (their
    /// alerts have resolved by `endsAt` already; their end may never come
    /// if its marker was dropped).
    fn sweep(&mut self, now: i64) {
        self.last_sweep = now;
        let horizon = now - self.resolve_ms;
        let live = &mut self.live;
        self.by_flow.retain(|_, (fps, last)| {
            if *last >= horizon {
                return true;
            }
            for fp in fps.iter() {
                if let Some(l) = live.get_mut(fp) {
                    l.flows = l.flows.saturating_sub(1);
                }
            }
            false
        });
        self.live
            .retain(|_, l| l.flows > 0 || (l.untracked && l.last_ms >= horizon));
    }

    fn remember(&mut self, flow: u64, fp: u64, alert: &Value, now: i64) {
        if !self.by_flow.contains_key(&flow) && self.by_flow.len() >= self.max_tracked {
            self.sweep(now);
        }
        let tracked = self.by_flow.contains_key(&flow) || self.by_flow.len() < self.max_tracked;
        let live = self.live.entry(fp).or_insert(Live {
            flows: 0,
            alert: Value::Null,
            last_ms: now,
            untracked: false,
        });
        live.alert = alert.clone();
        live.last_ms = now;
        if !tracked {
            // resolves by its endsAt; another flow's end must not resolve it early
            live.untracked = true;
            return;
        }
        let (fps, last) = self.by_flow.entry(flow).or_default();
        *last = now;
        if !fps.contains(&fp) {
            fps.push(fp);
            live.flows += 1;
        }
    }

    /// Alerts whose last flow was `flow`, resolved now.
    fn resolve(&mut self, flow: u64, now: i64, out: &mut Vec<Value>) {
        let Some((fps, _)) = self.by_flow.remove(&flow) else {
            return;
        };
        for fp in fps {
            let Some(live) = self.live.get_mut(&fp) else {
                continue;
            };
            live.flows = live.flows.saturating_sub(1);
            if live.flows > 0 || live.untracked {
                continue;
            }
            let Some(Live { mut alert, .. }) = self.live.remove(&fp) else {
                continue;
            };
            // endsAt may not precede startsAt (exporter clocks ahead of ours)
            let starts = alert["startsAt"].as_str().unwrap_or_default().to_string();
            let ends = rfc3339(now);
            alert["endsAt"] = Value::String(if ends < starts { starts } else { ends });
            out.push(alert);
        }
    }

    /// Flows remembered for `resolve_on_flow_end`.
    pub fn tracked(&self) -> usize {
        self.by_flow.len()
    }
}

impl Deliver for Alertmanager {
    type Batch = Chunked<Value>;

    fn prepare(&mut self, items: Vec<Item>) -> Option<(Chunked<Value>, usize)> {
        let now = now_ms();
        if self.track && now - self.last_sweep > 60_000 {
            self.sweep(now);
        }
        let mut out = Vec::with_capacity(items.len());
        for it in items {
            match it {
                Item::Alert(rec) => {
                    let (fp, v) = self.firing(&rec, now);
                    if self.track {
                        self.remember(rec.flow_key, fp, &v, now);
                    }
                    out.push(v);
                }
                Item::FlowEnded(key) => self.resolve(key, now, &mut out),
                Item::Event(_) => {}
            }
        }
        if out.is_empty() {
            return None;
        }
        let n = out.len();
        Some((Chunked::new(out), n))
    }

    fn send(&mut self, batch: &mut Chunked<Value>) -> Result<(), Failure> {
        batch.send(&self.client, |alerts| {
            serde_json::to_vec(alerts).unwrap_or_else(|_| b"[]".to_vec())
        })
    }

    fn left(&self, batch: &Chunked<Value>, _total: usize) -> usize {
        batch.left()
    }

    fn limit(&mut self, left: Option<std::time::Duration>) {
        self.client.set_limit(left);
    }
}

/// The v2 API endpoint for a configured URL (`http://am:9093` → `…/api/v2/alerts`).
pub fn endpoint(url: &str) -> String {
    let u = url.trim_end_matches('/');
    if u.ends_with("/api/v2/alerts") {
        u.to_string()
    } else {
        format!("{u}/api/v2/alerts")
    }
}
