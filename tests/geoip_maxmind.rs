//! Compatibility with databases written by MaxMind's own tooling: the
//! official test databases in `../shared/testdata/geoip/`, checked against
//! answers from their JSON sources; the two broken ones must be refused.

mod common;

use std::net::IpAddr;
use std::process::Command;

use flowhook::config::GeoConfig;
use flowhook::enrich::GeoService;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn maxmind_test_databases_give_known_answers() {
    let Some(shared) = common::shared_dir("maxmind_test_databases_give_known_answers") else {
        return;
    };
    let g = shared.join("testdata/geoip");
    for city in ["GeoIP2-City-Test.mmdb", "GeoLite2-City-Test.mmdb"] {
        let cfg = GeoConfig {
            city_db: Some(g.join(city)),
            asn_db: Some(g.join("GeoLite2-ASN-Test.mmdb")),
            ..GeoConfig::default()
        };
        let geo = GeoService::open(&cfg, &[]).unwrap_or_else(|e| panic!("{city}: {e}"));
        let a = geo.lookup(ip("81.2.69.142"), None);
        assert_eq!(
            (a.country.as_deref(), a.city.as_deref()),
            (Some("GB"), Some("London")),
            "{city}"
        );
        assert!(a.latitude.is_some() && a.longitude.is_some());
        let a = geo.lookup(ip("89.160.20.112"), None);
        assert_eq!(
            (a.country.as_deref(), a.city.as_deref()),
            (Some("SE"), Some("Linköping")),
            "{city}"
        );
        let a = geo.lookup(ip("175.16.199.1"), None);
        assert_eq!(
            (a.country.as_deref(), a.city.as_deref()),
            (Some("CN"), Some("Changchun")),
            "{city}"
        );
        let a = geo.lookup(ip("216.160.83.56"), None);
        assert_eq!(
            (a.country.as_deref(), a.city.as_deref()),
            (Some("US"), Some("Milton")),
            "{city}"
        );
        let a = geo.lookup(ip("2001:218::1"), None);
        assert_eq!(a.country.as_deref(), Some("JP"), "{city}");
        let a = geo.lookup(ip("1.128.0.1"), None);
        assert_eq!(
            (a.asn, a.as_name.as_deref()),
            (Some(1221), Some("Telstra Pty Ltd"))
        );
    }
    for country in ["GeoLite2-Country-Test.mmdb", "GeoIP2-Country-Test.mmdb"] {
        let cfg = GeoConfig {
            country_db: Some(g.join(country)),
            ..GeoConfig::default()
        };
        let geo = GeoService::open(&cfg, &[]).unwrap_or_else(|e| panic!("{country}: {e}"));
        assert_eq!(
            geo.lookup(ip("81.2.69.142"), None).country.as_deref(),
            Some("GB"),
            "{country}"
        );
        assert_eq!(
            geo.lookup(ip("2001:218::1"), None).country.as_deref(),
            Some("JP"),
            "{country}"
        );
    }
}

#[test]
fn broken_maxmind_files_are_refused_with_the_file_named() {
    let Some(shared) = common::shared_dir("broken_maxmind_files_are_refused_with_the_file_named")
    else {
        return;
    };
    let g = shared.join("testdata/geoip");
    for broken in [
        "GeoIP2-City-Test-Broken-Double-Format.mmdb",
        "GeoIP2-City-Test-Invalid-Node-Count.mmdb",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_flowhook"))
            .arg("check")
            .env("FLOWHOOK__GEO__CITY_DB", g.join(broken))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{broken}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(broken) && err.contains("corrupt"), "{err}");
    }
    // an ASN file given as the city database
    let out = Command::new(env!("CARGO_BIN_EXE_flowhook"))
        .arg("check")
        .env("FLOWHOOK__GEO__CITY_DB", g.join("GeoLite2-ASN-Test.mmdb"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a city database"));
}
