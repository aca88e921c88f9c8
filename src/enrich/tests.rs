//! Enrichment tests on MaxMind-format files generated at test time.

#[path = "../../tests/common/mmdb.rs"]
mod mmdb;

use std::net::IpAddr;
use std::sync::Arc;

use super::*;
use crate::config::GeoConfig;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn cfg(f: &mmdb::Fixtures) -> GeoConfig {
    GeoConfig {
        city_db: Some(f.city.clone()),
        country_db: Some(f.country.clone()),
        asn_db: Some(f.asn.clone()),
        ..GeoConfig::default()
    }
}

#[test]
fn city_country_and_asn_over_v4_and_v6() {
    let dir = tempfile::tempdir().unwrap();
    let f = mmdb::write_all(dir.path());
    let geo = GeoService::open(&cfg(&f), &[]).unwrap();
    let g = geo.lookup(ip("81.2.69.142"), None);
    assert_eq!(g.country.as_deref(), Some("GB"));
    assert_eq!(g.city.as_deref(), Some("London"));
    assert_eq!(g.latitude, Some(51.5142));
    assert_eq!(g.asn, Some(20712));
    assert!(!g.private);
    let g = geo.lookup(ip("2001:218::1"), None);
    assert_eq!(
        (g.country.as_deref(), g.city.as_deref(), g.asn),
        (Some("JP"), None, Some(2914))
    );
    let g = geo.lookup(ip("1.128.0.1"), None);
    assert_eq!(
        (g.country.as_deref(), g.asn, g.as_name.as_deref()),
        (None, Some(1221), Some("Telstra Pty Ltd"))
    );
    let g = geo.lookup(ip("8.8.8.8"), None);
    assert_eq!(
        g,
        GeoInfo::default(),
        "missing values are absent, not errors"
    );
}

#[test]
fn private_addresses_are_not_looked_up_and_networks_label_them() {
    let dir = tempfile::tempdir().unwrap();
    let f = mmdb::write_all(dir.path());
    let nets = vec![
        NetworkConfig {
            cidr: "10.0.0.0/8".parse().unwrap(),
            name: "corp".into(),
            role: Some("office".into()),
            site: Some("hq".into()),
            tags: vec!["trusted".into()],
            local: true,
            country: Some("DE".into()),
            asn: Some(64512),
            as_name: Some("Corp".into()),
        },
        NetworkConfig {
            cidr: "81.2.69.0/28".parse().unwrap(),
            name: "partner".into(),
            role: None,
            site: None,
            tags: vec![],
            local: false,
            country: None,
            asn: None,
            as_name: None,
        },
    ];
    let geo = GeoService::open(&cfg(&f), &nets).unwrap();
    let g = geo.lookup(ip("10.1.2.3"), None);
    assert!(g.private && g.local);
    assert_eq!((g.country.as_deref(), g.asn), (Some("DE"), Some(64512)));
    assert_eq!(&*g.network.unwrap().name, "corp");
    let g = geo.lookup(ip("192.168.1.1"), None);
    assert!(g.private && !g.local && g.country.is_none());
    let g = geo.lookup(ip("81.2.69.1"), None);
    assert_eq!((g.country.as_deref(), g.local), (Some("GB"), false));
    assert_eq!(&*g.network.unwrap().name, "partner");
}

#[test]
fn broken_missing_and_wrong_type_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = mmdb::write_all(dir.path());
    let with = |city: &std::path::Path| GeoConfig {
        city_db: Some(city.to_path_buf()),
        ..GeoConfig::default()
    };
    let e = GeoService::open(&with(&f.broken), &[]).err().unwrap();
    assert_eq!(e.code(), "corrupt");
    assert!(e.to_string().contains("broken.mmdb"), "{e}");
    let e = GeoService::open(&with(&dir.path().join("nope.mmdb")), &[])
        .err()
        .unwrap();
    assert_eq!(e.code(), "missing");
    let e = GeoService::open(&with(&f.asn), &[]).err().unwrap();
    assert_eq!(e.code(), "wrong_type");
    assert!(e.to_string().contains("GeoLite2-ASN"), "{e}");
    // a City file serves as a country database
    let c = GeoConfig {
        country_db: Some(f.city.clone()),
        ..GeoConfig::default()
    };
    assert!(GeoService::open(&c, &[]).is_ok());
}

#[test]
fn reload_swaps_good_files_and_keeps_old_on_broken() {
    let dir = tempfile::tempdir().unwrap();
    let f = mmdb::write_all(dir.path());
    let geo = Arc::new(
        GeoService::open(
            &GeoConfig {
                city_db: Some(f.city.clone()),
                ..GeoConfig::default()
            },
            &[],
        )
        .unwrap(),
    );
    let mut e = Enricher::new(geo.clone(), 100);
    assert_eq!(e.lookup(ip("81.2.69.142")).city.as_deref(), Some("London"));
    assert_eq!(geo.reload(false), Reload::Unchanged);
    // geoipupdate style: write a new file, rename it into place
    let tmp = dir.path().join("city.mmdb.new");
    mmdb::write_city(&tmp, "Londinium");
    std::fs::rename(&tmp, &f.city).unwrap();
    assert_eq!(geo.reload(false), Reload::Reloaded);
    assert_eq!(
        e.lookup(ip("81.2.69.142")).city.as_deref(),
        Some("Londinium"),
        "cache cleared on reload"
    );
    // a broken replacement: the old one stays in service
    std::fs::copy(&f.broken, &tmp).unwrap();
    std::fs::rename(&tmp, &f.city).unwrap();
    assert!(matches!(
        geo.reload(false),
        Reload::Failed(GeoError::Corrupt { .. })
    ));
    assert_eq!(
        e.lookup(ip("81.2.69.142")).city.as_deref(),
        Some("Londinium")
    );
    assert_eq!(
        geo.lookup(ip("175.16.199.1"), None).country.as_deref(),
        Some("CN")
    );
}

#[test]
fn cache_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let f = mmdb::write_all(dir.path());
    let geo = Arc::new(GeoService::open(&cfg(&f), &[]).unwrap());
    let mut e = Enricher::new(geo, 64);
    for i in 0..1000u32 {
        e.lookup(IpAddr::from((0x5102_4500u32 + i).to_be_bytes()));
        assert!(e.cached() <= 64);
    }
    let a = e.lookup(ip("81.2.69.142"));
    let b = e.lookup(ip("81.2.69.142"));
    assert!(Arc::ptr_eq(&a, &b), "second lookup comes from the cache");
}

#[test]
fn without_databases_only_privacy_is_known() {
    let mut e = Enricher::new(Arc::new(GeoService::disabled()), 16);
    assert!(e.lookup(ip("10.0.0.1")).private);
    assert_eq!(*e.lookup(ip("81.2.69.142")), GeoInfo::default());
}
