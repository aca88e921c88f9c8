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
    let table: toml::Table = toml::from_str(&cfg.to_toml()).unwrap();
    let mut missing = Vec::new();
    for (section, keys) in &table {
        for key in keys.as_table().unwrap().keys() {
            let name = format!("`{section}.{key}`");
            if !doc.contains(&name) {
                missing.push(name);
            }
        }
    }
    assert!(missing.is_empty(), "undocumented keys: {missing:?}");
}
