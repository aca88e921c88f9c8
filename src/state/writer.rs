//! The state file's writer thread.
//!
//! In: [`Snapshot`]s from the shards (each a shard's every stream, sent when
//! something changed, at most once per write interval, and at shutdown) on
//! a bounded queue the shards never wait on. Out: the state file, written
//! when a snapshot arrived since the last write and the interval has
//! passed, and a last time when every shard has hung up.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::SavedStream;

/// One shard's streams.
pub struct Snapshot {
    pub shard: usize,
    pub streams: Vec<SavedStream>,
}

/// Where the writer thread writes, and how often.
pub struct Writer {
    pub dir: PathBuf,
    pub interval: Duration,
    pub max_age: Duration,
    pub template_ttl: Option<Duration>,
    pub shards: usize,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Writer {
    /// Starts the thread; the shards send on the returned queue.
    pub fn spawn(self) -> std::io::Result<(SyncSender<Snapshot>, JoinHandle<()>)> {
        let (tx, rx) = sync_channel(self.shards.max(1) * 4);
        let h = std::thread::Builder::new()
            .name("flowhook-state".into())
            .spawn(move || self.run(rx))?;
        Ok((tx, h))
    }

    fn run(self, rx: Receiver<Snapshot>) {
        let mut latest: Vec<Option<Vec<SavedStream>>> = vec![None; self.shards.max(1)];
        let mut dirty = false;
        let mut last = Instant::now() - self.interval;
        loop {
            let wait = if dirty {
                self.interval.saturating_sub(last.elapsed())
            } else {
                Duration::from_secs(3600)
            };
            match rx.recv_timeout(wait) {
                Ok(s) => {
                    if let Some(slot) = latest.get_mut(s.shard) {
                        *slot = Some(s.streams);
                        dirty = true;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if dirty && last.elapsed() >= self.interval {
                self.write(&latest);
                dirty = false;
                last = Instant::now();
            }
        }
        if dirty {
            self.write(&latest);
        }
    }

    fn write(&self, latest: &[Option<Vec<SavedStream>>]) {
        let now = crate::pipeline::wall_ms();
        let ours: Vec<SavedStream> = latest.iter().flatten().flatten().cloned().collect();
        let on_disk = super::load(&self.dir).ok().flatten().unwrap_or_default();
        let merged = super::merge(
            ours,
            on_disk,
            now,
            ms(self.max_age),
            self.template_ttl.map(ms),
        );
        let templates: usize = merged.iter().map(|s| s.templates.len()).sum();
        let res = super::store(&self.dir, &super::encode(merged, now));
        crate::telemetry::StateTelemetry::written(&res, templates);
    }
}
