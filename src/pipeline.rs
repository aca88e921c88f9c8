//! Wiring of the stages for `serve`, `replay` and `decode`.
//!
//! `serve`: UDP sockets (a receive thread each) → bounded per-shard datagram
//! queues (an exporter always on the same shard) → shard threads (decode,
//! flow table, events; [`Shard::run`]) → the script workers when there are
//! scripts, and a bounded line queue → output thread. Shutdown: listeners
//! stop, each queue drains as its senders drop,
//! the flow tables end every flow (`flowEnd`, reason `shutdown`), the sink
//! flushes. `replay`: the same decode and flow code inline on one thread, the
//! capture's timestamps as the clock, so the output is byte-identical run to
//! run; `decode`: a capture's datagrams through one [`Decoder`] (both in
//! [`crate::offline`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::capture::CaptureError;
use crate::config::Config;
use crate::decode::{DecodeError, Decoder};
use crate::enrich::{Enricher, GeoService, Reload};
use crate::flow::{EventKind, FlowEvent, FlowTable, TableConfig};
use crate::ingest::{self, AllowList, IngestError, Pool, ShardTx};
use crate::output::{self, Lines, OutputMsg, SinkError};
use crate::record::{FlowRecord, RecordKind};
use crate::script::{HostConfig, ScriptError, ScriptRunner};
use crate::shard::Shard;
use crate::state;
use crate::telemetry::FlowTelemetry;

/// Why the pipeline could not run.
#[derive(Debug, Error)]
pub enum PipelineError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("cannot start thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Scripts(Vec<ScriptError>),
    #[error("stage {0} stopped unexpectedly")]
    StageStopped(String),
    #[error(transparent)]
    Alert(#[from] crate::alert::AlertError),
}

impl PipelineError {
    /// Stable short code (metric labels, exit decisions).
    pub fn code(&self) -> &'static str {
        match self {
            PipelineError::Ingest(e) => e.code(),
            PipelineError::Sink(e) => e.code(),
            PipelineError::Decode(e) => e.code(),
            PipelineError::Capture(e) => e.code(),
            PipelineError::Thread(_) => "thread",
            PipelineError::Scripts(_) => "scripts",
            PipelineError::StageStopped(_) => "stage_stopped",
            PipelineError::Alert(e) => e.code(),
        }
    }
}

/// Wall clock, Unix ms.
pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Which events and records reach the sinks.
#[derive(Debug, Clone, Copy)]
pub struct OutputFilter {
    events: [bool; 4],
    records: bool,
    options_records: bool,
}

impl OutputFilter {
    pub fn from_config(cfg: &Config) -> Self {
        let mut events = [false; 4];
        for (i, k) in EventKind::ALL.iter().enumerate() {
            events[i] = cfg.output.events.iter().any(|e| e == k.name());
        }
        OutputFilter {
            events,
            records: cfg.output.records,
            options_records: cfg.output.options_records,
        }
    }

    /// Whether `e` is written.
    pub fn event(&self, e: &FlowEvent) -> bool {
        self.kind(e.kind)
    }

    /// Whether decoded records are written at all (they then need every field).
    pub fn records(&self) -> bool {
        self.records
    }

    /// Whether events of `k` are written.
    pub fn kind(&self, k: EventKind) -> bool {
        self.events[EventKind::ALL.iter().position(|x| *x == k).unwrap_or(0)]
    }

    /// Whether record `r` is written.
    pub fn record(&self, r: &FlowRecord) -> bool {
        self.records && (r.kind == RecordKind::Flow || self.options_records)
    }
}

/// Encodes the events `filter` lets through into `lines`.
pub(crate) fn encode_events(
    events: &[FlowEvent],
    filter: &OutputFilter,
    lines: &mut Lines,
    tel: &mut FlowTelemetry,
) {
    for e in events {
        tel.event(e);
        if filter.event(e) {
            lines.push_event(e);
        }
    }
}

/// A running `serve` pipeline.
pub struct Running {
    /// Addresses actually bound (useful with port 0).
    pub bound: Vec<SocketAddr>,
    cancel: CancellationToken,
    listeners: Vec<JoinHandle<()>>,
    threads: Vec<JoinHandle<()>>,
    output: Option<JoinHandle<()>>,
    output_tx: Option<SyncSender<OutputMsg>>,
    /// When the output thread must have closed its sinks (set at shutdown).
    output_deadline: output::CloseDeadline,
    shutdown_timeout: Duration,
    geo: Arc<GeoService>,
    scripts: Option<Arc<ScriptRunner>>,
    /// The state file's writer (ends after the shards).
    state: Option<JoinHandle<()>>,
    /// Alert delivery (ends after the scripts).
    delivery: Option<crate::alert::Delivery>,
}

/// Reloads the databases when asked (`force`, SIGHUP) or when a file changed on disk.
pub fn reload_geo(geo: &GeoService, force: bool) {
    match geo.reload(force) {
        Reload::Unchanged => {}
        Reload::Reloaded => crate::telemetry::GeoTelemetry::reload("ok", None),
        Reload::Failed(e) => crate::telemetry::GeoTelemetry::reload("failed", Some(&e)),
    }
}

impl Running {
    /// The first stage (shard thread, output thread, UDP listener) that has
    /// ended while the pipeline runs: the supervisor then reports not ready
    /// and stops the process with a failure, so an orchestrator restarts it.
    pub fn stopped_stage(&self) -> Option<String> {
        if let Some(t) = self.threads.iter().find(|t| t.is_finished()) {
            return Some(t.thread().name().unwrap_or("shard").to_string());
        }
        if self.output.as_ref().is_some_and(|o| o.is_finished()) {
            return Some("flowhook-output".into());
        }
        if self.listeners.iter().any(|l| l.is_finished()) {
            return Some("listener".into());
        }
        if let Some(name) = self.delivery.as_ref().and_then(|d| d.stopped()) {
            return Some(name);
        }
        None
    }

    /// SIGHUP: the sink reopens its file, the databases are reloaded.
    pub fn hangup(&self) {
        if let Some(tx) = &self.output_tx {
            let _ = tx.try_send(OutputMsg::Reopen);
        }
        let geo = self.geo.clone();
        std::thread::spawn(move || reload_geo(&geo, true));
        if let Some(r) = self.scripts.clone() {
            std::thread::spawn(move || log_reload(&r));
        }
    }

    /// Stops listening, drains the queues, ends every flow, flushes the sink.
    /// Returns false when that took longer than `flow.shutdown_timeout_secs`.
    pub async fn shutdown(mut self) -> bool {
        self.cancel.cancel();
        let listeners = std::mem::take(&mut self.listeners);
        // a listener sees the stop within its receive wait, then takes what the kernel holds
        let _ = tokio::task::spawn_blocking(move || {
            for l in listeners {
                let _ = l.join();
            }
        })
        .await;
        self.output_tx = None;
        // the sinks close (Kafka: delivers what it holds) by the same limit
        let _ = self.output_deadline.set(
            Instant::now()
                + self
                    .shutdown_timeout
                    .saturating_sub(Duration::from_secs(1))
                    .max(Duration::from_millis(500)),
        );
        let threads = std::mem::take(&mut self.threads);
        let output = self.output.take();
        let scripts = self.scripts.take();
        let state = self.state.take();
        let delivery = self.delivery.take();
        // what the alert sinks still hold gets until shortly before the overall limit
        let deliver_until = Instant::now()
            + self
                .shutdown_timeout
                .saturating_sub(Duration::from_secs(1))
                .max(Duration::from_millis(500));
        let join = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
            // the shards sent their last snapshots: the state file's last write
            if let Some(s) = state {
                let _ = s.join();
            }
            // the flow shards are done: the scripts get the last flowEnd events, then tear down
            if let Some(r) = scripts.and_then(|r| Arc::try_unwrap(r).ok()) {
                r.shutdown();
            }
            // the output thread hands event lines to syslog (`syslog.events`): it ends first
            if let Some(o) = output {
                let _ = o.join();
            }
            if let Some(d) = delivery {
                d.shutdown(deliver_until);
            }
        });
        tokio::time::timeout(self.shutdown_timeout, join)
            .await
            .is_ok()
    }
}

/// Logs what a scripts reload did.
pub fn log_reload(r: &ScriptRunner) {
    let report = r.reload();
    for e in &report.failed {
        tracing::error!("script reload: {e}; its previous version keeps running");
    }
    crate::telemetry::ScriptTelemetry::reloaded(report.failed.is_empty());
}

/// Starts `serve` on the current tokio runtime.
pub async fn start(cfg: &Config, geo: Arc<GeoService>) -> Result<Running, PipelineError> {
    let cancel = CancellationToken::new();
    let filter = OutputFilter::from_config(cfg);
    let delivery = crate::alert::Delivery::start(cfg)?;
    let sinks = output::open_sinks(cfg)?;
    let output_deadline = output::CloseDeadline::default();
    let recycle = output::Recycle::default();
    let (output, output_tx) = if !sinks.is_empty() {
        let (tx, rx) = sync_channel((cfg.output.queue_records / 32).max(16));
        let tap = Some(delivery.router.clone()).filter(|r| r.wants_events());
        (
            Some(output::spawn(
                sinks,
                rx,
                cfg.output.flush_interval,
                tap,
                output_deadline.clone(),
                recycle.clone(),
            )?),
            Some(tx),
        )
    } else {
        (None, None)
    };
    let mut host_cfg = HostConfig::from_config(cfg);
    host_cfg.alerts = delivery.router.clone();
    let scripts = if crate::script::read_dir(&cfg.scripts.dir)
        .map(|s| !s.is_empty())
        .unwrap_or(true)
    {
        let we: Arc<dyn Fn(EventKind) -> bool + Send + Sync> = Arc::new(move |k| filter.kind(k));
        let (runner, errors) = ScriptRunner::start(
            host_cfg,
            cfg.scripts.effective_workers(),
            cfg.scripts.queue_events,
            output_tx.clone(),
            we,
        )
        .map_err(|e| PipelineError::Scripts(vec![e]))?;
        if !errors.is_empty() {
            return Err(PipelineError::Scripts(errors));
        }
        let runner = Arc::new(runner);
        let (r, every, c, dir) = (
            runner.clone(),
            cfg.scripts.watch_interval,
            cancel.clone(),
            cfg.scripts.dir.clone(),
        );
        tokio::spawn(async move {
            let mut stamp = ScriptRunner::dir_stamp(&dir);
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = c.cancelled() => break,
                    _ = tick.tick() => {
                        let now = ScriptRunner::dir_stamp(&dir);
                        if now != stamp {
                            stamp = now;
                            let r = r.clone();
                            let _ = tokio::task::spawn_blocking(move || log_reload(&r)).await;
                        }
                    }
                }
            }
        });
        Some(runner)
    } else {
        tracing::info!(dir = %cfg.scripts.dir.display(), "no flow scripts: add *.lua files to scripts.dir to run some");
        None
    };
    if geo.has_databases() {
        let (g, every, c) = (geo.clone(), cfg.geo.watch_interval, cancel.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = c.cancelled() => break,
                    _ = tick.tick() => {
                        let g = g.clone();
                        let _ = tokio::task::spawn_blocking(move || reload_geo(&g, false)).await;
                    }
                }
            }
        });
    }
    crate::telemetry::register_known_series(
        &scripts.as_ref().map(|r| r.names()).unwrap_or_default(),
        &geo.db_labels(),
    );
    let mut threads = Vec::new();
    let n = cfg.decode.effective_shards();
    let mut senders = Vec::with_capacity(n);
    // bounded in datagrams (`ShardTx::queued`); every batch holds at least one
    let queue = cfg.ingest.queue_datagrams.max(4);
    // templates and sampling from the last run, restored before the sockets open
    let state_dir = cfg.state.enabled.then(|| cfg.state.effective_dir());
    let saved = match &state_dir {
        Some(d) => state::by_shard(state::load_at_start(d), n),
        None => vec![Vec::new(); n],
    };
    let (state_tx, state_thread) = match &state_dir {
        Some(d) => {
            let (tx, h) = state::Writer {
                dir: d.clone(),
                interval: cfg.state.write_interval,
                max_age: cfg.state.max_age,
                template_ttl: cfg.decode.template_ttl,
                shards: n,
            }
            .spawn()?;
            (Some(tx), Some(h))
        }
        None => (None, None),
    };
    let end_turns = Arc::new(crate::shard::EndTurns::for_this_machine());
    let mut restore_txs = Vec::with_capacity(n);
    let (mut restored, mut restored_streams) = (0, 0);
    for (i, streams) in saved.into_iter().enumerate() {
        let (tx, rx) = sync_channel(queue);
        let pool = Pool::default();
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut decoder = Decoder::from_config(cfg)?;
        let now = wall_ms();
        for s in streams {
            restored += decoder.restore(&s, now, &mut Vec::new());
            restored_streams += 1;
        }
        let (restore_tx, restore_rx) = sync_channel(4);
        restore_txs.push(restore_tx);
        let shard = Shard {
            id: i,
            decoder,
            table: FlowTable::with_enricher(
                TableConfig::from_config(&cfg.flow, n),
                Some(Enricher::new(geo.clone(), cfg.geo.cache_size)),
            ),
            out: output_tx.clone(),
            recycle: recycle.clone(),
            filter,
            staging: scripts.as_ref().map(|r| r.staging()).unwrap_or_default(),
            scripts: scripts.clone(),
            pool: pool.clone(),
            queued: queued.clone(),
            state: state_tx.clone().map(|tx| (tx, cfg.state.write_interval)),
            restore: state_dir.is_some().then_some(restore_rx),
            end_turns: end_turns.clone(),
        };
        let cell = shard.into_cell();
        senders.push(ShardTx {
            tx,
            inline: Some(cell.clone()),
            pool,
            queued,
            limit: cfg.ingest.queue_datagrams,
        });
        threads.push(
            std::thread::Builder::new()
                .name(format!("flowhook-shard-{i}"))
                .spawn(move || cell.run(rx))?,
        );
    }
    drop(state_tx);
    if let Some(d) = &state_dir {
        crate::telemetry::StateTelemetry::restored(restored);
        tracing::info!(path = %state::path(d).display(), templates = restored, streams = restored_streams, "state restored");
    }
    let senders = Arc::new(senders);
    let mut took_over = false;
    let allow = Arc::new(AllowList::new(cfg.ingest.allow.clone()));
    let mut listeners = Vec::new();
    let mut bound = Vec::new();
    let mut inodes: Vec<(String, u64)> = Vec::new();
    for (li, addr) in cfg.ingest.listen.iter().enumerate() {
        let mut addr = *addr;
        // another instance on this address: a rolling restart (docs/operations.md)
        let held = ingest::held(addr);
        for _ in 0..cfg.ingest.sockets_per_listener {
            let (std_sock, granted) = ingest::bind(addr, cfg.ingest.recv_buffer_bytes, true)?;
            if held && cfg.ingest.sockets_per_listener == 1 {
                match ingest::take_over(&std_sock, 1) {
                    Ok(()) => {
                        took_over = true;
                        tracing::info!(%addr, "another instance holds this address: new datagrams come here from now on; it drains and stops");
                    }
                    Err(e) => {
                        tracing::warn!(%addr, "another instance holds this address and cannot be steered away from ({e}); the kernel shares datagrams between the two until it stops")
                    }
                }
            } else if held {
                tracing::warn!(%addr, "another instance holds this address; with ingest.sockets_per_listener > 1 the kernel shares datagrams between the two until it stops");
            }
            if let Some(ino) = ingest::socket_inode(&std_sock) {
                inodes.push((li.to_string(), ino));
            }
            let local = std_sock
                .local_addr()
                .map_err(|source| IngestError::Bind { addr, source })?;
            // later sockets of this listener join the same (maybe ephemeral) port
            addr = local;
            if granted < cfg.ingest.recv_buffer_bytes {
                tracing::warn!(%local, requested = cfg.ingest.recv_buffer_bytes, granted, "receive buffer smaller than requested; raise net.core.rmem_max or grant CAP_NET_ADMIN");
            }
            tracing::info!(%local, recv_buffer_bytes = granted, "listening");
            bound.push(local);
            let (label, shards, allow, batch, cancel) = (
                li.to_string(),
                senders.clone(),
                allow.clone(),
                cfg.ingest.batch_datagrams,
                cancel.clone(),
            );
            listeners.push(
                std::thread::Builder::new()
                    .name(format!("flowhook-recv-{}", listeners.len()))
                    .spawn(move || {
                        ingest::run_socket(std_sock, label, shards, allow, batch, cancel)
                    })?,
            );
        }
    }
    drop(senders);
    if took_over && let Some(d) = &state_dir {
        // what the other instance learns until it stops, and its last write
        state::follow(d.clone(), restore_txs, Duration::from_secs(120))?;
    }
    if !inodes.is_empty() {
        let c = cancel.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tokio::select! {
                    _ = c.cancelled() => break,
                    _ = tick.tick() => ingest::publish_kernel_drops(&inodes),
                }
            }
        });
    }
    Ok(Running {
        bound,
        cancel,
        listeners,
        threads,
        output,
        output_tx,
        output_deadline,
        shutdown_timeout: Duration::from_secs(cfg.flow.shutdown_timeout_secs),
        geo,
        scripts,
        delivery: Some(delivery),
        state: state_thread,
    })
}
