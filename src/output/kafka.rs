//! The Kafka sink (cargo feature `kafka`): each line of the output becomes
//! one message, events to `kafka.topic_events`, alerts to
//! `kafka.topic_alerts`, records to `kafka.topic_records`, keyed by the
//! flow key (16 hex digits, the JSON's `key`) so one flow's messages share a
//! partition and keep their order.
//!
//! In: [`Lines`] batches on the output thread. Out: messages handed to
//! librdkafka's idempotent producer (`rdkafka`), which batches, compresses,
//! retries and reconnects on its own thread. Handing over never blocks: the
//! client's queue is bounded (`kafka.queue_messages`, `kafka.queue_bytes`)
//! and what it refuses is dropped and counted. Delivery reports count
//! acknowledged and failed messages; statistics give the brokers' state and
//! round-trip times. `close` flushes until `kafka.flush_timeout` (or the
//! service's shutdown deadline, whichever comes first), then purges what is
//! left, whose delivery reports count it as dropped (`shutdown`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer,
};
use rdkafka::statistics::Statistics;

use super::proto::{self, LineKind};
use super::{Lines, Sink, SinkError};
use crate::config::{KafkaConfig, KafkaFormat};
use crate::telemetry::{KafkaTopicTelemetry, RateLimit};

/// One topic: its name and metrics.
struct Topic {
    name: String,
    tel: KafkaTopicTelemetry,
}

/// Callbacks from the client's thread.
struct Context {
    topics: [Topic; 3],
    /// Messages purged at shutdown (their delivery reports count them as dropped).
    purged: AtomicI64,
    /// A fatal error of the idempotent producer was logged.
    fatal: AtomicBool,
    logs: std::sync::Mutex<RateLimit>,
}

impl Context {
    fn warn(&self, what: &'static str, detail: &str) {
        let allowed = self.logs.lock().ok().and_then(|mut l| l.allow(what));
        if let Some(held) = allowed {
            tracing::warn!(suppressed = held, "kafka: {detail}");
        }
    }
}

/// The stable code of a failed delivery.
fn failure_code(e: &KafkaError) -> &'static str {
    use RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(C::MessageTimedOut | C::RequestTimedOut) => "timeout",
        Some(C::MessageSizeTooLarge | C::InvalidMessageSize) => "too_large",
        Some(C::UnknownTopic | C::UnknownTopicOrPartition | C::UnknownPartition) => "unknown_topic",
        Some(
            C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::Authentication,
        ) => "auth",
        Some(
            C::AllBrokersDown
            | C::BrokerTransportFailure
            | C::NotLeaderForPartition
            | C::NotEnoughReplicas
            | C::NotEnoughReplicasAfterAppend
            | C::LeaderNotAvailable,
        ) => "broker",
        _ => "other",
    }
}

impl ClientContext for Context {
    fn stats(&self, s: Statistics) {
        for b in s.brokers.values() {
            if b.source == "internal" || b.nodeid < 0 {
                continue;
            }
            let rtt = b
                .rtt
                .as_ref()
                .filter(|w| w.cnt > 0)
                .map(|w| (w.avg as f64 / 1e6, w.p99 as f64 / 1e6));
            // UPDATE: connected, refreshing its metadata
            let up = matches!(b.state.as_str(), "UP" | "UPDATE");
            crate::telemetry::kafka_broker(&b.nodename, up, rtt);
        }
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => self.warn("log", &format!("{fac}: {msg}")),
            RDKafkaLogLevel::Warning | RDKafkaLogLevel::Notice => {
                tracing::debug!("kafka: {fac}: {msg}")
            }
            _ => tracing::trace!("kafka: {fac}: {msg}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.warn("error", &format!("{error}: {reason}"));
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, topic: usize) {
        let t = &self.topics[topic.min(2)];
        t.tel.depth.decrement(1.0);
        match result {
            Ok(_) => t.tel.sent.increment(1),
            Err((e, _))
                if matches!(
                    e.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
                ) =>
            {
                t.tel.dropped("shutdown", 1);
                self.purged.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                let code = failure_code(e);
                t.tel.failed(code, 1);
                self.warn(code, &format!("a message to {} failed: {e}", t.name));
            }
        }
    }
}

/// Events, alerts and records to Kafka.
pub struct KafkaSink {
    producer: ThreadedProducer<Context>,
    ctx: Arc<Context>,
    format: KafkaFormat,
    flush_timeout: Duration,
    key: [u8; 16],
    buf: Vec<u8>,
}

/// The client's settings from `[kafka]` (secrets included: never logged).
pub fn client_config(cfg: &KafkaConfig) -> Result<ClientConfig, SinkError> {
    let mut c = ClientConfig::new();
    let ms = |d: Duration| d.as_millis().to_string();
    c.set("bootstrap.servers", cfg.brokers.join(","))
        .set("client.id", &cfg.client_id)
        .set("compression.codec", &cfg.compression)
        .set("acks", &cfg.acks)
        .set("enable.idempotence", cfg.idempotence.to_string())
        .set(
            "queue.buffering.max.messages",
            cfg.queue_messages.to_string(),
        )
        .set(
            "queue.buffering.max.kbytes",
            (cfg.queue_bytes / 1024).to_string(),
        )
        .set("linger.ms", ms(cfg.linger))
        .set("message.timeout.ms", ms(cfg.message_timeout))
        .set("statistics.interval.ms", ms(cfg.statistics_interval))
        // the partition of a key as Kafka's Java client chooses it
        .set("partitioner", "murmur2_random")
        .set("security.protocol", cfg.security_protocol());
    if cfg.tls.enabled {
        if let Some(p) = &cfg.tls.ca_file {
            c.set("ssl.ca.location", p.display().to_string());
        }
        if let (Some(cert), Some(key)) = (&cfg.tls.cert_file, &cfg.tls.key_file) {
            c.set("ssl.certificate.location", cert.display().to_string())
                .set("ssl.key.location", key.display().to_string());
        }
        if cfg.tls.insecure_skip_verify {
            c.set("enable.ssl.certificate.verification", "false")
                .set("ssl.endpoint.identification.algorithm", "none");
        }
    }
    let s = &cfg.sasl;
    if !s.mechanism.is_empty() {
        let password = match (&s.password, &s.password_file) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => crate::config::read_secret_file(f).map_err(|e| SinkError::Io {
                path: f.display().to_string(),
                source: e,
            })?,
            (None, None) => String::new(),
        };
        c.set("sasl.mechanisms", &s.mechanism)
            .set("sasl.username", &s.username)
            .set("sasl.password", password);
    }
    for (k, v) in &cfg.options {
        c.set(k, v);
    }
    Ok(c)
}

impl KafkaSink {
    /// Creates the producer (it connects in the background: brokers that are
    /// down now are retried, and messages wait for them in the queue).
    pub fn new(cfg: &KafkaConfig) -> Result<Self, SinkError> {
        let c = client_config(cfg)?;
        let topic = |name: &str| Topic {
            name: name.to_string(),
            tel: KafkaTopicTelemetry::new(name),
        };
        let ctx = Context {
            topics: [
                topic(&cfg.topic_events),
                topic(&cfg.topic_alerts),
                topic(&cfg.topic_records),
            ],
            purged: AtomicI64::new(0),
            fatal: AtomicBool::new(false),
            logs: std::sync::Mutex::new(RateLimit::new(Duration::from_secs(10))),
        };
        let producer: ThreadedProducer<Context> = c
            .create_with_context(ctx)
            .map_err(|e| SinkError::Kafka(e.to_string()))?;
        let ctx = producer.context().clone();
        Ok(KafkaSink {
            producer,
            ctx,
            format: cfg.format,
            flush_timeout: cfg.flush_timeout,
            key: [0; 16],
            buf: Vec::with_capacity(1024),
        })
    }

    /// Hands one line to the client; false when it was dropped (and counted).
    fn send(&mut self, idx: usize, key: u64, line: &[u8], kind: LineKind) -> bool {
        let payload: &[u8] = match self.format {
            KafkaFormat::Json => line,
            KafkaFormat::Protobuf => {
                if let Err(e) = proto::encode(kind, line, &mut self.buf) {
                    self.ctx.topics[idx].tel.dropped("encode", 1);
                    self.ctx.warn("encode", &e.to_string());
                    return false;
                }
                &self.buf
            }
        };
        let t = &self.ctx.topics[idx];
        let mut rec = BaseRecord::with_opaque_to(&t.name, idx).payload(payload);
        if key != 0 {
            crate::flow::json::hex16_into(&mut self.key, key);
            rec = rec.key(&self.key[..]);
        }
        // counted before the send: the delivery report may come first
        t.tel.depth.increment(1.0);
        match self.producer.send(rec) {
            Ok(()) => true,
            Err((e, _)) => {
                t.tel.depth.decrement(1.0);
                let reason = match e.rdkafka_error_code() {
                    Some(RDKafkaErrorCode::QueueFull) => "queue_full",
                    Some(RDKafkaErrorCode::MessageSizeTooLarge) => "too_large",
                    _ => "error",
                };
                t.tel.dropped(reason, 1);
                // a fatal error (the idempotent producer's) stops every send until a restart
                if reason == "error"
                    && let Some((code, why)) = self.producer.client().fatal_error()
                    && !self.ctx.fatal.swap(true, Ordering::Relaxed)
                {
                    tracing::error!(
                        "kafka: the producer failed for good ({code:?}: {why}); messages are dropped and counted until flowhook restarts"
                    );
                }
                self.ctx
                    .warn(reason, &format!("a message to {} was dropped: {e}", t.name));
                false
            }
        }
    }
}

impl Sink for KafkaSink {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn write(&mut self, batch: &Lines) -> Result<usize, SinkError> {
        debug_assert_eq!(batch.keys.len(), batch.count, "one key per line");
        let mut sent = 0;
        for (line, key) in batch.iter() {
            let Some(kind) = LineKind::of(line) else {
                continue;
            };
            let idx = match kind {
                LineKind::Event => 0,
                LineKind::Alert => 1,
                LineKind::Record => 2,
            };
            sent += usize::from(self.send(idx, key, line, kind));
        }
        Ok(sent)
    }

    /// The client sends on its own: nothing to do between batches.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn close(&mut self, deadline: Option<Instant>) -> Result<(), SinkError> {
        let mut wait = self.flush_timeout;
        if let Some(d) = deadline {
            wait = wait.min(d.saturating_duration_since(Instant::now()));
        }
        if self.producer.flush(wait).is_err() {
            // what is left gets its delivery report now, as purged
            self.producer
                .purge(PurgeConfig::default().queue().inflight());
            let _ = self.producer.flush(Duration::from_millis(500));
        }
        let left = self.ctx.purged.load(Ordering::Relaxed);
        if left > 0 {
            tracing::error!(
                undelivered = left,
                "kafka: {left} messages were not delivered within {}",
                humantime::format_duration(wait)
            );
            return Err(SinkError::Kafka(format!("{left} messages not delivered")));
        }
        tracing::info!("kafka: every message delivered");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_reach_the_client() {
        let mut cfg = KafkaConfig {
            brokers: vec!["k1:9092".into(), "k2:9092".into()],
            ..KafkaConfig::default()
        };
        cfg.tls.enabled = true;
        cfg.sasl.mechanism = "SCRAM-SHA-512".into();
        cfg.sasl.username = "u".into();
        cfg.sasl.password = Some("p".into());
        cfg.options
            .insert("socket.keepalive.enable".into(), "true".into());
        cfg.options.insert("linger.ms".into(), "7".into());
        let c = client_config(&cfg).unwrap();
        assert_eq!(c.get("bootstrap.servers"), Some("k1:9092,k2:9092"));
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("compression.codec"), Some("lz4"));
        assert_eq!(c.get("socket.keepalive.enable"), Some("true"));
        assert_eq!(c.get("linger.ms"), Some("7"), "options are applied last");
        // the client accepts every setting flowhook gives it
        let cfg = KafkaConfig {
            brokers: vec!["127.0.0.1:1".into()],
            compression: "zstd".into(),
            ..KafkaConfig::default()
        };
        assert!(KafkaSink::new(&cfg).is_ok());
        for codec in ["gzip", "lz4", "none"] {
            let cfg = KafkaConfig {
                brokers: vec!["127.0.0.1:1".into()],
                compression: codec.into(),
                ..KafkaConfig::default()
            };
            assert!(KafkaSink::new(&cfg).is_ok(), "{codec}");
        }
        let mut bad = KafkaConfig {
            brokers: vec!["127.0.0.1:1".into()],
            ..KafkaConfig::default()
        };
        bad.options.insert("no.such.setting".into(), "1".into());
        let e = KafkaSink::new(&bad).err().unwrap().to_string();
        assert!(e.contains("no.such.setting"), "{e}");
    }
}
