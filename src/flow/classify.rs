//! Built-in layer-7 classification by port, used when the exporter sends no
//! application id. One table, in one place; names follow nDPI/ntopng
//! (`proto.l7`). Documented in `docs/lifecycle.md`.
//!
//! In: IP protocol and the server port. Out: an application name, or `Unknown`.

/// (IP protocol, server port, name). 0 as protocol: TCP and UDP.
const PORTS: &[(u8, u16, &str)] = &[
    (17, 53, "DNS"),
    (6, 53, "DNS"),
    (17, 5353, "MDNS"),
    (6, 853, "DoH_DoT"),
    (6, 80, "HTTP"),
    (6, 8080, "HTTP_Proxy"),
    (6, 3128, "HTTP_Proxy"),
    (6, 443, "TLS"),
    (6, 8443, "TLS"),
    (17, 443, "QUIC"),
    (6, 22, "SSH"),
    (6, 23, "Telnet"),
    (6, 21, "FTP_CONTROL"),
    (17, 123, "NTP"),
    (6, 25, "SMTP"),
    (6, 465, "SMTPS"),
    (6, 587, "SMTP"),
    (6, 110, "POP3"),
    (6, 995, "POPS"),
    (6, 143, "IMAP"),
    (6, 993, "IMAPS"),
    (17, 161, "SNMP"),
    (17, 162, "SNMP"),
    (6, 389, "LDAP"),
    (6, 636, "LDAPS"),
    (6, 445, "SMBv23"),
    (6, 139, "NetBIOS"),
    (17, 137, "NetBIOS"),
    (17, 138, "NetBIOS"),
    (6, 3389, "RDP"),
    (6, 3306, "MySQL"),
    (6, 5432, "PostgreSQL"),
    (6, 1433, "MsSQL-TDS"),
    (6, 6379, "Redis"),
    (6, 27017, "MongoDB"),
    (6, 11211, "Memcached"),
    (17, 11211, "Memcached"),
    (6, 9092, "Kafka"),
    (6, 179, "BGP"),
    (17, 67, "DHCP"),
    (17, 68, "DHCP"),
    (17, 547, "DHCPV6"),
    (17, 514, "Syslog"),
    (17, 1812, "RADIUS"),
    (17, 1813, "RADIUS"),
    (17, 500, "IPsec"),
    (17, 4500, "IPsec"),
    (17, 1194, "OpenVPN"),
    (17, 51820, "WireGuard"),
    (17, 5060, "SIP"),
    (6, 5060, "SIP"),
    (17, 1900, "SSDP"),
    (17, 2055, "NetFlow"),
    (17, 4739, "IPFIX"),
    (17, 6343, "sFlow"),
    (17, 69, "TFTP"),
    (6, 5222, "Jabber"),
    (6, 1883, "MQTT"),
    (6, 5672, "AMQP"),
];

/// The application of a flow on `proto` whose server uses `server_port`.
pub fn by_port(proto: u8, server_port: u16) -> &'static str {
    match proto {
        1 => return "ICMP",
        58 => return "ICMPV6",
        47 => return "GRE",
        50 => return "IPsec",
        89 => return "OSPF",
        _ => {}
    }
    PORTS
        .iter()
        .find(|(p, port, _)| *p == proto && *port == server_port)
        .map(|(_, _, n)| *n)
        .unwrap_or("Unknown")
}

/// Every name [`by_port`] can answer (to intern them once).
pub fn names() -> impl Iterator<Item = &'static str> {
    ["ICMP", "ICMPV6", "GRE", "IPsec", "OSPF", "Unknown"]
        .into_iter()
        .chain(PORTS.iter().map(|(_, _, n)| *n))
}

/// Service ports of the table as bitsets, TCP then UDP (built once).
fn service_bits() -> &'static [[u64; 1024]; 2] {
    static BITS: std::sync::OnceLock<Box<[[u64; 1024]; 2]>> = std::sync::OnceLock::new();
    BITS.get_or_init(|| {
        let mut b = Box::new([[0u64; 1024]; 2]);
        for (p, port, _) in PORTS {
            let i = match p {
                6 => 0,
                17 => 1,
                _ => continue,
            };
            b[i][usize::from(*port) / 64] |= 1 << (port % 64);
        }
        b
    })
}

/// Whether `port` is one a server listens on (in the table, or below 1024).
pub fn is_service_port(proto: u8, port: u16) -> bool {
    if port == 0 {
        return false;
    }
    if port < 1024 {
        return true;
    }
    let i = match proto {
        6 => 0,
        17 => 1,
        _ => return false,
    };
    service_bits()[i][usize::from(port) / 64] & (1 << (port % 64)) != 0
}

/// ntopng's names for the transport protocol (`proto.l4`).
pub fn l4_name(proto: u8) -> Option<&'static str> {
    Some(match proto {
        6 => "TCP",
        17 => "UDP",
        1 => "ICMP",
        58 => "ICMPv6",
        47 => "GRE",
        50 => "ESP",
        132 => "SCTP",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known() {
        assert_eq!(by_port(17, 53), "DNS");
        assert_eq!(by_port(6, 443), "TLS");
        assert_eq!(by_port(6, 22), "SSH");
        assert_eq!(by_port(17, 123), "NTP");
        assert_eq!(by_port(6, 25), "SMTP");
        assert_eq!(by_port(6, 80), "HTTP");
        assert_eq!(by_port(6, 4444), "Unknown");
        assert_eq!(by_port(1, 0), "ICMP");
        assert!(is_service_port(6, 3306));
        assert!(!is_service_port(6, 40000));
        for (p, port, _) in PORTS {
            assert!(is_service_port(*p, *port), "{p}/{port}");
        }
        assert!(!is_service_port(17, 3306));
        assert!(!is_service_port(47, 8080));
        assert_eq!(l4_name(58), Some("ICMPv6"));
    }
}
