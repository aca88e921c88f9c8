//! Capture files: reads pcap and pcapng, yielding every UDP datagram in them
//! as an export datagram.
//!
//! In: a file path. Out: [`CapturedDatagram`]s in file order (frame number,
//! capture time, source address = exporter, UDP payload). Frames that are not
//! UDP over IPv4/IPv6 are counted and skipped. Used by `flowhook decode` and
//! `flowhook replay`, which feed the datagrams through the same decode path
//! as `serve`.

use std::fs::File;
use std::io::BufReader;
use std::net::IpAddr;
use std::path::Path;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_parser::{PcapBlockOwned, PcapError};
use thiserror::Error;

mod write;
pub use write::PcapWriter;

/// One UDP datagram found in a capture.
#[derive(Debug, Clone)]
pub struct CapturedDatagram {
    /// 1-based frame number, as Wireshark counts.
    pub frame: u64,
    /// Capture time, Unix milliseconds.
    pub time_ms: i64,
    /// Source address of the IP packet: the exporter.
    pub exporter: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: Vec<u8>,
}

/// Why a capture could not be read.
#[derive(Debug, Error)]
pub enum CaptureError {
    #[error("{path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a pcap or pcapng file ({detail})")]
    Format { path: String, detail: String },
    #[error("{path}: damaged after frame {frame}: {detail}")]
    Damaged {
        path: String,
        frame: u64,
        detail: String,
    },
}

impl CaptureError {
    pub fn code(&self) -> &'static str {
        match self {
            CaptureError::Open { .. } => "open",
            CaptureError::Format { .. } => "format",
            CaptureError::Damaged { .. } => "damaged",
        }
    }
}

/// What was in the capture besides UDP datagrams.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureStats {
    pub frames: u64,
    pub skipped_not_udp: u64,
}

/// Link types understood (LINKTYPE_* numbers from the pcap registry).
fn slice(linktype: i32, data: &[u8]) -> Option<SlicedPacket<'_>> {
    match linktype {
        1 => SlicedPacket::from_ethernet(data).ok(),
        101 | 228 | 229 => SlicedPacket::from_ip(data).ok(),
        113 => SlicedPacket::from_linux_sll(data).ok(),
        0 | 108 if data.len() > 4 => SlicedPacket::from_ip(&data[4..]).ok(),
        _ => None,
    }
}

fn udp_of(linktype: i32, data: &[u8]) -> Option<(IpAddr, u16, u16, &[u8])> {
    let p = slice(linktype, data)?;
    let src = match p.net? {
        NetSlice::Ipv4(v4) => {
            if v4.is_payload_fragmented() {
                return None;
            }
            IpAddr::V4(v4.header().source_addr())
        }
        NetSlice::Ipv6(v6) => IpAddr::V6(v6.header().source_addr()),
        NetSlice::Arp(_) => return None,
    };
    match p.transport? {
        TransportSlice::Udp(u) => Some((src, u.source_port(), u.destination_port(), u.payload())),
        _ => None,
    }
}

/// Reads every UDP datagram of the capture at `path`, calling `f` for each.
pub fn for_each_datagram(
    path: &Path,
    mut f: impl FnMut(CapturedDatagram),
) -> Result<CaptureStats, CaptureError> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|source| CaptureError::Open {
        path: name.clone(),
        source,
    })?;
    let mut reader = pcap_parser::create_reader(1 << 20, BufReader::new(file)).map_err(|e| {
        CaptureError::Format {
            path: name.clone(),
            detail: format!("{e:?}"),
        }
    })?;
    let mut stats = CaptureStats::default();
    let mut legacy_linktype = 1i32;
    let mut legacy_nanos = false;
    // pcapng: per interface (linktype, units per second, offset seconds)
    let mut ifaces: Vec<(i32, u64, i64)> = Vec::new();
    let mut stalls = 0u32;
    loop {
        match reader.next() {
            Ok((offset, block)) => {
                stalls = 0;
                let item: Option<(i32, i64, &[u8])> = match &block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        legacy_linktype = h.network.0;
                        legacy_nanos = h.is_nanosecond_precision();
                        None
                    }
                    PcapBlockOwned::Legacy(b) => {
                        let frac_ms = if legacy_nanos {
                            b.ts_usec / 1_000_000
                        } else {
                            b.ts_usec / 1000
                        };
                        let caplen = (b.caplen as usize).min(b.data.len());
                        Some((
                            legacy_linktype,
                            i64::from(b.ts_sec) * 1000 + i64::from(frac_ms),
                            &b.data[..caplen],
                        ))
                    }
                    PcapBlockOwned::NG(pcap_parser::Block::InterfaceDescription(idb)) => {
                        ifaces.push((
                            idb.linktype.0,
                            idb.ts_resolution().unwrap_or(1_000_000),
                            idb.ts_offset(),
                        ));
                        None
                    }
                    PcapBlockOwned::NG(pcap_parser::Block::EnhancedPacket(epb)) => {
                        let (lt, res, off) = ifaces
                            .get(epb.if_id as usize)
                            .copied()
                            .unwrap_or((1, 1_000_000, 0));
                        let ts = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                        let ms = (ts / res.max(1)) as i64 * 1000
                            + ((ts % res.max(1)) * 1000 / res.max(1)) as i64;
                        let caplen = (epb.caplen as usize).min(epb.data.len());
                        Some((lt, ms + off * 1000, &epb.data[..caplen]))
                    }
                    PcapBlockOwned::NG(pcap_parser::Block::SimplePacket(spb)) => {
                        let lt = ifaces.first().map(|i| i.0).unwrap_or(1);
                        Some((lt, 0, spb.data))
                    }
                    PcapBlockOwned::NG(_) => None,
                };
                if let Some((lt, time_ms, data)) = item {
                    stats.frames += 1;
                    match udp_of(lt, data) {
                        Some((exporter, src_port, dst_port, payload)) => f(CapturedDatagram {
                            frame: stats.frames,
                            time_ms,
                            exporter,
                            src_port,
                            dst_port,
                            payload: payload.to_vec(),
                        }),
                        None => stats.skipped_not_udp += 1,
                    }
                }
                reader.consume(offset);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => {
                stalls += 1;
                if stalls > 2 {
                    return Err(CaptureError::Damaged {
                        path: name,
                        frame: stats.frames,
                        detail: "cut off in a block".into(),
                    });
                }
                if let Err(e) = reader.refill() {
                    return Err(CaptureError::Damaged {
                        path: name,
                        frame: stats.frames,
                        detail: format!("{e:?}"),
                    });
                }
            }
            Err(e) => {
                return Err(CaptureError::Damaged {
                    path: name,
                    frame: stats.frames,
                    detail: format!("{e:?}"),
                });
            }
        }
    }
    Ok(stats)
}
