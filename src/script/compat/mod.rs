//! ntopng 4.x compatibility: what flow scripts written for ntopng 4.0–4.2
//! find around them there, rebuilt for flowhook.
//!
//! In: a worker's Lua state (after the `flow` object is installed) and the
//! scripts directory's plugin [`Tree`]. Out: globals ntopng's flow VM has
//! (`i18n`, `isEmptyString`, `table.len`, `shortFlowLabel`, …, `ntop`,
//! `interface`), the 4.x forms of `flow.triggerStatus`/`setStatus`/
//! `clearStatus` and the rest of the 4.x flow API (`prelude.lua`), and the
//! built-in modules `require` finds (`flow_consts`, `alert_consts`,
//! `user_scripts`, `flow_keys`, `alert_keys`, `dkjson`, …; `modules/`).
//! Modules that only make sense inside ntopng's GUI or Redis load as
//! tables whose functions do nothing. The data ntopng keeps in its sources
//! (status and alert keys, severities, nDPI protocol ids) is in `data.rs`.

mod data;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mlua::{Lua, LuaSerdeExt, Table, Value};

use super::plugins::{Definition, Tree};

pub use data::{ndpi_category, ndpi_proto_id};

/// The `status_types` key of an ntopng 4.2 `flow_keys` id.
pub fn status_name_of_id(id: i64) -> Option<&'static str> {
    data::STATUSES
        .iter()
        .find(|s| i64::from(s.1) == id)
        .map(|s| s.0)
}

/// Source of a built-in module, by the name scripts `require`.
pub fn builtin(name: &str) -> Option<&'static str> {
    Some(match name {
        "flow_consts" => include_str!("modules/flow_consts.lua"),
        "alert_consts" => include_str!("modules/alert_consts.lua"),
        "user_scripts" => include_str!("modules/user_scripts.lua"),
        "flow_keys" => include_str!("modules/flow_keys.lua"),
        "alert_keys" => include_str!("modules/alert_keys.lua"),
        "format_utils" => include_str!("modules/format_utils.lua"),
        "plugins_utils" => include_str!("modules/plugins_utils.lua"),
        "flow_risk_utils" => include_str!("modules/flow_risk_utils.lua"),
        "discover_utils" => include_str!("modules/discover_utils.lua"),
        "dkjson" | "json" => {
            "local native = ...; return { encode = native.json_encode, decode = native.json_decode, null = native.json_null, version = 'flowhook' }"
        }
        "lua_utils" | "ntop_utils" | "lua_trace" | "locales_utils" | "flow_utils" => "return true",
        "ids_utils" => "return { computeScore = function(info) return 100, 100, 100 end }",
        "mud_utils" => "return { handleFlow = function() end }",
        "rtt_utils" => {
            "return { key2host = function(k) local host, measurement = tostring(k):match('^(.-)@(.*)$'); return { host = host or k, measurement = measurement or 'icmp' } end }"
        }
        n if GUI_MODULES.contains(&n) => include_str!("modules/stub.lua"),
        _ => return None,
    })
}

/// ntopng modules for its web GUI, Redis, time series and notifications:
/// they load and do nothing in flowhook.
pub const GUI_MODULES: [&str; 24] = [
    "alerts_api",
    "alert_utils",
    "page_utils",
    "graph_utils",
    "ts_utils",
    "ts_utils_core",
    "template_utils",
    "storage_utils",
    "snmp_utils",
    "system_utils",
    "os_utils",
    "auth",
    "ui_utils",
    "rest_utils",
    "lua_path_utils",
    "import_export",
    "companion_interface_utils",
    "callback_utils",
    "active_monitoring_pools",
    "http_lint",
    "prefs_utils",
    "notification_configs",
    "recipients",
    "alert_entities",
];

/// A worker's `ntop.*Cache` store: bounded, with expiry.
#[derive(Default)]
struct Cache {
    map: HashMap<String, (String, Option<Instant>)>,
}

/// Entries a worker's cache keeps at most (beyond, new keys are refused).
const CACHE_MAX: usize = 10_000;

impl Cache {
    fn get(&mut self, k: &str) -> String {
        match self.map.get(k) {
            Some((_, Some(exp))) if *exp <= Instant::now() => {
                self.map.remove(k);
                String::new()
            }
            Some((v, _)) => v.clone(),
            None => String::new(),
        }
    }

    fn set(&mut self, k: String, v: String, ttl: Option<f64>) {
        if self.map.len() >= CACHE_MAX && !self.map.contains_key(&k) {
            let now = Instant::now();
            self.map.retain(|_, (_, e)| e.is_none_or(|e| e > now));
            if self.map.len() >= CACHE_MAX {
                return;
            }
        }
        let exp = ttl
            .filter(|t| *t > 0.0 && t.is_finite())
            .map(|t| Instant::now() + Duration::from_secs_f64(t.min(1e9)));
        self.map.insert(k, (v, exp));
    }
}

fn defs_table(lua: &Lua, defs: &[Definition]) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    for (i, d) in defs.iter().enumerate() {
        let e = lua.create_table()?;
        e.set("key", d.key.as_str())?;
        e.set("path", d.path.display().to_string())?;
        e.set("source", lua.create_string(&d.source)?)?;
        e.set(
            "plugin",
            d.plugin
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        )?;
        t.raw_set(i + 1, e)?;
    }
    Ok(t)
}

/// Installs the compatibility layer in `lua`; `prefs` are `[scripts.conf.prefs]`.
pub fn install(
    lua: &Lua,
    tree: &Tree,
    prefs: &std::collections::BTreeMap<String, String>,
    scripts_dir: &std::path::Path,
) -> mlua::Result<()> {
    let native = lua.create_table()?;
    native.set("statuses", data::statuses(lua)?)?;
    native.set("alerts", data::alerts(lua)?)?;
    native.set("ndpi", data::ndpi(lua)?)?;
    native.set("status_definitions", defs_table(lua, &tree.statuses)?)?;
    native.set("alert_definitions", defs_table(lua, &tree.alerts)?)?;
    native.set("locales", defs_table(lua, &tree.locales)?)?;
    // plugins' modules: plugin name → directory
    let mods = lua.create_table()?;
    for d in &tree.module_dirs {
        if let Some(p) = d.parent().and_then(|p| p.file_name()) {
            mods.set(p.to_string_lossy().into_owned(), d.display().to_string())?;
        }
    }
    native.set("module_dirs", mods)?;
    native.set(
        "read_module",
        lua.create_function(|lua, (dir, name): (String, String)| {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Ok((Value::Nil, Value::Nil));
            }
            let path = std::path::Path::new(&dir).join(format!("{name}.lua"));
            match std::fs::read(&path) {
                Ok(src) => Ok((
                    Value::String(lua.create_string(&src)?),
                    Value::String(lua.create_string(path.display().to_string())?),
                )),
                Err(_) => Ok((Value::Nil, Value::Nil)),
            }
        })?,
    )?;
    native.set(
        "json_encode",
        lua.create_function(|lua, v: Value| {
            let j: serde_json::Value = lua.from_value(v)?;
            Ok(j.to_string())
        })?,
    )?;
    native.set(
        "json_decode",
        lua.create_function(|lua, s: mlua::LuaString| {
            match serde_json::from_slice::<serde_json::Value>(&s.as_bytes()) {
                Ok(j) => Ok((lua.to_value(&j)?, Value::Nil)),
                Err(e) => Ok((Value::Nil, Value::String(lua.create_string(e.to_string())?))),
            }
        })?,
    )?;
    native.set("json_null", lua.null())?;
    // each problem once per state (every script that requires a module reloads definitions)
    let warned = RefCell::new(std::collections::HashSet::new());
    native.set(
        "warn",
        lua.create_function(move |_, (path, msg): (String, String)| {
            if warned.borrow().len() < 1000 && warned.borrow_mut().insert(path.clone()) {
                tracing::warn!(target: "flowhook::script", "{path}: {msg}");
            }
            Ok(())
        })?,
    )?;
    lua.set_named_registry_value("flowhook.ntopng", native.clone())?;

    // ntop.*: the parts flow scripts use
    let ntop = lua.create_table()?;
    let cache = Rc::new(RefCell::new(Cache::default()));
    {
        let c = cache.clone();
        ntop.set(
            "getCache",
            lua.create_function(move |_, k: String| Ok(c.borrow_mut().get(&k)))?,
        )?;
        let c = cache.clone();
        ntop.set(
            "setCache",
            lua.create_function(move |_, (k, v, ttl): (String, Value, Option<f64>)| {
                let v = match v {
                    Value::String(s) => s.to_string_lossy(),
                    Value::Integer(i) => i.to_string(),
                    Value::Number(n) => n.to_string(),
                    Value::Boolean(b) => b.to_string(),
                    _ => String::new(),
                };
                c.borrow_mut().set(k, v, ttl);
                Ok(())
            })?,
        )?;
        let c = cache.clone();
        ntop.set(
            "delCache",
            lua.create_function(move |_, k: String| {
                c.borrow_mut().map.remove(&k);
                Ok(())
            })?,
        )?;
    }
    let prefs = Rc::new(RefCell::new(prefs.clone()));
    {
        let p = prefs.clone();
        ntop.set(
            "getPref",
            lua.create_function(move |_, k: String| {
                Ok(p.borrow().get(&k).cloned().unwrap_or_default())
            })?,
        )?;
        let p = prefs.clone();
        ntop.set(
            "setPref",
            lua.create_function(move |_, (k, v): (String, String)| {
                let mut p = p.borrow_mut();
                if p.len() < CACHE_MAX || p.contains_key(&k) {
                    p.insert(k, v);
                }
                Ok(())
            })?,
        )?;
    }
    let dirs = lua.create_table()?;
    dirs.set("installdir", scripts_dir.display().to_string())?;
    dirs.set("scriptdir", scripts_dir.display().to_string())?;
    dirs.set("workingdir", std::env::temp_dir().display().to_string())?;
    dirs.set("httpdocsdir", "")?;
    dirs.set("callbacksdir", scripts_dir.display().to_string())?;
    ntop.set("__dirs", dirs)?;
    ntop.set(
        "gettimemsec",
        lua.create_function(|_, ()| {
            Ok(std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0))
        })?,
    )?;
    lua.globals().set("ntop", ntop)?;
    lua.load(include_str!("prelude.lua"))
        .set_name("=flowhook ntopng prelude")
        .call::<()>(native.clone())?;
    let trigger: mlua::Function = native.get("trigger4x")?;
    lua.set_named_registry_value("flowhook.trigger4x", trigger)?;
    Ok(())
}

/// The `native` table built-in modules are called with.
pub fn native(lua: &Lua) -> mlua::Result<Table> {
    lua.named_registry_value("flowhook.ntopng")
}

#[cfg(test)]
mod tests;
