//! Script stage: Lua flow scripts (ntopng's flow-script model) run on
//! lifecycle events by a pool of workers.
//!
//! In: [`FlowEvent`]s from the flow shards, routed by flow key so all events
//! of a flow reach one worker in order, through bounded queues: a full queue
//! drops the event for the scripts and counts it (per hook); `flowEnd` is the
//! last to be dropped. The flow shard then writes the dropped event itself,
//! so the output loses nothing. Out: event lines (with what scripts added),
//! alert lines, timings per (script, hook).
//!
//! A watchdog checks the workers: one inside a single hook call for longer
//! than the hard limit (ten times `scripts.deadline`, at least 250 ms —
//! possible only inside a C function the sandbox cannot interrupt) is
//! reported and replaced by a fresh worker with new Lua state on the same
//! queue; the stuck thread is left to finish and exit, and the event it was
//! on is counted as dropped. Shutdown does not wait for a stuck worker.
//!
//! Layout: `plugins` (the scripts directory read as ntopng reads its
//! plugins), `sandbox` (the Lua state and its limits), `pattern` (Lua
//! patterns with a step budget), `api` (the `flow` object; all Rust↔Lua
//! conversion, `info` for `getInfo`, `fields` for tables and results written
//! in one call into Lua), `compat` (what ntopng 4.x flow scripts
//! find around them: modules, globals, the 4.x flow API), `host` (scripts
//! loaded in one state, hook calls, statuses and alerts), this file
//! (workers, queues, reload, watchdog).

pub mod api;
pub mod compat;
mod fields;
mod getters;
pub mod host;
pub mod info;
pub mod networks;
pub mod pattern;
pub mod plugins;
pub mod sandbox;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use thiserror::Error;

pub use host::{HostConfig, ScriptHost, ScriptSource, check_source, read_dir};

use crate::flow::{EventKind, FlowEvent};
use crate::output::{Lines, OutputMsg};
use crate::telemetry::ScriptTelemetry;

/// A script problem.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ScriptError {
    #[error("scripts directory {path}: {detail}")]
    Dir { path: String, detail: String },
    #[error("script {script}: {detail}")]
    Load { script: String, detail: String },
}

impl ScriptError {
    pub fn code(&self) -> &'static str {
        match self {
            ScriptError::Dir { .. } => "dir",
            ScriptError::Load { .. } => "load",
        }
    }
}

/// Loads every script of the configured directory in a scratch state: all errors, with file and line.
pub fn check_all(cfg: &HostConfig) -> Result<CheckReport, Vec<ScriptError>> {
    let tree = plugins::scan(&cfg.dir).map_err(|e| vec![e])?;
    let (host, mut errors) = ScriptHost::new(cfg, &tree.scripts).map_err(|e| vec![e])?;
    errors.extend(tree.clashes.iter().cloned());
    if errors.is_empty() {
        Ok(CheckReport {
            scripts: host.describe(),
            tree,
        })
    } else {
        Err(errors)
    }
}

/// What `flowhook check` found in the scripts directory.
pub struct CheckReport {
    pub scripts: Vec<host::ScriptInfo>,
    pub tree: plugins::Tree,
}

impl CheckReport {
    /// Names of the scripts that run.
    pub fn enabled(&self) -> Vec<String> {
        self.scripts
            .iter()
            .filter(|s| s.enabled)
            .map(|s| s.name.clone())
            .collect()
    }

    /// A readable listing: each script with where it came from and whether
    /// it runs, then what was skipped and the definitions found.
    pub fn listing(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let width = self.scripts.iter().map(|s| s.name.len()).max().unwrap_or(0);
        for s in &self.scripts {
            let state = match (&s.enabled, &s.why_disabled) {
                (true, _) => "runs".to_string(),
                (false, Some(w)) => format!("off ({w})"),
                (false, None) => "off".to_string(),
            };
            let from = match &s.plugin {
                Some(p) => format!("plugin {}", p.display()),
                None => format!("file {}", s.path.display()),
            };
            let _ = writeln!(out, "  {:width$}  {state}; {from}", s.name);
        }
        let mut subjects: std::collections::BTreeMap<&str, usize> = Default::default();
        for (subject, _) in &self.tree.skipped {
            *subjects.entry(subject.as_str()).or_default() += 1;
        }
        if !subjects.is_empty() {
            let list: Vec<String> = subjects.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = writeln!(
                out,
                "  skipped: user scripts of other subjects than flow ({})",
                list.join(", ")
            );
        }
        for d in &self.tree.disabled {
            let _ = writeln!(
                out,
                "  skipped: plugin {} (its manifest disables it)",
                d.display()
            );
        }
        if !self.tree.plugins.is_empty() {
            let _ = writeln!(
                out,
                "  ntopng plugins: {}; status definitions {}, alert definitions {}, locales {}",
                self.tree.plugins.len(),
                self.tree.statuses.len(),
                self.tree.alerts.len(),
                self.tree.locales.len()
            );
        }
        out
    }
}

enum WorkerMsg {
    /// One event (boxed: a queue's slots are as large as its largest message,
    /// and every slot of a bounded channel is touched when it is made).
    Event(Box<FlowEvent>),
    /// Several events at once (a shard's batch for this worker).
    Events(Vec<FlowEvent>),
    Reload(Arc<Vec<ScriptSource>>),
}

struct Queue {
    tx: SyncSender<WorkerMsg>,
    depth: Arc<AtomicUsize>,
    spare: Spare,
}

/// Emptied batch vectors a worker hands back for the next batch, so a
/// shard's staging keeps its capacity (at most [`SPARE_MAX`] kept).
type Spare = Arc<Mutex<Vec<Vec<FlowEvent>>>>;
const SPARE_MAX: usize = 8;

/// What a worker and the watchdog share: the queue's receiving end (the
/// replacement of a stuck worker takes it over), when the hook call running
/// now started ([`mono_ms`]; 0 between calls) and which incarnation is the
/// live one.
struct WorkerSlot {
    rx: Mutex<Receiver<WorkerMsg>>,
    depth: Arc<AtomicUsize>,
    spare: Spare,
    /// The live incarnation's call clock (a replacement gets a new one).
    busy_since: Mutex<Arc<AtomicI64>>,
    incarnation: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What a new worker needs (at start and when the watchdog replaces one).
#[derive(Clone)]
struct WorkerEnv {
    cfg: HostConfig,
    sources: Arc<Mutex<Arc<Vec<ScriptSource>>>>,
    out: Option<SyncSender<OutputMsg>>,
    write_event: Arc<dyn Fn(EventKind) -> bool + Send + Sync>,
}

/// The worker pool.
pub struct ScriptRunner {
    queues: Vec<Queue>,
    cap: usize,
    /// `flowhook_script_events_dropped_total` per hook, registered at start.
    dropped: [metrics::Counter; 4],
    slots: Vec<Arc<WorkerSlot>>,
    watchdog: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    cfg: HostConfig,
    sources: Arc<Mutex<Arc<Vec<ScriptSource>>>>,
}

/// Milliseconds on a monotonic clock (1 at the first call): what the hook
/// calls' start times are kept in.
pub fn mono_ms() -> i64 {
    mono_ms_at(std::time::Instant::now())
}

/// [`mono_ms`] of an instant already read (one clock read less per hook call).
pub fn mono_ms_at(t: std::time::Instant) -> i64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    t.saturating_duration_since(*START.get_or_init(std::time::Instant::now))
        .as_millis() as i64
        + 1
}

fn now_ms() -> i64 {
    mono_ms()
}

/// How long one message may keep a worker busy before the watchdog replaces it.
pub fn hard_limit(deadline: std::time::Duration) -> std::time::Duration {
    (deadline * 10).max(std::time::Duration::from_millis(250))
}

fn spawn_worker(w: usize, slot: Arc<WorkerSlot>, env: WorkerEnv) -> std::io::Result<()> {
    let me = slot.incarnation.load(Ordering::SeqCst);
    let s = slot.clone();
    let t = std::thread::Builder::new()
        .name(format!("flowhook-script-{w}"))
        .spawn(move || worker(env, s, me))?;
    if let Ok(mut h) = slot.thread.lock() {
        // a replaced thread's handle is dropped: it is not waited for
        *h = Some(t);
    }
    Ok(())
}

/// The live incarnation's call clock.
fn clock(slot: &WorkerSlot) -> Arc<AtomicI64> {
    slot.busy_since
        .lock()
        .map(|c| c.clone())
        .unwrap_or_else(|_| Arc::new(AtomicI64::new(0)))
}

/// Replaces workers stuck in one hook call past the hard limit, until `stop`.
fn watchdog(slots: Vec<Arc<WorkerSlot>>, env: WorkerEnv, stop: Arc<AtomicBool>) {
    let limit = i64::try_from(hard_limit(env.cfg.deadline).as_millis()).unwrap_or(i64::MAX);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(50));
        for (w, slot) in slots.iter().enumerate() {
            let since = clock(slot).load(Ordering::SeqCst);
            if since == 0 || now_ms() - since <= limit {
                continue;
            }
            slot.incarnation.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut c) = slot.busy_since.lock() {
                *c = Arc::new(AtomicI64::new(0));
            }
            ScriptTelemetry::worker_replaced();
            tracing::error!(
                worker = w,
                busy_ms = now_ms() - since,
                "script worker stuck in one hook call past its hard limit (10x scripts.deadline): replaced by a fresh one; the event is dropped"
            );
            if let Err(e) = spawn_worker(w, slot.clone(), env.clone()) {
                tracing::error!(worker = w, "cannot start a replacement script worker: {e}");
            }
        }
    }
}

/// What a reload did.
#[derive(Debug, Default, PartialEq)]
pub struct ReloadReport {
    pub loaded: Vec<String>,
    /// Scripts that failed to load; their previous version (if any) keeps running.
    pub failed: Vec<ScriptError>,
}

fn hook_index(k: EventKind) -> usize {
    EventKind::ALL.iter().position(|x| *x == k).unwrap_or(0)
}

impl ScriptRunner {
    /// Starts `workers` workers with the scripts of `cfg.dir`. Scripts that do
    /// not load are returned as errors (the caller decides whether that is fatal).
    pub fn start(
        cfg: HostConfig,
        workers: usize,
        queue: usize,
        out: Option<SyncSender<OutputMsg>>,
        write_event: Arc<dyn Fn(EventKind) -> bool + Send + Sync>,
    ) -> Result<(ScriptRunner, Vec<ScriptError>), ScriptError> {
        let tree = plugins::scan(&cfg.dir)?;
        for (subject, path) in &tree.skipped {
            tracing::info!(path = %path.display(), "skipped a {subject} user script: flowhook runs flow scripts only");
        }
        for p in &tree.disabled {
            tracing::info!(plugin = %p.display(), "skipped a plugin its manifest disables");
        }
        let mut good = Vec::new();
        let mut errors = tree.clashes;
        for s in tree.scripts {
            match check_source(&cfg, &s) {
                Ok(()) => good.push(s),
                Err(e) => errors.push(e),
            }
        }
        let sources = Arc::new(Mutex::new(Arc::new(good)));
        let env = WorkerEnv {
            cfg: cfg.clone(),
            sources: sources.clone(),
            out,
            write_event,
        };
        let start_err = |e: std::io::Error| ScriptError::Dir {
            path: cfg.dir.display().to_string(),
            detail: format!("cannot start worker: {e}"),
        };
        let mut queues = Vec::new();
        let mut slots = Vec::new();
        for w in 0..workers.max(1) {
            let (tx, rx) = sync_channel(queue.max(1));
            let depth = Arc::new(AtomicUsize::new(0));
            let spare = Spare::default();
            queues.push(Queue {
                tx,
                depth: depth.clone(),
                spare: spare.clone(),
            });
            let slot = Arc::new(WorkerSlot {
                rx: Mutex::new(rx),
                depth,
                spare,
                busy_since: Mutex::new(Arc::new(AtomicI64::new(0))),
                incarnation: AtomicU64::new(0),
                thread: Mutex::new(None),
            });
            spawn_worker(w, slot.clone(), env.clone()).map_err(start_err)?;
            slots.push(slot);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (sl, st) = (slots.clone(), stop.clone());
        let dog = std::thread::Builder::new()
            .name("flowhook-script-watchdog".into())
            .spawn(move || watchdog(sl, env, st))
            .map_err(start_err)?;
        Ok((
            ScriptRunner {
                queues,
                cap: queue.max(1),
                dropped: EventKind::ALL.map(ScriptTelemetry::dropped_handle),
                slots,
                watchdog: Some((stop, dog)),
                cfg,
                sources,
            },
            errors,
        ))
    }

    /// Names of the loaded scripts.
    pub fn names(&self) -> Vec<String> {
        self.sources
            .lock()
            .map(|s| s.iter().map(|x| x.name.clone()).collect())
            .unwrap_or_default()
    }

    /// Queue depth at which events of `kind` are refused: `flowEnd` only
    /// when the queue is full, the others from three quarters on.
    fn limit(&self, kind: EventKind) -> usize {
        if kind == EventKind::FlowEnd {
            self.cap
        } else {
            self.cap * 3 / 4
        }
    }

    /// Hands `ev` to its worker without waiting. `Err(ev)` when the queue is
    /// full (counted): the caller writes the event itself. Events other than
    /// `flowEnd` are dropped once a queue is three quarters full, so `flowEnd`
    /// events are the last to go.
    pub fn submit(&self, ev: FlowEvent) -> Result<(), Box<FlowEvent>> {
        let q = &self.queues[(ev.flow.key % self.queues.len() as u64) as usize];
        if q.depth.load(Ordering::Relaxed) >= self.limit(ev.kind) {
            self.dropped[hook_index(ev.kind)].increment(1);
            return Err(Box::new(ev));
        }
        q.depth.fetch_add(1, Ordering::Relaxed);
        match q.tx.try_send(WorkerMsg::Event(Box::new(ev))) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(WorkerMsg::Event(ev)))
            | Err(TrySendError::Disconnected(WorkerMsg::Event(ev))) => {
                q.depth.fetch_sub(1, Ordering::Relaxed);
                self.dropped[hook_index(ev.kind)].increment(1);
                Err(ev)
            }
            Err(_) => Ok(()),
        }
    }

    /// Per-worker staging for [`ScriptRunner::submit_batch`] (one per shard).
    pub fn staging(&self) -> Vec<Vec<FlowEvent>> {
        self.queues.iter().map(|_| Vec::new()).collect()
    }

    /// Hands `events` to their workers without waiting, one message per
    /// worker; what a full queue refuses (counted, `flowEnd` last, as in
    /// [`ScriptRunner::submit`]) goes to `refused`, for the caller to write.
    pub fn submit_batch(
        &self,
        events: impl Iterator<Item = FlowEvent>,
        staging: &mut [Vec<FlowEvent>],
        mut refused: impl FnMut(FlowEvent),
    ) {
        let n = self.queues.len();
        let mut depth: Vec<usize> = self
            .queues
            .iter()
            .map(|q| q.depth.load(Ordering::Relaxed))
            .collect();
        for ev in events {
            let w = (ev.flow.key % n as u64) as usize;
            if depth[w] >= self.limit(ev.kind) {
                self.dropped[hook_index(ev.kind)].increment(1);
                refused(ev);
                continue;
            }
            depth[w] += 1;
            staging[w].push(ev);
        }
        for (q, batch) in self.queues.iter().zip(staging.iter_mut()) {
            if batch.is_empty() {
                continue;
            }
            let k = batch.len();
            q.depth.fetch_add(k, Ordering::Relaxed);
            let next = q
                .spare
                .lock()
                .ok()
                .and_then(|mut v| v.pop())
                // none back yet: room for as many as this batch, in one allocation
                .unwrap_or_else(|| Vec::with_capacity(k));
            match q
                .tx
                .try_send(WorkerMsg::Events(std::mem::replace(batch, next)))
            {
                Ok(()) => {}
                Err(TrySendError::Full(WorkerMsg::Events(back)))
                | Err(TrySendError::Disconnected(WorkerMsg::Events(back))) => {
                    q.depth.fetch_sub(k, Ordering::Relaxed);
                    for ev in back {
                        self.dropped[hook_index(ev.kind)].increment(1);
                        refused(ev);
                    }
                }
                Err(_) => {}
            }
        }
    }

    /// Reloads the scripts directory: changed scripts that load replace their
    /// old version in fresh states; one that fails keeps its previous version.
    pub fn reload(&self) -> ReloadReport {
        let mut report = ReloadReport::default();
        let all = match plugins::scan(&self.cfg.dir) {
            Ok(t) => {
                report.failed.extend(t.clashes);
                t.scripts
            }
            Err(e) => {
                report.failed.push(e);
                return report;
            }
        };
        let previous = self.sources.lock().map(|s| s.clone()).unwrap_or_default();
        let mut next = Vec::new();
        for s in all {
            match check_source(&self.cfg, &s) {
                Ok(()) => {
                    report.loaded.push(s.name.clone());
                    next.push(s);
                }
                Err(e) => {
                    if let Some(old) = previous.iter().find(|p| p.name == s.name) {
                        next.push(old.clone());
                    }
                    report.failed.push(e);
                }
            }
        }
        let next = Arc::new(next);
        if let Ok(mut s) = self.sources.lock() {
            *s = next.clone();
        }
        for q in &self.queues {
            q.depth.fetch_add(1, Ordering::Relaxed);
            if q.tx.send(WorkerMsg::Reload(next.clone())).is_err() {
                q.depth.fetch_sub(1, Ordering::Relaxed);
            }
        }
        report
    }

    /// A fingerprint of the directory (names, sizes, times) to see changes.
    pub fn dir_stamp(dir: &Path) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
        // every `.lua` file of the tree (plugins nest), bounded like `plugins::scan`
        let mut v = Vec::new();
        let mut stack = vec![(dir.to_path_buf(), 0usize)];
        while let Some((d, depth)) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                let Ok(m) = e.metadata() else { continue };
                if m.is_dir() {
                    if depth < 10 && v.len() < 10_000 {
                        stack.push((p, depth + 1));
                    }
                } else if p.extension().is_some_and(|x| x == "lua") {
                    v.push((p, m.len(), m.modified().ok()));
                }
            }
        }
        v.sort();
        v
    }

    /// Stops the workers after their queues drain (teardown runs in each);
    /// a worker stuck past the hard limit is not waited for.
    pub fn shutdown(mut self) {
        let queues = std::mem::take(&mut self.queues);
        let slots = std::mem::take(&mut self.slots);
        let cfg = self.cfg.clone();
        if let Some((stop, dog)) = self.watchdog.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = dog.join();
        }
        drop(queues);
        let limit = i64::try_from(hard_limit(cfg.deadline).as_millis()).unwrap_or(i64::MAX);
        for slot in slots {
            let Some(h) = slot.thread.lock().ok().and_then(|mut t| t.take()) else {
                continue;
            };
            // wait while it drains, unless it is stuck in one message
            loop {
                if h.is_finished() {
                    let _ = h.join();
                    break;
                }
                let since = clock(&slot).load(Ordering::SeqCst);
                if since != 0 && now_ms() - since > limit {
                    tracing::error!("a script worker is stuck at shutdown; not waiting for it");
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
}

impl Drop for ScriptRunner {
    /// Without [`ScriptRunner::shutdown`], the watchdog still stops (and lets
    /// go of the output it would hand a replacement).
    fn drop(&mut self) {
        if let Some((stop, _)) = &self.watchdog {
            stop.store(true, Ordering::Relaxed);
        }
    }
}

fn worker(env: WorkerEnv, slot: Arc<WorkerSlot>, me: u64) {
    let WorkerEnv {
        cfg,
        sources,
        out,
        write_event,
    } = env;
    let sources = sources.lock().map(|s| s.clone()).unwrap_or_default();
    let depth = slot.depth.clone();
    let spare = slot.spare.clone();
    let mut host = match ScriptHost::new(&cfg, &sources) {
        Ok((h, _)) => h,
        Err(e) => {
            tracing::error!("script worker cannot start: {e}");
            return;
        }
    };
    let my_clock = clock(&slot);
    host.watch_calls(my_clock.clone());
    loop {
        // the live incarnation alone takes messages; a replaced one just ends
        let msg = {
            let Ok(rx) = slot.rx.lock() else { return };
            if slot.incarnation.load(Ordering::SeqCst) != me {
                return;
            }
            match rx.recv() {
                Ok(m) => m,
                Err(_) => break,
            }
        };
        let done = handle_msg(&cfg, &mut host, msg, &depth, &spare, &out, &write_event);
        if slot.incarnation.load(Ordering::SeqCst) != me {
            // replaced while stuck: the replacement owns the queue now
            return;
        }
        // a reload builds a new host: it reports its calls on the same clock
        host.watch_calls(my_clock.clone());
        if !done {
            break;
        }
    }
    host.teardown();
}

/// One message; false when the output is gone.
fn handle_msg(
    cfg: &HostConfig,
    host: &mut ScriptHost,
    msg: WorkerMsg,
    depth: &AtomicUsize,
    spare: &Spare,
    out: &Option<SyncSender<OutputMsg>>,
    write_event: &Arc<dyn Fn(EventKind) -> bool + Send + Sync>,
) -> bool {
    {
        if matches!(msg, WorkerMsg::Reload(_)) {
            depth.fetch_sub(1, Ordering::Relaxed);
        }
        match msg {
            WorkerMsg::Event(ev) => {
                depth.fetch_sub(1, Ordering::Relaxed);
                let mut lines = Lines::default();
                host.handle(*ev, |k| write_event(k), &mut lines);
                if let (Some(tx), false) = (out, lines.is_empty())
                    && tx.send(OutputMsg::Lines(lines)).is_err()
                {
                    return false;
                }
            }
            WorkerMsg::Events(mut evs) => {
                let mut lines = Lines::default();
                for ev in evs.drain(..) {
                    host.handle(ev, |k| write_event(k), &mut lines);
                    depth.fetch_sub(1, Ordering::Relaxed);
                }
                if let Ok(mut v) = spare.lock()
                    && v.len() < SPARE_MAX
                {
                    v.push(evs);
                }
                if let (Some(tx), false) = (out, lines.is_empty())
                    && tx.send(OutputMsg::Lines(lines)).is_err()
                {
                    return false;
                }
            }
            WorkerMsg::Reload(src) => match ScriptHost::new(cfg, &src) {
                Ok((mut fresh, _)) => {
                    host.teardown();
                    fresh.adopt_flows(host);
                    *host = fresh;
                    tracing::info!(scripts = ?host.enabled(), "scripts reloaded");
                }
                Err(e) => {
                    tracing::error!("script reload failed, previous scripts keep running: {e}")
                }
            },
        }
    }
    true
}
