//! Local networks and labels from `[[networks]]`, and the address classes
//! that are never looked up in a database.
//!
//! In: the configured CIDRs. Out: the most specific label for an address, and
//! whether the address is non-routable (private, loopback, link-local,
//! multicast, documentation, shared, unspecified).

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

pub use crate::config::NetworkConfig;

/// A matched network's label.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkLabel {
    pub cidr: IpNet,
    pub name: Arc<str>,
    pub role: Option<Arc<str>>,
    pub site: Option<Arc<str>>,
    pub tags: Vec<Arc<str>>,
    pub local: bool,
    pub country: Option<Arc<str>>,
    pub asn: Option<u32>,
    pub as_name: Option<Arc<str>>,
}

/// Networks, most specific first.
#[derive(Debug, Clone, Default)]
pub struct Networks(Vec<Arc<NetworkLabel>>);

impl Networks {
    pub fn new(cfg: &[NetworkConfig]) -> Self {
        let s = |o: &Option<String>| o.as_deref().map(Arc::from);
        let mut v: Vec<Arc<NetworkLabel>> = cfg
            .iter()
            .map(|n| {
                Arc::new(NetworkLabel {
                    cidr: n.cidr.trunc(),
                    name: Arc::from(n.name.as_str()),
                    role: s(&n.role),
                    site: s(&n.site),
                    tags: n.tags.iter().map(|t| Arc::from(t.as_str())).collect(),
                    local: n.local,
                    country: s(&n.country),
                    asn: n.asn,
                    as_name: s(&n.as_name),
                })
            })
            .collect();
        v.sort_by_key(|n| std::cmp::Reverse(n.cidr.prefix_len()));
        Networks(v)
    }

    /// The most specific network containing `ip`.
    pub fn find(&self, ip: IpAddr) -> Option<&Arc<NetworkLabel>> {
        let ip = unmap(ip);
        self.0.iter().find(|n| n.cidr.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Addresses no public database can place: private (RFC 1918, ULA), loopback,
/// link-local, multicast, shared (RFC 6598), documentation, benchmarking,
/// reserved, broadcast and unspecified.
pub fn non_routable(ip: IpAddr) -> bool {
    match unmap(ip) {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_unspecified()
                || a.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_routable_classes() {
        for s in [
            "10.1.1.1",
            "192.168.0.1",
            "172.16.5.5",
            "127.0.0.1",
            "169.254.1.1",
            "224.0.0.1",
            "100.64.0.1",
            "192.0.2.1",
            "0.1.2.3",
            "::1",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(non_routable(s.parse().unwrap()), "{s}");
        }
        for s in ["8.8.8.8", "81.2.69.142", "2001:218::1", "175.16.199.1"] {
            assert!(!non_routable(s.parse().unwrap()), "{s}");
        }
    }

    #[test]
    fn most_specific_wins() {
        let cfg = |c: &str, n: &str| NetworkConfig {
            cidr: c.parse().unwrap(),
            name: n.into(),
            role: None,
            site: None,
            tags: vec![],
            local: true,
            country: None,
            asn: None,
            as_name: None,
        };
        let n = Networks::new(&[
            cfg("10.0.0.0/8", "corp"),
            cfg("10.1.0.0/16", "lab"),
            cfg("2001:db8::/32", "v6"),
        ]);
        assert_eq!(&*n.find("10.1.2.3".parse().unwrap()).unwrap().name, "lab");
        assert_eq!(&*n.find("10.2.2.3".parse().unwrap()).unwrap().name, "corp");
        assert_eq!(&*n.find("2001:db8::5".parse().unwrap()).unwrap().name, "v6");
        assert!(n.find("8.8.8.8".parse().unwrap()).is_none());
    }
}
