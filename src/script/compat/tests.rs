//! Tests of the ntopng 4.x layer's Rust parts: the cache, the nDPI table,
//! and that every built-in module loads in a script environment.

use super::*;

#[test]
fn cache_values_expire_and_the_store_is_bounded() {
    let mut c = Cache::default();
    c.set("a".into(), "1".into(), None);
    c.set("b".into(), "2".into(), Some(0.05));
    assert_eq!(c.get("a"), "1");
    assert_eq!(c.get("b"), "2");
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(c.get("b"), "");
    assert_eq!(c.get("missing"), "");
    for i in 0..CACHE_MAX + 10 {
        c.set(format!("k{i}"), "x".into(), None);
    }
    assert!(c.map.len() <= CACHE_MAX);
}

#[test]
fn ndpi_ids_and_categories_of_flowhooks_application_names() {
    assert_eq!(ndpi_proto_id("DNS"), 5);
    assert_eq!(ndpi_proto_id("dns"), 5);
    assert_eq!(ndpi_proto_id("NTP"), 9);
    assert_eq!(ndpi_proto_id("SMTP"), 3);
    assert_eq!(ndpi_proto_id("DHCP"), 18);
    assert_eq!(ndpi_proto_id("TLS"), 91);
    assert_eq!(ndpi_proto_id("nonsense"), 0);
    assert_eq!(ndpi_category("DNS"), ("Network", 14));
    assert_eq!(ndpi_category("SSH"), ("RemoteAccess", 12));
    assert_eq!(ndpi_category("nonsense"), ("Unspecified", 0));
}

#[test]
fn every_builtin_module_loads() {
    let dir = tempfile::tempdir().unwrap();
    let sb = crate::script::sandbox::new_sandbox(dir.path(), 64 << 20).unwrap();
    crate::script::api::install(&sb.lua, Default::default()).unwrap();
    install(&sb.lua, &Tree::default(), &Default::default(), dir.path()).unwrap();
    let env = sb.env().unwrap();
    let mut names = vec![
        "flow_consts",
        "alert_consts",
        "user_scripts",
        "flow_keys",
        "alert_keys",
        "format_utils",
        "plugins_utils",
        "flow_risk_utils",
        "discover_utils",
        "dkjson",
        "json",
        "lua_utils",
        "ids_utils",
        "mud_utils",
        "rtt_utils",
    ];
    names.extend(GUI_MODULES);
    for n in names {
        assert!(builtin(n).is_some(), "{n}");
        let r: mlua::Value = sb
            .lua
            .load(format!("return require('{n}')"))
            .set_environment(env.clone())
            .eval()
            .unwrap_or_else(|e| panic!("{n}: {e}"));
        assert!(!r.is_nil(), "{n}");
    }
    // a GUI module's functions do nothing; status types include ntopng's and unknown names
    let v: (bool, i64, String, i64) = sb
        .lua
        .load(
            r#"local a = require('alerts_api')
               local fc = require('flow_consts')
               local fk = require('flow_keys')
               return a.anything(1, 2) == nil,
                      fc.status_types.status_udp_unidirectional.status_key,
                      fc.status_types.status_no_such_thing.alert_severity.name,
                      fk.ntopng.status_unexpected_dns_server"#,
        )
        .set_environment(env)
        .eval()
        .unwrap();
    assert_eq!(v, (true, 26, "warning".to_string(), 33));
}
