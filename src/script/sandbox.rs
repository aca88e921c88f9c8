//! The Lua state every worker runs scripts in: Lua 5.4 with `base` (no
//! `dofile`, `loadfile`, bytecode), `table`, `string` (no `dump`), `math`,
//! `utf8`, `coroutine`, and `os.time`/`os.clock`/`os.date`; a memory limit; an
//! instruction-count hook that aborts a call past its deadline; `require`
//! that finds `user_scripts` (built in) and modules in the scripts directory
//! only; `tprint` that logs any value readably.
//!
//! In: the scripts directory and the limits. Out: a ready `Lua` and the
//! shared deadline it checks.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use mlua::chunk::ChunkMode;
use mlua::{HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState};

/// The error a deadline abort raises; the host recognises it by type.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("flowhook: hook exceeded its deadline")]
pub struct DeadlineExceeded;

/// Instructions between deadline checks.
const CHECK_EVERY: u32 = 1000;

/// When the running call must stop (`None`: no call running).
#[derive(Clone, Default)]
pub struct Deadline(Rc<Cell<Option<Instant>>>);

impl Deadline {
    pub fn arm(&self, until: Instant) {
        self.0.set(Some(until));
    }
    pub fn disarm(&self) {
        self.0.set(None);
    }
}

/// Renders a Lua value readably (tables recursively, bounded).
pub fn describe(v: &Value, depth: usize, out: &mut String) {
    match v {
        Value::Nil => out.push_str("nil"),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Integer(i) => out.push_str(&i.to_string()),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => {
            out.push('"');
            out.push_str(&s.to_string_lossy());
            out.push('"');
        }
        Value::Table(t) if depth < 4 => {
            out.push('{');
            let mut first = true;
            for (n, pair) in t.pairs::<Value, Value>().enumerate() {
                if n >= 64 {
                    out.push_str(", …");
                    break;
                }
                let Ok((k, v)) = pair else { continue };
                if !first {
                    out.push_str(", ");
                }
                first = false;
                match &k {
                    Value::String(s) => out.push_str(&s.to_string_lossy()),
                    other => {
                        out.push('[');
                        describe(other, depth + 1, out);
                        out.push(']');
                    }
                }
                out.push_str(" = ");
                describe(&v, depth + 1, out);
            }
            out.push('}');
        }
        Value::Table(_) => out.push_str("{…}"),
        other => out.push_str(other.type_name()),
    }
}

fn valid_module_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The built-in `user_scripts` module ntopng scripts `require`.
fn user_scripts(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    let prio = lua.create_table()?;
    prio.set("normal", 0)?;
    prio.set("low", 1)?;
    m.set("priorities", prio)?;
    let fields = lua.create_table()?;
    m.set("script_types", fields)?;
    Ok(m)
}

/// A new sandboxed state for scripts in `dir`.
pub fn new_state(dir: &Path, memory_limit: usize) -> mlua::Result<(Lua, Deadline)> {
    let libs = StdLib::TABLE
        | StdLib::STRING
        | StdLib::MATH
        | StdLib::UTF8
        | StdLib::COROUTINE
        | StdLib::OS;
    let lua = Lua::new_with(libs, LuaOptions::new())?;
    let g = lua.globals();
    // base library without file access or bytecode
    for name in ["dofile", "loadfile"] {
        g.set(name, Value::Nil)?;
    }
    let raw_load: mlua::Function = g.get("load")?;
    g.set(
        "load",
        lua.create_function(
            move |_,
                  (chunk, name, _mode, env): (
                Value,
                Option<String>,
                Option<String>,
                Option<Value>,
            )| {
                // text only: a "b" or "bt" mode is forced to "t"
                raw_load.call::<MultiValue>((chunk, name, "t", env))
            },
        )?,
    )?;
    let string: Table = g.get("string")?;
    string.set("dump", Value::Nil)?;
    // os: time, clock, date only
    let os_full: Table = g.get("os")?;
    let os = lua.create_table()?;
    for name in ["time", "clock", "date"] {
        os.set(name, os_full.get::<Value>(name)?)?;
    }
    g.set("os", os)?;
    // require: the built-in user_scripts, else <dir>/<name>.lua, loaded once
    let dir: PathBuf = dir.to_path_buf();
    let loaded = lua.create_table()?;
    g.set(
        "require",
        lua.create_function(move |lua, name: String| {
            if let Ok(Value::Table(t)) = loaded.get::<Value>(name.as_str()) {
                return Ok(Value::Table(t));
            }
            let module: Value = if name == "user_scripts" {
                Value::Table(user_scripts(lua)?)
            } else {
                if !valid_module_name(&name) {
                    return Err(mlua::Error::runtime(format!(
                        "require '{name}': only modules in the scripts directory"
                    )));
                }
                let path = dir.join(format!("{name}.lua"));
                let src = std::fs::read(&path).map_err(|_| {
                    mlua::Error::runtime(format!(
                        "require '{name}': no module {name}.lua in the scripts directory"
                    ))
                })?;
                lua.load(src)
                    .set_name(format!("@{}", path.display()))
                    .set_mode(ChunkMode::Text)
                    .eval::<Value>()?
            };
            let module = if module.is_nil() {
                Value::Boolean(true)
            } else {
                module
            };
            loaded.set(name.as_str(), module.clone())?;
            Ok(module)
        })?,
    )?;
    g.set(
        "tprint",
        lua.create_function(|_, v: Value| {
            let mut s = String::new();
            describe(&v, 0, &mut s);
            tracing::info!(target: "flowhook::script", "tprint: {s}");
            Ok(())
        })?,
    )?;
    g.set(
        "print",
        lua.create_function(|_, vs: MultiValue| {
            let mut s = String::new();
            for (i, v) in vs.iter().enumerate() {
                if i > 0 {
                    s.push('\t');
                }
                match v {
                    Value::String(x) => s.push_str(&x.to_string_lossy()),
                    other => describe(other, 0, &mut s),
                }
            }
            tracing::info!(target: "flowhook::script", "print: {s}");
            Ok(())
        })?,
    )?;
    lua.set_memory_limit(memory_limit)?;
    let deadline = Deadline::default();
    let d = deadline.clone();
    lua.set_hook(
        HookTriggers::new().every_nth_instruction(CHECK_EVERY),
        move |_, _| match d.0.get() {
            Some(until) if Instant::now() >= until => Err(mlua::Error::external(DeadlineExceeded)),
            _ => Ok(VmState::Continue),
        },
    )?;
    Ok((lua, deadline))
}
