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
use std::hash::{Hash, Hasher};

use serde_json::{Value, json};

use super::http::{Client, now_ms, rfc3339};
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
        rec.message.clone()
    };
    BTreeMap::from([
        ("summary", summary),
        ("description", rec.flow_summary()),
        ("info", rec.info.to_string()),
    ])
}

/// Alertmanager's identity of an alert: its label set.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    labels.hash(&mut h);
    h.finish()
}

struct Live {
    /// Flows that raised it and have not ended.
    flows: u32,
    alert: Value,
}

pub struct Alertmanager {
    client: Client,
    static_labels: BTreeMap<String, String>,
    resolve_ms: i64,
    track: bool,
    max_tracked: usize,
    by_flow: HashMap<u64, Vec<u64>>,
    live: HashMap<u64, Live>,
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

    fn remember(&mut self, flow: u64, fp: u64, alert: &Value) {
        if !self.by_flow.contains_key(&flow) && self.by_flow.len() >= self.max_tracked {
            // resolves by its endsAt instead
            return;
        }
        let fps = self.by_flow.entry(flow).or_default();
        let live = self.live.entry(fp).or_insert(Live {
            flows: 0,
            alert: Value::Null,
        });
        if !fps.contains(&fp) {
            fps.push(fp);
            live.flows += 1;
        }
        live.alert = alert.clone();
    }

    /// Alerts whose last flow was `flow`, resolved now.
    fn resolve(&mut self, flow: u64, now: i64, out: &mut Vec<Value>) {
        for fp in self.by_flow.remove(&flow).unwrap_or_default() {
            let Some(live) = self.live.get_mut(&fp) else {
                continue;
            };
            live.flows -= 1;
            if live.flows > 0 {
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
    type Batch = Vec<u8>;

    fn prepare(&mut self, items: Vec<Item>) -> Option<(Vec<u8>, usize)> {
        let now = now_ms();
        let mut out = Vec::with_capacity(items.len());
        for it in items {
            match it {
                Item::Alert(rec) => {
                    let (fp, v) = self.firing(&rec, now);
                    if self.track {
                        self.remember(rec.flow_key, fp, &v);
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
        Some((
            serde_json::to_vec(&out).unwrap_or_else(|_| b"[]".to_vec()),
            n,
        ))
    }

    fn send(&mut self, body: &mut Vec<u8>) -> Result<(), Failure> {
        self.client.post(body)
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
