//! Datagram batches: what ingest hands a shard. One batch holds the
//! datagrams of one receive round for one shard, their payloads packed into
//! one buffer; batches go back to a per-shard pool when the shard is done
//! with them, so steady-state receiving allocates nothing per datagram.
//!
//! In: payloads as `recvmmsg` returns them. Out: `(exporter, received_ms,
//! payload)` views for the shard; emptied batches back to the [`Pool`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// One datagram of a batch.
#[derive(Debug, Clone, Copy)]
struct Item {
    exporter: SocketAddr,
    received_ms: i64,
    start: u32,
    len: u32,
}

/// Datagrams for one shard, payloads packed in one buffer.
#[derive(Debug, Default)]
pub struct Batch {
    data: Vec<u8>,
    items: Vec<Item>,
}

impl Batch {
    pub fn push(&mut self, exporter: SocketAddr, received_ms: i64, payload: &[u8]) {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(payload);
        self.items.push(Item {
            exporter,
            received_ms,
            start,
            len: payload.len() as u32,
        });
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes of payload held.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.items.clear();
    }

    /// The datagrams: exporter, receive time (Unix ms), payload.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, i64, &[u8])> {
        self.items.iter().map(|i| {
            let s = i.start as usize;
            (i.exporter, i.received_ms, &self.data[s..s + i.len as usize])
        })
    }
}

/// Emptied batches of one shard, for reuse (bounded: extra batches are freed).
#[derive(Debug, Clone, Default)]
pub struct Pool(Arc<Mutex<Vec<Batch>>>);

/// Most batches a pool keeps.
const POOL_CAP: usize = 64;

impl Pool {
    /// An empty batch, recycled when one is available.
    pub fn take(&self) -> Batch {
        self.0
            .lock()
            .ok()
            .and_then(|mut v| v.pop())
            .unwrap_or_default()
    }

    /// Returns a batch for reuse; its capacity is kept.
    pub fn give(&self, mut b: Batch) {
        b.clear();
        if let Ok(mut v) = self.0.lock()
            && v.len() < POOL_CAP
        {
            v.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_pack_and_recycle_without_losing_capacity() {
        let pool = Pool::default();
        let mut b = pool.take();
        let a: SocketAddr = "192.0.2.1:2055".parse().unwrap();
        b.push(a, 1, b"abc");
        b.push(a, 2, b"de");
        let got: Vec<_> = b.iter().map(|(_, t, p)| (t, p.to_vec())).collect();
        assert_eq!(got, vec![(1, b"abc".to_vec()), (2, b"de".to_vec())]);
        let cap = b.data.capacity();
        pool.give(b);
        let b = pool.take();
        assert!(b.is_empty());
        assert_eq!(b.data.capacity(), cap);
    }
}
