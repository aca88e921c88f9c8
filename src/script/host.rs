//! One Lua state with every enabled script loaded, and the hook calls for
//! lifecycle events.
//!
//! In: [`FlowEvent`]s in order (all events of one flow reach the same host).
//! Out: output lines (the event with what scripts added, alerts, and a
//! `statusChanged` when scripts changed the statuses) and per-(script, hook)
//! timings through telemetry. Scripts are compiled at load into functions;
//! a call runs under a deadline (instruction hook) and the state's memory
//! limit; an error affects only that call.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlua::chunk::ChunkMode;
use mlua::{Function, Lua, LuaSerdeExt, Table, Value};

use super::ScriptError;
use super::api::{self, Action, FlowScriptState, Slot};
use super::sandbox::{self, Deadline, DeadlineExceeded};
use crate::flow::status::{self, StatusSet};
use crate::flow::{EventKind, FlowEvent, FlowView};
use crate::output::Lines;
use crate::telemetry::{HookTimer, ScriptTelemetry};

/// A script file's source, as last loaded successfully.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptSource {
    pub name: String,
    pub path: PathBuf,
    pub source: Vec<u8>,
    /// The ntopng plugin directory it comes from (`None`: a plain script).
    pub plugin: Option<PathBuf>,
}

/// A loaded script, as `flowhook check` lists it.
#[derive(Debug, Clone)]
pub struct ScriptInfo {
    pub name: String,
    pub path: PathBuf,
    pub plugin: Option<PathBuf>,
    pub enabled: bool,
    pub why_disabled: Option<String>,
}

/// Settings of a host.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub dir: PathBuf,
    pub deadline: Duration,
    pub memory_limit: usize,
    pub max_consecutive_timeouts: u32,
    pub alert_rate_per_sec: u32,
    pub enable: Vec<String>,
    pub disable: Vec<String>,
    pub conf: std::collections::BTreeMap<String, toml::Value>,
    pub have_local_networks: bool,
    /// Where alerts are delivered besides the output (Alertmanager, webhooks, syslog).
    pub alerts: crate::alert::Router,
}

impl HostConfig {
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        HostConfig {
            dir: cfg.scripts.dir.clone(),
            deadline: cfg.scripts.deadline,
            memory_limit: cfg.scripts.memory_limit_mb << 20,
            max_consecutive_timeouts: cfg.scripts.max_consecutive_timeouts,
            alert_rate_per_sec: cfg.scripts.alert_rate_per_sec,
            enable: cfg.scripts.enable.clone(),
            disable: cfg.scripts.disable.clone(),
            conf: cfg.scripts.conf.clone(),
            have_local_networks: cfg.networks.iter().any(|n| n.local),
            alerts: crate::alert::Router::default(),
        }
    }
}

struct Script {
    name: Arc<str>,
    hooks: [Option<Function>; 4],
    conf: Value,
    l4: Vec<String>,
    l7: Vec<String>,
    periodic_secs: Option<i64>,
    teardown: Option<Function>,
    timers: [HookTimer; 4],
    enabled: bool,
    /// Why it does not run (disabled by configuration, setup, or needing
    /// what NetFlow/IPFIX do not carry).
    why_disabled: Option<String>,
    path: PathBuf,
    plugin: Option<PathBuf>,
    /// ntopng 4.2 `prio`: higher runs first.
    prio: i64,
    /// ntopng `l7_proto_id`: only flows whose application or master protocol has this nDPI id.
    l7_id: Option<u16>,
    /// ntopng `three_way_handshake_ok`: TCP flows only once the handshake completed.
    twh_ok: bool,
    timeouts_in_row: u32,
    alert_window: (i64, u32),
    /// This script's alert counters by status bit (`None`: `triggerAlert`)
    /// and severity, taken from the telemetry once each.
    alert_counters: Vec<(Option<u8>, &'static str, metrics::Counter)>,
}

/// The scripts of `dir`: its top-level `*.lua` files, then the flow scripts
/// of the ntopng plugins below it (`plugins::scan`). A missing directory has
/// no scripts. Clashing names are left out here; `plugins::scan` reports them.
pub fn read_dir(dir: &Path) -> Result<Vec<ScriptSource>, ScriptError> {
    Ok(super::plugins::scan(dir)?.scripts)
}

fn strings(v: Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.to_string_lossy()],
        Value::Table(t) => t.sequence_values::<String>().flatten().collect(),
        _ => Vec::new(),
    }
}

const HOOK_NAMES: [&str; 4] = [
    "protocolDetected",
    "statusChanged",
    "periodicUpdate",
    "flowEnd",
];

fn hook_index(kind: EventKind) -> usize {
    EventKind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

/// The scripts of one worker.
pub struct ScriptHost {
    lua: Lua,
    deadline: Deadline,
    sandbox: sandbox::Sandbox,
    slot: Slot,
    scripts: Vec<Script>,
    /// Keyed by the flow id, itself a hash: Fx, not SipHash, over it.
    flows: rustc_hash::FxHashMap<u64, FlowScriptState>,
    cfg: HostConfig,
    tel: ScriptTelemetry,
    /// When the hook call running now started (`mono_ms`; 0 between calls), for the runner's watchdog.
    call_started: Option<Arc<std::sync::atomic::AtomicI64>>,
}

/// Compiles `src` in a scratch state: the way `check` and reload find errors with file and line.
pub fn check_source(cfg: &HostConfig, src: &ScriptSource) -> Result<(), ScriptError> {
    let mut h = ScriptHost::empty(cfg).map_err(|e| ScriptError::Load {
        script: src.name.clone(),
        detail: e.to_string(),
    })?;
    h.load(src)
}

impl ScriptHost {
    fn empty(cfg: &HostConfig) -> mlua::Result<Self> {
        let sb = sandbox::new_sandbox(&cfg.dir, cfg.memory_limit)?;
        let (lua, deadline) = (sb.lua.clone(), sb.deadline.clone());
        let slot: Slot = Default::default();
        slot.borrow_mut().have_local_networks = cfg.have_local_networks;
        api::install(&lua, slot.clone())?;
        // ntopng 4.x: definitions, locales and modules of the plugin trees
        let tree = super::plugins::scan(&cfg.dir).unwrap_or_default();
        let prefs = match cfg.conf.get("prefs") {
            Some(toml::Value::Table(t)) => t
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        toml::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect(),
            _ => Default::default(),
        };
        super::compat::install(&lua, &tree, &prefs, &cfg.dir)?;
        Ok(ScriptHost {
            lua,
            deadline,
            sandbox: sb,
            slot,
            scripts: Vec::new(),
            flows: Default::default(),
            cfg: cfg.clone(),
            tel: ScriptTelemetry::default(),
            call_started: None,
        })
    }

    /// A host with `sources` loaded; a script that fails to load is reported in the returned list and left out.
    pub fn new(
        cfg: &HostConfig,
        sources: &[ScriptSource],
    ) -> Result<(Self, Vec<ScriptError>), ScriptError> {
        let mut h = Self::empty(cfg).map_err(|e| ScriptError::Load {
            script: "(state)".into(),
            detail: e.to_string(),
        })?;
        let mut errors = Vec::new();
        for s in sources {
            if let Err(e) = h.load(s) {
                errors.push(e);
            }
        }
        Ok((h, errors))
    }

    /// Every loaded script: what `flowhook check` lists.
    pub fn describe(&self) -> Vec<ScriptInfo> {
        self.scripts
            .iter()
            .map(|s| ScriptInfo {
                name: s.name.to_string(),
                path: s.path.clone(),
                plugin: s.plugin.clone(),
                enabled: s.enabled,
                why_disabled: s.why_disabled.clone(),
            })
            .collect()
    }

    /// Names of the scripts that run.
    pub fn enabled(&self) -> Vec<String> {
        self.scripts
            .iter()
            .filter(|s| s.enabled)
            .map(|s| s.name.to_string())
            .collect()
    }

    fn load(&mut self, src: &ScriptSource) -> Result<(), ScriptError> {
        let err = |detail: String| ScriptError::Load {
            script: src.name.clone(),
            detail,
        };
        // its own globals: what it assigns no other script sees
        let env = self.sandbox.env().map_err(|e| err(e.to_string()))?;
        let chunk = self
            .lua
            .load(&src.source[..])
            .set_name(format!("@{}", src.path.display()))
            .set_mode(ChunkMode::Text)
            .set_environment(env);
        self.deadline
            .arm(Instant::now() + self.cfg.deadline.max(Duration::from_millis(100)) * 10);
        let r = chunk.eval::<Value>();
        self.deadline.disarm();
        let t = match r.map_err(|e| err(e.to_string()))? {
            Value::Table(t) => t,
            other => {
                return Err(err(format!(
                    "{}: must return a table (got {})",
                    src.path.display(),
                    other.type_name()
                )));
            }
        };
        let hooks_t: Table = t.get("hooks").map_err(|_| {
            err(format!(
                "{}: the returned table has no `hooks` table",
                src.path.display()
            ))
        })?;
        let mut hooks: [Option<Function>; 4] = Default::default();
        for pair in hooks_t.pairs::<String, Value>() {
            let (k, v) = pair.map_err(|e| err(e.to_string()))?;
            let Value::Function(f) = v else {
                return Err(err(format!(
                    "{}: hooks.{k} is not a function",
                    src.path.display()
                )));
            };
            if k == "all" {
                for h in hooks.iter_mut() {
                    h.get_or_insert(f.clone());
                }
                continue;
            }
            let Some(i) = HOOK_NAMES.iter().position(|n| *n == k) else {
                return Err(err(format!(
                    "{}: unknown hook `{k}` (use {} or all)",
                    src.path.display(),
                    HOOK_NAMES.join(", ")
                )));
            };
            hooks[i] = Some(f);
        }
        let default_enabled = t
            .get::<Option<bool>>("default_enabled")
            .map_err(|e| err(e.to_string()))?
            .unwrap_or(true);
        let name = src.name.as_str();
        let enabled = (default_enabled || self.cfg.enable.iter().any(|n| n == name))
            && !self.cfg.disable.iter().any(|n| n == name);
        let mut why_disabled = (!enabled).then(|| {
            if self.cfg.disable.iter().any(|n| n == name) {
                "scripts.disable".to_string()
            } else {
                "default_enabled = false (add it to scripts.enable)".to_string()
            }
        });
        // ntopng 4.x fields for what a flow collector cannot offer
        let flag = |k: &str| matches!(t.get::<Value>(k), Ok(Value::Boolean(true)));
        let needs = if flag("packet_interface_only") {
            Some("packet_interface_only: needs a packet capture interface")
        } else if flag("nedge_only") {
            Some("nedge_only: needs ntopng's nEdge")
        } else {
            None
        };
        let enabled = match needs {
            Some(why) if enabled => {
                tracing::info!(script = name, "not run: {why}");
                why_disabled = Some(why.to_string());
                false
            }
            _ => enabled,
        };
        let conf: Value = match self.cfg.conf.get(name) {
            Some(v) => self
                .lua
                .to_value(v)
                .map_err(|e| err(format!("scripts.conf.{name}: {e}")))?,
            None => t.get("default_value").map_err(|e| err(e.to_string()))?,
        };
        let periodic_secs = t
            .get::<Option<i64>>("periodic_update_seconds")
            .map_err(|e| err(e.to_string()))?;
        let mut enabled = enabled;
        if enabled
            && let Some(setup) = t
                .get::<Option<Function>>("setup")
                .map_err(|e| err(e.to_string()))?
        {
            self.deadline.arm(Instant::now() + self.cfg.deadline * 10);
            let r = setup.call::<Value>(conf.clone());
            self.deadline.disarm();
            match r {
                Ok(Value::Boolean(false)) => {
                    enabled = false;
                    why_disabled = Some("setup() returned false".into());
                }
                Ok(_) => {}
                Err(e) => return Err(err(format!("setup(): {e}"))),
            }
        }
        // ntopng 4.2 calls onLoad, then onEnable, for enabled scripts
        if enabled {
            for f in ["onLoad", "onEnable"] {
                if let Ok(Some(func)) = t.get::<Option<Function>>(f) {
                    let hook_config = self.lua.create_table().map_err(|e| err(e.to_string()))?;
                    hook_config
                        .set("enabled", true)
                        .and_then(|_| hook_config.set("script_conf", conf.clone()))
                        .map_err(|e| err(e.to_string()))?;
                    self.deadline.arm(Instant::now() + self.cfg.deadline * 10);
                    let r = func.call::<Value>(("all", hook_config));
                    self.deadline.disarm();
                    r.map_err(|e| err(format!("{f}(): {e}")))?;
                }
            }
        }
        let l7_id = match t.get::<Value>("l7_proto_id") {
            Ok(Value::Integer(i)) => u16::try_from(i).ok(),
            Ok(Value::Number(n)) if (0.0..65536.0).contains(&n) => Some(n as u16),
            _ => None,
        };
        let script = Script {
            name: Arc::from(name),
            hooks,
            conf,
            l4: strings(t.get("l4_proto").unwrap_or(Value::Nil)),
            l7: strings(t.get("l7_proto").unwrap_or(Value::Nil)),
            periodic_secs,
            teardown: t.get("teardown").ok(),
            timers: HOOK_NAMES.map(|h| HookTimer::new(name, h)),
            enabled,
            why_disabled,
            path: src.path.clone(),
            plugin: src.plugin.clone(),
            prio: t.get::<Option<i64>>("prio").ok().flatten().unwrap_or(0),
            l7_id,
            twh_ok: flag("three_way_handshake_ok"),
            timeouts_in_row: 0,
            alert_window: (i64::MIN, 0),
            alert_counters: Vec::new(),
        };
        self.tel.set_enabled(name, enabled);
        self.scripts.retain(|s| *s.name != *name);
        self.scripts.push(script);
        // ntopng 4.2 runs higher `prio` first; equal ones by name
        self.scripts
            .sort_by(|a, b| b.prio.cmp(&a.prio).then_with(|| a.name.cmp(&b.name)));
        Ok(())
    }

    /// Calls every script's `teardown` (shutdown, reload).
    pub fn teardown(&mut self) {
        for s in &self.scripts {
            if let (true, Some(f)) = (s.enabled, &s.teardown) {
                self.deadline.arm(Instant::now() + self.cfg.deadline * 10);
                if let Err(e) = f.call::<()>(()) {
                    tracing::warn!(script = %s.name, "teardown failed: {e}");
                }
                self.deadline.disarm();
            }
        }
    }

    /// Publishes when each hook call starts (and 0 when it ends) to `clock`,
    /// which the runner's watchdog reads.
    pub fn watch_calls(&mut self, clock: Arc<std::sync::atomic::AtomicI64>) {
        self.call_started = Some(clock);
    }

    /// Takes over the per-flow script state of `old` (reload keeps statuses and scores).
    pub fn adopt_flows(&mut self, old: &mut ScriptHost) {
        self.flows = std::mem::take(&mut old.flows);
    }

    /// Flows with script state.
    pub fn tracked(&self) -> usize {
        self.flows.len()
    }

    /// Runs the hooks for `ev`; lines for the sinks go to `out` when `write_event`/alerts apply.
    ///
    /// The flow's snapshot is copied once per event into the slot the `flow`
    /// object reads, and updated there in place as scripts add statuses; the
    /// per-flow script state stays in its map entry between events.
    pub fn handle(
        &mut self,
        ev: FlowEvent,
        write_event: impl Fn(EventKind) -> bool,
        out: &mut Lines,
    ) {
        let FlowEvent {
            kind,
            time_ms,
            flow: mut view,
        } = ev;
        let key = view.key;
        let mut state = self
            .flows
            .get_mut(&key)
            .map(std::mem::take)
            .unwrap_or_default();
        merge_into(&mut view, &state);
        self.slot.borrow_mut().view = Some(view);
        let changed = self.run_hooks(kind, time_ms, &mut state, out);
        if write_event(kind) {
            self.write_view(kind, time_ms, out);
        }
        // statuses set by scripts fire statusChanged once, never recursively
        if changed && kind != EventKind::StatusChanged {
            self.run_hooks(EventKind::StatusChanged, time_ms, &mut state, out);
            if write_event(EventKind::StatusChanged) {
                self.write_view(EventKind::StatusChanged, time_ms, out);
            }
        }
        self.slot.borrow_mut().view = None;
        if kind == EventKind::FlowEnd {
            if state.delivered {
                self.cfg.alerts.flow_ended(key);
            }
            self.flows.remove(&key);
        } else {
            match self.flows.get_mut(&key) {
                Some(s) => *s = state,
                // a flow no script marked keeps no entry
                None if state == FlowScriptState::default() => {}
                None => {
                    self.flows.insert(key, state);
                }
            }
        }
    }

    /// Writes the slot's view as an event line.
    fn write_view(&self, kind: EventKind, time_ms: i64, out: &mut Lines) {
        if let Some(v) = self.slot.borrow().view.as_ref() {
            out.push_view_event(kind, time_ms, v);
        }
    }

    /// Calls the hooks of `kind`; returns whether scripts changed the status set.
    fn run_hooks(
        &mut self,
        kind: EventKind,
        time_ms: i64,
        state: &mut FlowScriptState,
        out: &mut Lines,
    ) -> bool {
        let hi = hook_index(kind);
        // most events reach no script (no hook of their kind): nothing to set up
        if !self
            .scripts
            .iter()
            .any(|s| s.enabled && s.hooks[hi].is_some())
        {
            return false;
        }
        let before = state.status;
        let now = time_ms as f64 / 1000.0;
        let (proto, l7) = match self.slot.borrow().view.as_ref() {
            Some(v) => (v.proto, v.l7.clone()),
            None => return false,
        };
        let l4: std::borrow::Cow<str> = match crate::flow::classify::l4_name(proto) {
            Some(n) => n.into(),
            None => proto.to_string().into(),
        };
        // nDPI ids of the application and its master protocol ("TLS.Google"),
        // for l7_proto_id: looked up only when a script has one
        let mut l7_ids: Option<(u16, u16)> = None;
        // the TCP handshake seen both ways, for three_way_handshake_ok: only when a script asks
        let mut twh: Option<bool> = None;
        for si in 0..self.scripts.len() {
            let s = &self.scripts[si];
            if s.hooks[hi].is_none() || !s.enabled {
                continue;
            }
            if !s.l4.is_empty() && !s.l4.iter().any(|p| p.eq_ignore_ascii_case(&l4)) {
                continue;
            }
            if !s.l7.is_empty() && !s.l7.iter().any(|p| p.eq_ignore_ascii_case(&l7)) {
                continue;
            }
            if let Some(id) = s.l7_id {
                let ids = *l7_ids.get_or_insert_with(|| {
                    let (master, app) = l7.split_once('.').unwrap_or((&l7, &l7));
                    (
                        super::compat::ndpi_proto_id(master),
                        super::compat::ndpi_proto_id(app),
                    )
                });
                if id != ids.0 && id != ids.1 {
                    continue;
                }
            }
            if s.twh_ok
                && proto == 6
                && !*twh.get_or_insert_with(|| {
                    self.slot.borrow().view.as_ref().is_some_and(|v| {
                        let (c, s) = (v.cli_tcp_flags, v.srv_tcp_flags);
                        c & 0x02 != 0 && s & 0x12 == 0x12 && c & 0x10 != 0
                    })
                })
            {
                continue;
            }
            if let (EventKind::PeriodicUpdate, Some(every)) = (kind, s.periodic_secs) {
                let idx = si as u16;
                let last = state
                    .last_periodic
                    .iter()
                    .find(|(i, _)| *i == idx)
                    .map(|(_, t)| *t);
                if last.is_some_and(|t| time_ms / 1000 - t < every) {
                    continue;
                }
                state.last_periodic.retain(|(i, _)| *i != idx);
                state.last_periodic.push((idx, time_ms / 1000));
            }
            {
                let mut cur = self.slot.borrow_mut();
                cur.state = std::mem::take(state);
                cur.actions.clear();
            }
            let started = Instant::now();
            self.deadline.arm(started + self.cfg.deadline);
            if let Some(c) = &self.call_started {
                c.store(
                    super::mono_ms_at(started),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            // by reference: no handle is cloned per call
            let s = &self.scripts[si];
            let r = match &s.hooks[hi] {
                Some(f) => f.call::<()>((now, &s.conf)),
                None => Ok(()),
            };
            if let Some(c) = &self.call_started {
                c.store(0, std::sync::atomic::Ordering::Relaxed);
            }
            self.deadline.disarm();
            let took = started.elapsed();
            let (actions, new_state) = {
                let mut cur = self.slot.borrow_mut();
                (
                    std::mem::take(&mut cur.actions),
                    std::mem::take(&mut cur.state),
                )
            };
            *state = new_state;
            self.scripts[si].timers[hi].record(took);
            match r {
                Ok(()) => self.scripts[si].timeouts_in_row = 0,
                Err(e) => {
                    let name = self.scripts[si].name.clone();
                    let code = error_code(&e);
                    self.tel.failed(&name, HOOK_NAMES[hi], code, &e);
                    if code == "timeout" {
                        let s = &mut self.scripts[si];
                        s.timeouts_in_row += 1;
                        if s.timeouts_in_row >= self.cfg.max_consecutive_timeouts {
                            s.enabled = false;
                            self.tel.set_enabled(&name, false);
                            tracing::error!(script = %name, timeouts = s.timeouts_in_row, "script disabled after repeated timeouts; it runs again after a reload");
                        }
                    }
                }
            }
            for a in actions {
                self.apply(si, a, time_ms, state, out);
            }
            if let Some(v) = self.slot.borrow_mut().view.as_mut() {
                merge_into(v, state);
            }
        }
        state.status != before
    }

    fn apply(
        &mut self,
        si: usize,
        a: Action,
        time_ms: i64,
        state: &mut FlowScriptState,
        out: &mut Lines,
    ) {
        let (bit, status_name, score, severity, message, info) = match a {
            Action::Status {
                bit,
                name,
                score,
                cli_score,
                srv_score,
                severity,
                message,
                info,
                alert,
            } => {
                let newly = state.status.set(bit);
                if newly {
                    let add = |a: u16, b: u16| {
                        (u32::from(a) + u32::from(b)).min(u32::from(status::MAX_SCORE)) as u16
                    };
                    state.score = add(state.score, score);
                    state.cli_score = add(state.cli_score, cli_score);
                    state.srv_score = add(state.srv_score, srv_score);
                }
                // the same (flow, status) alerts once
                if !alert || !state.alerted.set(bit) {
                    return;
                }
                (Some(bit), Some(name), score, severity, message, info)
            }
            Action::Clear { bit } => {
                state.status.clear(bit);
                return;
            }
            Action::Alert {
                score,
                severity,
                message,
                info,
            } => {
                state.score = (u32::from(state.score) + u32::from(score))
                    .min(u32::from(status::MAX_SCORE)) as u16;
                (None, None, score, severity, message, info)
            }
        };
        let s = &mut self.scripts[si];
        let second = time_ms.div_euclid(1000);
        if s.alert_window.0 != second {
            s.alert_window = (second, 0);
        }
        if s.alert_window.1 >= self.cfg.alert_rate_per_sec {
            self.tel.suppressed(&s.name);
            return;
        }
        s.alert_window.1 += 1;
        match s
            .alert_counters
            .iter()
            .find(|(b, sev, _)| *b == bit && *sev == severity)
        {
            Some((_, _, c)) => c.increment(1),
            None => {
                let c = ScriptTelemetry::alert_counter(
                    &s.name,
                    status_name.as_deref().unwrap_or(""),
                    severity,
                );
                c.increment(1);
                s.alert_counters.push((bit, severity, c));
            }
        }
        let mut cur = self.slot.borrow_mut();
        let Some(view) = cur.view.as_mut() else {
            return;
        };
        merge_into(view, state);
        let alert = Alert {
            time_ms,
            script: &s.name,
            status: status_name.as_deref(),
            severity,
            score,
            message: &message,
            info: &info,
            flow: view,
        };
        let start = out.buf.len();
        alert.write(out);
        if self.cfg.alerts.wants(&s.name, severity) {
            let line = &out.buf[start..out.buf.len() - 1];
            let tracked = self.cfg.alerts.alert(crate::alert::AlertRecord {
                time_ms,
                flow_key: view.key,
                script: s.name.clone(),
                status: status_name,
                severity,
                score,
                message,
                info,
                exporter: view.exporter,
                cli_ip: view.cli_ip,
                srv_ip: view.srv_ip,
                cli_port: view.cli_port,
                srv_port: view.srv_port,
                proto: view.proto,
                l7: view.l7.clone(),
                bytes: view.cli2srv_bytes + view.srv2cli_bytes,
                packets: view.cli2srv_packets + view.srv2cli_packets,
                json: String::from_utf8_lossy(line).into(),
            });
            state.delivered |= tracked;
        }
    }
}

impl Alert<'_> {
    /// Appends the alert as a JSON line: byte for byte its serde form, with
    /// the flow written by the event encoder (`flow::json`).
    fn write(&self, out: &mut Lines) {
        use crate::flow::json::string;
        let b = &mut out.buf;
        b.extend_from_slice(b"{\"event\":\"alert\",\"time\":\"");
        crate::flow::json::rfc3339_ms(b, self.time_ms);
        b.extend_from_slice(b"\",\"script\":");
        string(b, self.script);
        b.extend_from_slice(b",\"status\":");
        match self.status {
            Some(st) => string(b, st),
            None => b.extend_from_slice(b"null"),
        }
        b.extend_from_slice(b",\"severity\":");
        string(b, self.severity);
        b.extend_from_slice(b",\"score\":");
        b.extend_from_slice(itoa::Buffer::new().format(self.score).as_bytes());
        b.extend_from_slice(b",\"message\":");
        string(b, self.message);
        b.extend_from_slice(b",\"info\":");
        if serde_json::to_writer(&mut *b, self.info).is_err() {
            b.extend_from_slice(b"null");
        }
        b.extend_from_slice(b",\"flow\":");
        crate::flow::json::view(b, self.flow);
        b.extend_from_slice(b"}\n");
        out.count += 1;
        out.keys.push(self.flow.key);
    }
}

/// An `alert` line.
struct Alert<'a> {
    time_ms: i64,
    script: &'a str,
    status: Option<&'a str>,
    severity: &'a str,
    score: u16,
    message: &'a str,
    info: &'a serde_json::Value,
    flow: &'a FlowView,
}

impl serde::Serialize for Alert<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(9))?;
        m.serialize_entry("event", "alert")?;
        m.serialize_entry("time", &crate::record::rfc3339_ms(self.time_ms))?;
        m.serialize_entry("script", self.script)?;
        m.serialize_entry("status", &self.status)?;
        m.serialize_entry("severity", self.severity)?;
        m.serialize_entry("score", &self.score)?;
        m.serialize_entry("message", self.message)?;
        m.serialize_entry("info", self.info)?;
        m.serialize_entry("flow", self.flow)?;
        m.end()
    }
}

/// Adds the script state to the table's view in place (statuses OR-ed,
/// score = built-in statuses' scores + the scripts' score, clamped).
/// Idempotent: script statuses never use the built-in bits.
fn merge_into(v: &mut FlowView, st: &FlowScriptState) {
    let base_bits = StatusSet(v.status.0 & 0x1f);
    // built-in bits from the table, the rest as scripts left them (clearStatus included)
    v.status = StatusSet(base_bits.0 | st.status.0);
    let base: u32 = (0..5u8)
        .filter(|b| base_bits.has(*b))
        .map(|b| u32::from(status::builtin_score(b)))
        .sum();
    v.score = (base + u32::from(st.score)).min(u32::from(status::MAX_SCORE)) as u16;
    v.cli_score = st.cli_score;
    v.srv_score = st.srv_score;
}

/// The stable error kind of a failed call (`timeout`, `memory`, `runtime`),
/// by the error's type.
pub fn error_code(e: &mlua::Error) -> &'static str {
    if e.downcast_ref::<DeadlineExceeded>().is_some() {
        return "timeout";
    }
    let mut cur = Some(e);
    while let Some(x) = cur {
        if matches!(x, mlua::Error::MemoryError(_)) {
            return "memory";
        }
        cur = x.parent();
    }
    "runtime"
}

#[cfg(test)]
mod alert_tests {
    #[test]
    fn alert_line_equals_serde() {
        use std::sync::Arc;
        let flow = crate::flow::FlowView {
            key: 7,
            exporter: "192.0.2.1".parse().unwrap(),
            observation_domain: 0,
            vlan: 0,
            cli_ip: "10.0.0.1".parse().unwrap(),
            srv_ip: "10.0.0.2".parse().unwrap(),
            cli_port: 1,
            srv_port: 2,
            proto: 17,
            l7: Arc::from("DNS"),
            cli2srv_bytes: 1,
            srv2cli_bytes: 2,
            cli2srv_packets: 3,
            srv2cli_packets: 4,
            cli_tcp_flags: 0,
            srv_tcp_flags: 0,
            first_ms: 1,
            last_ms: 2,
            in_if: 0,
            out_if: 0,
            sampling_interval: 0,
            sampling_source: None,
            cli_geo: Arc::default(),
            srv_geo: Arc::default(),
            status: Default::default(),
            score: 0,
            cli_score: 0,
            srv_score: 0,
            end_reason: None,
        };
        let info = serde_json::json!({"a": [1, "x\"y"], "b": null});
        for status in [Some("st\n1"), None] {
            let a = super::Alert {
                time_ms: 1_700_000_000_001,
                script: "s\"1",
                status,
                severity: "warning",
                score: 10,
                message: "m\u{1}",
                info: &info,
                flow: &flow,
            };
            let mut ours = crate::output::Lines::default();
            a.write(&mut ours);
            let mut reference = crate::output::Lines::default();
            reference.push(&a).unwrap();
            assert_eq!(
                String::from_utf8(ours.buf).unwrap(),
                String::from_utf8(reference.buf).unwrap()
            );
        }
    }
}
