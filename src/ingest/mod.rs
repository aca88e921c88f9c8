//! Ingest stage: UDP sockets → per-shard bounded datagram queues.
//!
//! In: `ingest` configuration. Out: [`Batch`]es of datagrams on the shards'
//! queues, each exporter always on the same shard (hash of its address), so
//! one exporter's template state and flows live in one place. Each socket
//! has a thread of its own that sleeps in the kernel until datagrams come
//! and never waits on later stages: it reads with `recvmmsg` (`recv`),
//! packs each round's datagrams into one batch per shard (`batch`, buffers
//! recycled through a per-shard pool) and `try_send`s; a batch that finds its
//! queue full (`ingest.queue_datagrams` datagrams queued) is dropped and its
//! datagrams counted (`queue_full`), as is a
//! datagram from an exporter outside `ingest.allow` (`not_allowed`).

mod batch;
mod recv;
mod socket;

use std::hash::Hasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

pub use batch::{Batch, Pool};
pub use recv::RecvBuf;
pub use socket::{bind, held, take_over};

use crate::telemetry::{DropReason, IngestTelemetry};

/// Why ingest could not start.
#[derive(Debug, Error)]
pub enum IngestError {
    #[error("cannot bind UDP {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl IngestError {
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::Bind { .. } => "bind",
        }
    }
}

/// Exporter allow-list; empty allows everyone.
#[derive(Debug, Clone, Default)]
pub struct AllowList(Vec<IpNet>);

impl AllowList {
    pub fn new(nets: Vec<IpNet>) -> Self {
        AllowList(nets)
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        self.0.is_empty() || self.0.iter().any(|n| n.contains(&ip))
    }
}

/// The inode of a socket (to find it in `/proc/net/udp`).
pub fn socket_inode(sock: &std::net::UdpSocket) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/proc/self/fd/{}", sock.as_raw_fd()))
            .ok()
            .map(|m| m.ino())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = sock;
        None
    }
}

/// Datagrams the kernel dropped per socket inode (the `drops` column of
/// `/proc/net/udp` and `/proc/net/udp6`: full receive buffer).
pub fn kernel_drops() -> std::collections::HashMap<u64, u64> {
    let mut m = std::collections::HashMap::new();
    for f in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if let (Some(ino), Some(drops)) = (cols.get(9), cols.last())
                && let (Ok(i), Ok(d)) = (ino.parse::<u64>(), drops.parse::<u64>())
            {
                m.insert(i, d);
            }
        }
    }
    m
}

/// Publishes `flowhook_ingest_kernel_drops_total` per listener.
pub fn publish_kernel_drops(inodes: &[(String, u64)]) {
    let drops = kernel_drops();
    let mut per: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for (listener, ino) in inodes {
        *per.entry(listener.as_str()).or_default() += drops.get(ino).copied().unwrap_or(0);
    }
    for (listener, n) in per {
        metrics::counter!("flowhook_ingest_kernel_drops_total", "listener" => listener.to_string())
            .absolute(n);
    }
}

/// The shard an exporter is pinned to (a fixed hash of its address: the
/// same exporter maps to the same shard in every run).
pub fn shard_of(ip: IpAddr, shards: usize) -> usize {
    let mut h = rustc_hash::FxHasher::default();
    match ip {
        IpAddr::V4(a) => h.write_u32(u32::from(a)),
        IpAddr::V6(a) => h.write_u128(u128::from(a)),
    }
    (h.finish() % shards.max(1) as u64) as usize
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What became of a batch offered to a shard to run inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inline {
    /// Handled on the calling thread.
    Done,
    /// The shard is busy or has a backlog: queue the batch.
    Queue,
    /// The shard has stopped.
    Gone,
}

/// A shard the receive thread may run itself while it is idle with
/// nothing queued (see `shard::Cell`).
pub trait RunInline: Send + Sync {
    fn run_inline(&self, batch: &Batch) -> Inline;
}

/// Where one shard's datagrams go: the shard itself when it can run them
/// inline, else its queue; its batch pool, and the count of datagrams
/// queued for it (or being handled from the queue), bounded by `limit` (the
/// queue is bounded in datagrams, not batches: at a moderate rate a
/// receive round reads a few datagrams, and a queue of batches would fill
/// with a few hundred of them while the shard waits for a core).
#[derive(Clone)]
pub struct ShardTx {
    pub tx: SyncSender<Batch>,
    pub inline: Option<Arc<dyn RunInline>>,
    pub pool: Pool,
    pub queued: Arc<AtomicUsize>,
    pub limit: usize,
}

/// How long a receive waits for a datagram before the loop looks at
/// `cancel` again (the longest a stop waits for an idle listener).
const RECV_WAIT: Duration = Duration::from_millis(100);

/// Receives on `sock` until `cancel`, handing datagrams to their exporter's
/// shard in batches (one per shard and receive round). Runs on a thread of
/// its own: it sleeps in the kernel until a datagram comes (no readiness
/// poll, no task wake-up per round), then reads what is waiting with it.
pub fn run_socket(
    sock: std::net::UdpSocket,
    label: String,
    shards: Arc<Vec<ShardTx>>,
    allow: Arc<AllowList>,
    batch: usize,
    cancel: CancellationToken,
) {
    let mut tel = IngestTelemetry::new(&label);
    if let Err(e) = sock
        .set_nonblocking(false)
        .and_then(|()| sock.set_read_timeout(Some(RECV_WAIT)))
    {
        tracing::error!(listener = %label, "cannot make the socket wait for datagrams: {e}");
        return;
    }
    let mut rb = RecvBuf::new(batch);
    let mut pending: Vec<Batch> = shards.iter().map(|s| s.pool.take()).collect();
    loop {
        // On shutdown, take what the kernel already holds (bounded by the receive buffer).
        let stopping = cancel.is_cancelled();
        let (mut n, mut bytes) = (0u64, 0u64);
        let mut now = None;
        let r = rb.recv(&sock, !stopping, |from, payload| {
            n += 1;
            bytes += payload.len() as u64;
            if !allow.allows(from.ip()) {
                tel.dropped(DropReason::NotAllowed, 1);
                return;
            }
            let now = *now.get_or_insert_with(now_ms);
            pending[shard_of(from.ip(), shards.len())].push(from, now, payload);
        });
        if n > 0 {
            tel.received.increment(n);
            tel.bytes.increment(bytes);
            // a full round means more is waiting: the shards' own threads
            // take it, so the work spreads over the cores
            let inline = !stopping && (n as usize) < rb.slots();
            if !flush(&shards, &mut pending, &mut tel, inline) {
                break;
            }
        }
        match r {
            Ok(got) if got > 0 => {}
            Ok(_) => {
                if stopping {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                if stopping {
                    break;
                }
            }
            Err(e) => {
                tracing::debug!(listener = %label, "receive error: {e}");
                if stopping {
                    break;
                }
            }
        }
    }
}

/// Hands every non-empty batch to its shard without waiting: run by the
/// shard on this thread when `inline` and the shard is idle, else queued; a
/// batch its shard's queue has no room for (in datagrams) is dropped and
/// counted per datagram. False when the shards are gone.
fn flush(
    shards: &[ShardTx],
    pending: &mut [Batch],
    tel: &mut IngestTelemetry,
    inline: bool,
) -> bool {
    for (s, b) in shards.iter().zip(pending.iter_mut()) {
        if b.is_empty() {
            continue;
        }
        if inline && let Some(run) = &s.inline {
            match run.run_inline(b) {
                Inline::Done => {
                    b.clear();
                    continue;
                }
                Inline::Queue => {}
                Inline::Gone => return false,
            }
        }
        let n = b.len();
        // an empty queue takes any batch (a round may read more than the bound)
        let q = s.queued.load(Ordering::Acquire);
        if q > 0 && q + n > s.limit {
            tel.dropped(DropReason::QueueFull, n as u64);
            b.clear();
            continue;
        }
        let full = std::mem::replace(b, s.pool.take());
        s.queued.fetch_add(n, Ordering::AcqRel);
        match s.tx.try_send(full) {
            Ok(()) => {}
            Err(TrySendError::Full(back)) => {
                s.queued.fetch_sub(n, Ordering::AcqRel);
                tel.dropped(DropReason::QueueFull, back.len() as u64);
                s.pool.give(back);
            }
            Err(TrySendError::Disconnected(_)) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list() {
        let a = AllowList::new(vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ]);
        assert!(a.allows("10.1.2.3".parse().unwrap()));
        assert!(a.allows("::ffff:10.1.2.3".parse().unwrap()));
        assert!(a.allows("2001:db8::1".parse().unwrap()));
        assert!(!a.allows("192.0.2.1".parse().unwrap()));
        assert!(AllowList::default().allows("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn shards_are_stable_and_in_range() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(shard_of(ip, 4), shard_of(ip, 4));
        for i in 0..=255u8 {
            assert!(shard_of(IpAddr::from([10, 0, 0, i]), 3) < 3);
        }
    }
}
