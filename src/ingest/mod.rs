//! Ingest stage: UDP sockets → per-shard bounded datagram queues.
//!
//! In: `ingest` configuration. Out: [`Datagram`]s on the decoder shards'
//! queues, each exporter always on the same shard (hash of its address), so
//! one exporter's template state lives in one place. The receive loop never
//! waits on later stages: it drains the socket in batches and `try_send`s;
//! a datagram that finds its queue full is dropped and counted
//! (`queue_full`), as is one from an exporter outside `ingest.allow`
//! (`not_allowed`).

mod socket;

use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use thiserror::Error;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

pub use socket::bind;

use crate::telemetry::{DropReason, IngestTelemetry};

/// One received export datagram.
#[derive(Debug, Clone)]
pub struct Datagram {
    pub exporter: SocketAddr,
    /// Receive time, Unix milliseconds.
    pub received_ms: i64,
    pub payload: Vec<u8>,
}

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

/// The shard an exporter is pinned to.
pub fn shard_of(ip: IpAddr, shards: usize) -> usize {
    // fixed keys: the same exporter maps to the same shard in every run
    let mut h =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .build_hasher();
    match ip {
        IpAddr::V4(a) => h.write(&a.octets()),
        IpAddr::V6(a) => h.write(&a.octets()),
    }
    (h.finish() % shards.max(1) as u64) as usize
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Receives on `sock` until `cancel`, handing datagrams to `shards`.
pub async fn run_socket(
    sock: UdpSocket,
    label: String,
    shards: Arc<Vec<SyncSender<Datagram>>>,
    allow: Arc<AllowList>,
    batch: usize,
    cancel: CancellationToken,
) {
    let mut tel = IngestTelemetry::new(&label);
    let mut buf = vec![0u8; 65_536];
    loop {
        let stopping = tokio::select! {
            _ = cancel.cancelled() => true,
            r = sock.readable() => r.is_err(),
        };
        // On shutdown, take what the kernel already holds (bounded by the receive buffer).
        let limit = if stopping { usize::MAX } else { batch };
        if !drain(&sock, &label, &mut buf, limit, &shards, &allow, &mut tel) || stopping {
            break;
        }
    }
}

/// Reads up to `limit` datagrams without waiting; false when the decoders are gone.
fn drain(
    sock: &UdpSocket,
    label: &str,
    buf: &mut [u8],
    limit: usize,
    shards: &[SyncSender<Datagram>],
    allow: &AllowList,
    tel: &mut IngestTelemetry,
) -> bool {
    for _ in 0..limit {
        let (n, from) = match sock.try_recv_from(buf) {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => {
                tracing::debug!(listener = %label, "receive error: {e}");
                break;
            }
        };
        tel.received.increment(1);
        tel.bytes.increment(n as u64);
        if !allow.allows(from.ip()) {
            tel.dropped(DropReason::NotAllowed, 1);
            continue;
        }
        let d = Datagram {
            exporter: from,
            received_ms: now_ms(),
            payload: buf[..n].to_vec(),
        };
        match shards[shard_of(from.ip(), shards.len())].try_send(d) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => tel.dropped(DropReason::QueueFull, 1),
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
