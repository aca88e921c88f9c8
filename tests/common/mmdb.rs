//! MaxMind-format fixtures written at test time with `mmdb-writer`: City,
//! Country and ASN databases over IPv4 and IPv6 networks, and a broken file.
//! Used by the enrichment unit tests (via `#[path]`) and the black-box tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ipnet::IpNet;
use mmdb_writer::Writer;
use serde_json::json;

pub struct Fixtures {
    pub city: PathBuf,
    pub country: PathBuf,
    pub asn: PathBuf,
    pub broken: PathBuf,
}

/// A writer with the metadata MaxMind's readers check (a non-empty description).
fn writer(db_type: &str) -> Writer {
    Writer::builder(db_type)
        .description(&[("en", "flowhook test fixture")])
        .build()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// A City database; `london` names the city of 81.2.69.0/24 (to tell versions apart).
pub fn write_city(path: &Path, london: &str) {
    let mut w = writer("GeoIP2-City");
    let city = |iso: &str, city: Option<&str>, lat: f64, lon: f64| {
        let mut v = json!({"country": {"iso_code": iso, "names": {"en": iso}}, "location": {"latitude": lat, "longitude": lon}});
        if let Some(c) = city {
            v["city"] = json!({"names": {"en": c}});
        }
        v
    };
    w.insert(
        net("81.2.69.0/24"),
        &city("GB", Some(london), 51.5142, -0.0931),
    )
    .unwrap();
    w.insert(
        net("175.16.199.0/24"),
        &city("CN", Some("Changchun"), 43.88, 125.3228),
    )
    .unwrap();
    w.insert(
        net("89.160.20.0/24"),
        &city("SE", Some("Linköping"), 58.4167, 15.6167),
    )
    .unwrap();
    w.insert(net("2001:218::/32"), &city("JP", None, 35.68536, 139.75309))
        .unwrap();
    w.insert(
        net("2a02:cf40::/32"),
        &city("NO", Some("Oslo"), 59.91, 10.75),
    )
    .unwrap();
    std::fs::write(path, w.to_bytes().unwrap()).unwrap();
}

pub fn write_country(path: &Path) {
    let mut w = writer("GeoLite2-Country");
    for (n, iso) in [
        ("81.2.69.0/24", "GB"),
        ("175.16.199.0/24", "CN"),
        ("89.160.20.0/24", "SE"),
        ("2001:218::/32", "JP"),
    ] {
        w.insert(net(n), &json!({"country": {"iso_code": iso}}))
            .unwrap();
    }
    std::fs::write(path, w.to_bytes().unwrap()).unwrap();
}

pub fn write_asn(path: &Path) {
    let mut w = writer("GeoLite2-ASN");
    for (n, asn, org) in [
        ("1.128.0.0/11", 1221u32, "Telstra Pty Ltd"),
        ("175.16.0.0/16", 4837, "CHINA UNICOM China169 Backbone"),
        ("81.2.69.0/24", 20712, "Andrews & Arnold Ltd"),
        ("2001:218::/32", 2914, "NTT America, Inc."),
    ] {
        w.insert(
            net(n),
            &json!({"autonomous_system_number": asn, "autonomous_system_organization": org}),
        )
        .unwrap();
    }
    std::fs::write(path, w.to_bytes().unwrap()).unwrap();
}

/// Writes all fixtures into `dir`.
pub fn write_all(dir: &Path) -> Fixtures {
    let f = Fixtures {
        city: dir.join("city.mmdb"),
        country: dir.join("country.mmdb"),
        asn: dir.join("asn.mmdb"),
        broken: dir.join("broken.mmdb"),
    };
    write_city(&f.city, "London");
    write_country(&f.country);
    write_asn(&f.asn);
    let good = std::fs::read(&f.city).unwrap();
    // cut in the middle of the data section: the metadata marker is gone
    std::fs::write(&f.broken, &good[..good.len() / 2]).unwrap();
    f
}
