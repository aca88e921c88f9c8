//! The `[kafka]` section: brokers, topics, message format, producer
//! settings (compression, acks, idempotence, the bounded queue), TLS, SASL
//! and free-form client options, with their defaults and validation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Message encodings of the Kafka sink.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KafkaFormat {
    /// The JSON lines of the file output, one per message.
    #[default]
    Json,
    /// `proto/flowhook.proto` (`flowhook.v1.Event`, `Alert`, `Record`).
    Protobuf,
}

/// `[kafka.tls]`: TLS to the brokers.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaTlsConfig {
    /// Connect with TLS (`security.protocol` ssl or sasl_ssl).
    pub enabled: bool,
    /// PEM CA certificates to trust instead of the system's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS, with `key_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Do not verify the brokers' certificates (testing only).
    pub insecure_skip_verify: bool,
}

/// `[kafka.sasl]`: SASL authentication.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSaslConfig {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`; empty: no SASL.
    pub mechanism: String,
    pub username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// A file holding the password (read at start; a trailing newline is ignored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

/// SASL mechanisms the client is built with.
pub const SASL_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// Compression codecs.
pub const KAFKA_COMPRESSION: [&str; 4] = ["none", "gzip", "lz4", "zstd"];

/// `[kafka]`: events, alerts and records to Kafka topics.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port`; empty: the sink is off.
    #[serde(deserialize_with = "super::alerts::one_or_many")]
    pub brokers: Vec<String>,
    /// Topic of the lifecycle events (those `output.events` selects).
    pub topic_events: String,
    /// Topic of the script alerts.
    pub topic_alerts: String,
    /// Topic of the decoded records (with `output.records`).
    pub topic_records: String,
    pub client_id: String,
    pub format: KafkaFormat,
    pub compression: String,
    /// `all`, `1` or `0`.
    pub acks: String,
    /// Idempotent producer (no duplicates from the client's retries, order kept); needs `acks = "all"`.
    pub idempotence: bool,
    /// Messages held for the brokers at most; beyond, new ones are dropped and counted.
    pub queue_messages: u32,
    /// Bytes held for the brokers at most.
    pub queue_bytes: u64,
    /// How long messages wait to be batched.
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// A message not delivered within this time fails (`0s`: it waits for the brokers as long as the queue holds it).
    #[serde(with = "humantime_serde")]
    pub message_timeout: Duration,
    /// At shutdown, how long to wait for the queue to be delivered.
    #[serde(with = "humantime_serde")]
    pub flush_timeout: Duration,
    /// How often the client reports its statistics (broker round-trip times).
    #[serde(with = "humantime_serde")]
    pub statistics_interval: Duration,
    pub tls: KafkaTlsConfig,
    pub sasl: KafkaSaslConfig,
    /// Any other librdkafka setting (`"socket.keepalive.enable" = "true"`); applied last.
    pub options: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: Vec::new(),
            topic_events: "flowhook.events".into(),
            topic_alerts: "flowhook.alerts".into(),
            topic_records: "flowhook.records".into(),
            client_id: "flowhook".into(),
            format: KafkaFormat::Json,
            compression: "lz4".into(),
            acks: "all".into(),
            idempotence: true,
            queue_messages: 100_000,
            queue_bytes: 256 * 1024 * 1024,
            linger: Duration::from_millis(20),
            message_timeout: Duration::ZERO,
            flush_timeout: Duration::from_secs(5),
            statistics_interval: Duration::from_secs(15),
            tls: KafkaTlsConfig::default(),
            sasl: KafkaSaslConfig::default(),
            options: BTreeMap::new(),
        }
    }
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

/// A valid topic name (Kafka's rule: 1–249 of `[a-zA-Z0-9._-]`, not `.` or `..`).
fn topic_ok(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl KafkaConfig {
    /// Whether the sink is configured.
    pub fn enabled(&self) -> bool {
        !self.brokers.is_empty()
    }

    /// `security.protocol` from the TLS and SASL settings.
    pub fn security_protocol(&self) -> &'static str {
        match (self.tls.enabled, !self.sasl.mechanism.is_empty()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        for b in &self.brokers {
            let ok = b
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok || b.contains("://") {
                return Err(invalid("kafka.brokers", format!("`{b}` is not host:port")));
            }
        }
        for (key, t) in [
            ("kafka.topic_events", &self.topic_events),
            ("kafka.topic_alerts", &self.topic_alerts),
            ("kafka.topic_records", &self.topic_records),
        ] {
            if !topic_ok(t) {
                return Err(invalid(
                    key,
                    format!("`{t}` is not a topic name (1 to 249 of a-z A-Z 0-9 . _ -)"),
                ));
            }
        }
        if !KAFKA_COMPRESSION.contains(&self.compression.as_str()) {
            return Err(invalid(
                "kafka.compression",
                format!(
                    "unknown codec `{}` (use {})",
                    self.compression,
                    KAFKA_COMPRESSION.join(", ")
                ),
            ));
        }
        if !matches!(self.acks.as_str(), "all" | "1" | "0") {
            return Err(invalid("kafka.acks", "`all`, `1` or `0`"));
        }
        if self.idempotence && self.acks != "all" {
            return Err(invalid(
                "kafka.idempotence",
                "the idempotent producer needs acks = \"all\" (or set idempotence = false)",
            ));
        }
        if self.topic_events == self.topic_alerts
            || self.topic_events == self.topic_records
            || self.topic_alerts == self.topic_records
        {
            return Err(invalid(
                "kafka.topic_alerts",
                "events, alerts and records need topics of their own (their messages differ)",
            ));
        }
        if self.queue_messages == 0 || self.queue_messages > 10_000_000 {
            return Err(invalid("kafka.queue_messages", "1 to 10000000"));
        }
        if self.queue_bytes < 1024 * 1024 || self.queue_bytes > (i32::MAX as u64) * 1024 {
            return Err(invalid("kafka.queue_bytes", "1 MiB to 2 TiB"));
        }
        if self.linger > Duration::from_secs(900) {
            return Err(invalid("kafka.linger", "at most 15m"));
        }
        if self.flush_timeout.is_zero() || self.flush_timeout > Duration::from_secs(600) {
            return Err(invalid("kafka.flush_timeout", "more than 0s, at most 10m"));
        }
        if self.statistics_interval < Duration::from_secs(1)
            || self.statistics_interval > Duration::from_secs(86_400)
        {
            return Err(invalid("kafka.statistics_interval", "1s to 24h"));
        }
        if self.message_timeout > Duration::from_millis(i32::MAX as u64) {
            return Err(invalid("kafka.message_timeout", "at most 24d"));
        }
        if !self.message_timeout.is_zero() && self.message_timeout <= self.linger {
            return Err(invalid(
                "kafka.message_timeout",
                "must be longer than kafka.linger (or 0s: no limit)",
            ));
        }
        if self.client_id.is_empty() {
            return Err(invalid("kafka.client_id", "must not be empty"));
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(invalid("kafka.tls", "cert_file and key_file go together"));
        }
        if !self.tls.enabled
            && (self.tls.ca_file.is_some()
                || self.tls.cert_file.is_some()
                || self.tls.insecure_skip_verify)
        {
            return Err(invalid(
                "kafka.tls",
                "TLS files or insecure_skip_verify are set but tls.enabled is false",
            ));
        }
        let s = &self.sasl;
        if !s.mechanism.is_empty() {
            if !SASL_MECHANISMS.contains(&s.mechanism.as_str()) {
                return Err(invalid(
                    "kafka.sasl.mechanism",
                    format!(
                        "unknown mechanism `{}` (use {})",
                        s.mechanism,
                        SASL_MECHANISMS.join(", ")
                    ),
                ));
            }
            if s.username.is_empty() {
                return Err(invalid("kafka.sasl.username", "needed with a mechanism"));
            }
            if s.password.is_some() == s.password_file.is_some() {
                return Err(invalid(
                    "kafka.sasl",
                    "give one of password and password_file",
                ));
            }
        } else if !s.username.is_empty() || s.password.is_some() || s.password_file.is_some() {
            return Err(invalid(
                "kafka.sasl.mechanism",
                "credentials are set but no mechanism",
            ));
        }
        for k in self.options.keys() {
            if k.is_empty() || k.contains(char::is_whitespace) {
                return Err(invalid(
                    "kafka.options",
                    format!("`{k}` is not a setting name"),
                ));
            }
        }
        Ok(())
    }

    /// Files the settings name, with their keys (checked at start and by `flowhook check`).
    pub fn files(&self) -> Vec<(&'static str, &PathBuf)> {
        let mut v = Vec::new();
        if !self.enabled() {
            return v;
        }
        for (k, f) in [
            ("kafka.tls.ca_file", &self.tls.ca_file),
            ("kafka.tls.cert_file", &self.tls.cert_file),
            ("kafka.tls.key_file", &self.tls.key_file),
            ("kafka.sasl.password_file", &self.sasl.password_file),
        ] {
            if let Some(p) = f {
                v.push((k, p));
            }
        }
        v
    }
}
