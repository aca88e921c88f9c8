//! `flow.getInfo()`: the flow snapshot as a Lua table with the keys of the
//! flat vocabulary (`docs/flow-record.md`), written field by field in one
//! protected call ([`super::fields`]) instead of through serde (which creates
//! every key string and walks a generic serializer on each call). The values
//! are converted exactly as serde's conversion converts them; `tests`
//! compares the two tables.
//!
//! In: a [`FlowView`]. Out: a new table per call (a script may change it
//! without affecting another's).

use mlua::{Lua, Table};

use super::fields::{self, Fields, Key, Keys, key_index};
use crate::enrich::GeoInfo;
use crate::flow::FlowView;
use crate::flow::classify::l4_name;

/// Every key of the tables built here: `getInfo`'s and the geolocation
/// tables' (each side's nine geolocation keys together, in [`geo`]'s order).
pub const NAMES: [&str; 50] = [
    "key",
    "cli.ip",
    "srv.ip",
    "cli.port",
    "srv.port",
    "proto.l4",
    "proto.l7",
    "cli2srv.bytes",
    "srv2cli.bytes",
    "cli2srv.packets",
    "srv2cli.packets",
    "cli2srv.tcp_flags",
    "srv2cli.tcp_flags",
    "first_seen",
    "last_seen",
    "duration",
    "exporter",
    "observation_domain",
    "vlan",
    "in_if",
    "out_if",
    "sampling_interval",
    "cli.country",
    "cli.city",
    "cli.latitude",
    "cli.longitude",
    "cli.asn",
    "cli.as_name",
    "cli.network",
    "cli.private",
    "cli.local",
    "srv.country",
    "srv.city",
    "srv.latitude",
    "srv.longitude",
    "srv.asn",
    "srv.as_name",
    "srv.network",
    "srv.private",
    "srv.local",
    "status",
    "score",
    "cli.score",
    "srv.score",
    "end_reason",
    // ntopng 4.x's names (not in the JSON vocabulary)
    "proto.ndpi",
    "proto.ndpi_app",
    "proto.ndpi_cat",
    "cli.localhost",
    "srv.localhost",
];

/// The index of a key of [`NAMES`], checked at compile time.
macro_rules! k {
    ($name:literal) => {{
        const K: Key = key_index(&NAMES, $name);
        K
    }};
}

/// The first geolocation key of each side.
pub const CLI_GEO: Key = k!("cli.country");
pub const SRV_GEO: Key = k!("srv.country");

/// The interned [`NAMES`] of one state.
pub fn keys(lua: &Lua) -> mlua::Result<Keys> {
    Keys::new(lua, &NAMES)
}

/// One side's geolocation under the nine keys from `k` (`CLI_GEO` or
/// `SRV_GEO`); `all`: also its network and whether it is private and local
/// (`getInfo`), else only what `getClientGeolocation` gives.
pub fn geo(f: &mut Fields, k: Key, g: &GeoInfo, all: bool) {
    if let Some(v) = &g.country {
        f.str(k, v.as_bytes());
    }
    if let Some(v) = &g.city {
        f.str(k.at(1), v.as_bytes());
    }
    if let (Some(lat), Some(lon)) = (g.latitude, g.longitude) {
        f.num(k.at(2), lat);
        f.num(k.at(3), lon);
    }
    if let Some(v) = g.asn {
        f.int(k.at(4), i64::from(v));
    }
    if let Some(v) = &g.as_name {
        f.str(k.at(5), v.as_bytes());
    }
    if !all {
        return;
    }
    if let Some(n) = &g.network {
        f.str(k.at(6), n.name.as_bytes());
    }
    f.bool(k.at(7), g.private);
    f.bool(k.at(8), g.local);
}

/// How many fields [`geo`] writes for `g` without `all` (a table's room).
pub fn geo_fields(g: &GeoInfo) -> i32 {
    i32::from(g.country.is_some())
        + i32::from(g.city.is_some())
        + 2 * i32::from(g.latitude.is_some() && g.longitude.is_some())
        + i32::from(g.asn.is_some())
        + i32::from(g.as_name.is_some())
}

/// The table `flow.getInfo()` returns; `have_networks`: local networks are
/// configured (else private space counts as local, as in `flow.isLocal`).
pub fn info_table(
    lua: &Lua,
    keys: &Keys,
    v: &FlowView,
    have_networks: bool,
) -> mlua::Result<Table> {
    fields::build(lua, keys, NAMES.len() as i32, |f| {
        f.hex16(k!("key"), v.key);
        f.ip(k!("cli.ip"), v.cli_ip);
        f.ip(k!("srv.ip"), v.srv_ip);
        f.int(k!("cli.port"), i64::from(v.cli_port));
        f.int(k!("srv.port"), i64::from(v.srv_port));
        match l4_name(v.proto) {
            Some(n) => f.str(k!("proto.l4"), n.as_bytes()),
            None => f.int(k!("proto.l4"), i64::from(v.proto)),
        }
        f.str(k!("proto.l7"), v.l7.as_bytes());
        f.uint(k!("cli2srv.bytes"), v.cli2srv_bytes);
        f.uint(k!("srv2cli.bytes"), v.srv2cli_bytes);
        f.uint(k!("cli2srv.packets"), v.cli2srv_packets);
        f.uint(k!("srv2cli.packets"), v.srv2cli_packets);
        f.int(k!("cli2srv.tcp_flags"), i64::from(v.cli_tcp_flags));
        f.int(k!("srv2cli.tcp_flags"), i64::from(v.srv_tcp_flags));
        f.num(k!("first_seen"), v.first_ms as f64 / 1000.0);
        f.num(k!("last_seen"), v.last_ms as f64 / 1000.0);
        f.num(k!("duration"), v.duration_ms() as f64 / 1000.0);
        f.ip(k!("exporter"), v.exporter);
        f.int(k!("observation_domain"), i64::from(v.observation_domain));
        f.int(k!("vlan"), i64::from(v.vlan));
        f.int(k!("in_if"), i64::from(v.in_if));
        f.int(k!("out_if"), i64::from(v.out_if));
        f.int(k!("sampling_interval"), i64::from(v.sampling_interval));
        geo(f, CLI_GEO, &v.cli_geo, true);
        geo(f, SRV_GEO, &v.srv_geo, true);
        f.strings(k!("status"), v.status.iter_names());
        f.int(k!("score"), i64::from(v.score));
        if v.cli_score > 0 || v.srv_score > 0 {
            f.int(k!("cli.score"), i64::from(v.cli_score));
            f.int(k!("srv.score"), i64::from(v.srv_score));
        }
        if let Some(r) = v.end_reason {
            f.str(k!("end_reason"), r.name().as_bytes());
        }
        // ntopng 4.x's names for what scripts written for it read
        let (master, app) = v.l7.split_once('.').unwrap_or((&v.l7, &v.l7));
        f.str(k!("proto.ndpi"), v.l7.as_bytes());
        f.str(k!("proto.ndpi_app"), app.as_bytes());
        f.str(
            k!("proto.ndpi_cat"),
            super::compat::ndpi_category(master).0.as_bytes(),
        );
        let local = |g: &GeoInfo| if have_networks { g.local } else { g.private };
        f.bool(k!("cli.localhost"), local(&v.cli_geo));
        f.bool(k!("srv.localhost"), local(&v.srv_geo));
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mlua::LuaSerdeExt;

    use super::*;

    /// The keys `getInfo` adds for ntopng 4.x scripts.
    const NTOPNG_KEYS: [&str; 5] = [
        "proto.ndpi",
        "proto.ndpi_app",
        "proto.ndpi_cat",
        "cli.localhost",
        "srv.localhost",
    ];
    use crate::flow::status::StatusSet;
    use crate::flow::{EndReason, FlowView};

    #[test]
    fn same_table_as_serde() {
        let lua = Lua::new();
        let keys = keys(&lua).unwrap();
        let geo = GeoInfo {
            country: Some(Arc::from("CN")),
            city: Some(Arc::from("Beijing")),
            latitude: Some(39.9),
            longitude: Some(116.4),
            asn: Some(4134),
            as_name: Some(Arc::from("Chinanet")),
            network: None,
            private: false,
            local: false,
        };
        for (proto, end, status) in [(6u8, Some(EndReason::Idle), 0b101u64), (99, None, 0)] {
            let v = FlowView {
                key: 42,
                exporter: "192.0.2.1".parse().unwrap(),
                observation_domain: 3,
                vlan: 0,
                cli_ip: "10.0.0.1".parse().unwrap(),
                srv_ip: "2001:db8::2".parse().unwrap(),
                cli_port: 50000,
                srv_port: 443,
                proto,
                l7: Arc::from("TLS"),
                cli2srv_bytes: u64::MAX,
                srv2cli_bytes: 10,
                cli2srv_packets: 1,
                srv2cli_packets: 2,
                cli_tcp_flags: 2,
                srv_tcp_flags: 18,
                first_ms: 1_700_000_000_123,
                last_ms: 1_700_000_001_000,
                in_if: 1,
                out_if: 2,
                sampling_interval: 0,
                sampling_source: None,
                cli_geo: Arc::new(GeoInfo {
                    private: true,
                    ..GeoInfo::default()
                }),
                srv_geo: Arc::new(geo.clone()),
                status: StatusSet(status),
                score: 12,
                cli_score: 0,
                srv_score: 0,
                end_reason: end,
            };
            let ours = info_table(&lua, &keys, &v, false).unwrap();
            let reference = lua.to_value(&v).unwrap();
            let mut a: serde_json::Value = lua.from_value(mlua::Value::Table(ours)).unwrap();
            let b: serde_json::Value = lua.from_value(reference).unwrap();
            // ntopng's names come on top of the vocabulary
            let extra: Vec<serde_json::Value> = NTOPNG_KEYS
                .iter()
                .map(|k| a.as_object_mut().unwrap().remove(*k).unwrap())
                .collect();
            assert_eq!(
                extra,
                serde_json::json!(["TLS", "TLS", "Web", true, false])
                    .as_array()
                    .unwrap()
                    .clone()
            );
            assert_eq!(a, b);
        }
    }
}
