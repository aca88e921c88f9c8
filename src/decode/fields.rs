//! Field identity and naming: turns the decoder crate's field enums back into
//! `(enterprise number, element id)` pairs and gives every field a stable name.
//!
//! In: `netflow_parser` field enums (`V9Field`, `IPFixField`). Out: [`FieldId`]
//! for normalization and an `Arc<str>` name for the record's `fields` map.
//! NetFlow v9 fields are named in Cisco's snake_case (`in_bytes`); IPFIX fields
//! by their IANA names (`octetDeltaCount`, RFC 7012), enterprise fields by the
//! vendor's name or `<pen>.<id>`. nProbe's v9 ids (57472 + n) are read as IPFIX
//! enterprise 35632 element n, as nProbe documents them.

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::sync::{Arc, LazyLock};

use netflow_parser::variable_versions::field_value::FieldDataType;
use netflow_parser::variable_versions::ipfix::lookup::{
    CiscoIPFixField, IANAIPFixField, IPFixField, NatIPFixField, NetscalerIPFixField,
    ReverseInformationElement, VMWareIPFixField, YafIPFixField,
};
use netflow_parser::{EnterpriseFieldDef, V9Field};

/// ntop's private enterprise number (nProbe's extended fields).
pub const PEN_NTOP: u32 = 35632;
/// RFC 5103 reverse information element PEN.
pub const PEN_REVERSE: u32 = 29305;
/// nProbe's NetFlow v9 id base: v9 id `57472 + n` is IPFIX `35632.n`.
pub const NTOP_V9_BASE: u16 = 57472;

/// An information element: enterprise number (0 = IANA) and element id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldId {
    pub pen: u32,
    pub ie: u16,
}

/// Enterprise fields flowhook registers with the decoder, so they decode with a
/// type instead of as raw octets. ntop's L7 fields (nProbe); other vendors'
/// fields come typed from the decoder crate itself.
pub fn enterprise_fields() -> Vec<EnterpriseFieldDef> {
    NTOP_FIELDS
        .iter()
        .map(|(id, name, text)| {
            let ty = if *text {
                FieldDataType::String
            } else {
                FieldDataType::UnsignedDataNumber
            };
            EnterpriseFieldDef::new(PEN_NTOP, *id, *name, ty)
        })
        .collect()
}

/// ntop's elements under PEN 35632 (nProbe's v9 id is 57472 + id): id, name, text?
pub const NTOP_FIELDS: &[(u16, &str, bool)] = &[
    (118, "L7_PROTO", false),
    (119, "L7_PROTO_NAME", true),
    (124, "L7_INFO", true),
    (125, "L7_PROTO_CATEGORY", true),
    (205, "DNS_QUERY", true),
    (180, "HTTP_URL", true),
    (187, "HTTP_HOST", true),
    (188, "TLS_SERVER_NAME", true),
    (80, "SRC_FRAGMENTS", false),
    (81, "DST_FRAGMENTS", false),
    (123, "CLIENT_NW_LATENCY_MS", false),
    (121, "SERVER_NW_LATENCY_MS", false),
];

/// How flowhook renders a vendor field the decoder crate leaves as octets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VendorKind {
    Text,
    Uint,
    Ip,
}

/// NetFlow v9 vendor fields outside the IANA range that flowhook names:
/// Palo Alto PAN-OS (56701 App-ID, 56702 User-ID) and Cisco ASA NSEL
/// (33000-33002, 40000-40005, Cisco's "NetFlow Implementation Note for ASA").
pub const V9_VENDOR_FIELDS: &[(u16, &str, VendorKind)] = &[
    (56701, "app_id", VendorKind::Text),
    (56702, "user_id", VendorKind::Text),
    (33000, "ingress_acl_id", VendorKind::Uint),
    (33001, "egress_acl_id", VendorKind::Uint),
    (33002, "fw_ext_event", VendorKind::Uint),
    (40000, "username", VendorKind::Text),
    (40001, "xlate_src_addr_ipv4", VendorKind::Ip),
    (40002, "xlate_dst_addr_ipv4", VendorKind::Ip),
    (40003, "xlate_src_port", VendorKind::Uint),
    (40004, "xlate_dst_port", VendorKind::Uint),
    (40005, "fw_event", VendorKind::Uint),
];

/// ntop (nProbe) fields flowhook knows, by element id under PEN 35632.
fn ntop_kind(ie: u16) -> Option<VendorKind> {
    NTOP_FIELDS
        .iter()
        .find(|(n, _, _)| *n == ie)
        .map(|(_, _, text)| {
            if *text {
                VendorKind::Text
            } else {
                VendorKind::Uint
            }
        })
}

/// How to render a field the crate could only give as octets, when flowhook knows better.
pub fn vendor_kind(id: FieldId) -> Option<VendorKind> {
    match id.pen {
        0 => V9_VENDOR_FIELDS
            .iter()
            .find(|(n, _, _)| *n == id.ie)
            .map(|(_, _, k)| *k),
        PEN_NTOP => ntop_kind(id.ie),
        _ => None,
    }
}

/// Most names a catalog caches; past it names are computed per use.
const NAME_CACHE_CAP: usize = 8192;

macro_rules! reverse_vendor {
    ($map:ident, $pen:expr, $enum:ident, $wrap:expr) => {
        for n in 0..=u16::MAX >> 1 {
            let f = $enum::from(n);
            if !matches!(f, $enum::Unknown(_)) {
                $map.insert($wrap(f), FieldId { pen: $pen, ie: n });
            }
        }
    };
}

/// IANA element → id: the crate's enum read back (built once per process,
/// at the first IPFIX template).
static IANA: LazyLock<FxHashMap<IANAIPFixField, u16>> = LazyLock::new(|| {
    (0..=4095u16)
        .map(|n| (IANAIPFixField::from(n), n))
        .filter(|(f, _)| !matches!(f, IANAIPFixField::Unknown(_)))
        .collect()
});

/// Vendor element → id, for the enterprises the crate has enums of (built
/// once per process, at the first field of one of them: it runs through
/// every 15-bit id of six enums).
static VENDOR: LazyLock<FxHashMap<IPFixField, FieldId>> = LazyLock::new(|| {
    let mut vendor = FxHashMap::default();
    reverse_vendor!(vendor, 9, CiscoIPFixField, IPFixField::Cisco);
    reverse_vendor!(vendor, 5951, NetscalerIPFixField, IPFixField::Netscaler);
    reverse_vendor!(vendor, 637, NatIPFixField, IPFixField::Nat);
    reverse_vendor!(vendor, 6871, YafIPFixField, IPFixField::Yaf);
    reverse_vendor!(vendor, 6876, VMWareIPFixField, IPFixField::VMWare);
    reverse_vendor!(
        vendor,
        PEN_REVERSE,
        ReverseInformationElement,
        IPFixField::ReverseInformationElement
    );
    vendor
});

/// Names of the enterprise fields flowhook registers with the crate.
static REGISTERED: LazyLock<FxHashMap<FieldId, Arc<str>>> = LazyLock::new(|| {
    enterprise_fields()
        .into_iter()
        .map(|d| {
            (
                FieldId {
                    pen: d.enterprise_number,
                    ie: d.field_number,
                },
                Arc::from(d.name.as_str()),
            )
        })
        .collect()
});

/// Bounded caches of `(id, name)` per field. One per decoder shard; the
/// reverse tables they fill from are shared by the process.
pub struct FieldCatalog {
    names: HashMap<(bool, FieldId), Arc<str>>,
    ipfix_cache: FxHashMap<IPFixField, (FieldId, Arc<str>)>,
    v9_cache: FxHashMap<V9Field, (FieldId, Arc<str>)>,
}

impl Default for FieldCatalog {
    fn default() -> Self {
        Self::new()
    }
}

impl FieldCatalog {
    /// Empty caches (the shared reverse tables are built when first needed).
    pub fn new() -> Self {
        FieldCatalog {
            names: HashMap::new(),
            ipfix_cache: FxHashMap::default(),
            v9_cache: FxHashMap::default(),
        }
    }

    /// Id and name of an IPFIX field (cached).
    pub fn ipfix(&mut self, f: &IPFixField) -> (FieldId, Arc<str>) {
        if let Some(hit) = self.ipfix_cache.get(f) {
            return hit.clone();
        }
        let v = (self.ipfix_id(f), self.ipfix_name(f));
        if self.ipfix_cache.len() < NAME_CACHE_CAP {
            self.ipfix_cache.insert(*f, v.clone());
        }
        v
    }

    /// Id and name of a v9 field (cached).
    pub fn v9(&mut self, f: V9Field) -> (FieldId, Arc<str>) {
        if let Some(hit) = self.v9_cache.get(&f) {
            return hit.clone();
        }
        let v = (Self::v9_id(f), self.v9_name(f));
        if self.v9_cache.len() < NAME_CACHE_CAP {
            self.v9_cache.insert(f, v.clone());
        }
        v
    }

    /// The element an IPFIX field stands for.
    pub fn ipfix_id(&self, f: &IPFixField) -> FieldId {
        match f {
            IPFixField::IANA(IANAIPFixField::Unknown(n)) => FieldId { pen: 0, ie: *n },
            IPFixField::IANA(x) => FieldId {
                pen: 0,
                ie: IANA.get(x).copied().unwrap_or(0),
            },
            IPFixField::Enterprise {
                enterprise_number,
                field_number,
            } => FieldId {
                pen: *enterprise_number,
                ie: *field_number,
            },
            IPFixField::Cisco(CiscoIPFixField::Unknown(n)) => FieldId { pen: 9, ie: *n },
            IPFixField::Netscaler(NetscalerIPFixField::Unknown(n)) => FieldId { pen: 5951, ie: *n },
            IPFixField::Nat(NatIPFixField::Unknown(n)) => FieldId { pen: 637, ie: *n },
            IPFixField::Yaf(YafIPFixField::Unknown(n)) => FieldId { pen: 6871, ie: *n },
            IPFixField::VMWare(VMWareIPFixField::Unknown(n)) => FieldId { pen: 6876, ie: *n },
            IPFixField::ReverseInformationElement(ReverseInformationElement::Unknown(n)) => {
                FieldId {
                    pen: PEN_REVERSE,
                    ie: *n,
                }
            }
            other => VENDOR.get(other).copied().unwrap_or(FieldId {
                pen: u32::MAX,
                ie: 0,
            }),
        }
    }

    /// The element a NetFlow v9 field stands for (nProbe's ids mapped to PEN 35632).
    pub fn v9_id(f: V9Field) -> FieldId {
        let n = u16::from(f);
        if n >= NTOP_V9_BASE {
            FieldId {
                pen: PEN_NTOP,
                ie: n - NTOP_V9_BASE,
            }
        } else {
            FieldId { pen: 0, ie: n }
        }
    }

    /// Name of a v9 field.
    pub fn v9_name(&mut self, f: V9Field) -> Arc<str> {
        let id = Self::v9_id(f);
        if let Some(n) = self.names.get(&(true, id)) {
            return n.clone();
        }
        let name: Arc<str> = match f {
            V9Field::Unknown(_) | V9Field::IanaAssigned(_) => self.fallback_name(id),
            known => Arc::from(snake_case(&format!("{known:?}")).as_str()),
        };
        self.remember(true, id, name)
    }

    /// Name of an IPFIX field.
    pub fn ipfix_name(&mut self, f: &IPFixField) -> Arc<str> {
        let id = self.ipfix_id(f);
        if let Some(n) = self.names.get(&(false, id)) {
            return n.clone();
        }
        let name: Arc<str> = match f {
            IPFixField::IANA(IANAIPFixField::Unknown(_)) | IPFixField::Enterprise { .. } => {
                self.fallback_name(id)
            }
            IPFixField::IANA(x) => Arc::from(iana_case(&format!("{x:?}")).as_str()),
            IPFixField::Cisco(CiscoIPFixField::Unknown(_))
            | IPFixField::Netscaler(NetscalerIPFixField::Unknown(_))
            | IPFixField::Nat(NatIPFixField::Unknown(_))
            | IPFixField::Yaf(YafIPFixField::Unknown(_))
            | IPFixField::VMWare(VMWareIPFixField::Unknown(_))
            | IPFixField::ReverseInformationElement(ReverseInformationElement::Unknown(_)) => {
                self.fallback_name(id)
            }
            IPFixField::Cisco(x) => Arc::from(iana_case(&format!("{x:?}")).as_str()),
            IPFixField::Netscaler(x) => Arc::from(iana_case(&format!("{x:?}")).as_str()),
            IPFixField::Nat(x) => Arc::from(iana_case(&format!("{x:?}")).as_str()),
            IPFixField::Yaf(x) => Arc::from(iana_case(&format!("{x:?}")).as_str()),
            IPFixField::VMWare(x) => Arc::from(iana_case(&format!("{x:?}")).as_str()),
            IPFixField::ReverseInformationElement(x) => {
                Arc::from(iana_case(&format!("{x:?}")).as_str())
            }
        };
        self.remember(false, id, name)
    }

    fn fallback_name(&self, id: FieldId) -> Arc<str> {
        if let Some(n) = REGISTERED.get(&id) {
            return n.clone();
        }
        if let Some((_, n, _)) = V9_VENDOR_FIELDS
            .iter()
            .find(|(n, _, _)| id.pen == 0 && *n == id.ie)
        {
            return Arc::from(*n);
        }
        if id.pen == 0 {
            let f = IANAIPFixField::from(id.ie);
            if !matches!(f, IANAIPFixField::Unknown(_)) {
                return Arc::from(iana_case(&format!("{f:?}")).as_str());
            }
            return Arc::from(format!("ie{}", id.ie).as_str());
        }
        Arc::from(format!("{}.{}", id.pen, id.ie).as_str())
    }

    fn remember(&mut self, v9: bool, id: FieldId, name: Arc<str>) -> Arc<str> {
        if self.names.len() < NAME_CACHE_CAP {
            self.names.insert((v9, id), name.clone());
        }
        name
    }
}

/// `InBytes` → `in_bytes`, `Ipv4SrcAddr` → `ipv4_src_addr`.
fn snake_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let chars: Vec<char> = s.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_ascii_uppercase();
            if i > 0 && (prev_lower || (prev_upper && next_lower)) {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(*c);
        }
    }
    out
}

/// The decoder crate spells IANA names in Rust case (`SourceIpv4address`);
/// this restores the registry's spelling (`sourceIPv4Address`) for the common
/// acronyms.
fn iana_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    if let Some(c) = chars.next() {
        out.push(c.to_ascii_lowercase());
    }
    out.extend(chars);
    for (from, to) in [
        ("Ipv4", "IPv4"),
        ("Ipv6", "IPv6"),
        ("IPv4address", "IPv4Address"),
        ("IPv6address", "IPv6Address"),
        ("IPv4prefix", "IPv4Prefix"),
        ("IPv6prefix", "IPv6Prefix"),
        ("Macaddress", "MacAddress"),
        ("Tcpflags", "TCPFlags"),
        ("Vlan", "Vlan"),
    ] {
        out = out.replace(from, to);
    }
    if let Some(rest) = out.strip_prefix("iPv") {
        out = format!("ipv{rest}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_registry_spelling() {
        assert_eq!(snake_case("InBytes"), "in_bytes");
        assert_eq!(snake_case("Ipv4SrcAddr"), "ipv4_src_addr");
        assert_eq!(snake_case("L4SrcPort"), "l4_src_port");
        assert_eq!(iana_case("SourceIpv4address"), "sourceIPv4Address");
        assert_eq!(
            iana_case("SourceIpv6prefixLength"),
            "sourceIPv6PrefixLength"
        );
        assert_eq!(iana_case("OctetDeltaCount"), "octetDeltaCount");
        assert_eq!(iana_case("IpNextHopIpv4address"), "ipNextHopIPv4Address");
    }

    #[test]
    fn ipfix_ids_round_trip() {
        let cat = FieldCatalog::new();
        for n in [1u16, 2, 8, 12, 27, 136, 152, 239] {
            let f = IPFixField::new(n, None);
            assert_eq!(cat.ipfix_id(&f), FieldId { pen: 0, ie: n });
        }
        let r = IPFixField::new(1, Some(PEN_REVERSE));
        assert_eq!(
            cat.ipfix_id(&r),
            FieldId {
                pen: PEN_REVERSE,
                ie: 1
            }
        );
        let e = IPFixField::new(118, Some(PEN_NTOP));
        assert_eq!(
            cat.ipfix_id(&e),
            FieldId {
                pen: PEN_NTOP,
                ie: 118
            }
        );
    }

    #[test]
    fn v9_ntop_ids_map_to_pen() {
        assert_eq!(
            FieldCatalog::v9_id(V9Field::from(57590)),
            FieldId {
                pen: PEN_NTOP,
                ie: 118
            }
        );
        assert_eq!(
            FieldCatalog::v9_id(V9Field::from(1)),
            FieldId { pen: 0, ie: 1 }
        );
    }
}
