//! The configuration sections, their defaults and their validation.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `n`, or one per available core when `n` is 0.
fn per_core(n: usize) -> usize {
    if n > 0 {
        n
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }
}

/// Each `(key, value, low, high)` must have `low <= value <= high`.
fn check_ranges<T: PartialOrd + std::fmt::Display + Copy>(
    checks: &[(&'static str, T, T, T)],
) -> Result<(), ConfigError> {
    for &(key, v, lo, hi) in checks {
        if v < lo || v > hi {
            return Err(ConfigError::Invalid {
                key,
                problem: format!("{v} is outside {lo}..={hi}"),
            });
        }
    }
    Ok(())
}

fn default_listen() -> Vec<SocketAddr> {
    vec![
        SocketAddr::from(([0, 0, 0, 0], 2055)),
        SocketAddr::from(([0, 0, 0, 0], 4739)),
    ]
}

/// `[ingest]`: UDP listeners.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// UDP socket addresses to receive exports on; any version is accepted on any of them.
    pub listen: Vec<SocketAddr>,
    /// Sockets bound per listen address with SO_REUSEPORT; the kernel spreads exporters over them.
    pub sockets_per_listener: usize,
    /// Requested socket receive buffer in bytes (SO_RCVBUFFORCE when permitted, else SO_RCVBUF).
    pub recv_buffer_bytes: usize,
    /// Datagrams one shard's queue holds (counted in datagrams, whatever the batches); a batch that would take it past this is dropped and its datagrams counted.
    pub queue_datagrams: usize,
    /// Datagrams read from a socket in one `recvmmsg` round (the largest batch handed to a shard).
    pub batch_datagrams: usize,
    /// Exporter allow-list (CIDRs). Empty: every exporter is accepted.
    pub allow: Vec<IpNet>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            listen: default_listen(),
            sockets_per_listener: 1,
            recv_buffer_bytes: 8 << 20,
            queue_datagrams: 8192,
            batch_datagrams: 64,
            allow: Vec::new(),
        }
    }
}

impl IngestConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.is_empty() {
            return Err(ConfigError::Invalid {
                key: "ingest.listen",
                problem: "at least one address is needed".into(),
            });
        }
        let mut seen = std::collections::HashSet::new();
        for a in &self.listen {
            if !seen.insert(a) {
                return Err(ConfigError::Invalid {
                    key: "ingest.listen",
                    problem: format!("{a} is listed twice"),
                });
            }
        }
        if !(1..=64).contains(&self.sockets_per_listener) {
            return Err(ConfigError::Invalid {
                key: "ingest.sockets_per_listener",
                problem: "must be 1..=64".into(),
            });
        }
        if self.recv_buffer_bytes < 65_536 {
            return Err(ConfigError::Invalid {
                key: "ingest.recv_buffer_bytes",
                problem: "must be at least 65536".into(),
            });
        }
        if self.queue_datagrams == 0 {
            return Err(ConfigError::Invalid {
                key: "ingest.queue_datagrams",
                problem: "must be above 0".into(),
            });
        }
        if !(1..=1024).contains(&self.batch_datagrams) {
            return Err(ConfigError::Invalid {
                key: "ingest.batch_datagrams",
                problem: "must be 1..=1024".into(),
            });
        }
        Ok(())
    }
}

/// `[decode]`: decoder shards and the caps on their state.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeConfig {
    /// Shards (threads): each decodes its exporters' datagrams and keeps their flows; exporters are pinned to one by address. 0: one per core.
    pub shards: usize,
    /// Exporter streams (address, version, domain) tracked per shard; LRU beyond.
    pub max_exporters: usize,
    /// Templates kept per exporter stream; LRU beyond.
    pub max_templates_per_exporter: usize,
    /// Fields accepted in one template; longer templates are rejected.
    pub max_fields_per_template: usize,
    /// Template ids per stream with data held waiting for their template.
    pub pending_max_templates: usize,
    /// Data sets held per missing template id.
    pub pending_max_sets_per_template: usize,
    /// How long data waits for its template before it is dropped and counted.
    #[serde(with = "humantime_serde")]
    pub pending_ttl: Duration,
    /// Templates not refreshed for this long are forgotten; absent: kept until LRU eviction.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub template_ttl: Option<Duration>,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        DecodeConfig {
            shards: 0,
            max_exporters: 4096,
            max_templates_per_exporter: 512,
            max_fields_per_template: 512,
            pending_max_templates: 64,
            pending_max_sets_per_template: 64,
            pending_ttl: Duration::from_secs(60),
            template_ttl: None,
        }
    }
}

impl DecodeConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let checks: [(&'static str, usize, usize, usize); 6] = [
            ("decode.shards", self.shards, 0, 256),
            ("decode.max_exporters", self.max_exporters, 1, 1_000_000),
            (
                "decode.max_templates_per_exporter",
                self.max_templates_per_exporter,
                1,
                65_535,
            ),
            (
                "decode.max_fields_per_template",
                self.max_fields_per_template,
                1,
                10_000,
            ),
            (
                "decode.pending_max_templates",
                self.pending_max_templates,
                1,
                65_535,
            ),
            (
                "decode.pending_max_sets_per_template",
                self.pending_max_sets_per_template,
                1,
                65_535,
            ),
        ];
        check_ranges(&checks)
    }

    /// Shards to run: the configured number, or one per available core.
    pub fn effective_shards(&self) -> usize {
        per_core(self.shards)
    }
}

/// The lifecycle events `output.events` may name (ntopng's hook names; the
/// flow stage's `EventKind` names, checked by a test).
pub const EVENT_NAMES: [&str; 4] = [
    "protocolDetected",
    "statusChanged",
    "periodicUpdate",
    "flowEnd",
];

/// `[output]`: where decoded records go.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Write JSON lines at all.
    pub enabled: bool,
    /// File to append JSON lines to; `-` is standard output. The file is reopened on SIGHUP.
    pub path: PathBuf,
    /// Lifecycle events to write: any of `protocolDetected`, `statusChanged`, `periodicUpdate`, `flowEnd`.
    pub events: Vec<String>,
    /// Also write every decoded flow record (the collector-core output of `flowhook decode`).
    pub records: bool,
    /// With `records`: include options data records (sampling, interface and application tables).
    pub options_records: bool,
    /// Records queued between the decoders and the sink.
    pub queue_records: usize,
    /// Longest time a written line may sit in the buffer.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            enabled: true,
            path: PathBuf::from("-"),
            events: vec!["flowEnd".into()],
            records: false,
            options_records: false,
            queue_records: 65_536,
            flush_interval: Duration::from_secs(1),
        }
    }
}

impl OutputConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                key: "output.path",
                problem: "empty; use - for standard output".into(),
            });
        }
        if self.queue_records == 0 {
            return Err(ConfigError::Invalid {
                key: "output.queue_records",
                problem: "must be above 0".into(),
            });
        }
        for e in &self.events {
            if !EVENT_NAMES.contains(&e.as_str()) {
                return Err(ConfigError::Invalid {
                    key: "output.events",
                    problem: format!(
                        "unknown event `{e}`; use protocolDetected, statusChanged, periodicUpdate or flowEnd"
                    ),
                });
            }
        }
        if self.flush_interval.is_zero() || self.flush_interval > Duration::from_secs(60) {
            return Err(ConfigError::Invalid {
                key: "output.flush_interval",
                problem: "must be above 0 and at most 60s".into(),
            });
        }
        Ok(())
    }
}

/// `[flow]`: the flow table and lifecycle timers.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FlowConfig {
    /// Flows tracked in all (split evenly over the shards); when full the least recently updated ends as `evicted`.
    pub max_flows: usize,
    /// A flow with no record for this many seconds (plus the exporter's observed active timeout) ends as `idle`.
    pub idle_timeout_secs: u64,
    /// Seconds between `periodicUpdate` events of a live flow.
    pub periodic_update_secs: u64,
    /// After an end signal (FIN both ways, RST, the exporter's end reason), seconds to wait for the other direction's last records.
    pub end_grace_secs: u64,
    /// On SIGINT/SIGTERM, the longest the drain, `flowEnd` of every flow and the final flush may take.
    pub shutdown_timeout_secs: u64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            max_flows: 1_000_000,
            idle_timeout_secs: 60,
            periodic_update_secs: 60,
            end_grace_secs: 5,
            shutdown_timeout_secs: 10,
        }
    }
}

impl FlowConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let checks: [(&'static str, u64, u64, u64); 5] = [
            ("flow.max_flows", self.max_flows as u64, 1, 100_000_000),
            ("flow.idle_timeout_secs", self.idle_timeout_secs, 1, 86_400),
            (
                "flow.periodic_update_secs",
                self.periodic_update_secs,
                1,
                86_400,
            ),
            ("flow.end_grace_secs", self.end_grace_secs, 0, 3_600),
            (
                "flow.shutdown_timeout_secs",
                self.shutdown_timeout_secs,
                1,
                3_600,
            ),
        ];
        check_ranges(&checks)
    }
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// HTTP address serving `/metrics`, `/healthz` and `/readyz`.
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 9754)),
        }
    }
}

/// `[scripts]`: Lua flow scripts.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScriptsConfig {
    /// Directory whose `*.lua` files are loaded as flow scripts (the file stem is the script's name).
    /// A missing directory means no scripts.
    pub dir: PathBuf,
    /// Script workers, each with its own Lua state holding every script. 0: one per core.
    pub workers: usize,
    /// Events queued per worker; when full, events are dropped and counted (flowEnd last).
    pub queue_events: usize,
    /// Longest a single hook call may run before it is aborted (instruction-count hook).
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// Memory limit of each worker's Lua state, in MiB.
    pub memory_limit_mb: usize,
    /// A script whose calls time out this many times in a row is disabled until the next reload.
    pub max_consecutive_timeouts: u32,
    /// Alerts per second one script may raise (per worker; replay counts in capture time); the rest are counted as suppressed.
    pub alert_rate_per_sec: u32,
    /// How often the directory is checked for changed scripts (SIGHUP reloads at once).
    #[serde(with = "humantime_serde")]
    pub watch_interval: Duration,
    /// Scripts to run even when their `default_enabled` is false.
    pub enable: Vec<String>,
    /// Scripts not to run.
    pub disable: Vec<String>,
    /// Per-script configuration, replacing the script's `default_value` (`[scripts.conf.<name>]`).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub conf: std::collections::BTreeMap<String, toml::Value>,
}

impl Default for ScriptsConfig {
    fn default() -> Self {
        ScriptsConfig {
            dir: PathBuf::from("scripts"),
            workers: 0,
            queue_events: 65_536,
            deadline: Duration::from_millis(10),
            memory_limit_mb: 64,
            max_consecutive_timeouts: 10,
            alert_rate_per_sec: 1000,
            watch_interval: Duration::from_secs(2),
            enable: Vec::new(),
            disable: Vec::new(),
            conf: std::collections::BTreeMap::new(),
        }
    }
}

impl ScriptsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.workers > 256 {
            return Err(ConfigError::Invalid {
                key: "scripts.workers",
                problem: "at most 256".into(),
            });
        }
        if self.queue_events == 0 {
            return Err(ConfigError::Invalid {
                key: "scripts.queue_events",
                problem: "must be above 0".into(),
            });
        }
        if self.deadline.is_zero() || self.deadline > Duration::from_secs(60) {
            return Err(ConfigError::Invalid {
                key: "scripts.deadline",
                problem: "must be above 0 and at most 60s".into(),
            });
        }
        if self.memory_limit_mb < 4 {
            return Err(ConfigError::Invalid {
                key: "scripts.memory_limit_mb",
                problem: "must be at least 4".into(),
            });
        }
        if self.max_consecutive_timeouts == 0 {
            return Err(ConfigError::Invalid {
                key: "scripts.max_consecutive_timeouts",
                problem: "must be above 0".into(),
            });
        }
        Ok(())
    }

    pub fn effective_workers(&self) -> usize {
        per_core(self.workers)
    }
}

/// `[geo]`: MaxMind-format databases.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GeoConfig {
    /// City database (also answers country).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city_db: Option<PathBuf>,
    /// Country database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country_db: Option<PathBuf>,
    /// ASN database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn_db: Option<PathBuf>,
    /// Addresses cached per flow worker (two generations of half this size).
    pub cache_size: usize,
    /// How often to look whether a database file was replaced (then it is reloaded).
    #[serde(with = "humantime_serde")]
    pub watch_interval: Duration,
}

impl Default for GeoConfig {
    fn default() -> Self {
        GeoConfig {
            city_db: None,
            country_db: None,
            asn_db: None,
            cache_size: 65_536,
            watch_interval: Duration::from_secs(30),
        }
    }
}

impl GeoConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cache_size == 0 || self.cache_size > 100_000_000 {
            return Err(ConfigError::Invalid {
                key: "geo.cache_size",
                problem: "must be 1..=100000000".into(),
            });
        }
        if self.watch_interval < Duration::from_millis(100) {
            return Err(ConfigError::Invalid {
                key: "geo.watch_interval",
                problem: "must be at least 100ms".into(),
            });
        }
        Ok(())
    }
}

/// `[log]`: diagnostics on standard error.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Filter in `tracing` syntax (`info`, `flowhook=debug`); `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

/// One `[[networks]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// The network (IPv4 or IPv6 CIDR).
    pub cidr: IpNet,
    /// Label shown as `cli.network` / `srv.network`.
    pub name: String,
    /// Free-form role (`dmz`, `servers`, `guests`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Site name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Free-form tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Whether addresses here are local (drives `flow.isLocal()`); default true.
    #[serde(default = "yes")]
    pub local: bool,
    /// Country to report for this network (overrides the database; useful for private space).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// AS number to report for this network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    /// AS name to report for this network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_name: Option<String>,
}

fn yes() -> bool {
    true
}

/// A network in CIDR notation, or one address (a /32 or /128).
fn net_or_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
    let s = String::deserialize(d)?;
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| {
            serde::de::Error::custom(format!("`{s}` is neither an address nor a CIDR network"))
        })
}

/// `[state]`: decoder state (templates, sampling) kept across restarts.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Keep templates and sampling rates on disk and restore them at start.
    pub enabled: bool,
    /// Directory of the state file; absent: `$STATE_DIRECTORY` (systemd), else
    /// `/var/lib/flowhook` when it exists, else `$XDG_STATE_HOME/flowhook` or
    /// `~/.local/state/flowhook`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// At most one write per this interval while templates change (and one at shutdown).
    #[serde(with = "humantime_serde")]
    pub write_interval: Duration,
    /// Streams not heard of for this long are dropped from the file.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            enabled: true,
            dir: None,
            write_interval: Duration::from_secs(1),
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl StateConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.write_interval < Duration::from_millis(10) {
            return Err(ConfigError::Invalid {
                key: "state.write_interval",
                problem: "must be at least 10ms".into(),
            });
        }
        if self.dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
            return Err(ConfigError::Invalid {
                key: "state.dir",
                problem: "empty; leave it out for the default, or set state.enabled = false".into(),
            });
        }
        Ok(())
    }

    /// The directory the state file lives in (see `dir`).
    pub fn effective_dir(&self) -> PathBuf {
        if let Some(d) = &self.dir {
            return d.clone();
        }
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        if let Some(d) = env("STATE_DIRECTORY") {
            // systemd may list several, separated by ':'
            let first = d
                .to_string_lossy()
                .split(':')
                .next()
                .unwrap_or("")
                .to_string();
            if !first.is_empty() {
                return PathBuf::from(first);
            }
        }
        let var_lib = PathBuf::from("/var/lib/flowhook");
        if var_lib.is_dir() {
            return var_lib;
        }
        if let Some(d) = env("XDG_STATE_HOME") {
            return PathBuf::from(d).join("flowhook");
        }
        if let Some(h) = env("HOME") {
            return PathBuf::from(h).join(".local/state/flowhook");
        }
        PathBuf::from("flowhook-state")
    }
}

/// How a `[[sampling]]` rule combines with what the exporter announces.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SamplingMode {
    /// Only where the exporter announces no rate (or 0).
    #[default]
    Fill,
    /// Always, replacing what the exporter announces.
    Override,
}

/// One `[[sampling]]` entry: a fixed rate for exporters that announce none
/// or announce it wrongly (first matching entry wins).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SamplingConfig {
    /// Exporter address or network (CIDR).
    #[serde(deserialize_with = "net_or_addr")]
    pub exporter: IpNet,
    /// Only this observation domain / source id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<u32>,
    /// Only records of this input interface (`in_if`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<u32>,
    /// One packet in `rate` was sampled (≥ 1).
    pub rate: u32,
    /// `fill` (default) or `override`.
    #[serde(default)]
    pub mode: SamplingMode,
}

impl SamplingConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.rate == 0 {
            return Err(ConfigError::Invalid {
                key: "sampling.rate",
                problem: format!("must be at least 1 (entry for {})", self.exporter),
            });
        }
        Ok(())
    }
}
