//! Webhook sink: alerts POSTed as JSON to HTTP endpoints.
//!
//! In: queued alerts. Out: one request per batch (at most `max_batch`
//! alerts). `format = "flowhook"`: a JSON array of alerts, each exactly the
//! alert line of the JSON output. `format = "alertmanager"`: the payload
//! Alertmanager's webhook receiver sends (version 4: `status`, `receiver`,
//! `groupLabels`, `commonLabels`, `alerts` with labels, annotations, times
//! and fingerprints), so receivers written for Alertmanager take it as is.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::alertmanager::{annotations, fingerprint, labels};
use super::http::{Chunked, Client};
use super::queue::{Deliver, Failure};
use super::{AlertRecord, Item};
use crate::config::WebhookFormat;

pub struct Webhook {
    client: Client,
    format: WebhookFormat,
}

impl Webhook {
    pub fn new(client: Client, format: WebhookFormat) -> Self {
        Webhook { client, format }
    }
}

/// A JSON array of the alerts' output lines.
pub fn flowhook_body(alerts: &[&AlertRecord]) -> Vec<u8> {
    let mut b = Vec::with_capacity(alerts.iter().map(|a| a.json.len() + 1).sum::<usize>() + 2);
    b.push(b'[');
    for (i, a) in alerts.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        b.extend_from_slice(a.json.as_bytes());
    }
    b.push(b']');
    b
}

/// Alertmanager's webhook payload (version 4) for `alerts`.
pub fn alertmanager_body(alerts: &[&AlertRecord]) -> Vec<u8> {
    let none = BTreeMap::new();
    let all: Vec<BTreeMap<String, String>> = alerts.iter().map(|a| labels(a, &none)).collect();
    // labels every alert has with the same value
    let mut common = all.first().cloned().unwrap_or_default();
    common.retain(|k, v| all.iter().all(|l| l.get(k) == Some(v)));
    let group: BTreeMap<&str, &String> = common
        .get("alertname")
        .map(|n| BTreeMap::from([("alertname", n)]))
        .unwrap_or_default();
    let group_key = format!(
        "{{}}:{{{}}}",
        group
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let list: Vec<Value> = alerts
        .iter()
        .zip(&all)
        .map(|(a, l)| {
            json!({
                "status": "firing",
                "labels": l,
                "annotations": annotations(a),
                "startsAt": super::http::rfc3339(a.time_ms),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": format!("{:016x}", fingerprint(l)),
            })
        })
        .collect();
    serde_json::to_vec(&json!({
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "flowhook",
        "groupLabels": group,
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "",
        "alerts": list,
    }))
    .unwrap_or_default()
}

impl Deliver for Webhook {
    type Batch = Chunked<std::sync::Arc<AlertRecord>>;

    fn prepare(&mut self, items: Vec<Item>) -> Option<(Self::Batch, usize)> {
        let alerts: Vec<_> = items
            .into_iter()
            .filter_map(|i| match i {
                Item::Alert(a) => Some(a),
                _ => None,
            })
            .collect();
        if alerts.is_empty() {
            return None;
        }
        let n = alerts.len();
        Some((Chunked::new(alerts), n))
    }

    fn send(&mut self, batch: &mut Self::Batch) -> Result<(), Failure> {
        let format = self.format;
        batch.send(&self.client, |alerts| {
            let refs: Vec<&AlertRecord> = alerts.iter().map(|a| &**a).collect();
            match format {
                WebhookFormat::Flowhook => flowhook_body(&refs),
                WebhookFormat::Alertmanager => alertmanager_body(&refs),
            }
        })
    }

    fn left(&self, batch: &Self::Batch, _total: usize) -> usize {
        batch.left()
    }

    fn limit(&mut self, left: Option<std::time::Duration>) {
        self.client.set_limit(left);
    }
}
