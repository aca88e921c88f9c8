//! Flow statuses: named bits with a score each.
//!
//! Built-in statuses are set by the flow table from what the records show;
//! scripts register their own names with `flow.triggerStatus`. One
//! process-wide registry maps bits to names; a flow carries only a `u64`.
//!
//! | Bit | Name | Score | Set when |
//! |---|---|---|---|
//! | 0 | `tcp_connection_refused` | 10 | the client sent SYN and the server answered with RST and no SYN |
//! | 1 | `tcp_no_response` | 10 | at the end, the client sent SYN and nothing came back |
//! | 2 | `tcp_reset` | 5 | a RST ended an established connection |
//! | 3 | `zero_bytes` | 5 | at the end, no bytes were counted in either direction |
//! | 4 | `unidirectional` | 2 | at the end, only the client sent packets (not for refused/unanswered TCP) |

use std::sync::{Arc, Mutex, OnceLock};

/// Highest score a flow can reach (scores are clamped to 0..=MAX_SCORE).
pub const MAX_SCORE: u16 = 1000;

pub const TCP_CONNECTION_REFUSED: u8 = 0;
pub const TCP_NO_RESPONSE: u8 = 1;
pub const TCP_RESET: u8 = 2;
pub const ZERO_BYTES: u8 = 3;
pub const UNIDIRECTIONAL: u8 = 4;

const BUILTIN: [(&str, u16); 5] = [
    ("tcp_connection_refused", 10),
    ("tcp_no_response", 10),
    ("tcp_reset", 5),
    ("zero_bytes", 5),
    ("unidirectional", 2),
];

/// Names by bit, readable without a lock; each is set once, by
/// [`register`] under the lock that counts the bits in use.
static NAMES: [OnceLock<Arc<str>>; 64] = [const { OnceLock::new() }; 64];

/// Bits in use (the built-in ones set on first use).
fn used() -> &'static Mutex<usize> {
    static USED: OnceLock<Mutex<usize>> = OnceLock::new();
    USED.get_or_init(|| {
        for (i, (n, _)) in BUILTIN.iter().enumerate() {
            let _ = NAMES[i].set(Arc::from(*n));
        }
        Mutex::new(BUILTIN.len())
    })
}

/// The name of status bit `bit`, when registered (no lock taken).
pub fn name_of(bit: u8) -> Option<&'static str> {
    if bit < BUILTIN.len() as u8 {
        used(); // the built-in names are set on first use
    }
    NAMES.get(usize::from(bit))?.get().map(|n| &**n)
}

/// The bit of status `name`, registering it when new; `None` when all 64 bits are taken.
pub fn register(name: &str) -> Option<u8> {
    let mut n = used().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = NAMES[..*n]
        .iter()
        .position(|x| x.get().is_some_and(|x| &**x == name))
    {
        return Some(i as u8);
    }
    if *n >= 64 {
        return None;
    }
    let _ = NAMES[*n].set(Arc::from(name));
    *n += 1;
    Some((*n - 1) as u8)
}

/// Built-in score of a bit (script statuses carry their score at trigger time).
pub fn builtin_score(bit: u8) -> u16 {
    BUILTIN.get(bit as usize).map(|(_, s)| *s).unwrap_or(0)
}

/// A set of statuses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusSet(pub u64);

impl StatusSet {
    pub fn set(&mut self, bit: u8) -> bool {
        let before = self.0;
        self.0 |= 1u64 << (bit & 63);
        before != self.0
    }

    pub fn has(&self, bit: u8) -> bool {
        self.0 & (1u64 << (bit & 63)) != 0
    }

    /// Clears `bit`; returns whether it was set.
    pub fn clear(&mut self, bit: u8) -> bool {
        let before = self.0;
        self.0 &= !(1u64 << (bit & 63));
        before != self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// Names of the set bits, lowest bit first.
    pub fn names(&self) -> Vec<Arc<str>> {
        used(); // the built-in names are set on first use (no lock taken after)
        let bits = self.0;
        (0..64usize)
            .filter(|b| bits & (1u64 << b) != 0)
            .filter_map(|b| NAMES[b].get().cloned())
            .collect()
    }

    /// Names of the set bits, lowest bit first, without allocating or locking.
    pub fn iter_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        // the set bits only, lowest first
        let mut bits = self.0;
        std::iter::from_fn(move || {
            while bits != 0 {
                let b = bits.trailing_zeros() as u8;
                bits &= bits - 1;
                if let Some(n) = name_of(b) {
                    return Some(n);
                }
            }
            None
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_and_registered_names() {
        let mut s = StatusSet::default();
        assert!(s.set(TCP_CONNECTION_REFUSED));
        assert!(!s.set(TCP_CONNECTION_REFUSED));
        let b = register("test_custom_status").unwrap();
        assert_eq!(register("test_custom_status"), Some(b));
        s.set(b);
        let names: Vec<String> = s.names().iter().map(|n| n.to_string()).collect();
        assert_eq!(
            names,
            vec![
                "tcp_connection_refused".to_string(),
                "test_custom_status".to_string()
            ]
        );
        assert_eq!(builtin_score(TCP_CONNECTION_REFUSED), 10);
    }
}
