//! Flow keys: exporter, observation domain, VLAN, IP protocol and the
//! address/port pair, normalized so A→B and B→A records land on one key.
//!
//! In: a [`FlowRecord`] or its [`Compact`] form. Out: a compact [`FlowKey`] (60 bytes), which side of
//! the key the record's source is, and a stable 64-bit hash (the same in
//! every run, so `replay` is deterministic and `key` is a stable flow id).

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv6Addr};

use crate::record::{Compact, FlowRecord, Has};

/// An address in 16 bytes (IPv4 mapped into IPv6).
pub type Addr = [u8; 16];

pub fn ip(a: &Addr) -> IpAddr {
    let v6 = Ipv6Addr::from(*a);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// One conversation as the exporter sees it. Side `a` is the lower (address, port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub exporter: Addr,
    pub a_addr: Addr,
    pub b_addr: Addr,
    pub domain: u32,
    pub a_port: u16,
    pub b_port: u16,
    pub vlan: u16,
    pub proto: u8,
}

/// ICMP types whose message is a request (the sender is the client), and the
/// reply type that answers each, for IPv4 (RFC 792) and IPv6 (RFC 4443).
pub fn icmp_request(proto: u8, icmp_type: u8) -> bool {
    match proto {
        1 => matches!(icmp_type, 8 | 13 | 15 | 17),
        58 => matches!(icmp_type, 128 | 133 | 135),
        _ => false,
    }
}

/// Ports of a record as used in the key. ICMP keeps no ports: exporters put
/// type/code in one port field or another (softflowd in the destination port,
/// v9 exporters in `icmp_type`), and request and reply differ in type.
fn ports(r: &Compact) -> (u16, u16) {
    match r.protocol {
        1 | 58 => (0, 0),
        _ => (r.src_port, r.dst_port),
    }
}

impl FlowKey {
    /// The key of a record and whether the record's source is side `a`.
    /// `None` when the record has no addresses (options data, NSEL without a tuple).
    pub fn of(r: &FlowRecord) -> Option<(FlowKey, bool)> {
        Self::of_compact(&Compact::of(r))
    }

    /// [`FlowKey::of`] for the compact form of a record.
    #[inline]
    pub fn of_compact(r: &Compact) -> Option<(FlowKey, bool)> {
        if !r.has.any(Has::SRC) || !r.has.any(Has::DST) {
            return None;
        }
        let (src, dst) = (r.src, r.dst);
        let (sp, dp) = ports(r);
        // as integers: the order of the big-endian bytes, without a memcmp
        let src_is_a = (u128::from_be_bytes(src), sp) <= (u128::from_be_bytes(dst), dp);
        let ((a_addr, a_port), (b_addr, b_port)) = if src_is_a {
            ((src, sp), (dst, dp))
        } else {
            ((dst, dp), (src, sp))
        };
        Some((
            FlowKey {
                exporter: r.exporter,
                a_addr,
                b_addr,
                domain: r.domain,
                a_port,
                b_port,
                vlan: r.vlan,
                proto: r.protocol,
            },
            src_is_a,
        ))
    }

    /// Stable hash: the same for the same key in every run and on every machine.
    pub fn stable_hash(&self) -> u64 {
        let mut h = rustc_hash::FxHasher::default();
        self.hash(&mut h);
        h.finish()
    }
}

/// The rotation `FxHasher::finish` applies to its state (rustc-hash 2 on
/// 64-bit targets; `tests` fail if it is not).
const FX_ROTATE: u32 = 26;

/// [`FlowKey::stable_hash`] of many keys, computed with a short dependency
/// chain. FxHasher folds each input `x` into its state `h` as `(h + x)·K`
/// (mod 2⁶⁴) and finishes with a rotation, so after the key's eleven
/// inputs the state is `Σ xᵢ·K¹¹⁻ⁱ`: the products are independent of each
/// other (one multiply deep instead of eleven in a chain), the three length
/// prefixes of the addresses add a constant, and the exporter's part is the
/// same for the records of a datagram. Same values as `stable_hash`
/// (`tests`); `K` is read from the hasher itself.
#[derive(Debug, Clone)]
pub struct KeyHasher {
    /// K⁰ … K¹¹.
    pow: [u64; 12],
    exporter: Addr,
    /// The exporter's terms and the length prefixes.
    prefix: u64,
}

impl Default for KeyHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyHasher {
    pub fn new() -> Self {
        // one input of 1 into the empty state leaves K
        let mut h = rustc_hash::FxHasher::default();
        h.write_usize(1);
        let k = h.finish().rotate_right(FX_ROTATE);
        let mut pow = [1u64; 12];
        for j in 1..pow.len() {
            pow[j] = pow[j - 1].wrapping_mul(k);
        }
        let exporter = [0; 16];
        KeyHasher {
            pow,
            exporter,
            prefix: Self::prefix_of(&pow, &exporter),
        }
    }

    /// `hash_bytes(x)·K`: the state after writing the 16 bytes alone.
    #[inline]
    fn bytes_term(x: &Addr) -> u64 {
        let mut h = rustc_hash::FxHasher::default();
        h.write(x);
        h.finish().rotate_right(FX_ROTATE)
    }

    fn prefix_of(pow: &[u64; 12], exporter: &Addr) -> u64 {
        // inputs 0-1: the exporter's length and bytes; 2 and 4: the
        // addresses' lengths
        let len = 16u64;
        len.wrapping_mul(pow[11])
            .wrapping_add(Self::bytes_term(exporter).wrapping_mul(pow[9]))
            .wrapping_add(len.wrapping_mul(pow[9]))
            .wrapping_add(len.wrapping_mul(pow[7]))
    }

    /// The key's stable hash.
    #[inline]
    pub fn hash(&mut self, k: &FlowKey) -> u64 {
        if k.exporter != self.exporter {
            self.exporter = k.exporter;
            self.prefix = Self::prefix_of(&self.pow, &k.exporter);
        }
        let p = &self.pow;
        // inputs 3 and 5: the addresses' bytes; 6 to 10: domain, ports, VLAN, protocol
        let h = self
            .prefix
            .wrapping_add(Self::bytes_term(&k.a_addr).wrapping_mul(p[7]))
            .wrapping_add(
                Self::bytes_term(&k.b_addr)
                    .wrapping_add(u64::from(k.domain))
                    .wrapping_mul(p[5]),
            )
            .wrapping_add(u64::from(k.a_port).wrapping_mul(p[4]))
            .wrapping_add(u64::from(k.b_port).wrapping_mul(p[3]))
            .wrapping_add(u64::from(k.vlan).wrapping_mul(p[2]))
            .wrapping_add(u64::from(k.proto).wrapping_mul(p[1]));
        h.rotate_left(FX_ROTATE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{FlowRecord, RecordKind};

    fn rec(src: &str, sp: u16, dst: &str, dp: u16) -> FlowRecord {
        let mut r = FlowRecord::new(RecordKind::Flow, "192.0.2.1".parse().unwrap(), 9);
        r.src_addr = Some(src.parse().unwrap());
        r.dst_addr = Some(dst.parse().unwrap());
        r.src_port = Some(sp);
        r.dst_port = Some(dp);
        r.protocol = Some(6);
        r
    }

    #[test]
    fn both_directions_share_a_key() {
        let (k1, a1) = FlowKey::of(&rec("10.0.0.1", 40000, "10.0.0.2", 443)).unwrap();
        let (k2, a2) = FlowKey::of(&rec("10.0.0.2", 443, "10.0.0.1", 40000)).unwrap();
        assert_eq!(k1, k2);
        assert_ne!(a1, a2);
        assert_eq!(k1.stable_hash(), k2.stable_hash());
    }

    #[test]
    fn exporter_domain_vlan_and_proto_separate_flows() {
        let base = rec("10.0.0.1", 1, "10.0.0.2", 2);
        let (k, _) = FlowKey::of(&base).unwrap();
        let mut other = base.clone();
        other.exporter = "192.0.2.2".parse().unwrap();
        assert_ne!(FlowKey::of(&other).unwrap().0, k);
        let mut other = base.clone();
        other.vlan = Some(7);
        assert_ne!(FlowKey::of(&other).unwrap().0, k);
        let mut other = base.clone();
        other.protocol = Some(17);
        assert_ne!(FlowKey::of(&other).unwrap().0, k);
        let mut other = base;
        other.observation_domain = 3;
        assert_ne!(FlowKey::of(&other).unwrap().0, k);
    }

    #[test]
    fn addresses_round_trip_and_key_is_compact() {
        for s in ["10.1.2.3", "2001:db8::1", "::"] {
            let i: IpAddr = s.parse().unwrap();
            assert_eq!(ip(&crate::record::addr16(i)), i);
        }
        assert!(std::mem::size_of::<FlowKey>() <= 64);
    }

    /// The polynomial form gives `stable_hash` exactly: random keys (IPv4
    /// and IPv6, every field), exporters changing in runs and alternately.
    #[test]
    fn key_hasher_gives_stable_hash() {
        let mut next = crate::flow::tests::xorshift(0x2545_f491_4f6c_dd1du64);
        let mut kh = KeyHasher::new();
        let exporters: Vec<Addr> = (0..3)
            .map(|_| (u128::from(next()) << 64 | u128::from(next())).to_be_bytes())
            .collect();
        for i in 0..50_000 {
            let addr = |v: u64, w: u64| -> Addr {
                if v.is_multiple_of(2) {
                    crate::record::addr16(IpAddr::from(std::net::Ipv4Addr::from(w as u32)))
                } else {
                    (u128::from(v) << 64 | u128::from(w)).to_be_bytes()
                }
            };
            let k = FlowKey {
                exporter: exporters[if i % 7 == 0 { i % 3 } else { (i / 100) % 3 }],
                a_addr: addr(next(), next()),
                b_addr: addr(next(), next()),
                domain: next() as u32,
                a_port: next() as u16,
                b_port: next() as u16,
                vlan: next() as u16,
                proto: next() as u8,
            };
            assert_eq!(kh.hash(&k), k.stable_hash(), "{k:?}");
        }
    }

    #[test]
    fn icmp_ignores_ports() {
        let mut a = rec("10.0.0.1", 0, "10.0.0.2", 2048);
        a.protocol = Some(1);
        let mut b = rec("10.0.0.2", 0, "10.0.0.1", 0);
        b.protocol = Some(1);
        assert_eq!(FlowKey::of(&a).unwrap().0, FlowKey::of(&b).unwrap().0);
    }
}
