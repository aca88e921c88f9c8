//! Facts about ntopng 4.x that flow scripts depend on: its flow statuses
//! (key, id of `flow_keys`, severity, alert type, title), its alert types
//! (key, id of `alert_keys`, the names of what `create(...)` takes), and nDPI
//! protocol ids and categories for the application names flowhook derives.

use mlua::{Lua, Table};

/// A built-in flow status of ntopng 4.2: `status_types` key (ntopng's file
/// name), `flow_keys` id, default severity, alert type, i18n title.
pub const STATUSES: [(&str, u8, &str, &str, &str); 36] = [
    (
        "status_normal",
        0,
        "info",
        "alert_none",
        "flow_details.normal",
    ),
    (
        "status_blacklisted",
        1,
        "error",
        "alert_flow_blacklisted",
        "flow_details.blacklisted_flow",
    ),
    (
        "status_blacklisted_country",
        2,
        "error",
        "alert_blacklisted_country",
        "alerts_dashboard.blacklisted_country",
    ),
    (
        "status_blocked",
        3,
        "info",
        "alert_flow_blocked",
        "flow_details.flow_blocked_by_bridge",
    ),
    (
        "status_data_exfiltration",
        4,
        "error",
        "alert_flow_misbehaviour",
        "flow_details.data_exfiltration",
    ),
    (
        "status_device_protocol_not_allowed",
        5,
        "error",
        "alert_device_protocol_not_allowed",
        "flow_details.suspicious_device_protocol",
    ),
    (
        "status_dns_data_exfiltration",
        6,
        "error",
        "alert_flow_misbehaviour",
        "flow_details.dns_data_exfiltration",
    ),
    (
        "status_dns_invalid_query",
        7,
        "error",
        "alert_suspicious_activity",
        "flow_details.dns_invalid_query",
    ),
    (
        "status_elephant_local_to_remote",
        8,
        "error",
        "alert_flow_misbehaviour",
        "flow_details.elephant_flow_l2r",
    ),
    (
        "status_elephant_remote_to_local",
        9,
        "error",
        "alert_flow_misbehaviour",
        "flow_details.elephant_flow_r2l",
    ),
    (
        "status_external_alert",
        10,
        "error",
        "external_alert",
        "alerts_dashboard.external_alert",
    ),
    (
        "status_longlived",
        11,
        "error",
        "alert_flow_misbehaviour",
        "flow_details.longlived_flow",
    ),
    (
        "status_low_goodput",
        12,
        "info",
        "alert_connection_issues",
        "flow_details.low_goodput",
    ),
    (
        "status_malicious_signature",
        13,
        "warning",
        "alert_malicious_signature",
        "alerts_dashboard.malicious_signature_detected",
    ),
    (
        "status_not_purged",
        14,
        "error",
        "alert_internals",
        "flow_details.not_purged",
    ),
    (
        "status_potentially_dangerous",
        15,
        "error",
        "alert_potentially_dangerous_protocol",
        "flow_details.potentially_dangerous_protocol",
    ),
    (
        "status_remote_to_remote",
        16,
        "notice",
        "alert_remote_to_remote",
        "flow_details.remote_to_remote",
    ),
    (
        "status_suspicious_tcp_probing",
        17,
        "info",
        "alert_suspicious_activity",
        "flow_details.suspicious_tcp_probing",
    ),
    (
        "status_suspicious_tcp_syn_probing",
        18,
        "info",
        "alert_suspicious_activity",
        "flow_details.suspicious_tcp_syn_probing",
    ),
    (
        "status_tcp_connection_issues",
        19,
        "notice",
        "alert_connection_issues",
        "flow_details.tcp_connection_issues",
    ),
    (
        "status_tcp_connection_refused",
        20,
        "info",
        "alert_suspicious_activity",
        "flow_details.tcp_connection_refused",
    ),
    (
        "status_tcp_severe_connection_issues",
        21,
        "warning",
        "alert_connection_issues",
        "flow_details.tcp_severe_connection_issues",
    ),
    (
        "status_tls_certificate_expired",
        22,
        "error",
        "alert_potentially_dangerous_protocol",
        "flow_details.tls_certificate_expired",
    ),
    (
        "status_tls_certificate_mismatch",
        23,
        "error",
        "alert_potentially_dangerous_protocol",
        "flow_details.tls_certificate_mismatch",
    ),
    (
        "status_tls_old_protocol_version",
        24,
        "error",
        "alert_potentially_dangerous_protocol",
        "flow_details.tls_old_protocol_version",
    ),
    (
        "status_tls_unsafe_ciphers",
        25,
        "error",
        "alert_potentially_dangerous_protocol",
        "flow_details.tls_unsafe_ciphers",
    ),
    (
        "status_udp_unidirectional",
        26,
        "notice",
        "alert_udp_unidirectional",
        "flow_details.udp_unidirectional",
    ),
    (
        "status_web_mining_detected",
        27,
        "error",
        "alert_web_mining",
        "flow_details.web_mining_detected",
    ),
    (
        "status_tls_certificate_selfsigned",
        28,
        "error",
        "alert_potentially_dangerous_protocol",
        "flow_details.tls_certificate_selfsigned",
    ),
    (
        "status_suspicious_file_transfer",
        29,
        "error",
        "alert_suspicious_file_transfer",
        "alerts_dashboard.suspicious_file_transfer",
    ),
    (
        "status_known_proto_on_non_std_port",
        30,
        "info",
        "alert_known_proto_on_non_std_port",
        "alerts_dashboard.known_proto_on_non_std_port",
    ),
    (
        "status_flow_risk",
        31,
        "warning",
        "alert_flow_risk",
        "alerts_dashboard.flow_risk",
    ),
    (
        "status_unexpected_dhcp",
        32,
        "error",
        "alert_unexpected_dhcp",
        "unexpected_dhcp.unexpected_dhcp_title",
    ),
    (
        "status_unexpected_dns",
        33,
        "error",
        "alert_unexpected_dns",
        "unexpected_dns.unexpected_dns_title",
    ),
    (
        "status_unexpected_smtp",
        34,
        "error",
        "alert_unexpected_smtp",
        "unexpected_smtp.unexpected_smtp_title",
    ),
    (
        "status_unexpected_ntp",
        35,
        "error",
        "alert_unexpected_ntp",
        "unexpected_ntp.unexpected_ntp_title",
    ),
];

/// `flow_keys.ntopng` names that differ from the `status_types` key.
pub const FLOW_KEY_NAMES: [(&str, &str); 4] = [
    ("status_unexpected_dhcp", "status_unexpected_dhcp_server"),
    ("status_unexpected_dns", "status_unexpected_dns_server"),
    ("status_unexpected_smtp", "status_unexpected_smtp_server"),
    ("status_unexpected_ntp", "status_unexpected_ntp_server"),
];

/// A built-in alert type of ntopng 4.2: `alert_types` key, `alert_keys` id,
/// and what `create(severity, …)` takes after the severity: `""` nothing,
/// `"*"` one table that becomes the parameters, else the parameter names.
pub const ALERTS: [(&str, u16, &str); 69] = [
    (
        "alert_blacklisted_country",
        1,
        "cli_country,srv_country,cli_blacklisted,srv_blacklisted",
    ),
    ("alert_broadcast_domain_too_large", 2, ""),
    ("alert_device_connection", 3, ""),
    ("alert_device_disconnection", 4, ""),
    (
        "alert_device_protocol_not_allowed",
        5,
        "cli.devtype,srv.devtype,devproto_forbidden_peer,devproto_forbidden_id",
    ),
    ("alert_dropped_alerts", 6, ""),
    ("external_alert", 7, "*"),
    ("alert_flow_blacklisted", 8, "*"),
    ("alert_flow_blocked", 9, ""),
    (
        "alert_flow_misbehaviour",
        10,
        "elephant.l2r_threshold,elephant.r2l_threshold",
    ),
    ("alert_flows_flood", 11, ""),
    ("alert_ghost_network", 12, ""),
    ("alert_host_pool_connection", 13, ""),
    ("alert_host_pool_disconnection", 14, ""),
    ("alert_influxdb_dropped_points", 15, ""),
    ("alert_influxdb_error", 16, ""),
    ("alert_influxdb_export_failure", 17, ""),
    ("alert_internals", 18, ""),
    ("alert_ip_outsite_dhcp_range", 19, ""),
    ("alert_list_download_failed", 20, ""),
    ("alert_login_failed", 21, ""),
    ("alert_mac_ip_association_change", 22, ""),
    ("alert_malicious_signature", 23, ""),
    ("alert_misbehaving_flows_ratio", 24, ""),
    ("alert_misconfigured_app", 25, ""),
    ("alert_new_device", 26, ""),
    ("alert_nfq_flushed", 27, ""),
    ("alert_none", 28, ""),
    ("alert_periodic_activity_not_executed", 29, ""),
    ("alert_am_threshold_cross", 30, ""),
    ("alert_port_duplexstatus_change", 31, ""),
    ("alert_port_errors", 32, ""),
    ("alert_port_load_threshold_exceeded", 33, ""),
    ("alert_port_mac_changed", 34, ""),
    ("alert_port_status_change", 35, ""),
    (
        "alert_potentially_dangerous_protocol",
        36,
        "tls_version,tls_info",
    ),
    ("alert_process_notification", 37, ""),
    ("alert_quota_exceeded", 38, ""),
    ("alert_remote_to_remote", 39, ""),
    ("alert_request_reply_ratio", 40, ""),
    ("alert_slow_periodic_activity", 41, ""),
    ("alert_slow_purge", 42, ""),
    ("alert_snmp_device_reset", 43, ""),
    ("alert_snmp_topology_changed", 44, ""),
    ("alert_suspicious_activity", 45, ""),
    ("alert_tcp_syn_flood", 46, ""),
    ("alert_tcp_syn_scan", 47, ""),
    ("alert_test_failed", 48, ""),
    ("alert_threshold_cross", 49, ""),
    ("alert_too_many_drops", 50, ""),
    ("alert_udp_unidirectional", 51, ""),
    ("alert_unresponsive_device", 52, ""),
    ("alert_user_activity", 53, ""),
    ("alert_user_script_calls_drops", 54, ""),
    ("alert_web_mining", 55, ""),
    (
        "alert_connection_issues",
        56,
        "tcp_stats,cli2srv_pkts,srv2cli_pkts,is_severe,client_issues,server_issues",
    ),
    ("alert_suspicious_file_transfer", 57, "*"),
    ("alert_known_proto_on_non_std_port", 58, "*"),
    ("alert_host_log", 59, ""),
    ("alert_attack_mitigation_via_snmp", 60, ""),
    ("alert_iec104_error", 61, ""),
    ("alert_flow_risk", 62, "risk_id"),
    ("alert_unexpected_dns", 63, "server_ip"),
    ("alert_unexpected_smtp", 64, "server_ip"),
    ("alert_unexpected_dhcp", 65, "server_ip"),
    ("alert_unexpected_ntp", 66, "server_ip"),
    ("alert_too_many_retransmissions", 67, ""),
    ("alert_lateral_movement", 68, ""),
    ("alert_list_download_succeeded", 69, ""),
];

/// nDPI (3.x, as in ntopng 4.x) protocol id and category of the application
/// names flowhook derives (`flow::classify`).
const NDPI: [(&str, u16, &str); 56] = [
    ("Unknown", 0, "Unspecified"),
    ("FTP_CONTROL", 1, "Download-FileTransfer-FileSharing"),
    ("POP3", 2, "Email"),
    ("SMTP", 3, "Email"),
    ("IMAP", 4, "Email"),
    ("DNS", 5, "Network"),
    ("HTTP", 7, "Web"),
    ("MDNS", 8, "Network"),
    ("NTP", 9, "System"),
    ("NetBIOS", 10, "System"),
    ("SSDP", 12, "System"),
    ("BGP", 13, "Network"),
    ("SNMP", 14, "Network"),
    ("Syslog", 17, "System"),
    ("DHCP", 18, "Network"),
    ("PostgreSQL", 19, "Database"),
    ("MySQL", 20, "Database"),
    ("POPS", 23, "Email"),
    ("SMTPS", 29, "Email"),
    ("SMBv23", 41, "System"),
    ("IMAPS", 51, "Email"),
    ("Jabber", 67, "Chat"),
    ("Telnet", 77, "RemoteAccess"),
    ("IPsec", 79, "VPN"),
    ("GRE", 80, "Network"),
    ("ICMP", 81, "Network"),
    ("SCTP", 84, "Network"),
    ("OSPF", 85, "Network"),
    ("RDP", 88, "RemoteAccess"),
    ("TLS", 91, "Web"),
    ("SSH", 92, "RemoteAccess"),
    ("TFTP", 96, "DataTransfer"),
    ("SIP", 100, "VoIP"),
    ("ICMPV6", 102, "Network"),
    ("ICMPv6", 102, "Network"),
    ("DHCPV6", 103, "Network"),
    ("LDAP", 112, "System"),
    ("MsSQL-TDS", 114, "Database"),
    ("NetFlow", 128, "Network"),
    ("sFlow", 129, "Network"),
    ("HTTP_Proxy", 131, "Web"),
    ("RADIUS", 146, "Network"),
    ("OpenVPN", 159, "VPN"),
    ("Redis", 182, "Database"),
    ("QUIC", 188, "Web"),
    ("AMQP", 192, "RPC"),
    ("DoH_DoT", 196, "Network"),
    ("Memcached", 198, "Network"),
    ("MongoDB", 199, "Database"),
    ("WireGuard", 206, "VPN"),
    ("MQTT", 222, "RPC"),
    ("IPFIX", 128, "Network"),
    ("Kafka", 0, "RPC"),
    ("LDAPS", 112, "System"),
    ("TCP", 0, "Unspecified"),
    ("UDP", 0, "Unspecified"),
];

/// nDPI category ids by name.
const CATEGORIES: [(&str, u16); 21] = [
    ("Unspecified", 0),
    ("Media", 1),
    ("VPN", 2),
    ("Email", 3),
    ("DataTransfer", 4),
    ("Web", 5),
    ("SocialNetwork", 6),
    ("Download-FileTransfer-FileSharing", 7),
    ("Game", 8),
    ("Chat", 9),
    ("VoIP", 10),
    ("Database", 11),
    ("RemoteAccess", 12),
    ("Cloud", 13),
    ("Network", 14),
    ("Collaborative", 15),
    ("RPC", 16),
    ("Streaming", 17),
    ("System", 18),
    ("SoftwareUpdate", 19),
    ("Mining", 99),
];

/// The table entry of an application name: exact spelling first (what
/// flowhook derives), then ignoring case.
fn ndpi_entry(name: &str) -> Option<&'static (&'static str, u16, &'static str)> {
    NDPI.iter()
        .find(|(n, _, _)| *n == name)
        .or_else(|| NDPI.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(name)))
}

/// nDPI id of an application name (`0` when unknown).
pub fn ndpi_proto_id(name: &str) -> u16 {
    ndpi_entry(name).map_or(0, |(_, id, _)| *id)
}

/// nDPI category (name, id) of an application name.
pub fn ndpi_category(name: &str) -> (&'static str, u16) {
    let cat = ndpi_entry(name).map_or("Unspecified", |(_, _, c)| *c);
    let id = CATEGORIES
        .iter()
        .find(|(n, _)| *n == cat)
        .map_or(0, |(_, id)| *id);
    (cat, id)
}

pub fn statuses(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    for (i, (key, id, sev, alert, title)) in STATUSES.iter().enumerate() {
        let e = lua.create_table()?;
        e.set("key", *key)?;
        e.set("id", *id)?;
        e.set("severity", *sev)?;
        e.set("alert_type", *alert)?;
        e.set("title", *title)?;
        let flow_key = FLOW_KEY_NAMES
            .iter()
            .find(|(k, _)| k == key)
            .map_or(*key, |(_, n)| *n);
        e.set("flow_key", flow_key)?;
        t.raw_set(i + 1, e)?;
    }
    Ok(t)
}

pub fn alerts(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    for (i, (key, id, params)) in ALERTS.iter().enumerate() {
        let e = lua.create_table()?;
        e.set("key", *key)?;
        e.set("id", *id)?;
        e.set("params", *params)?;
        t.raw_set(i + 1, e)?;
    }
    Ok(t)
}

/// `{ protos = {name = id}, names = {id = name}, categories = {name = id}, proto_category = {name = category} }`.
pub fn ndpi(lua: &Lua) -> mlua::Result<Table> {
    let protos = lua.create_table()?;
    let names = lua.create_table()?;
    let proto_category = lua.create_table()?;
    for (n, id, cat) in NDPI {
        protos.set(n, id)?;
        proto_category.set(n, cat)?;
        if names.get::<Option<String>>(id)?.is_none() {
            names.set(id, n)?;
        }
    }
    let categories = lua.create_table()?;
    for (n, id) in CATEGORIES {
        categories.set(n, id)?;
    }
    let t = lua.create_table()?;
    t.set("protos", protos)?;
    t.set("names", names)?;
    t.set("categories", categories)?;
    t.set("proto_category", proto_category)?;
    Ok(t)
}
