//! Per-exporter-stream state beside the parser's templates: sequence tracking,
//! the sampling interval and system init time learnt from options data.
//!
//! In: a [`StreamKey`] per datagram. Out: its [`StreamState`], created on
//! first use. Bounded: at capacity the least recently used eighth is evicted
//! at once (amortized O(log n) per insert).

use rustc_hash::FxHashMap;
use std::net::IpAddr;

use super::compiled::Plans;
use super::sequence::SeqState;
use super::varlen::VarTemplates;

/// One export stream: an exporter address, an export version and an
/// observation domain (IPFIX) / source id (v9) / engine (v5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub exporter: IpAddr,
    pub version: u16,
    pub domain: u32,
}

/// What flowhook remembers about one stream.
#[derive(Debug, Clone, Default)]
pub struct StreamState {
    pub seq: SeqState,
    /// Sampling rates the stream announced (by sampler and selector id).
    pub sampling: super::sampling::Announced,
    pub system_init_ms: Option<i64>,
    /// Templates with variable-length fields, decoded by flowhook itself.
    pub var: VarTemplates,
    /// Compiled data templates (the hot path, see `compiled`).
    pub plans: Plans,
    /// Template records as sent (what the state file keeps).
    pub wire: super::persist::WireTemplates,
    /// The decoder's crate epoch at which every plan was last found in the
    /// crate's cache (0: not yet).
    pub held_epoch: u64,
    last_used: u64,
}

/// Bounded stream table.
pub struct Streams {
    map: FxHashMap<StreamKey, StreamState>,
    cap: usize,
    tick: u64,
    /// Streams evicted since the owner last drained this (their parser state goes too).
    pub evicted: Vec<StreamKey>,
}

impl Streams {
    pub fn new(cap: usize) -> Self {
        Streams {
            map: FxHashMap::default(),
            cap: cap.max(1),
            tick: 0,
            evicted: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&StreamKey, &StreamState)> {
        self.map.iter()
    }

    /// The state for `key`; the flag says whether others were evicted to make room.
    pub fn get(&mut self, key: StreamKey) -> (&mut StreamState, bool) {
        self.tick += 1;
        let mut evicted = false;
        // (below capacity, the one lookup of `entry`)
        if self.map.len() >= self.cap && !self.map.contains_key(&key) {
            let mut ages: Vec<(u64, StreamKey)> =
                self.map.iter().map(|(k, v)| (v.last_used, *k)).collect();
            ages.sort_unstable_by_key(|(t, _)| *t);
            let n = (self.cap / 8).max(1);
            for (_, k) in ages.into_iter().take(n) {
                self.map.remove(&k);
                self.evicted.push(k);
            }
            evicted = true;
        }
        let st = self.map.entry(key).or_default();
        st.last_used = self.tick;
        (st, evicted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> StreamKey {
        StreamKey {
            exporter: IpAddr::from([10, 0, 0, i]),
            version: 9,
            domain: 0,
        }
    }

    #[test]
    fn bounded_and_lru() {
        let mut s = Streams::new(8);
        for i in 0..8 {
            s.get(key(i));
        }
        s.get(key(0)); // refresh 0
        let (_, evicted) = s.get(key(100));
        assert!(evicted);
        assert!(s.len() <= 8);
        assert!(s.map.contains_key(&key(0)));
        assert!(!s.map.contains_key(&key(1)));
    }
}
