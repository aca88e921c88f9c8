//! Conversion of the decoder crate's typed field values into flowhook values.
//!
//! In: `netflow_parser::FieldValue`. Out: [`Value`] for the `fields` map and
//! plain integers for normalization. Typed enums the crate builds (protocol,
//! TCP flags, forwarding status, …) are read back through their wire bytes so
//! no information the exporter sent is reinterpreted.

use std::net::IpAddr;

use netflow_parser::FieldValue;
use netflow_parser::variable_versions::field_value::{DataNumber, DurationValue};

use crate::record::Value;

/// Seconds between the NTP era 0 epoch (1900) and the Unix epoch.
pub const NTP_UNIX_OFFSET_SECS: i64 = 2_208_988_800;

/// Unix milliseconds of an NTP timestamp (RFC 7011 §6.1.10).
pub fn ntp_to_unix_ms(seconds: u32, fraction: u32) -> i64 {
    let ms = ((u64::from(fraction) * 1000) >> 32) as i64;
    (i64::from(seconds) - NTP_UNIX_OFFSET_SECS) * 1000 + ms
}

/// Big-endian unsigned integer of up to 8 bytes.
pub fn be_uint(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 8 {
        return None;
    }
    Some(b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
}

fn wire_bytes(v: &FieldValue) -> Vec<u8> {
    let mut buf = Vec::with_capacity(8);
    // Writing into a Vec cannot fail.
    let _ = v.write_be_bytes(&mut buf);
    buf
}

fn number(d: &DataNumber) -> Value {
    match d {
        DataNumber::I8(x) => Value::I64(i64::from(*x)),
        DataNumber::I16(x) => Value::I64(i64::from(*x)),
        DataNumber::I24(x) | DataNumber::I32(x) => Value::I64(i64::from(*x)),
        DataNumber::I64(x) => Value::I64(*x),
        DataNumber::I128(x) => i64::try_from(*x)
            .map(Value::I64)
            .unwrap_or_else(|_| Value::Str(x.to_string())),
        DataNumber::U128(x) => u64::try_from(*x)
            .map(Value::U64)
            .unwrap_or_else(|_| Value::Str(x.to_string())),
        DataNumber::Vec(b) => be_uint(b)
            .map(Value::U64)
            .unwrap_or_else(|| Value::Bytes(b.clone())),
        other => other.as_u64().map(Value::U64).unwrap_or(Value::U64(0)),
    }
}

/// The value as flowhook renders it in a record's `fields`.
pub fn to_value(v: &FieldValue) -> Value {
    match v {
        FieldValue::String(s) => Value::Str(s.value.clone()),
        FieldValue::DataNumber(d) => number(d),
        FieldValue::Float64(f) => Value::F64(*f),
        FieldValue::Duration(DurationValue::Seconds { value, .. }) => Value::U64(*value),
        FieldValue::Duration(DurationValue::Millis { value, .. }) => Value::U64(*value),
        FieldValue::Duration(DurationValue::MicrosNtp { seconds, fraction })
        | FieldValue::Duration(DurationValue::NanosNtp { seconds, fraction }) => {
            Value::TimeMs(ntp_to_unix_ms(*seconds, *fraction))
        }
        FieldValue::Ip4Addr(a) => Value::Ip(IpAddr::V4(*a)),
        FieldValue::Ip6Addr(a) => Value::Ip(IpAddr::V6(*a)),
        FieldValue::MacAddr(m) => Value::Mac(*m),
        FieldValue::Vec(b) => Value::Bytes(b.clone()),
        FieldValue::ApplicationId(_) => {
            Value::Str(application_id(&wire_bytes(v)).unwrap_or_default())
        }
        other => {
            let b = wire_bytes(other);
            be_uint(&b).map(Value::U64).unwrap_or(Value::Bytes(b))
        }
    }
}

/// The value as an unsigned integer, when it is one (any width up to 64 bits).
pub fn as_u64(v: &FieldValue) -> Option<u64> {
    match v {
        FieldValue::DataNumber(DataNumber::Vec(b)) | FieldValue::Vec(b) => be_uint(b),
        FieldValue::DataNumber(d) => d.as_u64(),
        FieldValue::Duration(DurationValue::Seconds { value, .. })
        | FieldValue::Duration(DurationValue::Millis { value, .. }) => Some(*value),
        FieldValue::String(_)
        | FieldValue::Float64(_)
        | FieldValue::Ip4Addr(_)
        | FieldValue::Ip6Addr(_)
        | FieldValue::MacAddr(_)
        | FieldValue::ApplicationId(_)
        | FieldValue::Duration(_) => None,
        other => be_uint(&wire_bytes(other)),
    }
}

/// The value as an IP address.
pub fn as_ip(v: &FieldValue) -> Option<IpAddr> {
    match v {
        FieldValue::Ip4Addr(a) => Some(IpAddr::V4(*a)),
        FieldValue::Ip6Addr(a) => Some(IpAddr::V6(*a)),
        FieldValue::Vec(b) | FieldValue::DataNumber(DataNumber::Vec(b)) => match b.len() {
            4 => <[u8; 4]>::try_from(b.as_slice()).ok().map(IpAddr::from),
            16 => <[u8; 16]>::try_from(b.as_slice()).ok().map(IpAddr::from),
            _ => None,
        },
        _ => None,
    }
}

/// The value as text (strings, and octet strings that hold printable text).
pub fn as_text(v: &FieldValue) -> Option<String> {
    match v {
        FieldValue::String(s) => Some(s.value.clone()),
        FieldValue::Vec(b) => {
            let t: &[u8] = match b.iter().position(|c| *c == 0) {
                Some(n) => &b[..n],
                None => b,
            };
            std::str::from_utf8(t)
                .ok()
                .filter(|s| s.chars().all(|c| !c.is_control()))
                .map(str::to_owned)
        }
        _ => None,
    }
}

/// Absolute time of an IPFIX time IE value, Unix milliseconds, whatever unit it came in.
pub fn as_time_ms(v: &FieldValue, unit_ms: i64) -> Option<i64> {
    match v {
        FieldValue::Duration(DurationValue::MicrosNtp { seconds, fraction })
        | FieldValue::Duration(DurationValue::NanosNtp { seconds, fraction }) => {
            Some(ntp_to_unix_ms(*seconds, *fraction))
        }
        FieldValue::Vec(b) if b.len() == 8 && unit_ms == 0 => {
            let s = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            let f = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
            Some(ntp_to_unix_ms(s, f))
        }
        other => as_u64(other)
            .and_then(|x| i64::try_from(x).ok())
            .map(|x| x.saturating_mul(unit_ms.max(1))),
    }
}

/// IE 95 applicationId wire bytes as `engine..selector`, or
/// `engine..pen..selector` for engine 20 (PANA-L7-PEN, RFC 6759 §4.1).
pub fn application_id(b: &[u8]) -> Option<String> {
    let (engine, rest) = b.split_first()?;
    if rest.is_empty() {
        return Some(format!("{engine}..0"));
    }
    if *engine == 20 && rest.len() > 4 {
        let pen = be_uint(&rest[..4])?;
        let sel = be_uint(&rest[4..]).unwrap_or(0);
        return Some(format!("{engine}..{pen}..{sel}"));
    }
    match be_uint(rest) {
        Some(sel) => Some(format!("{engine}..{sel}")),
        None => Some(format!("{engine}..{}", crate::record::hex(rest))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_epoch_converts_to_unix() {
        // 2016-12-25T12:58:35.818Z
        let unix_ms = 1_482_670_715_818i64;
        let secs = (unix_ms / 1000 + NTP_UNIX_OFFSET_SECS) as u32;
        let frac = (((unix_ms % 1000) as u64) << 32) / 1000 + 1;
        assert_eq!(ntp_to_unix_ms(secs, frac as u32), unix_ms);
    }

    #[test]
    fn application_ids_render_like_rfc6759() {
        assert_eq!(application_id(&[5, 0, 0, 0, 38]).as_deref(), Some("5..38"));
        assert_eq!(
            application_id(&[20, 0, 0, 0x30, 0x44, 0, 0, 0x8f, 0x34]).as_deref(),
            Some("20..12356..36660")
        );
        assert_eq!(
            application_id(&[13, 0, 0, 1, 0xaf]).as_deref(),
            Some("13..431")
        );
    }

    #[test]
    fn be_uint_bounds() {
        assert_eq!(be_uint(&[]), None);
        assert_eq!(be_uint(&[1, 0]), Some(256));
        assert_eq!(be_uint(&[0; 9]), None);
    }
}
