//! Geolocation in a running `serve`: flows carry `srv.country`/`srv.asn`;
//! replacing a database file (rename, as geoipupdate does) changes the
//! answers for new flows without a restart and without losing events; a
//! broken replacement keeps the old file in service and is logged.

mod common;

use std::net::UdpSocket;
use std::process::Command;

use common::serve::Serve;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_flowhook");

/// One v5 datagram with one record 10.0.0.1:sport → dst:80.
fn v5(dst: [u8; 4], sport: u16) -> Vec<u8> {
    let mut m = vec![0u8; 24 + 48];
    m[1] = 5;
    m[3] = 1;
    m[4..8].copy_from_slice(&100_000u32.to_be_bytes());
    m[8..12].copy_from_slice(&1_700_000_000u32.to_be_bytes());
    let r = &mut m[24..];
    r[0..4].copy_from_slice(&[10, 0, 0, 1]);
    r[4..8].copy_from_slice(&dst);
    r[16..20].copy_from_slice(&1u32.to_be_bytes());
    r[20..24].copy_from_slice(&60u32.to_be_bytes());
    r[24..28].copy_from_slice(&99_000u32.to_be_bytes());
    r[28..32].copy_from_slice(&99_000u32.to_be_bytes());
    r[32..34].copy_from_slice(&sport.to_be_bytes());
    r[34..36].copy_from_slice(&80u16.to_be_bytes());
    r[38] = 6;
    r[37] = 0x02;
    m
}

#[test]
fn flows_are_enriched_and_databases_reload_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let f = common::mmdb::write_all(dir.path());
    let out = dir.path().join("events.jsonl");
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let serve = Serve::start(&[
        ("FLOWHOOK__INGEST__LISTEN", format!("127.0.0.1:{port}")),
        ("FLOWHOOK__OUTPUT__PATH", out.display().to_string()),
        ("FLOWHOOK__GEO__CITY_DB", f.city.display().to_string()),
        ("FLOWHOOK__GEO__ASN_DB", f.asn.display().to_string()),
        ("FLOWHOOK__GEO__WATCH_INTERVAL", "200ms".into()),
        ("FLOWHOOK__DECODE__SHARDS", "1".into()),
    ]);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = |dst: [u8; 4], sport: u16| tx.send_to(&v5(dst, sport), ("127.0.0.1", port)).unwrap();
    send([81, 2, 69, 142], 40001);
    send([175, 16, 199, 1], 40002);
    // replace the city database by renaming a new file into place
    let tmp = dir.path().join("city.new");
    common::mmdb::write_city(&tmp, "Londinium");
    std::fs::rename(&tmp, &f.city).unwrap();
    serve.wait_for("geolocation databases reloaded");
    send([81, 2, 69, 142], 40003);
    // a broken replacement: logged, old databases keep answering
    std::fs::copy(&f.broken, &tmp).unwrap();
    std::fs::rename(&tmp, &f.city).unwrap();
    let line = serve.wait_for("geolocation reload failed");
    assert!(
        line.contains("city.mmdb") && line.contains("corrupt"),
        "{line}"
    );
    send([81, 2, 69, 142], 40004);
    assert!(serve.stop().success());

    let ends: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "flowEnd")
        .collect();
    assert_eq!(ends.len(), 4, "no event lost across reloads");
    let by_port =
        |p: u64| ends.iter().find(|e| e["flow"]["cli.port"] == p).unwrap()["flow"].clone();
    let a = by_port(40001);
    assert_eq!(
        (
            a["srv.country"].as_str(),
            a["srv.city"].as_str(),
            a["srv.asn"].as_u64()
        ),
        (Some("GB"), Some("London"), Some(20712))
    );
    assert_eq!(a["cli.private"], true);
    assert!(a.get("cli.country").is_none());
    let b = by_port(40002);
    assert_eq!(
        (b["srv.country"].as_str(), b["srv.asn"].as_u64()),
        (Some("CN"), Some(4837))
    );
    assert_eq!(by_port(40003)["srv.city"], "Londinium");
    assert_eq!(by_port(40004)["srv.city"], "Londinium");
}

#[test]
fn broken_database_stops_serve_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let f = common::mmdb::write_all(dir.path());
    let out = Command::new(BIN)
        .arg("serve")
        .env("FLOWHOOK__GEO__CITY_DB", &f.broken)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("geo.city_db") && err.contains("broken.mmdb") && err.contains("corrupt"),
        "{err}"
    );
}
