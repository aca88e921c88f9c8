//! Output stage: sinks behind one trait, and the thread that drives them.
//!
//! In: [`OutputMsg`]s on a bounded channel (batches of JSON lines encoded by
//! the producing stage with [`Lines`], reopen requests). Out: JSON lines on
//! standard output or in a file. The sink
//! buffers and flushes at least every `output.flush_interval`, at shutdown
//! and on request; a file sink reopens its path on SIGHUP so log rotation
//! works. Later sinks (Kafka) implement the same [`Sink`] trait. With
//! `syslog.events`, each batch's event lines are also handed to the alert
//! delivery stage (`alert::Router::events`).

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
}

impl SinkError {
    pub fn code(&self) -> &'static str {
        match self {
            SinkError::Io { .. } => "io",
            SinkError::Encode(_) => "encode",
        }
    }
}

/// Somewhere records go.
pub trait Sink: Send {
    /// Short stable name for metric labels.
    fn name(&self) -> &'static str;
    /// Writes `count` newline-terminated JSON lines held in `lines`.
    fn write(&mut self, lines: &[u8], count: usize) -> Result<(), SinkError>;
    fn flush(&mut self) -> Result<(), SinkError>;
    /// Reopen the destination (log rotation). Default: nothing to do.
    fn reopen(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Messages to the output thread.
pub enum OutputMsg {
    Lines(Lines),
    Reopen,
}

/// A batch of newline-terminated JSON lines, encoded where the items are made
/// (in parallel, on the stage threads), written as one block by the sink.
#[derive(Debug, Default)]
pub struct Lines {
    pub buf: Vec<u8>,
    pub count: usize,
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
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Empties the batch, keeping its buffer.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.count = 0;
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

    fn write(&mut self, lines: &[u8], _count: usize) -> Result<(), SinkError> {
        self.out.write_all(lines).map_err(|e| self.io_err(e))
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

/// Runs `sink` on its own thread until every sender of `rx` is gone, then flushes.
pub fn spawn(
    mut sink: Box<dyn Sink>,
    rx: Receiver<OutputMsg>,
    flush_every: Duration,
    events_tap: Option<crate::alert::Router>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("flowhook-output".into())
        .spawn(move || {
            let mut tel = SinkTelemetry::new(sink.name());
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
                        match sink.write(&batch.buf, batch.count) {
                            Ok(()) => tel.written.increment(batch.count as u64),
                            Err(e) => tel.write_failed(&e),
                        }
                        dirty = true;
                    }
                    Ok(OutputMsg::Reopen) => {
                        if let Err(e) = sink.reopen() {
                            tel.write_failed(&e);
                        } else {
                            tracing::info!("output reopened");
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                if dirty && last_flush.elapsed() >= flush_every {
                    if let Err(e) = sink.flush() {
                        tel.write_failed(&e);
                    }
                    dirty = false;
                    last_flush = Instant::now();
                }
            }
            if let Err(e) = sink.flush() {
                tel.write_failed(&e);
            }
        })
}
