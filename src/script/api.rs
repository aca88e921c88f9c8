//! The `flow` object scripts read the current flow through, and the actions
//! they take (`triggerStatus`, `triggerAlert`, `setCustomInfo`).
//!
//! In: a [`Current`] slot the host fills before each hook call. Out: Lua
//! values built lazily, only for what a script asks (no table per call
//! unless a function returns one), and [`Action`]s the host applies after the
//! call. All Rust↔Lua conversion of flow data lives here.

use std::cell::RefCell;
use std::rc::Rc;

use mlua::{FromLua, Lua, LuaSerdeExt, Table, Value};

use super::info;
use super::networks::NetworkSet;
use crate::enrich::GeoInfo;
use crate::flow::FlowView;
use crate::flow::status::{self, StatusSet};

/// Syslog-like severities (`triggerStatus`, alerts), lowest first.
pub use crate::config::SEVERITY_ORDER as SEVERITIES;

/// Something a script asked for during a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Status {
        bit: u8,
        name: String,
        score: u16,
        /// Client and server scores (ntopng 4.x `triggerStatus`).
        cli_score: u16,
        srv_score: u16,
        severity: &'static str,
        message: String,
        info: serde_json::Value,
        /// Raise an alert too (ntopng 4.x: not for a status of score 0, nor `setStatus`).
        alert: bool,
    },
    /// ntopng 4.0 `clearStatus`.
    Clear { bit: u8 },
    Alert {
        score: u16,
        severity: &'static str,
        message: String,
        info: serde_json::Value,
    },
}

/// What scripts have added to one flow.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowScriptState {
    pub status: StatusSet,
    pub score: u16,
    pub cli_score: u16,
    pub srv_score: u16,
    pub alerted: StatusSet,
    pub custom_info: Option<String>,
    /// Last `periodicUpdate` time per script (for `periodic_update_seconds`), seconds.
    pub last_periodic: Vec<(u16, i64)>,
    /// An alert of this flow went to a sink that resolves alerts at the flow's end.
    pub delivered: bool,
    /// Sides a blocklist matched (1: client, 2: server), for ntopng's `isBlacklisted`.
    pub blacklisted: u8,
}

/// The flow a hook call is about.
#[derive(Default)]
pub struct Current {
    pub view: Option<FlowView>,
    pub state: FlowScriptState,
    pub actions: Vec<Action>,
    /// Local networks are configured (else isLocal() falls back to private space).
    pub have_local_networks: bool,
}

pub type Slot = Rc<RefCell<Current>>;

fn severity(s: Option<String>) -> mlua::Result<&'static str> {
    let s = s.unwrap_or_else(|| "warning".into());
    SEVERITIES
        .iter()
        .find(|x| x.eq_ignore_ascii_case(&s))
        .copied()
        .ok_or_else(|| {
            mlua::Error::runtime(format!(
                "unknown severity '{s}' (use {})",
                SEVERITIES.join(", ")
            ))
        })
}

fn score(v: Option<i64>) -> u16 {
    v.unwrap_or(0).clamp(0, i64::from(status::MAX_SCORE)) as u16
}

fn is_local(g: &GeoInfo, have_networks: bool) -> bool {
    if have_networks { g.local } else { g.private }
}

/// Installs the global `flow` table bound to `slot`.
pub fn install(lua: &Lua, slot: Slot) -> mlua::Result<()> {
    let flow = lua.create_table()?;
    // keys of the tables built field by field, interned once
    let keys = Rc::new(info::keys(lua)?);
    macro_rules! getter {
        ($name:literal, |$v:ident, $lua:ident| $body:expr) => {{
            let slot = slot.clone();
            flow.set(
                $name,
                lua.create_function(move |$lua, ()| {
                    let cur = slot.borrow();
                    let Some($v) = cur.view.as_ref() else {
                        return Err(mlua::Error::runtime("flow is only available inside a hook"));
                    };
                    $body
                })?,
            )?;
        }};
    }
    // the geolocation tables and the plain getters: C functions (getters.rs)
    for (name, f) in super::getters::geolocation(lua, &slot, &keys)? {
        flow.set(name, f)?;
    }
    for (name, f) in super::getters::all(lua, &slot)? {
        flow.set(name, f)?;
    }
    {
        let slot = slot.clone();
        flow.set(
            "matchNetworks",
            lua.create_function(move |lua, set: mlua::UserDataRef<NetworkSet>| {
                let cur = slot.borrow();
                let Some(v) = cur.view.as_ref() else {
                    return Err(mlua::Error::runtime("flow is only available inside a hook"));
                };
                let entry = |a| set.lookup(a).map(|e| lua.create_string(e)).transpose();
                Ok((entry(v.cli_ip)?, entry(v.srv_ip)?))
            })?,
        )?;
    }
    lua.globals().set(
        "networks",
        lua.create_function(|_, list: Vec<String>| {
            NetworkSet::new(&list).map_err(mlua::Error::runtime)
        })?,
    )?;
    {
        let slot = slot.clone();
        let keys = keys.clone();
        flow.set(
            "getInfo",
            lua.create_function(move |lua, ()| {
                let cur = slot.borrow();
                let Some(v) = cur.view.as_ref() else {
                    return Err(mlua::Error::runtime("flow is only available inside a hook"));
                };
                info::info_table(lua, &keys, v, cur.have_local_networks)
            })?,
        )?;
    }
    getter!("getExporterInfo", |v, lua| {
        let t = lua.create_table()?;
        t.set("exporter", v.exporter.to_string())?;
        t.set("observation_domain", v.observation_domain)?;
        t.set("in_if", v.in_if)?;
        t.set("out_if", v.out_if)?;
        t.set("vlan", v.vlan)?;
        t.set("sampling_interval", v.sampling_interval)?;
        t.set("sampling_source", v.sampling_source.map(|s| s.as_str()))?;
        Ok(t)
    });
    {
        let slot = slot.clone();
        flow.set(
            "getFullInfo",
            lua.create_function(move |lua, ()| {
                let cur = slot.borrow();
                let Some(v) = cur.view.as_ref() else {
                    return Err(mlua::Error::runtime("flow is only available inside a hook"));
                };
                let t: Table = match lua.to_value(v)? {
                    Value::Table(t) => t,
                    _ => lua.create_table()?,
                };
                t.set("cli.latitude", v.cli_geo.latitude)?;
                t.set("srv.latitude", v.srv_geo.latitude)?;
                t.set("custom_info", cur.state.custom_info.clone())?;
                let names: Vec<String> = cur
                    .state
                    .status
                    .names()
                    .iter()
                    .map(|n| n.to_string())
                    .collect();
                t.set("script_status", names)?;
                t.set("script_score", cur.state.score)?;
                Ok(t)
            })?,
        )?;
    }
    for (fname, want) in [
        ("isLocal", 0u8),
        ("isLocalToRemote", 1),
        ("isRemoteToLocal", 2),
        ("isRemoteToRemote", 3),
    ] {
        let slot = slot.clone();
        flow.set(
            fname,
            lua.create_function(move |_, ()| {
                let cur = slot.borrow();
                let Some(v) = cur.view.as_ref() else {
                    return Err(mlua::Error::runtime("flow is only available inside a hook"));
                };
                let (c, s) = (
                    is_local(&v.cli_geo, cur.have_local_networks),
                    is_local(&v.srv_geo, cur.have_local_networks),
                );
                Ok(match want {
                    0 => c || s,
                    1 => c && !s,
                    2 => !c && s,
                    _ => !c && !s,
                })
            })?,
        )?;
    }
    {
        let slot = slot.clone();
        flow.set(
            "getStatus",
            lua.create_function(move |_, ()| {
                let cur = slot.borrow();
                let Some(v) = cur.view.as_ref() else {
                    return Err(mlua::Error::runtime("flow is only available inside a hook"));
                };
                let all = StatusSet(v.status.0 | cur.state.status.0);
                Ok(all
                    .names()
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>())
            })?,
        )?;
    }
    {
        let slot = slot.clone();
        flow.set(
            "isStatusSet",
            lua.create_function(move |_, key: Value| {
                let cur = slot.borrow();
                let Some(v) = cur.view.as_ref() else {
                    return Err(mlua::Error::runtime("flow is only available inside a hook"));
                };
                let all = StatusSet(v.status.0 | cur.state.status.0);
                // a name, or ntopng 4.x's status table or id
                let name = match status_key(&key) {
                    Some(n) => n,
                    None => return Ok(false),
                };
                let short = name.strip_prefix("status_").unwrap_or(&name);
                Ok(all.iter_names().any(|n| n == name || n == short))
            })?,
        )?;
    }
    {
        let slot = slot.clone();
        flow.set(
            "getScore",
            lua.create_function(move |_, ()| {
                let cur = slot.borrow();
                let Some(v) = cur.view.as_ref() else {
                    return Err(mlua::Error::runtime("flow is only available inside a hook"));
                };
                // the view already includes what scripts added
                Ok(v.score)
            })?,
        )?;
    }
    {
        let slot = slot.clone();
        flow.set(
            "setCustomInfo",
            lua.create_function(move |_, text: String| {
                let mut cur = slot.borrow_mut();
                cur.state.custom_info = Some(text.chars().take(1024).collect());
                Ok(())
            })?,
        )?;
    }
    {
        let slot = slot.clone();
        flow.set(
            "triggerStatus",
            lua.create_function(
                move |lua,
                      (first, sc, sev, message, info, rest): (
                    Value,
                    Value,
                    Value,
                    Value,
                    Value,
                    mlua::MultiValue,
                )| {
                    // ntopng 4.x forms (a status table first): the compat layer's handler
                    let key = match first {
                        Value::Table(_) => {
                            let f: mlua::Function =
                                lua.named_registry_value("flowhook.trigger4x")?;
                            let mut args = mlua::MultiValue::new();
                            args.push_back(first);
                            args.extend([sc, sev, message, info]);
                            args.extend(rest);
                            return f.call::<()>(args);
                        }
                        other => String::from_lua(other, lua)?,
                    };
                    let sc = Option::<i64>::from_lua(sc, lua)?;
                    let sev = Option::<String>::from_lua(sev, lua)?;
                    let message = Option::<String>::from_lua(message, lua)?;
                    let info = Option::<Value>::from_lua(info, lua)?;
                    if key.is_empty() || key.len() > 64 {
                        return Err(mlua::Error::runtime(
                            "triggerStatus: the status key must be 1..64 characters",
                        ));
                    }
                    let bit = status::register(&key).ok_or_else(|| {
                        mlua::Error::runtime("triggerStatus: too many distinct statuses (64)")
                    })?;
                    let info = info
                        .map(|v| lua.from_value::<serde_json::Value>(v))
                        .transpose()?
                        .unwrap_or(serde_json::Value::Null);
                    slot.borrow_mut().actions.push(Action::Status {
                        bit,
                        name: key,
                        score: score(sc),
                        cli_score: 0,
                        srv_score: 0,
                        severity: severity(sev)?,
                        message: message.unwrap_or_default(),
                        info,
                        alert: true,
                    });
                    Ok(())
                },
            )?,
        )?;
    }
    {
        let slot = slot.clone();
        flow.set(
            "triggerAlert",
            lua.create_function(
                move |lua, (sc, message, info): (Option<i64>, Option<String>, Option<Value>)| {
                    let info = info
                        .map(|v| lua.from_value::<serde_json::Value>(v))
                        .transpose()?
                        .unwrap_or(serde_json::Value::Null);
                    slot.borrow_mut().actions.push(Action::Alert {
                        score: score(sc),
                        severity: "warning",
                        message: message.unwrap_or_default(),
                        info,
                    });
                    Ok(())
                },
            )?,
        )?;
    }
    install_4x(lua, &flow, slot)?;
    lua.globals().set("flow", flow)?;
    Ok(())
}

/// The status name a script passes: a name, ntopng 4.x's status table
/// (`key` or `status_key`) or its `flow_keys` id.
fn status_key(v: &Value) -> Option<String> {
    let id_name = |id: i64| super::compat::status_name_of_id(id).map(str::to_string);
    match v {
        Value::String(s) => Some(s.to_string_lossy()),
        Value::Integer(i) => id_name(*i),
        Value::Number(n) => id_name(*n as i64),
        Value::Table(t) => match t.get::<Value>("key").ok()? {
            Value::String(s) => Some(s.to_string_lossy()),
            _ => status_key(&t.get::<Value>("status_key").ok()?),
        },
        _ => None,
    }
}

fn status_bit(key: &str, what: &str) -> mlua::Result<u8> {
    if key.is_empty() || key.len() > 64 {
        return Err(mlua::Error::runtime(format!(
            "{what}: the status key must be 1..64 characters"
        )));
    }
    status::register(key)
        .ok_or_else(|| mlua::Error::runtime(format!("{what}: too many distinct statuses (64)")))
}

/// Arguments of `flow._status4x`: key, flow, client and server score,
/// severity, message, info, whether to alert.
type Status4x = (
    String,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<Value>,
    bool,
);

/// What the ntopng 4.x layer (`compat/prelude.lua`) builds its forms of
/// `triggerStatus`, `setStatus`, `clearStatus` and `isBlacklisted` on, and
/// `markBlacklisted` for blocklist scripts.
fn install_4x(lua: &Lua, flow: &Table, slot: Slot) -> mlua::Result<()> {
    let s = slot.clone();
    flow.set(
        "_status4x",
        lua.create_function(
            move |lua, (key, sc, cli, srv, sev, message, info, alert): Status4x| {
                let bit = status_bit(&key, "triggerStatus")?;
                let info = match info {
                    Some(v @ Value::Table(_)) | Some(v @ Value::String(_)) => lua
                        .from_value::<serde_json::Value>(v)
                        .unwrap_or(serde_json::Value::Null),
                    _ => serde_json::Value::Null,
                };
                // ntopng's "debug" is below flowhook's lowest severity
                let sev = sev.filter(|x| x != "debug");
                s.borrow_mut().actions.push(Action::Status {
                    bit,
                    name: key,
                    score: score(sc),
                    cli_score: score(cli),
                    srv_score: score(srv),
                    severity: severity(sev.or_else(|| Some("info".into())))?,
                    message: message.unwrap_or_default(),
                    info,
                    alert,
                });
                Ok(())
            },
        )?,
    )?;
    let s = slot.clone();
    flow.set(
        "_clearStatus",
        lua.create_function(move |_, key: String| {
            let bit = status_bit(&key, "clearStatus")?;
            let mut cur = s.borrow_mut();
            let was = cur.state.status.has(bit);
            cur.actions.push(Action::Clear { bit });
            Ok(was)
        })?,
    )?;
    let s = slot.clone();
    flow.set(
        "_blacklisted",
        lua.create_function(move |_, ()| {
            let b = s.borrow().state.blacklisted;
            Ok((b & 1 != 0, b & 2 != 0))
        })?,
    )?;
    flow.set(
        "markBlacklisted",
        lua.create_function(move |_, side: String| {
            let bit = match side.as_str() {
                "cli" | "client" => 1,
                "srv" | "server" => 2,
                _ => {
                    return Err(mlua::Error::runtime(
                        "markBlacklisted: side is \"cli\" or \"srv\"",
                    ));
                }
            };
            slot.borrow_mut().state.blacklisted |= bit;
            Ok(())
        })?,
    )?;
    Ok(())
}
