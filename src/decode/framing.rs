//! Message framing: finds the one export message a datagram carries and reads
//! its header, before the decoder crate sees it.
//!
//! In: one UDP payload. Out: a [`Frame`] (version, header values, the message
//! bytes to decode and how many bytes trail it). Exporters send one message
//! per datagram; bytes after the first message's end (IPFIX `length`, v5/v7
//! record count, the end of v9's last well-formed FlowSet) are counted as
//! trailing, never decoded as a second message. v9 has no length field
//! (RFC 3954 §5.1), so its FlowSets are walked: a FlowSet whose length is
//! below 4 ends the message (Palo Alto pads datagrams with zeros after it).

use std::borrow::Cow;

use super::error::DecodeError;

/// Header values of one export message.
#[derive(Debug, Clone)]
pub struct Frame<'a> {
    pub version: u16,
    /// The message, exactly as far as it goes.
    pub msg: Cow<'a, [u8]>,
    /// Bytes after the message.
    pub trailing: usize,
    /// IPFIX observation domain, v9 source id, v5 `engine_type << 8 | engine_id`.
    pub domain: u32,
    pub sequence: u32,
    /// sysUptime in ms (v5/v7/v9).
    pub uptime_ms: Option<u32>,
    /// Export time, Unix ms.
    pub export_ms: i64,
    /// v5 header sampling interval (low 14 bits) and mode (high 2 bits), raw.
    pub v5_sampling: Option<u16>,
    /// Number of records (v5/v7) or of v9 records per the header `count`.
    pub count: u16,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

/// Largest datagram accepted (the UDP maximum).
pub const MAX_DATAGRAM: usize = 65_535;

/// Frames the first export message in `data`.
pub fn frame(data: &[u8]) -> Result<Frame<'_>, DecodeError> {
    if data.len() > MAX_DATAGRAM {
        return Err(DecodeError::Oversized { len: data.len() });
    }
    let version = u16_at(data, 0).ok_or(DecodeError::Truncated {
        need: 2,
        have: data.len(),
    })?;
    match version {
        5 | 7 => frame_v5_v7(data, version),
        9 => frame_v9(data),
        10 => frame_ipfix(data),
        other => Err(DecodeError::UnsupportedVersion { version: other }),
    }
}

fn frame_v5_v7(data: &[u8], version: u16) -> Result<Frame<'_>, DecodeError> {
    const HDR: usize = 24;
    let rec = if version == 5 { 48 } else { 52 };
    if data.len() < HDR {
        return Err(DecodeError::Truncated {
            need: HDR,
            have: data.len(),
        });
    }
    let count = u16_at(data, 2).unwrap_or(0);
    if count == 0 || count > 30 {
        return Err(DecodeError::BadHeader {
            what: "record count must be 1..=30",
            value: u64::from(count),
        });
    }
    let len = HDR + rec * usize::from(count);
    if data.len() < len {
        return Err(DecodeError::Truncated {
            need: len,
            have: data.len(),
        });
    }
    let uptime = u32_at(data, 4).unwrap_or(0);
    let secs = u32_at(data, 8).unwrap_or(0);
    let nsecs = u32_at(data, 12).unwrap_or(0);
    let sequence = u32_at(data, 16).unwrap_or(0);
    let (domain, v5_sampling) = if version == 5 {
        (u32::from(u16_at(data, 20).unwrap_or(0)), u16_at(data, 22))
    } else {
        (0, None)
    };
    Ok(Frame {
        version,
        msg: Cow::Borrowed(&data[..len]),
        trailing: data.len() - len,
        domain,
        sequence,
        uptime_ms: Some(uptime),
        export_ms: super::time::header_unix_ms(secs, nsecs),
        v5_sampling,
        count,
    })
}

fn frame_v9(data: &[u8]) -> Result<Frame<'_>, DecodeError> {
    const HDR: usize = 20;
    if data.len() < HDR {
        return Err(DecodeError::Truncated {
            need: HDR,
            have: data.len(),
        });
    }
    // Walk FlowSets to find where the message really ends.
    let mut at = HDR;
    let mut sets = 0usize;
    while at + 4 <= data.len() {
        let len = usize::from(u16_at(data, at + 2).unwrap_or(0));
        if len < 4 {
            break; // zero fill or garbage: the message ended
        }
        if at + len > data.len() {
            if sets == 0 {
                return Err(DecodeError::Truncated {
                    need: at + len,
                    have: data.len(),
                });
            }
            break; // a cut-off FlowSet after good ones: keep the good ones
        }
        at += len;
        sets += 1;
    }
    if sets == 0 {
        return Err(DecodeError::BadHeader {
            what: "no FlowSet in v9 message",
            value: 0,
        });
    }
    Ok(Frame {
        version: 9,
        msg: Cow::Borrowed(&data[..at]),
        trailing: data.len() - at,
        domain: u32_at(data, 16).unwrap_or(0),
        sequence: u32_at(data, 12).unwrap_or(0),
        uptime_ms: u32_at(data, 4),
        export_ms: i64::from(u32_at(data, 8).unwrap_or(0)) * 1000,
        v5_sampling: None,
        count: u16_at(data, 2).unwrap_or(0),
    })
}

fn frame_ipfix(data: &[u8]) -> Result<Frame<'_>, DecodeError> {
    const HDR: usize = 16;
    if data.len() < HDR {
        return Err(DecodeError::Truncated {
            need: HDR,
            have: data.len(),
        });
    }
    let len = usize::from(u16_at(data, 2).unwrap_or(0));
    if len < HDR + 4 {
        return Err(DecodeError::BadHeader {
            what: "IPFIX message length below 20",
            value: len as u64,
        });
    }
    if len > data.len() {
        return Err(DecodeError::Truncated {
            need: len,
            have: data.len(),
        });
    }
    Ok(Frame {
        version: 10,
        msg: Cow::Borrowed(&data[..len]),
        trailing: data.len() - len,
        domain: u32_at(data, 12).unwrap_or(0),
        sequence: u32_at(data, 8).unwrap_or(0),
        uptime_ms: None,
        export_ms: i64::from(u32_at(data, 4).unwrap_or(0)) * 1000,
        v5_sampling: None,
        count: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v5(count: u16, records: usize, extra: usize) -> Vec<u8> {
        let mut b = vec![0u8; 24 + 48 * records + extra];
        b[1] = 5;
        b[2..4].copy_from_slice(&count.to_be_bytes());
        b
    }

    #[test]
    fn v5_trailing_bytes_are_counted_not_decoded() {
        let d = v5(2, 2, 100);
        let f = frame(&d).unwrap();
        assert_eq!(f.msg.len(), 24 + 96);
        assert_eq!(f.trailing, 100);
    }

    #[test]
    fn v5_count_beyond_payload_is_truncated() {
        let d = v5(30, 2, 0);
        assert!(matches!(frame(&d), Err(DecodeError::Truncated { .. })));
        let d = v5(55_582, 30, 0);
        assert!(matches!(frame(&d), Err(DecodeError::BadHeader { .. })));
    }

    #[test]
    fn v9_zero_fill_ends_message() {
        let mut d = vec![0u8; 20];
        d[1] = 9;
        d.extend_from_slice(&[1, 0, 0, 8, 1, 2, 3, 4]);
        d.extend_from_slice(&[0u8; 64]);
        let f = frame(&d).unwrap();
        assert_eq!(f.msg.len(), 28);
        assert_eq!(f.trailing, 64);
    }

    #[test]
    fn ipfix_length_bounds() {
        let mut d = vec![0u8; 40];
        d[1] = 10;
        d[3] = 36;
        let f = frame(&d).unwrap();
        assert_eq!((f.msg.len(), f.trailing), (36, 4));
        d[3] = 41;
        assert!(matches!(frame(&d), Err(DecodeError::Truncated { .. })));
        d[3] = 3;
        assert!(matches!(frame(&d), Err(DecodeError::BadHeader { .. })));
    }

    #[test]
    fn garbage_versions() {
        assert!(matches!(frame(&[0]), Err(DecodeError::Truncated { .. })));
        assert!(matches!(
            frame(&[0, 6, 0, 0]),
            Err(DecodeError::UnsupportedVersion { version: 6 })
        ));
    }
}
