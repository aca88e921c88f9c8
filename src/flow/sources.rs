//! The sources of a table's flows: each (exporter address, observation
//! domain) interned as a 4-byte id, so a flow entry keeps the id instead of
//! 20 bytes and the part of the entry a record's update touches fits two
//! cache lines.
//!
//! In: the exporter and domain of a record. Out: ids, and the exporter and
//! domain of an id. Bounded by the live flows: an id is held by the flows
//! that use it and freed once none does (at the next [`Sources::collect`],
//! never while a datagram is being taken, so an id read in the table's first
//! pass still names the same source in its third).

use super::key::Addr;

#[derive(Debug, Clone)]
struct Entry {
    exporter: Addr,
    domain: u32,
    /// Live flows holding the id.
    flows: u32,
}

/// Interned sources of one table.
#[derive(Debug, Default)]
pub struct Sources {
    entries: Vec<Entry>,
    ids: rustc_hash::FxHashMap<(Addr, u32), u32>,
    free: Vec<u32>,
    /// Ids whose last flow ended since the last `collect`.
    dead: Vec<u32>,
}

impl Sources {
    /// The id of a source some live flow uses.
    #[inline]
    pub fn get(&self, exporter: &Addr, domain: u32) -> Option<u32> {
        self.ids.get(&(*exporter, domain)).copied()
    }

    /// The id of a source, held by one more flow (interned if new).
    pub fn hold(&mut self, exporter: &Addr, domain: u32) -> u32 {
        let id = match self.ids.get(&(*exporter, domain)) {
            Some(id) => *id,
            None => {
                let e = Entry {
                    exporter: *exporter,
                    domain,
                    flows: 0,
                };
                let id = match self.free.pop() {
                    Some(id) => {
                        self.entries[id as usize] = e;
                        id
                    }
                    None => {
                        self.entries.push(e);
                        (self.entries.len() - 1) as u32
                    }
                };
                self.ids.insert((*exporter, domain), id);
                id
            }
        };
        self.entries[id as usize].flows += 1;
        id
    }

    /// One flow less holds `id`.
    pub fn release(&mut self, id: u32) {
        let e = &mut self.entries[id as usize];
        e.flows -= 1;
        if e.flows == 0 {
            self.dead.push(id);
        }
    }

    /// Frees the ids no flow has held since their last flow ended.
    pub fn collect(&mut self) {
        for id in std::mem::take(&mut self.dead) {
            let e = &self.entries[id as usize];
            // an id may be listed twice (held again, then released again):
            // only the first removal frees it
            if e.flows == 0 && self.ids.remove(&(e.exporter, e.domain)) == Some(id) {
                self.free.push(id);
            }
        }
    }

    /// Exporter address and observation domain of `id`.
    #[inline]
    pub fn source(&self, id: u32) -> (&Addr, u32) {
        let e = &self.entries[id as usize];
        (&e.exporter, e.domain)
    }

    /// Sources interned (held or waiting for `collect`).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> Addr {
        let mut a = [0u8; 16];
        a[15] = n;
        a
    }

    #[test]
    fn ids_are_held_freed_and_reused() {
        let mut s = Sources::default();
        let a = s.hold(&addr(1), 7);
        let b = s.hold(&addr(1), 8);
        assert_ne!(a, b);
        assert_eq!(s.hold(&addr(1), 7), a);
        assert_eq!(s.get(&addr(1), 7), Some(a));
        assert_eq!(s.source(b), (&addr(1), 8));
        s.release(a);
        s.release(a);
        // freed only at collect: until then the id still names its source
        assert_eq!(s.get(&addr(1), 7), Some(a));
        assert_eq!(s.hold(&addr(1), 7), a);
        s.release(a);
        s.collect();
        assert_eq!(s.get(&addr(1), 7), None);
        assert_eq!(s.len(), 1);
        // the freed id goes to the next new source
        assert_eq!(s.hold(&addr(2), 0), a);
        assert_eq!(s.source(a), (&addr(2), 0));
        // listed dead twice (released, held, released): freed once
        s.release(b);
        s.hold(&addr(1), 8);
        s.release(b);
        s.collect();
        assert_eq!(s.get(&addr(1), 8), None);
        let c = s.hold(&addr(3), 0);
        let d = s.hold(&addr(4), 0);
        assert_eq!(c, b);
        assert_ne!(d, b);
    }
}
