//! Alert delivery stage: script alerts to Prometheus Alertmanager, webhooks
//! and syslog.
//!
//! In: [`AlertRecord`]s from the script workers ([`Router::alert`]), the end
//! of flows that alerted ([`Router::flow_ended`], to resolve their alerts in
//! Alertmanager), and for syslog with `events = true` the output's event
//! lines ([`Router::events`]). Out: HTTP requests and syslog messages, from
//! one thread per target.
//!
//! Every target has its own bounded [`queue::Queue`]: pushing is a short
//! lock, so a slow or unreachable target never blocks the scripts; a full
//! queue drops its oldest alert and counts it. Failed deliveries are retried
//! with a backoff doubling from 500 ms to `backoff_max`; what a target
//! refuses (HTTP 4xx other than 408 and 429) is dropped and counted. At
//! shutdown each target has until the deadline to deliver what it holds; the
//! rest is counted as dropped (`shutdown`).
//!
//! Layout: `queue` (bounded queue, the retry loop), `http` (the HTTP client
//! shared by `alertmanager` and `webhook`), `syslog` (RFC 5424 over UDP, TCP,
//! TLS), this file (the alert, routing, start and stop).

pub mod alertmanager;
pub mod http;
pub mod queue;
pub mod syslog;
#[cfg(test)]
mod tests;
pub mod webhook;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use thiserror::Error;

use crate::config::{Config, severity_rank};
use queue::Queue;

/// A sink that cannot start.
#[derive(Debug, Error)]
pub enum AlertError {
    #[error("{key}: {path}: {detail}")]
    File {
        key: &'static str,
        path: String,
        detail: String,
    },
    #[error("{key}: {detail}")]
    Setup { key: &'static str, detail: String },
}

impl AlertError {
    pub fn code(&self) -> &'static str {
        match self {
            AlertError::File { .. } => "file",
            AlertError::Setup { .. } => "setup",
        }
    }
}

/// One alert raised by a script, with what the sinks need of its flow.
#[derive(Debug, Clone)]
pub struct AlertRecord {
    /// When it was raised (the event's time), ms since the epoch.
    pub time_ms: i64,
    pub flow_key: u64,
    pub script: Arc<str>,
    /// The status key (`triggerStatus`), none for `triggerAlert`.
    pub status: Option<String>,
    pub severity: &'static str,
    pub score: u16,
    pub message: String,
    pub info: serde_json::Value,
    pub exporter: IpAddr,
    pub cli_ip: IpAddr,
    pub srv_ip: IpAddr,
    pub cli_port: u16,
    pub srv_port: u16,
    pub proto: u8,
    pub l7: Arc<str>,
    pub bytes: u64,
    pub packets: u64,
    /// The alert as the JSON output writes it (one line, no newline).
    pub json: Box<str>,
}

/// Longest message a sink sends (characters).
pub const MAX_MESSAGE: usize = 1024;
/// Longest `info` JSON a sink sends (bytes); longer is cut and marked with `…`.
pub const MAX_INFO: usize = 4096;

impl AlertRecord {
    /// The script's message, cut to [`MAX_MESSAGE`] characters.
    pub fn message(&self) -> std::borrow::Cow<'_, str> {
        match self.message.char_indices().nth(MAX_MESSAGE) {
            Some((i, _)) => format!("{}…", &self.message[..i]).into(),
            None => self.message.as_str().into(),
        }
    }

    /// The script's info as JSON, cut to [`MAX_INFO`] bytes.
    pub fn info_text(&self) -> String {
        let mut s = self.info.to_string();
        if s.len() > MAX_INFO {
            let mut i = MAX_INFO;
            while !s.is_char_boundary(i) {
                i -= 1;
            }
            s.truncate(i);
            s.push('…');
        }
        s
    }

    /// The alert's name: its status key, or the script's name.
    pub fn name(&self) -> &str {
        self.status.as_deref().unwrap_or(&self.script)
    }

    /// Layer-4 protocol name (`TCP`, `UDP`, …, else the number).
    pub fn l4(&self) -> Cow<'static, str> {
        match crate::flow::classify::l4_name(self.proto) {
            Some(n) => n.into(),
            None => self.proto.to_string().into(),
        }
    }

    /// One line about the flow: `TCP 10.0.0.1:5000 -> 192.0.2.7:443 (TLS), 1200 bytes, 9 packets, exporter 192.0.2.1`.
    pub fn flow_summary(&self) -> String {
        let ep = |ip: &IpAddr, port: u16| match ip {
            IpAddr::V6(_) => format!("[{ip}]:{port}"),
            IpAddr::V4(_) => format!("{ip}:{port}"),
        };
        format!(
            "{} {} -> {} ({}), {} bytes, {} packets, exporter {}",
            self.l4(),
            ep(&self.cli_ip, self.cli_port),
            ep(&self.srv_ip, self.srv_port),
            if self.l7.is_empty() {
                "Unknown"
            } else {
                &self.l7
            },
            self.bytes,
            self.packets,
            self.exporter
        )
    }
}

/// What travels through a target's queue.
#[derive(Debug, Clone)]
pub enum Item {
    Alert(Arc<AlertRecord>),
    /// A flow that raised alerts ended (Alertmanager with `resolve_on_flow_end`).
    FlowEnded(u64),
    /// An event line of the output (syslog with `events = true`).
    Event(Arc<[u8]>),
}

/// Which alerts one target takes.
#[derive(Debug, Clone)]
pub struct Filter {
    pub min_rank: usize,
    pub scripts: Vec<String>,
}

impl Filter {
    pub fn new(min_severity: &str, scripts: &[String]) -> Self {
        Filter {
            min_rank: severity_rank(min_severity).unwrap_or(0),
            scripts: scripts.to_vec(),
        }
    }

    pub fn accepts(&self, script: &str, severity: &str) -> bool {
        severity_rank(severity).unwrap_or(0) >= self.min_rank
            && (self.scripts.is_empty() || self.scripts.iter().any(|s| s == script))
    }
}

struct Route {
    filter: Filter,
    queue: Arc<Queue>,
    flow_end: bool,
    events: bool,
}

/// Hands alerts to the targets that want them. Cheap to clone.
#[derive(Clone, Default)]
pub struct Router {
    routes: Arc<Vec<Route>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Router({} targets)", self.routes.len())
    }
}

impl Router {
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Whether any target takes an alert of `script` at `severity`.
    pub fn wants(&self, script: &str, severity: &str) -> bool {
        self.routes
            .iter()
            .any(|r| r.filter.accepts(script, severity))
    }

    /// Queues `rec` for every target that takes it; returns whether one of
    /// them resolves alerts when their flow ends (so the flow's end matters).
    pub fn alert(&self, rec: AlertRecord) -> bool {
        let rec = Arc::new(rec);
        let mut tracked = false;
        for r in self.routes.iter() {
            if r.filter.accepts(&rec.script, rec.severity) {
                r.queue.push(Item::Alert(rec.clone()));
                tracked |= r.flow_end;
            }
        }
        tracked
    }

    /// Whether [`Router::flow_ended`] is of use (a target resolves on flow end).
    pub fn tracks_flow_end(&self) -> bool {
        self.routes.iter().any(|r| r.flow_end)
    }

    /// The flow `key`, whose alerts went to a target that resolves on flow end, ended.
    pub fn flow_ended(&self, key: u64) {
        for r in self.routes.iter().filter(|r| r.flow_end) {
            r.queue.push(Item::FlowEnded(key));
        }
    }

    /// Whether a target takes event lines.
    pub fn wants_events(&self) -> bool {
        self.routes.iter().any(|r| r.events)
    }

    /// Queues the event lines of an output batch (alert lines are skipped:
    /// they arrive through [`Router::alert`]).
    pub fn events(&self, lines: &[u8]) {
        for line in lines.split(|b| *b == b'\n') {
            if line.is_empty() || line.starts_with(b"{\"event\":\"alert\"") {
                continue;
            }
            let line: Arc<[u8]> = line.into();
            for r in self.routes.iter().filter(|r| r.events) {
                r.queue.push(Item::Event(line.clone()));
            }
        }
    }
}

/// Target labels, made unique per sink (`#2` after a repeated one).
#[derive(Default)]
struct Labels(std::collections::HashSet<(String, String)>);

impl Labels {
    fn telemetry(
        &mut self,
        sink: &'static str,
        label: &str,
    ) -> crate::telemetry::DeliveryTelemetry {
        let mut l = label.to_string();
        let mut n = 1;
        while !self.0.insert((sink.to_string(), l.clone())) {
            n += 1;
            l = format!("{label}#{n}");
        }
        crate::telemetry::DeliveryTelemetry::new(sink, &l)
    }
}

/// The running targets.
pub struct Delivery {
    pub router: Router,
    threads: Vec<JoinHandle<()>>,
}

impl Delivery {
    /// Starts a thread per configured target. Files (CA, certificates,
    /// tokens) are read here, so a bad one stops the start with its name.
    pub fn start(cfg: &Config) -> Result<Delivery, AlertError> {
        let mut routes = Vec::new();
        let mut threads = Vec::new();
        let mut labels = Labels::default();
        let am = &cfg.alertmanager;
        let amh = am.http();
        for url in &amh.url {
            let client = http::Client::new(&amh, &alertmanager::endpoint(url), "alertmanager")?;
            let tel = labels.telemetry("alertmanager", &http::redact(url, true));
            let queue = Arc::new(Queue::new(amh.queue, tel));
            let sink = alertmanager::Alertmanager::new(client, am);
            threads.push(queue::spawn(
                "alertmanager",
                queue.clone(),
                sink,
                amh.max_batch,
                amh.interval,
                amh.backoff_max,
            )?);
            routes.push(Route {
                filter: Filter::new(&amh.min_severity, &amh.scripts),
                queue,
                flow_end: am.resolve_on_flow_end,
                events: false,
            });
        }
        let wh = cfg.webhook.http();
        for url in &wh.url {
            let client = http::Client::new(&wh, url, "webhook")?;
            let tel = labels.telemetry("webhook", &http::redact(url, false));
            let queue = Arc::new(Queue::new(wh.queue, tel));
            let sink = webhook::Webhook::new(client, cfg.webhook.format);
            threads.push(queue::spawn(
                "webhook",
                queue.clone(),
                sink,
                wh.max_batch,
                wh.interval,
                wh.backoff_max,
            )?);
            routes.push(Route {
                filter: Filter::new(&wh.min_severity, &wh.scripts),
                queue,
                flow_end: false,
                events: false,
            });
        }
        let sl = &cfg.syslog;
        for target in &sl.target {
            let sink = syslog::Syslog::new(sl, target)?;
            let queue = Arc::new(Queue::new(sl.queue, labels.telemetry("syslog", target)));
            threads.push(queue::spawn(
                "syslog",
                queue.clone(),
                sink,
                256,
                std::time::Duration::ZERO,
                sl.backoff_max,
            )?);
            routes.push(Route {
                filter: Filter::new(&sl.min_severity, &sl.scripts),
                queue,
                flow_end: false,
                events: sl.events,
            });
        }
        Ok(Delivery {
            router: Router {
                routes: Arc::new(routes),
            },
            threads,
        })
    }

    /// Opens what the sinks need (CA, certificates, keys, token files)
    /// without starting them: `flowhook check`.
    pub fn check(cfg: &Config) -> Result<(), AlertError> {
        let amh = cfg.alertmanager.http();
        for url in &amh.url {
            http::Client::new(&amh, &alertmanager::endpoint(url), "alertmanager")?;
        }
        let wh = cfg.webhook.http();
        for url in &wh.url {
            http::Client::new(&wh, url, "webhook")?;
        }
        for target in &cfg.syslog.target {
            syslog::Syslog::new(&cfg.syslog, target)?;
        }
        Ok(())
    }

    /// A target thread that ended while it should run (a panic), by name.
    pub fn stopped(&self) -> Option<String> {
        self.threads
            .iter()
            .find(|t| t.is_finished())
            .map(|t| t.thread().name().unwrap_or("flowhook-alert").to_string())
    }

    /// Stops taking alerts, delivers what is queued until `deadline`, counts the rest.
    pub fn shutdown(self, deadline: Instant) {
        for r in self.router.routes.iter() {
            r.queue.close(deadline);
        }
        for t in self.threads {
            let name = t.thread().name().unwrap_or("alert delivery").to_string();
            if t.join().is_err() {
                tracing::error!("{name} thread panicked; its alerts were not delivered");
            }
        }
    }
}
