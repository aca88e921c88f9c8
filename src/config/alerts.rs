//! The alert delivery sections: `[alertmanager]`, `[webhook]`, `[syslog]`,
//! with what they share (which alerts go where, HTTP authentication, TLS,
//! queueing and retries), their defaults and their validation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::ConfigError;

/// Severities in increasing order (the scripts' `triggerStatus` names).
pub const SEVERITY_ORDER: [&str; 7] = [
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// Rank of a severity name (`info` = 0), `None` when unknown.
pub fn severity_rank(s: &str) -> Option<usize> {
    SEVERITY_ORDER
        .iter()
        .position(|x| x.eq_ignore_ascii_case(s))
}

/// A string or a list of strings (`url = "…"` or `url = ["…", "…"]`).
pub(super) fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) if s.trim().is_empty() => Vec::new(),
        OneOrMany::One(s) => s.split(',').map(|x| x.trim().to_string()).collect(),
        OneOrMany::Many(v) => v,
    })
}

/// TLS settings of a sink (`[alertmanager.tls]`, `[webhook.tls]`, `[syslog.tls]`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file of the CA certificates to trust instead of the built-in (Mozilla) roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS, with `key_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate (testing only).
    pub insecure_skip_verify: bool,
}

impl TlsConfig {
    fn validate(&self, cert_key: &'static str) -> Result<(), ConfigError> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(ConfigError::Invalid {
                key: cert_key,
                problem: "cert_file and key_file go together".into(),
            });
        }
        Ok(())
    }
}

/// HTTP basic authentication.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BasicAuth {
    pub username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// File holding the password (a Kubernetes or compose secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

/// Declares an HTTP sink section: the fields every HTTP sink has (targets,
/// which alerts, queueing, retries, authentication, TLS) and its own.
/// (`serde(flatten)` cannot be combined with `deny_unknown_fields`.)
macro_rules! http_sink {
    ($(#[$m:meta])* $name:ident, max_batch = $batch:expr, { $($(#[$fm:meta])* $f:ident : $t:ty = $d:expr,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            /// Endpoints (all of them get every alert); empty: the sink is off.
            #[serde(deserialize_with = "one_or_many")]
            pub url: Vec<String>,
            /// Lowest severity sent.
            pub min_severity: String,
            /// Only alerts of these scripts (empty: all scripts).
            #[serde(deserialize_with = "one_or_many")]
            pub scripts: Vec<String>,
            /// At most one request per this interval and endpoint.
            #[serde(with = "humantime_serde")]
            pub interval: Duration,
            /// Alerts per request, at most.
            pub max_batch: usize,
            /// Alerts queued per endpoint while it is slow or down; beyond, the oldest are dropped and counted.
            pub queue: usize,
            /// Time limit of one request.
            #[serde(with = "humantime_serde")]
            pub timeout: Duration,
            /// Longest wait between retries (the wait doubles from 500 ms up to this).
            #[serde(with = "humantime_serde")]
            pub backoff_max: Duration,
            /// Extra request headers.
            pub headers: BTreeMap<String, String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub basic_auth: Option<BasicAuth>,
            /// Sent as `Authorization: Bearer …`.
            #[serde(skip_serializing_if = "Option::is_none")]
            pub bearer_token: Option<String>,
            /// File holding the bearer token.
            #[serde(skip_serializing_if = "Option::is_none")]
            pub bearer_token_file: Option<PathBuf>,
            pub tls: TlsConfig,
            $($(#[$fm])* pub $f: $t,)*
        }

        impl Default for $name {
            fn default() -> Self {
                let h = HttpSinkConfig::with_batch($batch);
                $name {
                    url: h.url,
                    min_severity: h.min_severity,
                    scripts: h.scripts,
                    interval: h.interval,
                    max_batch: h.max_batch,
                    queue: h.queue,
                    timeout: h.timeout,
                    backoff_max: h.backoff_max,
                    headers: h.headers,
                    basic_auth: h.basic_auth,
                    bearer_token: h.bearer_token,
                    bearer_token_file: h.bearer_token_file,
                    tls: h.tls,
                    $($f: $d,)*
                }
            }
        }

        impl $name {
            /// The fields every HTTP sink has.
            pub fn http(&self) -> HttpSinkConfig {
                HttpSinkConfig {
                    url: self.url.clone(),
                    min_severity: self.min_severity.clone(),
                    scripts: self.scripts.clone(),
                    interval: self.interval,
                    max_batch: self.max_batch,
                    queue: self.queue,
                    timeout: self.timeout,
                    backoff_max: self.backoff_max,
                    headers: self.headers.clone(),
                    basic_auth: self.basic_auth.clone(),
                    bearer_token: self.bearer_token.clone(),
                    bearer_token_file: self.bearer_token_file.clone(),
                    tls: self.tls.clone(),
                }
            }
        }
    };
}

/// What an HTTP sink shares (see [`http_sink!`]), as the sinks use it.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSinkConfig {
    pub url: Vec<String>,
    pub min_severity: String,
    pub scripts: Vec<String>,
    pub interval: Duration,
    pub max_batch: usize,
    pub queue: usize,
    pub timeout: Duration,
    pub backoff_max: Duration,
    pub headers: BTreeMap<String, String>,
    pub basic_auth: Option<BasicAuth>,
    pub bearer_token: Option<String>,
    pub bearer_token_file: Option<PathBuf>,
    pub tls: TlsConfig,
}

impl HttpSinkConfig {
    fn with_batch(max_batch: usize) -> Self {
        HttpSinkConfig {
            url: Vec::new(),
            min_severity: "info".into(),
            scripts: Vec::new(),
            interval: Duration::from_secs(1),
            max_batch,
            queue: 10_000,
            timeout: Duration::from_secs(10),
            backoff_max: Duration::from_secs(30),
            headers: BTreeMap::new(),
            basic_auth: None,
            bearer_token: None,
            bearer_token_file: None,
            tls: TlsConfig::default(),
        }
    }

    fn validate(&self, keys: &HttpKeys) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for u in &self.url {
            let norm = u.trim_end_matches('/');
            let norm = norm.strip_suffix("/api/v2/alerts").unwrap_or(norm);
            if !seen.insert(norm.to_ascii_lowercase()) {
                return Err(ConfigError::Invalid {
                    key: keys.url,
                    problem: format!("`{u}` is listed twice"),
                });
            }
            let lower = u.to_ascii_lowercase();
            let ok = (lower.starts_with("http://") || lower.starts_with("https://"))
                && u.parse::<ureq::http::Uri>()
                    .is_ok_and(|x| x.host().is_some_and(|h| !h.is_empty()));
            if !ok {
                return Err(ConfigError::Invalid {
                    key: keys.url,
                    problem: format!("`{u}` is not an http:// or https:// URL with a host"),
                });
            }
        }
        check_severity(keys.min_severity, &self.min_severity)?;
        check_common(
            keys,
            self.queue,
            self.max_batch,
            self.interval,
            self.timeout,
            self.backoff_max,
        )?;
        if self.bearer_token.is_some() && self.bearer_token_file.is_some() {
            return Err(ConfigError::Invalid {
                key: keys.bearer,
                problem: "set bearer_token or bearer_token_file, not both".into(),
            });
        }
        if let Some(b) = &self.basic_auth {
            if b.password.is_some() && b.password_file.is_some() {
                return Err(ConfigError::Invalid {
                    key: keys.basic,
                    problem: "set password or password_file, not both".into(),
                });
            }
            if self.bearer_token.is_some() || self.bearer_token_file.is_some() {
                return Err(ConfigError::Invalid {
                    key: keys.basic,
                    problem: "basic_auth and a bearer token exclude each other".into(),
                });
            }
        }
        for (k, v) in &self.headers {
            if k.parse::<ureq::http::HeaderName>().is_err()
                || v.parse::<ureq::http::HeaderValue>().is_err()
            {
                return Err(ConfigError::Invalid {
                    key: keys.headers,
                    problem: format!("`{k}: {v}` is not a valid HTTP header"),
                });
            }
        }
        self.tls.validate(keys.tls)
    }
}

/// Key names for error messages, per section.
struct HttpKeys {
    url: &'static str,
    min_severity: &'static str,
    queue: &'static str,
    max_batch: &'static str,
    interval: &'static str,
    timeout: &'static str,
    backoff_max: &'static str,
    bearer: &'static str,
    basic: &'static str,
    headers: &'static str,
    tls: &'static str,
}

fn check_severity(key: &'static str, s: &str) -> Result<(), ConfigError> {
    if severity_rank(s).is_none() {
        return Err(ConfigError::Invalid {
            key,
            problem: format!("unknown severity `{s}` (use {})", SEVERITY_ORDER.join(", ")),
        });
    }
    Ok(())
}

fn check_common(
    keys: &HttpKeys,
    queue: usize,
    max_batch: usize,
    interval: Duration,
    timeout: Duration,
    backoff_max: Duration,
) -> Result<(), ConfigError> {
    let bad = |key: &'static str, problem: &str| {
        Err(ConfigError::Invalid {
            key,
            problem: problem.into(),
        })
    };
    if !(1..=10_000_000).contains(&queue) {
        return bad(keys.queue, "must be within 1..=10000000");
    }
    if !(1..=100_000).contains(&max_batch) {
        return bad(keys.max_batch, "must be within 1..=100000");
    }
    if interval > Duration::from_secs(3600) {
        return bad(keys.interval, "must be at most 1h");
    }
    if timeout < Duration::from_millis(10) {
        return bad(keys.timeout, "must be at least 10ms");
    }
    if backoff_max < Duration::from_millis(500) {
        return bad(keys.backoff_max, "must be at least 500ms");
    }
    Ok(())
}

http_sink! {
    /// `[alertmanager]`: Prometheus Alertmanager (v2 API).
    AlertmanagerConfig, max_batch = 1000, {
        /// Labels added to every alert (e.g. `site = "fra1"`).
        labels: BTreeMap<String, String> = BTreeMap::new(),
        /// An alert resolves by itself this long after it was last raised.
        #[serde(with = "humantime_serde")]
        resolve_timeout: Duration = Duration::from_secs(300),
        /// Resolve an alert at once when the last flow that raised it ends.
        resolve_on_flow_end: bool = false,
        /// Flows whose alerts are remembered for `resolve_on_flow_end`, at most.
        max_tracked_flows: usize = 100_000,
    }
}

/// Label names Alertmanager accepts, and not one flowhook sets itself.
pub const ALERT_LABELS: [&str; 10] = [
    "alertname",
    "script",
    "severity",
    "exporter",
    "cli_ip",
    "srv_ip",
    "srv_port",
    "proto_l4",
    "proto_l7",
    "status",
];

impl AlertmanagerConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.http().validate(&HttpKeys {
            url: "alertmanager.url",
            min_severity: "alertmanager.min_severity",
            queue: "alertmanager.queue",
            max_batch: "alertmanager.max_batch",
            interval: "alertmanager.interval",
            timeout: "alertmanager.timeout",
            backoff_max: "alertmanager.backoff_max",
            bearer: "alertmanager.bearer_token",
            basic: "alertmanager.basic_auth",
            headers: "alertmanager.headers",
            tls: "alertmanager.tls",
        })?;
        for k in self.labels.keys() {
            let mut c = k.chars();
            let ok = c
                .next()
                .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
                && c.all(|x| x.is_ascii_alphanumeric() || x == '_');
            if !ok || k.starts_with("__") {
                return Err(ConfigError::Invalid {
                    key: "alertmanager.labels",
                    problem: format!("`{k}` is not a valid label name"),
                });
            }
            if ALERT_LABELS.contains(&k.as_str()) {
                return Err(ConfigError::Invalid {
                    key: "alertmanager.labels",
                    problem: format!("`{k}` is set by flowhook on every alert"),
                });
            }
        }
        if self.resolve_timeout < Duration::from_secs(1) {
            return Err(ConfigError::Invalid {
                key: "alertmanager.resolve_timeout",
                problem: "must be at least 1s".into(),
            });
        }
        Ok(())
    }
}

/// Body of webhook requests.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// A JSON array of alerts, each as in the JSON output.
    #[default]
    Flowhook,
    /// Alertmanager's webhook payload (version 4), for receivers written for it.
    Alertmanager,
}

http_sink! {
    /// `[webhook]`: JSON alerts POSTed to HTTP endpoints.
    WebhookConfig, max_batch = 100, {
        format: WebhookFormat = WebhookFormat::Flowhook,
    }
}

impl WebhookConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.http().validate(&HttpKeys {
            url: "webhook.url",
            min_severity: "webhook.min_severity",
            queue: "webhook.queue",
            max_batch: "webhook.max_batch",
            interval: "webhook.interval",
            timeout: "webhook.timeout",
            backoff_max: "webhook.backoff_max",
            bearer: "webhook.bearer_token",
            basic: "webhook.basic_auth",
            headers: "webhook.headers",
            tls: "webhook.tls",
        })
    }
}

/// Syslog facilities by name (RFC 5424 numbering).
pub const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

/// `[syslog]`: RFC 5424 messages over UDP, TCP or TLS.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SyslogConfig {
    /// `udp://host:514`, `tcp://host:601`, `tls://host:6514`; several: each gets every message.
    #[serde(deserialize_with = "one_or_many")]
    pub target: Vec<String>,
    pub facility: String,
    /// APP-NAME of the messages.
    pub app_name: String,
    /// HOSTNAME of the messages; empty: this host's name.
    pub hostname: String,
    /// Send the event lines of the JSON output too (needs `output.enabled`).
    pub events: bool,
    pub min_severity: String,
    #[serde(deserialize_with = "one_or_many")]
    pub scripts: Vec<String>,
    /// Messages queued per target while it is down; beyond, the oldest are dropped and counted.
    pub queue: usize,
    /// Time limit to connect or write.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    pub tls: TlsConfig,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        SyslogConfig {
            target: Vec::new(),
            facility: "daemon".into(),
            app_name: "flowhook".into(),
            hostname: String::new(),
            events: false,
            min_severity: "info".into(),
            scripts: Vec::new(),
            queue: 10_000,
            timeout: Duration::from_secs(10),
            backoff_max: Duration::from_secs(30),
            tls: TlsConfig::default(),
        }
    }
}

impl SyslogConfig {
    pub fn facility_code(&self) -> u8 {
        FACILITIES
            .iter()
            .position(|f| f.eq_ignore_ascii_case(&self.facility))
            .unwrap_or(3) as u8
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for t in &self.target {
            if !seen.insert(t.to_ascii_lowercase()) {
                return Err(ConfigError::Invalid {
                    key: "syslog.target",
                    problem: format!("`{t}` is listed twice"),
                });
            }
            let ok = t
                .split_once("://")
                .filter(|(s, _)| matches!(*s, "udp" | "tcp" | "tls"))
                .and_then(|(_, rest)| rest.rsplit_once(':'))
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok {
                return Err(ConfigError::Invalid {
                    key: "syslog.target",
                    problem: format!("`{t}` is not udp://, tcp:// or tls:// with host:port"),
                });
            }
        }
        if !FACILITIES
            .iter()
            .any(|f| f.eq_ignore_ascii_case(&self.facility))
        {
            return Err(ConfigError::Invalid {
                key: "syslog.facility",
                problem: format!(
                    "unknown facility `{}` (use {})",
                    self.facility,
                    FACILITIES.join(", ")
                ),
            });
        }
        let printable =
            |s: &str, max: usize| s.len() <= max && s.bytes().all(|b| (33..=126).contains(&b));
        if self.app_name.is_empty() || !printable(&self.app_name, 48) {
            return Err(ConfigError::Invalid {
                key: "syslog.app_name",
                problem: "1 to 48 printable ASCII characters without spaces".into(),
            });
        }
        if !printable(&self.hostname, 255) {
            return Err(ConfigError::Invalid {
                key: "syslog.hostname",
                problem: "at most 255 printable ASCII characters without spaces".into(),
            });
        }
        check_severity("syslog.min_severity", &self.min_severity)?;
        check_common(
            &HttpKeys {
                url: "syslog.target",
                min_severity: "syslog.min_severity",
                queue: "syslog.queue",
                max_batch: "syslog.queue",
                interval: "syslog.timeout",
                timeout: "syslog.timeout",
                backoff_max: "syslog.backoff_max",
                bearer: "syslog.tls",
                basic: "syslog.tls",
                headers: "syslog.tls",
                tls: "syslog.tls",
            },
            self.queue,
            1,
            Duration::ZERO,
            self.timeout,
            self.backoff_max,
        )?;
        self.tls.validate("syslog.tls")
    }
}
