//! Output stage: sinks behind one trait, and the thread that drives them.
//!
//! In: [`OutputMsg`]s on a bounded channel (batches of JSON lines encoded by
//! the producing stage with [`Lines`], reopen requests). Out: JSON lines on
//! standard output or in a file. The sink
//! buffers and flushes at least every `output.flush_interval`, at shutdown
//! and on request; a file sink reopens its path on SIGHUP so log rotation
//! works. The Kafka sink (`kafka`, cargo feature `kafka`) implements the same
//! [`Sink`] trait and gets every batch too. With
//! `syslog.events`, each batch's event lines are also handed to the alert
//! delivery stage (`alert::Router::events`). Written batches go back to the
//! shards through [`Recycle`] (buffers reused, not reallocated).

#[cfg(feature = "kafka")]
pub mod kafka;
pub mod proto;

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use thiserror::Error;

use serde::Serialize;

use crate::telemetry::SinkTelemetry;

/// A sink failure.
#[derive(Debug, Error)]
pub enum SinkError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("cannot encode record: {0}")]
    Encode(String),
    #[error("kafka: {0}")]
    Kafka(String),
}

impl SinkError {
    pub fn code(&self) -> &'static str {
        match self {
            SinkError::Io { .. } => "io",
            SinkError::Encode(_) => "encode",
            SinkError::Kafka(_) => "kafka",
        }
    }
}

/// Somewhere records go.
pub trait Sink: Send {
    /// Short stable name for metric labels.
    fn name(&self) -> &'static str;
    /// Writes a batch of lines; returns how many it took (the rest it
    /// dropped and counted itself).
    fn write(&mut self, batch: &Lines) -> Result<usize, SinkError>;
    fn flush(&mut self) -> Result<(), SinkError>;
    /// The last call, at shutdown: delivers what is held (within the sink's
    /// own limit and before `deadline`, the service's shutdown limit) and
    /// reports what could not be. Default: `flush`.
    fn close(&mut self, deadline: Option<Instant>) -> Result<(), SinkError> {
        let _ = deadline;
        self.flush()
    }
    /// Reopen the destination (log rotation). Default: nothing to do.
    fn reopen(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Written line batches on their way back to the shards that fill them: the
/// output thread puts each batch here once written (emptied, its buffer kept)
/// and a shard takes one for its next batch, so the large batches of a
/// shutdown (a thousand `flowEnd` lines each) reuse their memory instead of
/// faulting in fresh pages and giving them back every time. Bounded: at most
/// [`Recycle::KEEP`] batches, none whose buffer grew past [`Recycle::MAX_BYTES`].
#[derive(Debug, Clone, Default)]
pub struct Recycle(std::sync::Arc<(std::sync::Mutex<Vec<Lines>>, std::sync::Condvar)>);

impl Recycle {
    /// Batches kept at most.
    pub const KEEP: usize = 4;
    /// Largest buffer kept (bytes of capacity).
    pub const MAX_BYTES: usize = 2 << 20;

    /// Keeps `lines` (emptied) for a later [`Recycle::take`], unless full or too large.
    pub fn put(&self, mut lines: Lines) {
        if lines.buf.capacity() > Self::MAX_BYTES {
            return;
        }
        lines.clear();
        let (kept, back) = &*self.0;
        if let Ok(mut kept) = kept.lock()
            && kept.len() < Self::KEEP
        {
            kept.push(lines);
            back.notify_one();
        }
    }

    /// An empty batch: a kept one when there is one.
    pub fn take(&self) -> Lines {
        self.take_waiting(Duration::ZERO)
    }

    /// An empty batch, waiting up to `wait` for one the output thread is
    /// still writing when none is kept (a shutdown's batches come faster than
    /// a file takes them: waiting keeps their memory in a few buffers instead
    /// of a fresh one for every batch queued); a new one after that.
    pub fn take_waiting(&self, wait: Duration) -> Lines {
        let (kept, back) = &*self.0;
        let Ok(mut kept) = kept.lock() else {
            return Lines::default();
        };
        if kept.is_empty() && !wait.is_zero() {
            match back.wait_timeout_while(kept, wait, |k| k.is_empty()) {
                Ok((k, _)) => kept = k,
                Err(_) => return Lines::default(),
            }
        }
        kept.pop().unwrap_or_default()
    }
}

/// Messages to the output thread.
pub enum OutputMsg {
    Lines(Lines),
    Reopen,
}

/// A batch of newline-terminated JSON lines, encoded where the items are made
/// (in parallel, on the stage threads), written as one block by the sink.
/// `keys` holds each line's flow key (the `key` of its flow, 0 for a line
/// about no flow): the Kafka sink's message keys.
#[derive(Debug, Default)]
pub struct Lines {
    pub buf: Vec<u8>,
    pub count: usize,
    pub keys: Vec<u64>,
}

impl Lines {
    /// Appends one item as a JSON line.
    pub fn push<T: Serialize>(&mut self, item: &T) -> Result<(), SinkError> {
        let start = self.buf.len();
        if let Err(e) = serde_json::to_writer(&mut self.buf, item) {
            self.buf.truncate(start);
            return Err(SinkError::Encode(e.to_string()));
        }
        self.buf.push(b'\n');
        self.count += 1;
        self.keys.push(0);
        Ok(())
    }

    /// Appends a decoded record as a JSON line, keyed by its flow's key.
    pub fn push_record(&mut self, r: &crate::record::FlowRecord) -> Result<(), SinkError> {
        self.push(r)?;
        if let Some(k) = self.keys.last_mut() {
            *k = crate::flow::key::FlowKey::of(r).map_or(0, |(key, _)| key.stable_hash());
        }
        Ok(())
    }

    /// Appends a lifecycle event as a JSON line (the hand-written encoder,
    /// byte for byte the serde one).
    pub fn push_event(&mut self, e: &crate::flow::FlowEvent) {
        self.push_view_event(e.kind, e.time_ms, &e.flow);
    }

    /// Appends the event `kind` at `time_ms` about `view` as a JSON line.
    pub fn push_view_event(
        &mut self,
        kind: crate::flow::EventKind,
        time_ms: i64,
        view: &crate::flow::FlowView,
    ) {
        crate::flow::json::event_of(&mut self.buf, kind, time_ms, view);
        self.buf.push(b'\n');
        self.count += 1;
        self.keys.push(view.key);
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Empties the batch, keeping its buffer.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.count = 0;
        self.keys.clear();
    }

    /// The lines with their keys.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], u64)> {
        self.buf
            .split(|b| *b == b'\n')
            .zip(self.keys.iter().copied())
    }
}

/// JSON lines to standard output or a file.
pub struct JsonLines {
    path: Option<PathBuf>,
    out: BufWriter<Box<dyn Write + Send>>,
}

fn open_append(path: &Path) -> Result<File, SinkError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| SinkError::Io {
            path: path.display().to_string(),
            source,
        })
}

impl JsonLines {
    /// `-` is standard output; anything else a file opened for appending.
    pub fn open(path: &Path) -> Result<Self, SinkError> {
        let (path, w): (Option<PathBuf>, Box<dyn Write + Send>) = if path == Path::new("-") {
            (None, Box::new(io::stdout()))
        } else {
            (Some(path.to_path_buf()), Box::new(open_append(path)?))
        };
        Ok(JsonLines {
            path,
            out: BufWriter::with_capacity(256 * 1024, w),
        })
    }

    fn io_err(&self, source: io::Error) -> SinkError {
        let path = self
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "stdout".into());
        SinkError::Io { path, source }
    }
}

impl Sink for JsonLines {
    fn name(&self) -> &'static str {
        "json"
    }

    fn write(&mut self, batch: &Lines) -> Result<usize, SinkError> {
        self.out.write_all(&batch.buf).map_err(|e| self.io_err(e))?;
        Ok(batch.count)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|e| self.io_err(e))
    }

    fn reopen(&mut self) -> Result<(), SinkError> {
        if let Some(p) = self.path.clone() {
            self.flush()?;
            let f = open_append(&p)?;
            self.out = BufWriter::with_capacity(256 * 1024, Box::new(f));
        }
        Ok(())
    }
}

/// The sinks the configuration asks for: the JSON lines (`output.enabled`)
/// and Kafka (`kafka.brokers`).
pub fn open_sinks(cfg: &crate::config::Config) -> Result<Vec<Box<dyn Sink>>, SinkError> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if cfg.output.enabled {
        sinks.push(Box::new(JsonLines::open(&cfg.output.path)?));
    }
    sinks.extend(kafka_sink(cfg)?);
    Ok(sinks)
}

/// What `open_sinks` checks beyond the output file: `flowhook check` (a
/// Kafka client is made, so librdkafka checks every setting, and dropped
/// at once).
pub fn check_sinks(cfg: &crate::config::Config) -> Result<(), SinkError> {
    kafka_sink(cfg).map(drop)
}

/// The Kafka sink when `kafka.brokers` is set, the files it reads checked
/// first (named with their key).
fn kafka_sink(cfg: &crate::config::Config) -> Result<Option<Box<dyn Sink>>, SinkError> {
    if !cfg.kafka.enabled() {
        return Ok(None);
    }
    for (key, path) in cfg.kafka.files() {
        std::fs::File::open(path).map_err(|e| SinkError::Io {
            path: format!("{} ({key})", path.display()),
            source: e,
        })?;
    }
    #[cfg(feature = "kafka")]
    return Ok(Some(Box::new(kafka::KafkaSink::new(&cfg.kafka)?)));
    #[cfg(not(feature = "kafka"))]
    Err(SinkError::Kafka(
        "kafka.brokers is set, but this flowhook was built without the Kafka sink \
         (build it with `cargo build --release --features kafka`)"
            .into(),
    ))
}

/// The shutdown deadline the output thread closes its sinks by, set by the
/// pipeline when shutdown begins.
pub type CloseDeadline = std::sync::Arc<std::sync::OnceLock<Instant>>;

/// Runs the sinks on their own thread until every sender of `rx` is gone,
/// then closes them by `deadline` (each batch goes to every sink, in order).
pub fn spawn(
    sinks: Vec<Box<dyn Sink>>,
    rx: Receiver<OutputMsg>,
    flush_every: Duration,
    events_tap: Option<crate::alert::Router>,
    deadline: CloseDeadline,
    recycle: Recycle,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("flowhook-output".into())
        .spawn(move || {
            let mut sinks: Vec<(Box<dyn Sink>, SinkTelemetry)> = sinks
                .into_iter()
                .map(|s| {
                    let t = SinkTelemetry::new(s.name());
                    (s, t)
                })
                .collect();
            let mut last_flush = Instant::now();
            let mut dirty = false;
            loop {
                let wait = flush_every.saturating_sub(last_flush.elapsed());
                match rx.recv_timeout(if dirty {
                    wait
                } else {
                    Duration::from_secs(3600)
                }) {
                    Ok(OutputMsg::Lines(batch)) => {
                        if let Some(t) = &events_tap {
                            t.events(&batch.buf);
                        }
                        for (sink, tel) in sinks.iter_mut() {
                            match sink.write(&batch) {
                                Ok(n) => tel.written.increment(n as u64),
                                Err(e) => tel.write_failed(&e),
                            }
                        }
                        dirty = true;
                        recycle.put(batch);
                    }
                    Ok(OutputMsg::Reopen) => {
                        for (sink, tel) in sinks.iter_mut() {
                            if let Err(e) = sink.reopen() {
                                tel.write_failed(&e);
                            }
                        }
                        tracing::info!("output reopened");
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                if dirty && last_flush.elapsed() >= flush_every {
                    for (sink, tel) in sinks.iter_mut() {
                        if let Err(e) = sink.flush() {
                            tel.write_failed(&e);
                        }
                    }
                    dirty = false;
                    last_flush = Instant::now();
                }
            }
            for (sink, tel) in sinks.iter_mut() {
                if let Err(e) = sink.close(deadline.get().copied()) {
                    tel.write_failed(&e);
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::{Lines, Recycle};

    fn batch(bytes: usize) -> Lines {
        let mut l = Lines::default();
        l.buf.reserve_exact(bytes);
        l.buf.extend_from_slice(b"{}\n");
        l.count = 1;
        l.keys.push(7);
        l
    }

    /// Batches come back empty with their buffer; the pool stays bounded.
    #[test]
    fn recycle_keeps_buffers_bounded() {
        let r = Recycle::default();
        assert_eq!(r.take().buf.capacity(), 0, "nothing kept yet");
        for _ in 0..Recycle::KEEP + 3 {
            r.put(batch(4096));
        }
        r.put(batch(Recycle::MAX_BYTES + 1));
        let mut kept = 0;
        loop {
            let l = r.take();
            if l.buf.capacity() == 0 {
                break;
            }
            assert!(l.is_empty() && l.buf.is_empty() && l.keys.is_empty());
            assert!(l.buf.capacity() >= 4096 && l.buf.capacity() <= Recycle::MAX_BYTES);
            kept += 1;
        }
        assert_eq!(kept, Recycle::KEEP);
    }

    /// A shard waiting for a batch gets the one the output thread puts back.
    #[test]
    fn take_waiting_gets_the_batch_put_back() {
        use std::time::{Duration, Instant};
        let r = Recycle::default();
        let t = Instant::now();
        assert_eq!(r.take_waiting(Duration::from_millis(20)).buf.capacity(), 0);
        assert!(
            t.elapsed() >= Duration::from_millis(20),
            "waited for nothing"
        );
        let back = r.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            back.put(batch(8192));
        });
        let l = r.take_waiting(Duration::from_secs(60));
        assert!(l.buf.capacity() >= 8192 && l.is_empty());
        writer.join().unwrap();
    }
}
