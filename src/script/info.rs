//! `flow.getInfo()`: the flow snapshot as a Lua table with the keys of the
//! flat vocabulary (`docs/flow-record.md`), built field by field with keys
//! interned once per state, instead of through serde (which creates every
//! key string and walks a generic serializer on each call). The values are
//! converted exactly as serde's conversion converts them; `tests` compares
//! the two tables.
//!
//! In: a [`FlowView`]. Out: a new table per call (a script may change it
//! without affecting another's).

use std::io::Write as _;

use mlua::{IntoLua, Lua, LuaSerdeExt, LuaString, Table};

use crate::enrich::GeoInfo;
use crate::flow::FlowView;
use crate::flow::classify::l4_name;

const KEYS: [&str; 22] = [
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
];

const GEO: [&str; 9] = [
    "country",
    "city",
    "latitude",
    "longitude",
    "asn",
    "as_name",
    "network",
    "private",
    "local",
];

/// The interned keys of one Lua state.
pub struct InfoKeys {
    keys: Vec<LuaString>,
    geo: [Vec<LuaString>; 2],
    status: LuaString,
    score: LuaString,
    end_reason: LuaString,
    /// ntopng 4.x's names: `proto.ndpi`, `proto.ndpi_app`, `proto.ndpi_cat`,
    /// `cli.localhost`, `srv.localhost`; then `cli.score`, `srv.score`.
    ntopng: Vec<LuaString>,
}

/// Keys `getInfo` adds for ntopng 4.x scripts (not in the JSON vocabulary).
pub const NTOPNG_KEYS: [&str; 5] = [
    "proto.ndpi",
    "proto.ndpi_app",
    "proto.ndpi_cat",
    "cli.localhost",
    "srv.localhost",
];

impl InfoKeys {
    pub fn new(lua: &Lua) -> mlua::Result<Self> {
        let strs = |v: &mut dyn Iterator<Item = String>| -> mlua::Result<Vec<LuaString>> {
            v.map(|k| lua.create_string(k)).collect()
        };
        Ok(InfoKeys {
            keys: strs(&mut KEYS.iter().map(|k| k.to_string()))?,
            geo: [
                strs(&mut GEO.iter().map(|k| format!("cli.{k}")))?,
                strs(&mut GEO.iter().map(|k| format!("srv.{k}")))?,
            ],
            status: lua.create_string("status")?,
            score: lua.create_string("score")?,
            end_reason: lua.create_string("end_reason")?,
            ntopng: strs(
                &mut NTOPNG_KEYS
                    .iter()
                    .chain(&["cli.score", "srv.score"])
                    .map(|k| k.to_string()),
            )?,
        })
    }
}

/// A Lua string of something printable, formatted on the stack.
fn text(lua: &Lua, f: std::fmt::Arguments<'_>) -> mlua::Result<LuaString> {
    let mut buf = [0u8; 64];
    let mut c = std::io::Cursor::new(&mut buf[..]);
    match c.write_fmt(f) {
        Ok(()) => {
            let n = c.position() as usize;
            lua.create_string(&buf[..n])
        }
        Err(_) => lua.create_string(f.to_string()),
    }
}

fn geo(t: &Table, k: &[LuaString], g: &GeoInfo) -> mlua::Result<()> {
    if let Some(v) = &g.country {
        t.raw_set(&k[0], &**v)?;
    }
    if let Some(v) = &g.city {
        t.raw_set(&k[1], &**v)?;
    }
    if let (Some(lat), Some(lon)) = (g.latitude, g.longitude) {
        t.raw_set(&k[2], lat)?;
        t.raw_set(&k[3], lon)?;
    }
    if let Some(v) = g.asn {
        t.raw_set(&k[4], v)?;
    }
    if let Some(v) = &g.as_name {
        t.raw_set(&k[5], &**v)?;
    }
    if let Some(n) = &g.network {
        t.raw_set(&k[6], &*n.name)?;
    }
    t.raw_set(&k[7], g.private)?;
    t.raw_set(&k[8], g.local)?;
    Ok(())
}

/// The table `flow.getInfo()` returns; `have_networks`: local networks are
/// configured (else private space counts as local, as in `flow.isLocal`).
pub fn info_table(
    lua: &Lua,
    k: &InfoKeys,
    v: &FlowView,
    have_networks: bool,
) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, 48)?;
    let key = |i: usize| &k.keys[i];
    t.raw_set(key(0), text(lua, format_args!("{:016x}", v.key))?)?;
    t.raw_set(key(1), text(lua, format_args!("{}", v.cli_ip))?)?;
    t.raw_set(key(2), text(lua, format_args!("{}", v.srv_ip))?)?;
    t.raw_set(key(3), v.cli_port)?;
    t.raw_set(key(4), v.srv_port)?;
    match l4_name(v.proto) {
        Some(n) => t.raw_set(key(5), n)?,
        None => t.raw_set(key(5), v.proto)?,
    }
    t.raw_set(key(6), &*v.l7)?;
    t.raw_set(key(7), v.cli2srv_bytes.into_lua(lua)?)?;
    t.raw_set(key(8), v.srv2cli_bytes.into_lua(lua)?)?;
    t.raw_set(key(9), v.cli2srv_packets.into_lua(lua)?)?;
    t.raw_set(key(10), v.srv2cli_packets.into_lua(lua)?)?;
    t.raw_set(key(11), v.cli_tcp_flags)?;
    t.raw_set(key(12), v.srv_tcp_flags)?;
    t.raw_set(key(13), v.first_ms as f64 / 1000.0)?;
    t.raw_set(key(14), v.last_ms as f64 / 1000.0)?;
    t.raw_set(key(15), v.duration_ms() as f64 / 1000.0)?;
    t.raw_set(key(16), text(lua, format_args!("{}", v.exporter))?)?;
    t.raw_set(key(17), v.observation_domain)?;
    t.raw_set(key(18), v.vlan)?;
    t.raw_set(key(19), v.in_if)?;
    t.raw_set(key(20), v.out_if)?;
    t.raw_set(key(21), v.sampling_interval)?;
    geo(&t, &k.geo[0], &v.cli_geo)?;
    geo(&t, &k.geo[1], &v.srv_geo)?;
    let names = lua.create_table()?;
    names.set_metatable(Some(lua.array_metatable()))?;
    for (i, n) in v.status.iter_names().enumerate() {
        names.raw_set(i + 1, n)?;
    }
    t.raw_set(&k.status, names)?;
    t.raw_set(&k.score, v.score)?;
    if v.cli_score > 0 || v.srv_score > 0 {
        t.raw_set(&k.ntopng[5], v.cli_score)?;
        t.raw_set(&k.ntopng[6], v.srv_score)?;
    }
    if let Some(r) = v.end_reason {
        t.raw_set(&k.end_reason, r.name())?;
    }
    // ntopng 4.x's names for what scripts written for it read
    let (master, app) = v.l7.split_once('.').unwrap_or((&v.l7, &v.l7));
    t.raw_set(&k.ntopng[0], &*v.l7)?;
    t.raw_set(&k.ntopng[1], app)?;
    t.raw_set(&k.ntopng[2], super::compat::ndpi_category(master).0)?;
    let local = |g: &GeoInfo| if have_networks { g.local } else { g.private };
    t.raw_set(&k.ntopng[3], local(&v.cli_geo))?;
    t.raw_set(&k.ntopng[4], local(&v.srv_geo))?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::flow::status::StatusSet;
    use crate::flow::{EndReason, FlowView};

    #[test]
    fn same_table_as_serde() {
        let lua = Lua::new();
        let keys = InfoKeys::new(&lua).unwrap();
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
