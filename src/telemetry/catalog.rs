//! Every metric flowhook exposes: name, type, labels and help text. The
//! exporter describes them from here, `docs/metrics.md` documents the same
//! list, and a test keeps the two and `/metrics` in step.

/// Metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const fn c(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Counter,
        labels,
        help,
    }
}

const fn g(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Gauge,
        labels,
        help,
    }
}

/// flowhook's own metrics (the process metrics come from `metrics-process`).
pub const METRICS: &[Metric] = &[
    g(
        "flowhook_build_info",
        &["version"],
        "Always 1; the version label tells the running version.",
    ),
    // ingest
    c(
        "flowhook_ingest_datagrams_total",
        &["listener"],
        "UDP datagrams received, per listen address index.",
    ),
    c(
        "flowhook_ingest_bytes_total",
        &["listener"],
        "UDP payload bytes received.",
    ),
    c(
        "flowhook_ingest_datagrams_dropped_total",
        &["listener", "reason"],
        "Datagrams dropped before decoding: queue_full, not_allowed, oversized.",
    ),
    c(
        "flowhook_ingest_kernel_drops_total",
        &["listener"],
        "Datagrams the kernel dropped because the socket's receive buffer was full.",
    ),
    // decode
    c(
        "flowhook_decode_records_total",
        &["exporter", "version", "kind"],
        "Records decoded, per exporter (bounded), export version and kind (flow, options).",
    ),
    c(
        "flowhook_decode_records_sampling_total",
        &["exporter", "source"],
        "Flow records per exporter (bounded) by where their sampling rate came from: header, record, options, selector, config; none when no rate is known, unscalable for a time-based selector.",
    ),
    c(
        "flowhook_decode_errors_total",
        &["exporter", "reason"],
        "Datagrams (or parts) that could not be decoded, per exporter and reason.",
    ),
    c(
        "flowhook_decode_sequence_gaps_total",
        &[],
        "Export messages whose sequence number skipped ahead.",
    ),
    c(
        "flowhook_decode_sequence_lost_total",
        &[],
        "Records (v5/v7, IPFIX) or packets (v9) lost, estimated from sequence numbers.",
    ),
    c(
        "flowhook_decode_sequence_late_total",
        &[],
        "Duplicate or reordered export messages.",
    ),
    c(
        "flowhook_decode_exporter_restarts_total",
        &[],
        "Exporter restarts seen (sequence or uptime reset).",
    ),
    c(
        "flowhook_decode_trailing_bytes_total",
        &[],
        "Bytes after the end of an export message, not decoded.",
    ),
    c(
        "flowhook_decode_sets_without_template_total",
        &[],
        "Data sets that arrived before their template (held for it).",
    ),
    g(
        "flowhook_decode_exporter_streams",
        &["shard"],
        "Exporter streams (address, version, domain) with state.",
    ),
    g("flowhook_decode_templates", &["shard"], "Templates known."),
    g(
        "flowhook_decode_pending_sets",
        &["shard"],
        "Data sets waiting for their template.",
    ),
    c(
        "flowhook_decode_template_events_total",
        &["event"],
        "Templates added, evicted (LRU) or expired.",
    ),
    c(
        "flowhook_decode_pending_sets_total",
        &["result"],
        "Data sets held for a template, replayed when it came, or dropped (expired or evicted).",
    ),
    // flows
    g("flowhook_flows_active", &["shard"], "Flows tracked."),
    c("flowhook_flows_started_total", &[], "Flows started."),
    c(
        "flowhook_flows_ended_total",
        &["reason"],
        "Flows ended, by end reason.",
    ),
    c(
        "flowhook_flows_evicted_total",
        &[],
        "Flows ended because the table was full.",
    ),
    c(
        "flowhook_flow_events_total",
        &["event"],
        "Lifecycle events emitted, by type.",
    ),
    // enrichment
    c(
        "flowhook_geo_lookups_total",
        &["db", "result"],
        "Database lookups by database (city, country, asn) and result (found, not_found, error).",
    ),
    c(
        "flowhook_geo_cache_total",
        &["result"],
        "Enrichment cache hits and misses.",
    ),
    c(
        "flowhook_geo_reloads_total",
        &["result"],
        "Database reloads, ok or failed.",
    ),
    c(
        "flowhook_script_workers_replaced_total",
        &[],
        "Script workers replaced by the watchdog: inside one hook call past the hard limit (10x scripts.deadline, at least 250 ms); that event is lost.",
    ),
    // state
    c(
        "flowhook_state_writes_total",
        &["result"],
        "Writes of the state file (templates and sampling across restarts), ok or failed.",
    ),
    g(
        "flowhook_state_templates",
        &[],
        "Templates in the state file after its last write.",
    ),
    c(
        "flowhook_state_templates_restored_total",
        &[],
        "Templates restored from the state file: at start, and from an instance this one took over from.",
    ),
    c(
        "flowhook_state_load_errors_total",
        &["reason"],
        "State files that could not be used at start (read, header, version, truncated, checksum, body); the service starts without them.",
    ),
    c(
        "flowhook_state_snapshots_deferred_total",
        &[],
        "Shard snapshots put off because the state writer's queue was full (sent on a later turn).",
    ),
    // scripts
    Metric {
        name: "flowhook_script_hook_duration_seconds",
        kind: Kind::Histogram,
        labels: &["script", "hook"],
        help: "Time of each hook call, per script and hook.",
    },
    c(
        "flowhook_script_calls_total",
        &["script", "hook"],
        "Hook calls.",
    ),
    c(
        "flowhook_script_errors_total",
        &["script", "hook", "kind"],
        "Failed hook calls by kind: runtime, timeout, memory.",
    ),
    g(
        "flowhook_script_enabled",
        &["script"],
        "1 when the script runs, 0 when it is disabled (by configuration, setup, or repeated timeouts).",
    ),
    c(
        "flowhook_script_events_dropped_total",
        &["hook"],
        "Events that did not reach the scripts because a worker's queue was full.",
    ),
    c(
        "flowhook_script_alerts_total",
        &["script", "status", "severity"],
        "Alerts raised.",
    ),
    c(
        "flowhook_script_alerts_suppressed_total",
        &["script"],
        "Alerts held back by the per-script rate limit.",
    ),
    c(
        "flowhook_script_reloads_total",
        &["result"],
        "Script reloads, ok or failed (a failed script keeps its previous version).",
    ),
    // sinks
    c(
        "flowhook_sink_records_written_total",
        &["sink"],
        "Lines written by a sink.",
    ),
    c(
        "flowhook_sink_write_errors_total",
        &["sink"],
        "Sink write failures.",
    ),
    // alert delivery (alertmanager, webhook, syslog), per target
    c(
        "flowhook_sink_sent_total",
        &["sink", "target"],
        "Alerts (and syslog events) delivered to a target; for sink=\"kafka\", messages acknowledged by the brokers, per topic.",
    ),
    c(
        "flowhook_sink_failed_total",
        &["sink", "target", "code"],
        "Failed delivery attempts by error code (connect, timeout, tls, io, http_3xx, http_4xx, http_5xx); retried unless the code is http_3xx or http_4xx (408 and 429 are retried). For sink=\"kafka\": messages the client gave up after its retries (timeout, too_large, unknown_topic, auth, broker, other).",
    ),
    c(
        "flowhook_sink_dropped_total",
        &["sink", "target", "reason"],
        "Alerts given up: queue_full (the oldest, when the queue is full), rejected (the target refused them), shutdown (undelivered when the deadline passed). For sink=\"kafka\": queue_full (the newest, when the client's queue is full), too_large, encode, error, shutdown.",
    ),
    g(
        "flowhook_sink_queue_depth",
        &["sink", "target"],
        "Alerts waiting for a target, the batch in flight included; for sink=\"kafka\", messages of a topic held by the client until the brokers acknowledge them.",
    ),
    g(
        "flowhook_kafka_broker_up",
        &["broker"],
        "1 while the Kafka client is connected to the broker (from the client's statistics, every kafka.statistics_interval).",
    ),
    g(
        "flowhook_kafka_broker_rtt_seconds",
        &["broker", "stat"],
        "Request round-trip time to a Kafka broker over the last statistics window: stat=\"mean\" and \"p99\".",
    ),
    Metric {
        name: "flowhook_sink_request_duration_seconds",
        kind: Kind::Histogram,
        labels: &["sink", "target"],
        help: "Time of each delivery attempt (an HTTP request, a syslog write), failed ones included.",
    },
];
