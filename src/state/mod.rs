//! Decoder state across restarts: every stream's templates (as sent) and
//! sampling announcements, in one state file.
//!
//! In: snapshots of each shard's streams ([`SavedStream`]s) while `serve`
//! runs. Out: `<state.dir>/templates.state`, written atomically (temporary
//! file, fsync, rename, fsync of the directory) at most once per
//! `state.write_interval` while something changes and once at shutdown; at
//! start, the streams read back ([`load`]) for the decoders to restore
//! before the sockets open. The file is a header line (`flowhook-state`,
//! format version, body length, CRC-32 of the body) and a JSON body; a
//! missing, truncated, corrupt, foreign-version or unreadable file is an
//! error for the caller to log and ignore, never fatal. Writes merge with
//! the file on disk by stream, so an instance taking over from another (a
//! rolling restart) keeps the streams only the other one knew.

#[cfg(test)]
mod tests;
mod writer;

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use crate::decode::persist::{SavedStream, SavedTemplate};
pub use writer::{Snapshot, Writer};

/// The state file's name in `state.dir`.
pub const FILE: &str = "templates.state";
/// Format version this build writes and reads.
pub const FORMAT: u32 = 1;
const MAGIC: &str = "flowhook-state";

/// Why the state file could not be used.
#[derive(Debug, Error)]
pub enum StateError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a flowhook state file (bad header)")]
    Header { path: PathBuf },
    #[error("{path}: format version {found}, this build reads {FORMAT}")]
    Version { path: PathBuf, found: String },
    #[error("{path}: truncated ({found} of {expected} body bytes)")]
    Truncated {
        path: PathBuf,
        found: usize,
        expected: usize,
    },
    #[error("{path}: checksum mismatch (corrupt)")]
    Checksum { path: PathBuf },
    #[error("{path}: corrupt body: {detail}")]
    Body { path: PathBuf, detail: String },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl StateError {
    pub fn code(&self) -> &'static str {
        match self {
            StateError::Read { .. } => "read",
            StateError::Header { .. } => "header",
            StateError::Version { .. } => "version",
            StateError::Truncated { .. } => "truncated",
            StateError::Checksum { .. } => "checksum",
            StateError::Body { .. } => "body",
            StateError::Write { .. } => "write",
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Body {
    written_ms: i64,
    streams: Vec<SavedStream>,
}

/// The state file in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Reads the state file in `dir`; `Ok(None)` when there is none yet.
pub fn load(dir: &Path) -> Result<Option<Vec<SavedStream>>, StateError> {
    let path = path(dir);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateError::Read { path, source }),
    };
    decode(&path, &data).map(Some)
}

/// Parses a state file's bytes (`path` for the errors).
pub fn decode(path: &Path, data: &[u8]) -> Result<Vec<SavedStream>, StateError> {
    let header_err = || StateError::Header {
        path: path.to_path_buf(),
    };
    let nl = data
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(header_err)?;
    let header = std::str::from_utf8(&data[..nl]).map_err(|_| header_err())?;
    let parts: Vec<&str> = header.split(' ').collect();
    let [magic, version, len, crc] = parts.as_slice() else {
        return Err(header_err());
    };
    if *magic != MAGIC {
        return Err(header_err());
    }
    if *version != FORMAT.to_string() {
        return Err(StateError::Version {
            path: path.to_path_buf(),
            found: version.to_string(),
        });
    }
    let expected: usize = len.parse().map_err(|_| header_err())?;
    let crc = u32::from_str_radix(crc, 16).map_err(|_| header_err())?;
    let body = &data[nl + 1..];
    if body.len() < expected {
        return Err(StateError::Truncated {
            path: path.to_path_buf(),
            found: body.len(),
            expected,
        });
    }
    let body = &body[..expected];
    if crc32fast::hash(body) != crc {
        return Err(StateError::Checksum {
            path: path.to_path_buf(),
        });
    }
    let b: Body = serde_json::from_slice(body).map_err(|e| StateError::Body {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    Ok(b.streams)
}

/// The file's bytes for `streams`.
pub fn encode(streams: Vec<SavedStream>, written_ms: i64) -> Vec<u8> {
    let body = serde_json::to_vec(&Body {
        written_ms,
        streams,
    })
    .unwrap_or_default();
    let mut out = format!(
        "{MAGIC} {FORMAT} {} {:08x}\n",
        body.len(),
        crc32fast::hash(&body)
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Writes `data` as the state file in `dir`, atomically.
pub fn store(dir: &Path, data: &[u8]) -> Result<(), StateError> {
    let target = path(dir);
    let err = |source| StateError::Write {
        path: target.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = dir.join(format!(".{FILE}.{}.tmp", std::process::id()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        // the rename itself is durable once the directory is synced
        std::fs::File::open(dir)?.sync_all()
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map_err(err)
}

/// Stream identity in the file.
type Key = (IpAddr, u16, u32);

fn key(s: &SavedStream) -> Key {
    (s.exporter, s.version, s.domain)
}

/// What to write: the streams this instance knows, and those only the file
/// knows (another instance's, or evicted here), without templates older
/// than `ttl_ms` or streams older than `max_age_ms`.
pub fn merge(
    ours: Vec<SavedStream>,
    on_disk: Vec<SavedStream>,
    now_ms: i64,
    max_age_ms: i64,
    ttl_ms: Option<i64>,
) -> Vec<SavedStream> {
    let mut by: HashMap<Key, SavedStream> = on_disk.into_iter().map(|s| (key(&s), s)).collect();
    for s in ours {
        by.insert(key(&s), s);
    }
    let mut out: Vec<SavedStream> = by
        .into_values()
        .map(|mut s| {
            if let Some(ttl) = ttl_ms {
                s.templates
                    .retain(|t| now_ms.saturating_sub(t.learned_ms) < ttl);
            }
            s
        })
        .filter(|s| !s.templates.is_empty() || s.sampling != Default::default())
        .filter(|s| s.templates.is_empty() || now_ms.saturating_sub(s.learned_ms()) < max_age_ms)
        .collect();
    out.sort_by_key(key);
    out
}

/// The state file's streams at start; a file that cannot be used is
/// logged (with its path and why) and counted, and the service starts
/// without it.
pub fn load_at_start(dir: &Path) -> Vec<SavedStream> {
    match load(dir) {
        Ok(Some(s)) => s,
        Ok(None) => {
            tracing::info!(path = %path(dir).display(), "no state file yet: templates are learnt from the exporters");
            Vec::new()
        }
        Err(e) => {
            crate::telemetry::StateTelemetry::load_failed(&e);
            Vec::new()
        }
    }
}

/// Streams by the shard their exporter is pinned to.
pub fn by_shard(streams: Vec<SavedStream>, shards: usize) -> Vec<Vec<SavedStream>> {
    let mut out = vec![Vec::new(); shards.max(1)];
    for s in streams {
        out[crate::ingest::shard_of(s.exporter, shards)].push(s);
    }
    out
}

/// After taking over from another instance: for `window`, re-reads the
/// state file whenever it changes (the other instance writes it as it
/// learns and when it stops) and hands the streams to the shards, which
/// restore the templates they do not know yet.
pub fn follow(
    dir: PathBuf,
    shards: Vec<std::sync::mpsc::SyncSender<Vec<SavedStream>>>,
    window: std::time::Duration,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("flowhook-state-follow".into())
        .spawn(move || {
            let file = path(&dir);
            let stamp = || {
                std::fs::metadata(&file)
                    .ok()
                    .map(|m| (m.modified().ok(), m.len()))
            };
            let mut seen = None;
            let end = std::time::Instant::now() + window;
            while std::time::Instant::now() < end {
                let now = stamp();
                if now.is_some() && now != seen {
                    seen = now;
                    if let Ok(Some(streams)) = load(&dir) {
                        for (tx, part) in shards.iter().zip(by_shard(streams, shards.len())) {
                            if !part.is_empty()
                                && let Err(std::sync::mpsc::TrySendError::Disconnected(_)) =
                                    tx.try_send(part)
                            {
                                return;
                            }
                        }
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        })
}
