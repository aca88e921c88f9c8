//! Configuration: a TOML file (optional) layered with `FLOWHOOK__SECTION__KEY`
//! environment overrides, deserialized into typed sections and validated once
//! at start.
//!
//! In: `--config PATH` and the environment. Out: a [`Config`] whose values
//! are ready to use (socket addresses, durations, CIDRs), or a [`ConfigError`]
//! naming the key and the problem. Every key is documented in
//! `docs/configuration.md`; the defaults live here and only here. A leaf:
//! configuration imports no stage; each stage converts its section into its
//! runtime settings (`DecoderLimits::from_config`, `TableConfig::from_config`).

mod alerts;
mod kafka;
mod sections;
#[cfg(test)]
mod tests;

use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use alerts::{
    ALERT_LABELS, AlertmanagerConfig, BasicAuth, FACILITIES, HttpSinkConfig, SEVERITY_ORDER,
    SyslogConfig, TlsConfig, WebhookConfig, WebhookFormat, severity_rank,
};
pub use kafka::{
    KAFKA_COMPRESSION, KafkaConfig, KafkaFormat, KafkaSaslConfig, KafkaTlsConfig, SASL_MECHANISMS,
};
pub use sections::{
    DecodeConfig, EVENT_NAMES, FlowConfig, GeoConfig, IngestConfig, LogConfig, MetricsConfig,
    NetworkConfig, OutputConfig, SamplingConfig, SamplingMode, ScriptsConfig, StateConfig,
};

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// UDP listeners and receive queues.
    pub ingest: IngestConfig,
    /// Decoder shards and their caps.
    pub decode: DecodeConfig,
    /// Flow table and lifecycle timers.
    pub flow: FlowConfig,
    /// Where records and events are written.
    pub output: OutputConfig,
    /// Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// Lua flow scripts.
    pub scripts: ScriptsConfig,
    /// MaxMind-format databases.
    pub geo: GeoConfig,
    /// Templates and sampling rates kept across restarts.
    pub state: StateConfig,
    /// Local networks and their labels (`[[networks]]`; most specific match wins).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkConfig>,
    /// Sampling rates for exporters that announce none or a wrong one (`[[sampling]]`; first match wins).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sampling: Vec<SamplingConfig>,
    /// Logging.
    pub log: LogConfig,
    /// Script alerts to Prometheus Alertmanager.
    pub alertmanager: AlertmanagerConfig,
    /// Script alerts to HTTP endpoints as JSON.
    pub webhook: WebhookConfig,
    /// Script alerts (and optionally events) as RFC 5424 syslog messages.
    pub syslog: SyslogConfig,
    /// Events, alerts and records to Kafka topics.
    pub kafka: KafkaConfig,
}

/// A configuration that cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{path}: {detail}")]
    File { path: String, detail: String },
    #[error("configuration: {0}")]
    Parse(String),
    #[error("configuration key `{key}`: {problem}")]
    Invalid { key: &'static str, problem: String },
}

impl ConfigError {
    pub fn code(&self) -> &'static str {
        match self {
            ConfigError::File { .. } => "file",
            ConfigError::Parse(_) => "parse",
            ConfigError::Invalid { .. } => "invalid",
        }
    }
}

/// A secret kept in a file (`password_file`, `bearer_token_file`: a
/// Kubernetes or compose secret), without its trailing newline.
pub fn read_secret_file(path: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(path).map(|s| s.trim_end_matches(['\n', '\r']).to_string())
}

/// Environment variable prefix: `FLOWHOOK__INGEST__LISTEN=…`.
pub const ENV_PREFIX: &str = "FLOWHOOK";

impl Config {
    /// Loads defaults ← `path` (when given) ← environment, then validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// As [`Config::load`], with the environment given explicitly (tests).
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut b = config::Config::builder();
        if let Some(p) = path {
            let name = p.display().to_string();
            let text = std::fs::read_to_string(p).map_err(|e| ConfigError::File {
                path: name.clone(),
                detail: e.to_string(),
            })?;
            // parse once here so syntax errors name the file
            toml::from_str::<toml::Table>(&text).map_err(|e| ConfigError::File {
                path: name.clone(),
                detail: e.to_string(),
            })?;
            b = b.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }
        let env: std::collections::HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .collect();
        b = b.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("ingest.listen")
                .with_list_parse_key("ingest.allow")
                .with_list_parse_key("output.events")
                .with_list_parse_key("scripts.enable")
                .with_list_parse_key("scripts.disable")
                .with_list_parse_key("alertmanager.url")
                .with_list_parse_key("alertmanager.scripts")
                .with_list_parse_key("webhook.url")
                .with_list_parse_key("webhook.scripts")
                .with_list_parse_key("syslog.target")
                .with_list_parse_key("syslog.scripts")
                .with_list_parse_key("kafka.brokers")
                .try_parsing(true)
                .source(Some(env)),
        );
        let raw = b.build().map_err(|e| ConfigError::Parse(e.to_string()))?;
        let cfg: Config = raw
            .try_deserialize()
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.ingest.validate()?;
        self.decode.validate()?;
        self.flow.validate()?;
        self.output.validate()?;
        self.geo.validate()?;
        self.scripts.validate()?;
        self.state.validate()?;
        for s in &self.sampling {
            s.validate()?;
        }
        self.alertmanager.validate()?;
        self.webhook.validate()?;
        self.syslog.validate()?;
        self.kafka.validate()?;
        if self.kafka.enabled()
            && self.kafka.flush_timeout.as_secs() >= self.flow.shutdown_timeout_secs
        {
            return Err(ConfigError::Invalid {
                key: "kafka.flush_timeout",
                problem: format!(
                    "must be shorter than flow.shutdown_timeout_secs ({}s), which bounds the whole shutdown",
                    self.flow.shutdown_timeout_secs
                ),
            });
        }
        if self.syslog.events && !self.syslog.target.is_empty() && !self.output.enabled {
            return Err(ConfigError::Invalid {
                key: "syslog.events",
                problem: "sends the output's event lines, so it needs output.enabled = true".into(),
            });
        }
        Ok(())
    }

    /// The effective configuration as TOML (for `flowhook check`), secrets hidden.
    pub fn to_toml(&self) -> String {
        let mut c = self.clone();
        let hide = |s: &mut Option<String>| {
            if s.is_some() {
                *s = Some("<hidden>".into());
            }
        };
        hide(&mut c.alertmanager.bearer_token);
        hide(&mut c.webhook.bearer_token);
        hide(&mut c.kafka.sasl.password);
        for (k, v) in c.kafka.options.iter_mut() {
            if ["password", "secret", "token", ".pem", "oauthbearer.config"]
                .iter()
                .any(|w| k.contains(w))
            {
                *v = "<hidden>".into();
            }
        }
        for b in [&mut c.alertmanager.basic_auth, &mut c.webhook.basic_auth]
            .into_iter()
            .flatten()
        {
            hide(&mut b.password);
        }
        for u in c.alertmanager.url.iter_mut() {
            *u = crate::alert::http::redact(u, true);
        }
        for u in c.webhook.url.iter_mut() {
            *u = crate::alert::http::redact(u, false);
        }
        for v in c
            .alertmanager
            .headers
            .values_mut()
            .chain(c.webhook.headers.values_mut())
        {
            *v = "<hidden>".into();
        }
        toml::to_string_pretty(&c).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}
