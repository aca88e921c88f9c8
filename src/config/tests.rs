use std::io::Write;

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn toml_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[test]
fn defaults_are_valid() {
    let c = Config::load_with_env(None, env(&[])).unwrap();
    assert_eq!(c.ingest.listen.len(), 2);
    assert_eq!(c.ingest.listen[0].port(), 2055);
    assert_eq!(c.ingest.listen[1].port(), 4739);
    assert_eq!(c.ingest.recv_buffer_bytes, 8 << 20);
    assert_eq!(c.output.path.to_str(), Some("-"));
}

#[test]
fn env_overrides_lists_and_numbers() {
    let c = Config::load_with_env(
        None,
        env(&[
            ("FLOWHOOK__INGEST__LISTEN", "127.0.0.1:9995,[::1]:9995"),
            ("FLOWHOOK__INGEST__RECV_BUFFER_BYTES", "1048576"),
            ("FLOWHOOK__OUTPUT__PATH", "/tmp/x.jsonl"),
            ("FLOWHOOK__DECODE__PENDING_TTL", "5s"),
        ]),
    )
    .unwrap();
    assert_eq!(
        c.ingest.listen,
        vec![
            "127.0.0.1:9995".parse().unwrap(),
            "[::1]:9995".parse().unwrap()
        ]
    );
    assert_eq!(c.ingest.recv_buffer_bytes, 1 << 20);
    assert_eq!(c.decode.pending_ttl, std::time::Duration::from_secs(5));
}

#[test]
fn file_then_env() {
    let f = toml_file(
        "[ingest]\nlisten = [\"127.0.0.1:1234\"]\nallow = [\"10.0.0.0/8\"]\n[output]\nenabled = false\n",
    );
    let c = Config::load_with_env(
        Some(f.path()),
        env(&[("FLOWHOOK__OUTPUT__ENABLED", "true")]),
    )
    .unwrap();
    assert_eq!(c.ingest.listen, vec!["127.0.0.1:1234".parse().unwrap()]);
    assert_eq!(c.ingest.allow.len(), 1);
    assert!(c.output.enabled);
}

#[test]
fn validate_rejects_unknown_key() {
    let f = toml_file("[ingest]\nlisten_on = [\"127.0.0.1:1234\"]\n");
    let e = Config::load_with_env(Some(f.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("listen_on"), "{e}");
}

#[test]
fn validate_rejects_unknown_section_from_env() {
    let e = Config::load_with_env(None, env(&[("FLOWHOOK__NOPE__X", "1")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn validate_rejects_bad_address() {
    let e = Config::load_with_env(None, env(&[("FLOWHOOK__INGEST__LISTEN", "not-an-address")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("listen") || e.contains("socket address"), "{e}");
}

#[test]
fn validate_rejects_empty_listen() {
    let f = toml_file("[ingest]\nlisten = []\n");
    let e = Config::load_with_env(Some(f.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("ingest.listen"), "{e}");
}

#[test]
fn validate_rejects_small_buffer_and_zero_queue() {
    let e = Config::load_with_env(None, env(&[("FLOWHOOK__INGEST__RECV_BUFFER_BYTES", "10")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("ingest.recv_buffer_bytes"), "{e}");
    let e = Config::load_with_env(None, env(&[("FLOWHOOK__INGEST__QUEUE_DATAGRAMS", "0")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("ingest.queue_datagrams"), "{e}");
}

#[test]
fn validate_rejects_bad_duration() {
    let e = Config::load_with_env(None, env(&[("FLOWHOOK__DECODE__PENDING_TTL", "soon")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("pending_ttl") || e.contains("soon"), "{e}");
}

#[test]
fn validate_rejects_broken_toml_naming_file() {
    let f = toml_file("[ingest\nlisten = 1");
    let e = Config::load_with_env(Some(f.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains(&f.path().display().to_string()), "{e}");
}

#[test]
fn effective_config_renders() {
    let c = Config::default();
    let text = c.to_toml();
    assert!(text.contains("recv_buffer_bytes = 8388608"), "{text}");
}

#[test]
fn every_key_is_documented() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .unwrap();
    let mut cfg = Config::default();
    // optional keys render only when set
    cfg.decode.template_ttl = Some(std::time::Duration::from_secs(1));
    cfg.geo.city_db = Some("x".into());
    cfg.geo.country_db = Some("x".into());
    cfg.geo.asn_db = Some("x".into());
    cfg.state.dir = Some("x".into());
    cfg.scripts.conf.insert("x".into(), toml::Value::Integer(1));
    cfg.alertmanager.bearer_token = Some("x".into());
    cfg.alertmanager.bearer_token_file = Some("x".into());
    cfg.alertmanager.basic_auth = Some(Default::default());
    cfg.webhook.bearer_token = Some("x".into());
    cfg.webhook.bearer_token_file = Some("x".into());
    cfg.webhook.basic_auth = Some(Default::default());
    for t in [
        &mut cfg.alertmanager.tls,
        &mut cfg.webhook.tls,
        &mut cfg.syslog.tls,
    ] {
        t.ca_file = Some("x".into());
        t.cert_file = Some("x".into());
        t.key_file = Some("x".into());
    }
    cfg.kafka.tls.ca_file = Some("x".into());
    cfg.kafka.tls.cert_file = Some("x".into());
    cfg.kafka.tls.key_file = Some("x".into());
    cfg.kafka.sasl.password = Some("x".into());
    cfg.kafka.sasl.password_file = Some("x".into());
    cfg.kafka.options.insert("x".into(), "y".into());
    let table: toml::Table = toml::from_str(&cfg.to_toml()).unwrap();
    let mut missing = Vec::new();
    for (section, keys) in &table {
        for key in keys.as_table().unwrap().keys() {
            let name = format!("`{section}.{key}`");
            if !doc.contains(&name) {
                missing.push(name);
            }
            // the Kafka sink's nested tables, key by key
            if section == "kafka" && (key == "tls" || key == "sasl") {
                for k in keys[key].as_table().unwrap().keys() {
                    let name = format!("`kafka.{key}.{k}`");
                    if !doc.contains(&name) {
                        missing.push(name);
                    }
                }
                continue;
            }
            // nested tables of fixed keys (`alertmanager.tls.ca_file`)
            if let Some(sub) = keys[key].as_table().filter(|_| key == "tls") {
                for k in sub.keys() {
                    let name = format!("{section}.tls.{k}");
                    // the other sections refer to alertmanager's table by key name
                    let found = if section == "alertmanager" {
                        doc.contains(&name)
                    } else {
                        doc.contains(&format!("`{k}`"))
                    };
                    if !found {
                        missing.push(name);
                    }
                }
            }
        }
    }
    assert!(missing.is_empty(), "undocumented keys: {missing:?}");
}

#[test]
fn alert_sinks_from_file_and_environment() {
    let f = toml_file(
        "[alertmanager]\nurl = \"http://am:9093\"\nmin_severity = \"warning\"\nlabels = { site = \"fra1\" }\nbearer_token = \"t0p\"\n\n[webhook]\nurl = [\"https://a.example/h\", \"https://b.example/h\"]\nformat = \"alertmanager\"\nheaders = { \"X-Site\" = \"fra1\" }\n\n[syslog]\ntarget = \"tcp://siem:601\"\nfacility = \"local3\"\n",
    );
    let c = Config::load_with_env(
        Some(f.path()),
        env(&[
            (
                "FLOWHOOK__ALERTMANAGER__URL",
                "http://am-0:9093,http://am-1:9093",
            ),
            ("FLOWHOOK__SYSLOG__SCRIPTS", "blocklist"),
        ]),
    )
    .unwrap();
    assert_eq!(c.alertmanager.url, ["http://am-0:9093", "http://am-1:9093"]);
    assert_eq!(c.alertmanager.min_severity, "warning");
    assert_eq!(c.alertmanager.labels["site"], "fra1");
    assert_eq!(c.webhook.url.len(), 2);
    assert_eq!(c.webhook.format, WebhookFormat::Alertmanager);
    assert_eq!(c.syslog.target, ["tcp://siem:601"]);
    assert_eq!(c.syslog.facility_code(), 19);
    assert_eq!(c.syslog.scripts, ["blocklist"]);
    // the effective configuration hides secrets
    let shown = c.to_toml();
    assert!(!shown.contains("t0p"), "{shown}");
    assert!(shown.contains("\"https://a.example/…\""), "{shown}");
    assert!(shown.contains("X-Site = \"<hidden>\""), "{shown}");
    assert!(shown.contains("bearer_token = \"<hidden>\""), "{shown}");
}

#[test]
fn alert_sink_mistakes_name_their_key() {
    for (k, v, key) in [
        ("FLOWHOOK__ALERTMANAGER__URL", "am:9093", "alertmanager.url"),
        ("FLOWHOOK__WEBHOOK__URL", "ftp://x/y", "webhook.url"),
        (
            "FLOWHOOK__WEBHOOK__MIN_SEVERITY",
            "loud",
            "webhook.min_severity",
        ),
        (
            "FLOWHOOK__ALERTMANAGER__LABELS__SEVERITY",
            "x",
            "alertmanager.labels",
        ),
        ("FLOWHOOK__SYSLOG__TARGET", "udp://host", "syslog.target"),
        (
            "FLOWHOOK__SYSLOG__TARGET",
            "http://host:514",
            "syslog.target",
        ),
        ("FLOWHOOK__SYSLOG__FACILITY", "local9", "syslog.facility"),
        ("FLOWHOOK__SYSLOG__APP_NAME", "two words", "syslog.app_name"),
        ("FLOWHOOK__WEBHOOK__QUEUE", "0", "webhook.queue"),
        (
            "FLOWHOOK__ALERTMANAGER__URL",
            "http://am:9093,http://am:9093/api/v2/alerts",
            "alertmanager.url",
        ),
        (
            "FLOWHOOK__SYSLOG__TARGET",
            "udp://h:514,udp://h:514",
            "syslog.target",
        ),
        (
            "FLOWHOOK__ALERTMANAGER__RESOLVE_TIMEOUT",
            "10ms",
            "alertmanager.resolve_timeout",
        ),
    ] {
        let e = Config::load_with_env(None, env(&[(k, v)]))
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{k}={v}: {e}");
    }
    let f = toml_file(
        "[alertmanager]\nurl = \"http://am:9093\"\nbearer_token = \"a\"\nbearer_token_file = \"/b\"\n",
    );
    let e = Config::load_with_env(Some(f.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("alertmanager.bearer_token"), "{e}");
    let f = toml_file("[webhook]\nurl = \"http://h\"\ntls = { cert_file = \"/c\" }\n");
    let e = Config::load_with_env(Some(f.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("webhook.tls"), "{e}");
    let f =
        toml_file("[syslog]\ntarget = \"udp://h:514\"\nevents = true\n[output]\nenabled = false\n");
    let e = Config::load_with_env(Some(f.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("syslog.events"), "{e}");
    let f = toml_file("[webhook]\nurl = \"http://h\"\nunknown_key = 1\n");
    assert!(Config::load_with_env(Some(f.path()), env(&[])).is_err());
}

#[test]
fn kafka_section_from_file_and_environment() {
    let f = toml_file(
        "[kafka]\nbrokers = [\"k0:9092\"]\ncompression = \"zstd\"\nformat = \"protobuf\"\n\n[kafka.sasl]\nmechanism = \"SCRAM-SHA-256\"\nusername = \"u\"\npassword = \"s3cret\"\n\n[kafka.options]\n\"socket.keepalive.enable\" = \"true\"\n\"sasl.oauthbearer.client.secret\" = \"zzz\"\n",
    );
    let c = Config::load_with_env(Some(f.path()), env(&[])).unwrap();
    assert!(c.kafka.enabled());
    assert_eq!(c.kafka.format, crate::config::KafkaFormat::Protobuf);
    assert_eq!(c.kafka.security_protocol(), "sasl_plaintext");
    let shown = c.to_toml();
    assert!(
        !shown.contains("s3cret") && !shown.contains("zzz"),
        "{shown}"
    );
    assert!(shown.contains("socket.keepalive.enable"), "{shown}");
    let c =
        Config::load_with_env(None, env(&[("FLOWHOOK__KAFKA__BROKERS", "a:9092,b:9092")])).unwrap();
    assert_eq!(c.kafka.brokers, vec!["a:9092", "b:9092"]);
    for (k, v, key) in [
        (
            "FLOWHOOK__KAFKA__BROKERS",
            "kafka://a:9092",
            "kafka.brokers",
        ),
        ("FLOWHOOK__KAFKA__BROKERS", "a", "kafka.brokers"),
        (
            "FLOWHOOK__KAFKA__COMPRESSION",
            "snappy2",
            "kafka.compression",
        ),
        ("FLOWHOOK__KAFKA__ACKS", "1", "kafka.idempotence"),
        ("FLOWHOOK__KAFKA__TOPIC_EVENTS", "a b", "kafka.topic_events"),
        (
            "FLOWHOOK__KAFKA__FLUSH_TIMEOUT",
            "30s",
            "kafka.flush_timeout",
        ),
        (
            "FLOWHOOK__KAFKA__SASL__USERNAME",
            "u",
            "kafka.sasl.mechanism",
        ),
        ("FLOWHOOK__KAFKA__TLS__CA_FILE", "/x", "kafka.tls"),
        (
            "FLOWHOOK__KAFKA__TOPIC_ALERTS",
            "flowhook.events",
            "kafka.topic_alerts",
        ),
        (
            "FLOWHOOK__KAFKA__MESSAGE_TIMEOUT",
            "10ms",
            "kafka.message_timeout",
        ),
    ] {
        let mut e = vec![(k, v)];
        if k != "FLOWHOOK__KAFKA__BROKERS" {
            e.push(("FLOWHOOK__KAFKA__BROKERS", "a:9092"));
        }
        let err = Config::load_with_env(None, env(&e))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{k}={v}: {err}");
    }
}
