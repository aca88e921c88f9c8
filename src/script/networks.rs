//! Address sets for scripts: `networks{ "198.51.100.66", "203.0.113.0/24",
//! "2001:db8::/32" }` makes one from single addresses and networks (IPv4
//! and IPv6), `set:match(address)` and `flow.matchNetworks(set)` find the
//! entry holding an address: the most specific one (the longest prefix; a
//! single address is a /32 or /128). Matching a flow reads its two
//! addresses as they are, without making their text, so a blocklist costs
//! a call per flow, not a string and a loop per side.
//!
//! In: a list of entries (a bad one is an error naming it). Out: a
//! [`NetworkSet`] userdata and lookups by address.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use mlua::{MetaMethod, UserData, UserDataMethods};

/// One length's networks: network address (IPv4 mapped into IPv6) → entry.
type Level = HashMap<u128, u32, rustc_hash::FxBuildHasher>;

/// A set of addresses and networks, most specific match first.
#[derive(Debug, Default)]
pub struct NetworkSet {
    /// Prefix lengths (of the 128-bit form), longest first, with their networks.
    levels: Vec<(u8, Level)>,
    /// The entries as written (what a match returns).
    entries: Vec<String>,
}

/// `a` in 128 bits (IPv4 mapped into IPv6).
fn bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn mask(a: u128, len: u8) -> u128 {
    match len {
        0 => 0,
        l => a & (u128::MAX << (128 - u32::from(l))),
    }
}

impl NetworkSet {
    /// A set of `entries`: addresses (`192.0.2.1`, `2001:db8::1`) or
    /// networks in CIDR notation (`192.0.2.0/24`, `2001:db8::/32`).
    pub fn new<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut set = NetworkSet::default();
        for e in entries {
            let text = e.as_ref().trim();
            let (addr, len) = if let Ok(a) = text.parse::<IpAddr>() {
                (a, if a.is_ipv4() { 32 } else { 128 })
            } else if let Ok(n) = text.parse::<IpNet>() {
                (n.addr(), n.prefix_len())
            } else {
                return Err(format!(
                    "networks: '{text}' is neither an address nor a network (a.b.c.d/len, x::/len)"
                ));
            };
            let len = if addr.is_ipv4() { len + 96 } else { len };
            let i = u32::try_from(set.entries.len()).map_err(|_| "networks: too many entries")?;
            let level = match set.levels.iter().position(|(l, _)| *l == len) {
                Some(p) => &mut set.levels[p].1,
                None => {
                    set.levels.push((len, Level::default()));
                    &mut set.levels.last_mut().expect("just pushed").1
                }
            };
            // the first of two equal entries is the one reported
            level.entry(mask(bits(addr), len)).or_insert(i);
            set.entries.push(text.to_string());
        }
        set.levels.sort_by_key(|l| std::cmp::Reverse(l.0));
        Ok(set)
    }

    /// The most specific entry holding `a`.
    pub fn lookup(&self, a: IpAddr) -> Option<&str> {
        let b = bits(a);
        self.levels
            .iter()
            .find_map(|(len, level)| level.get(&mask(b, *len)))
            .map(|i| self.entries[*i as usize].as_str())
    }

    /// Entries in the set.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl UserData for NetworkSet {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        // an address that is not one matches nothing
        m.add_method("match", |_, this, a: mlua::BorrowedStr| {
            Ok(a.parse::<IpAddr>()
                .ok()
                .and_then(|a| this.lookup(a))
                .map(str::to_string))
        });
        m.add_meta_method(MetaMethod::Len, |_, this, ()| Ok(this.len()));
        m.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            Ok(format!("networks ({} entries)", this.len()))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins_across_families() {
        let s = NetworkSet::new(&[
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.1.2.3",
            "2001:db8::/32",
            "2001:db8:1::/48",
            "0.0.0.0/0",
            " 192.0.2.7/32 ",
        ])
        .unwrap();
        assert_eq!(s.lookup(ip("10.1.2.3")), Some("10.1.2.3"));
        assert_eq!(s.lookup(ip("10.1.2.4")), Some("10.1.0.0/16"));
        assert_eq!(s.lookup(ip("10.200.0.1")), Some("10.0.0.0/8"));
        assert_eq!(s.lookup(ip("11.0.0.1")), Some("0.0.0.0/0"));
        assert_eq!(s.lookup(ip("192.0.2.7")), Some("192.0.2.7/32"));
        // an IPv4-mapped IPv6 address is its IPv4 address
        assert_eq!(s.lookup(ip("::ffff:10.1.2.3")), Some("10.1.2.3"));
        assert_eq!(s.lookup(ip("2001:db8:1::9")), Some("2001:db8:1::/48"));
        assert_eq!(s.lookup(ip("2001:db8:2::9")), Some("2001:db8::/32"));
        // 0.0.0.0/0 covers IPv4 only
        assert_eq!(s.lookup(ip("2001:db9::1")), None);
        assert_eq!(s.len(), 7);
    }

    #[test]
    fn host_bits_of_a_network_are_ignored_and_bad_entries_named() {
        let s = NetworkSet::new(&["203.0.113.77/24"]).unwrap();
        assert_eq!(s.lookup(ip("203.0.113.1")), Some("203.0.113.77/24"));
        assert_eq!(s.lookup(ip("203.0.114.1")), None);
        for bad in ["203.0.113.0/33", "example.org", "10.0.0", ""] {
            let e = NetworkSet::new(&[bad]).unwrap_err();
            assert!(e.contains(&format!("'{bad}'")), "{e}");
        }
        assert!(NetworkSet::new::<&str>(&[]).unwrap().is_empty());
    }
}
