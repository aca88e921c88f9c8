//! Wiring of the stages for `serve` and `decode`.
//!
//! `serve`: UDP sockets (tokio tasks) → bounded per-shard datagram queues →
//! decoder shard threads → bounded record queue → output thread. Shutdown on
//! the cancellation token: listeners stop, the shard queues drain (senders
//! dropped), the decoders finish, the sink flushes. `decode`: a capture's
//! datagrams through one [`Decoder`], the same decode path, records to a sink.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use thiserror::Error;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::capture::{self, CaptureError, CaptureStats};
use crate::config::Config;
use crate::decode::{DecodeError, Decoder, DecoderLimits};
use crate::ingest::{self, AllowList, Datagram, IngestError};
use crate::output::{self, JsonLines, OutputMsg, SinkError};
use crate::record::{FlowRecord, RecordKind};
use crate::telemetry::DecodeTelemetry;

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
}

/// A running `serve` pipeline.
pub struct Running {
    /// Addresses actually bound (useful with port 0).
    pub bound: Vec<SocketAddr>,
    cancel: CancellationToken,
    listeners: Vec<tokio::task::JoinHandle<()>>,
    shards: Vec<JoinHandle<()>>,
    output: Option<JoinHandle<()>>,
    output_tx: Option<SyncSender<OutputMsg>>,
}

impl Running {
    /// Asks the sink to reopen its file (SIGHUP).
    pub fn reopen_output(&self) {
        if let Some(tx) = &self.output_tx {
            let _ = tx.try_send(OutputMsg::Reopen);
        }
    }

    /// Stops listening, drains the queues, flushes the sink.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        for l in self.listeners.drain(..) {
            let _ = l.await;
        }
        self.output_tx = None;
        let shards = std::mem::take(&mut self.shards);
        let output = self.output.take();
        let _ = tokio::task::spawn_blocking(move || {
            for s in shards {
                let _ = s.join();
            }
            if let Some(o) = output {
                let _ = o.join();
            }
        })
        .await;
    }
}

fn decode_shard(
    shard: usize,
    limits: DecoderLimits,
    rx: Receiver<Datagram>,
    out: Option<SyncSender<OutputMsg>>,
    options_records: bool,
) -> Result<JoinHandle<()>, PipelineError> {
    let mut decoder = Decoder::new(&limits)?;
    Ok(std::thread::Builder::new().name(format!("flowhook-decode-{shard}")).spawn(move || {
        let mut tel = DecodeTelemetry::new(shard);
        let mut stats = decoder.stats.clone();
        let mut last_poll = std::time::Instant::now();
        loop {
            if last_poll.elapsed() >= std::time::Duration::from_secs(1) {
                tel.template_stats(&decoder.template_stats());
                last_poll = std::time::Instant::now();
            }
            let d = match rx.recv_timeout(std::time::Duration::from_secs(1)) {
                Ok(d) => d,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut recs = Vec::new();
            match decoder.decode(d.exporter.ip(), &d.payload, &mut recs) {
                Ok(o) => {
                    tel.records(o.version, o.flows, o.options);
                    if o.missing_templates > 0 {
                        tel.missing_template_sets.increment(o.missing_templates as u64);
                    }
                    if let Some(e) = &o.partial_error {
                        tel.error(e.code(), d.exporter.ip(), e);
                    }
                }
                Err(e) => tel.error(e.code(), d.exporter.ip(), &e),
            }
            let s = &decoder.stats;
            tel.seq_gaps.increment(s.seq_gaps - stats.seq_gaps);
            tel.seq_lost.increment(s.seq_lost - stats.seq_lost);
            tel.seq_late.increment(s.seq_late - stats.seq_late);
            tel.restarts.increment(s.restarts - stats.restarts);
            tel.trailing_bytes.increment(s.trailing_bytes - stats.trailing_bytes);
            stats = s.clone();
            tel.streams.set(decoder.streams() as f64);
            if !options_records {
                recs.retain(|r| r.kind == RecordKind::Flow);
            }
            if let (Some(tx), false) = (&out, recs.is_empty()) {
                if tx.send(OutputMsg::Records(recs)).is_err() {
                    break;
                }
            }
        }
    })?)
}

/// Starts `serve` on the current tokio runtime.
pub async fn start(cfg: &Config) -> Result<Running, PipelineError> {
    let cancel = CancellationToken::new();
    let (output, output_tx) = if cfg.output.enabled {
        let sink = JsonLines::open(&cfg.output.path)?;
        let (tx, rx) = sync_channel((cfg.output.queue_records / 32).max(16));
        (Some(output::spawn(Box::new(sink), rx, cfg.output.flush_interval)?), Some(tx))
    } else {
        (None, None)
    };
    let n = cfg.decode.effective_shards();
    let mut senders = Vec::with_capacity(n);
    let mut shards = Vec::with_capacity(n);
    for i in 0..n {
        let (tx, rx) = sync_channel(cfg.ingest.queue_datagrams);
        senders.push(tx);
        shards.push(decode_shard(i, cfg.decode.limits(), rx, output_tx.clone(), cfg.output.options_records)?);
    }
    let senders = Arc::new(senders);
    let allow = Arc::new(AllowList::new(cfg.ingest.allow.clone()));
    let mut listeners = Vec::new();
    let mut bound = Vec::new();
    for (li, addr) in cfg.ingest.listen.iter().enumerate() {
        let mut addr = *addr;
        for _ in 0..cfg.ingest.sockets_per_listener {
            let (std_sock, granted) = ingest::bind(addr, cfg.ingest.recv_buffer_bytes, true)?;
            let sock = UdpSocket::from_std(std_sock).map_err(|source| IngestError::Bind { addr, source })?;
            let local = sock.local_addr().map_err(|source| IngestError::Bind { addr, source })?;
            // later sockets of this listener join the same (maybe ephemeral) port
            addr = local;
            if granted < cfg.ingest.recv_buffer_bytes {
                tracing::warn!(%local, requested = cfg.ingest.recv_buffer_bytes, granted, "receive buffer smaller than requested; raise net.core.rmem_max or grant CAP_NET_ADMIN");
            }
            tracing::info!(%local, recv_buffer_bytes = granted, "listening");
            bound.push(local);
            listeners.push(tokio::spawn(ingest::run_socket(
                sock,
                li.to_string(),
                senders.clone(),
                allow.clone(),
                cfg.ingest.batch_datagrams,
                cancel.clone(),
            )));
        }
    }
    drop(senders);
    Ok(Running { bound, cancel, listeners, shards, output, output_tx })
}

/// Summary of an offline decode.
#[derive(Debug, Clone, Default)]
pub struct DecodeSummary {
    pub capture: CaptureStats,
    pub datagrams: u64,
    pub records: u64,
    pub errors: u64,
}

/// Decodes every UDP datagram in the capture at `path`, giving each record to
/// `emit` and each failure (frame number, error) to `fail`.
pub fn decode_capture(
    path: &Path,
    limits: &DecoderLimits,
    mut emit: impl FnMut(&FlowRecord),
    mut fail: impl FnMut(u64, &DecodeError),
) -> Result<DecodeSummary, PipelineError> {
    let mut decoder = Decoder::new(limits)?;
    let mut sum = DecodeSummary::default();
    let mut recs = Vec::new();
    sum.capture = capture::for_each_datagram(path, |d| {
        sum.datagrams += 1;
        recs.clear();
        match decoder.decode(d.exporter, &d.payload, &mut recs) {
            Ok(o) => {
                if let Some(e) = o.partial_error {
                    sum.errors += 1;
                    fail(d.frame, &e);
                }
            }
            Err(e) => {
                sum.errors += 1;
                fail(d.frame, &e);
            }
        }
        for r in &recs {
            sum.records += 1;
            emit(r);
        }
    })?;
    Ok(sum)
}
