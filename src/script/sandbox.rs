//! The Lua state every worker runs scripts in: Lua 5.4 with `base` (no
//! `dofile`, `loadfile`, bytecode), `table`, `string` (no `dump`), `math`,
//! `utf8`, `coroutine`, and `os.time`/`os.clock`/`os.date`; a memory limit; an
//! instruction-count hook on every thread (coroutines included) that aborts
//! a call past its deadline; `require` that finds the ntopng modules
//! `compat` builds in and modules in the scripts directory only; `tprint` that logs any value
//! readably.
//!
//! Each script gets its own global environment ([`Sandbox::env`]): copies
//! of the library tables and of `flow`, so what one script assigns (a
//! global without `local`, `string.rep = …`, `flow = nil`) only it sees; its
//! own `require` cache; and wrappers that keep the deadline sticky —
//! `pcall`, `xpcall`, `coroutine.resume` and `coroutine.close` re-raise the
//! deadline error once the call is past it, so no script can catch it and
//! go on. `setmetatable` refuses `__gc` (Lua runs finalisers with hooks
//! off), `collectgarbage` only counts, steps and collects, the string
//! metatable is hidden, and the pattern functions are flowhook's own with a
//! step budget (`pattern`).
//!
//! In: the scripts directory and the limits. Out: a ready `Lua`, the
//! shared deadline it checks, and the maker of script environments.

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
    /// Whether a call is running and past its deadline.
    pub fn passed(&self) -> bool {
        self.0.get().is_some_and(|until| Instant::now() >= until)
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

/// Builds one script's environment (run once per script load).
const ENV_MAKER: &str = r#"
local check, passed, require_for = ...
local G = _G
local raw_pcall, raw_xpcall, raw_setmetatable, raw_collect = pcall, xpcall, setmetatable, collectgarbage
local raw_resume, raw_close, raw_load = coroutine.resume, coroutine.close, load
local next, type, error, rawget, tostring = next, type, error, rawget, tostring
local gc_ok = { count = true, step = true, collect = true, isrunning = true }
-- C functions that loop without allocating: made bounded (shared, so method calls get them too)
local raw_rep, mtype, tointeger = string.rep, math.type, math.tointeger
string.rep = function(s, n, sep)
  -- an empty result repeated n times costs n steps in C and no memory
  if s == "" and (sep == nil or sep == "") and mtype(n) then return "" end
  return raw_rep(s, n, sep)
end
table.move = function(a1, f, e, t, a2)
  -- as Lua's, in Lua: every element is an instruction the deadline counts
  local function int(v, i)
    local x = tointeger(v)
    if x == nil then
      error("bad argument #" .. i .. " to 'move' (number has no integer representation)", 3)
    end
    return x
  end
  f, e, t = int(f, 2), int(e, 3), int(t, 4)
  if a2 == nil then a2 = a1 end
  if e >= f then
    if t > e or t <= f or a1 ~= a2 then
      for i = 0, e - f do a2[t + i] = a1[f + i] end
    else
      for i = e - f, 0, -1 do a2[t + i] = a1[f + i] end
    end
  end
  return a2
end
local function copy(t)
  local c = {}
  for k, v in next, t do c[k] = v end
  return c
end
return function()
  local env = {}
  for k, v in next, G do
    if type(v) == "table" and k ~= "_G" then env[k] = copy(v) else env[k] = v end
  end
  env._G = env
  env.pcall = function(...) return check(raw_pcall(...)) end
  -- past the deadline the error comes from the instruction hook, and Lua runs
  -- the message handler with hooks off: the script's handler is skipped then
  env.xpcall = function(f, h, ...)
    local handler = h
    if type(h) == "function" then
      handler = function(e) if passed() then return e end return h(e) end
    end
    return check(raw_xpcall(f, handler, ...))
  end
  env.coroutine.resume = function(...) return check(raw_resume(...)) end
  env.coroutine.close = function(...) return check(raw_close(...)) end
  env.setmetatable = function(t, mt)
    if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
      error("setmetatable: __gc finalisers are not allowed in flow scripts", 2)
    end
    return raw_setmetatable(t, mt)
  end
  env.collectgarbage = function(opt, ...)
    if opt ~= nil and not gc_ok[opt] then
      error("collectgarbage('" .. tostring(opt) .. "') is not allowed in flow scripts", 2)
    end
    return raw_collect(opt, ...)
  end
  env.load = function(chunk, name, mode, e)
    if e == nil then e = env end
    return raw_load(chunk, name, mode, e)
  end
  env.require = require_for(env)
  return env
end
"#;

/// A worker's Lua state and what its scripts run under.
pub struct Sandbox {
    pub lua: Lua,
    pub deadline: Deadline,
    make_env: mlua::Function,
}

impl Sandbox {
    /// A fresh global environment for one script (see the module header).
    pub fn env(&self) -> mlua::Result<Table> {
        self.make_env.call(())
    }
}

/// A `require` for one script environment: the built-in modules ntopng 4.x
/// scripts use (`compat::builtin`), else `<dir>/<name>.lua`, run in that
/// environment, each loaded once per script.
fn require_maker(lua: &Lua, dir: PathBuf) -> mlua::Result<mlua::Function> {
    lua.create_function(move |lua, env: Table| {
        let dir = dir.clone();
        let loaded = lua.create_table()?;
        lua.create_function(move |lua, name: String| {
            if let Ok(Value::Table(t)) = loaded.get::<Value>(name.as_str()) {
                return Ok(Value::Table(t));
            }
            let module: Value = if let Some(src) = super::compat::builtin(&name) {
                // a built-in module registers itself early (`provide`), so
                // the definitions it loads can require it back
                let l = loaded.clone();
                let n = name.clone();
                let provide = lua.create_function(move |_, m: Value| l.set(n.as_str(), m))?;
                let native = super::compat::native(lua)?;
                lua.load(src)
                    .set_name(format!("=flowhook {name}"))
                    .set_mode(ChunkMode::Text)
                    .set_environment(env.clone())
                    .call::<Value>((native, provide))?
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
                    .set_environment(env.clone())
                    .eval::<Value>()?
            };
            let module = if module.is_nil() {
                Value::Boolean(true)
            } else {
                module
            };
            loaded.set(name.as_str(), module.clone())?;
            Ok(module)
        })
    })
}

/// A new sandboxed state for scripts in `dir`.
pub fn new_sandbox(dir: &Path, memory_limit: usize) -> mlua::Result<Sandbox> {
    let (lua, deadline) = new_state(memory_limit)?;
    let d = deadline.clone();
    let check = lua.create_function(move |_, v: MultiValue| {
        if d.passed() {
            Err(mlua::Error::external(DeadlineExceeded))
        } else {
            Ok(v)
        }
    })?;
    let d = deadline.clone();
    let passed = lua.create_function(move |_, ()| Ok(d.passed()))?;
    let require_for = require_maker(&lua, dir.to_path_buf())?;
    let make_env: mlua::Function =
        lua.load(ENV_MAKER)
            .set_name("=flowhook sandbox")
            .call((check, passed, require_for))?;
    Ok(Sandbox {
        lua,
        deadline,
        make_env,
    })
}

/// The shared state under the script environments.
fn new_state(memory_limit: usize) -> mlua::Result<(Lua, Deadline)> {
    let libs = StdLib::TABLE
        | StdLib::STRING
        | StdLib::MATH
        | StdLib::UTF8
        | StdLib::COROUTINE
        | StdLib::OS;
    let lua = Lua::new_with(libs, LuaOptions::new())?;
    // generational collection: what scripts allocate (getInfo tables, match
    // captures) dies within a hook call
    lua.load("collectgarbage(\"generational\")").exec()?;
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
    let deadline = Deadline::default();
    super::pattern::install(&lua, &string, &deadline)?;
    // the string metatable (its __index is the shared `string`) stays out of reach
    let string_mt: Table = lua.load("return getmetatable('')").eval()?;
    string_mt.set("__metatable", false)?;
    // os: time, clock, date only
    let os_full: Table = g.get("os")?;
    let os = lua.create_table()?;
    for name in ["time", "clock", "date"] {
        os.set(name, os_full.get::<Value>(name)?)?;
    }
    g.set("os", os)?;
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
    let d = deadline.clone();
    // global: every thread, coroutines the scripts create included
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(CHECK_EVERY),
        move |_, _| match d.0.get() {
            Some(until) if Instant::now() >= until => Err(mlua::Error::external(DeadlineExceeded)),
            _ => Ok(VmState::Continue),
        },
    )?;
    Ok((lua, deadline))
}
