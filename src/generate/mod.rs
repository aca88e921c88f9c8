//! Load generator (`flowhook generate`): NetFlow v5, v9 or IPFIX exports
//! from many simulated exporters, at a set rate or flat out, and/or into a
//! pcap for `replay`.
//!
//! In: a [`GenConfig`]. Out: datagrams on the wire (`sendmmsg` from one
//! socket per exporter, bound to 127.0.0.x source addresses so a collector
//! sees distinct exporters), a pcap, and a [`Summary`] of what was sent (the
//! packet total is what a lossless collector must account for).
//!
//! The stream: `flows` distinct conversations split over the streams
//! (exporter × observation domain); each datagram carries `records` records
//! of one block of consecutive flows, and every pass over a stream's blocks
//! is one more active-timeout export of the same flows (times and counters
//! move on, directions alternate: client→server, then server→client).
//! Every tenth block is IPv6. Sequence numbers follow each version's rule;
//! templates go out in a stream's first datagram and every
//! `template_every` datagrams after.

pub mod encode;
mod send;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use thiserror::Error;

use encode::{FlowSample, Header};

/// What to send.
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub target: SocketAddr,
    /// 5, 9 or 10 (IPFIX).
    pub version: u16,
    /// Datagrams per second in all; 0 sends flat out.
    pub rate: u64,
    /// Stop after this long (with `datagrams` unset).
    pub duration: Duration,
    /// Stop after this many datagrams (overrides `duration`).
    pub datagrams: Option<u64>,
    /// Simulated exporters, sending from 127.0.0.2, 127.0.0.3, …
    pub exporters: u16,
    /// Observation domains (source ids) per exporter.
    pub domains: u32,
    /// Records per datagram (v5: at most 30).
    pub records: usize,
    /// Distinct flows across all streams.
    pub flows: u32,
    /// Resend templates every this many datagrams of a stream.
    pub template_every: u64,
    /// Also write the datagrams into this pcap (capture times follow the nominal rate).
    pub pcap: Option<PathBuf>,
    /// Send over UDP (false: only write the pcap).
    pub send: bool,
    /// Unix ms of the first datagram in a pcap-only run (`None`: now).
    pub start_unix_ms: Option<i64>,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            target: SocketAddr::from(([127, 0, 0, 1], 2055)),
            version: 9,
            rate: 10_000,
            duration: Duration::from_secs(10),
            datagrams: None,
            exporters: 1,
            domains: 1,
            records: 30,
            flows: 100_000,
            template_every: 20,
            pcap: None,
            send: true,
            start_unix_ms: None,
        }
    }
}

/// Why the generator could not run.
#[derive(Debug, Error)]
pub enum GenError {
    #[error("generate: {0}")]
    Invalid(String),
    #[error("generate: socket {addr}: {source}")]
    Socket {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("generate: {path}: {source}")]
    Pcap {
        path: String,
        source: std::io::Error,
    },
}

impl GenError {
    pub fn code(&self) -> &'static str {
        match self {
            GenError::Invalid(_) => "invalid",
            GenError::Socket { .. } => "socket",
            GenError::Pcap { .. } => "pcap",
        }
    }
}

/// What was sent.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    pub version: u16,
    pub target: String,
    pub exporters: u16,
    pub streams: u32,
    pub flows: u32,
    pub datagrams: u64,
    /// Data records (templates not counted).
    pub records: u64,
    /// Sum of the records' packet counters: what a lossless collector accounts.
    pub packets: u64,
    pub bytes: u64,
    /// Datagrams that carried templates.
    pub template_datagrams: u64,
    /// Datagrams the kernel refused to send (counted, not retried).
    pub send_errors: u64,
    pub seconds: f64,
    pub datagrams_per_sec: f64,
    pub records_per_sec: f64,
}

impl GenConfig {
    pub fn validate(&self) -> Result<(), GenError> {
        let bad = |m: &str| Err(GenError::Invalid(m.to_string()));
        if !matches!(self.version, 5 | 9 | 10) {
            return bad("version must be 5, 9 or 10");
        }
        if self.records == 0 || (self.version == 5 && self.records > 30) || self.records > 1000 {
            return bad("records per datagram must be 1..=1000 (v5: 1..=30)");
        }
        if self.exporters == 0 || self.exporters > 250 {
            return bad("exporters must be 1..=250");
        }
        if self.domains == 0 || self.domains > 1024 {
            return bad("domains must be 1..=1024");
        }
        let streams = u64::from(self.exporters) * u64::from(self.domains);
        if u64::from(self.flows) < streams * self.records as u64 || self.flows > 1 << 24 {
            return bad(
                "flows must be at least exporters × domains × records, and at most 16777216",
            );
        }
        if self.template_every == 0 {
            return bad("template_every must be above 0");
        }
        if !self.send && self.pcap.is_none() {
            return bad("nothing to do: neither sending nor writing a pcap");
        }
        Ok(())
    }
}

/// Uptime the simulated exporters report at the start (about 11.6 days).
const UPTIME0_MS: u32 = 1_000_000_000;

/// One (exporter, domain) stream.
struct Stream {
    exporter: usize,
    domain: u32,
    /// First flow index and number of flows.
    flow0: u32,
    nflows: u32,
    sent: u64,
    seq_units: u32,
}

impl Stream {
    fn blocks(&self, per: usize) -> u64 {
        u64::from(self.nflows).div_ceil(per as u64)
    }
}

/// Record `r`-th export of flow `f` (global index), at uptime `up`.
fn sample(f: u32, r: u64, up: u32, v6: bool, version: u16) -> FlowSample {
    let ports: [(u16, u8); 8] = [
        (443, 6),
        (80, 6),
        (53, 17),
        (22, 6),
        (25, 6),
        (8080, 6),
        (123, 17),
        (3389, 6),
    ];
    let (srv_port, proto) = ports[(f % 8) as usize];
    let cli_port = 32_768 + ((f.wrapping_mul(7)) % 28_000) as u16;
    let (cli, srv): (IpAddr, IpAddr) = if v6 && version != 5 {
        (
            Ipv6Addr::from(0x2001_0db8_0000_0000_0000_0000_0000_0000u128 | u128::from(f)).into(),
            Ipv6Addr::from(0x2001_0db8_ffff_0000_0000_0000_0000_0000u128 | u128::from(f % 4096))
                .into(),
        )
    } else {
        (
            Ipv4Addr::from(0x0a00_0000 | (f & 0x00ff_ffff)).into(),
            Ipv4Addr::from(0xc612_0000 | (f % 4096)).into(),
        )
    };
    let packets = 1 + (u64::from(f) * 31 + r * 17) % 64;
    let bytes = packets * (64 + u64::from(f % 1400));
    let to_server = r.is_multiple_of(2);
    let flags = if proto != 6 {
        0
    } else if r == 0 {
        0x02
    } else {
        0x18
    };
    let last = up.wrapping_sub(f % 1000);
    let first = last.wrapping_sub(1000 + f % 30_000);
    let (src, dst, sp, dp) = if to_server {
        (cli, srv, cli_port, srv_port)
    } else {
        (srv, cli, srv_port, cli_port)
    };
    FlowSample {
        src,
        dst,
        src_port: sp,
        dst_port: dp,
        proto,
        tcp_flags: flags,
        tos: 0,
        in_if: 1 + f % 8,
        out_if: 9 + f % 8,
        bytes,
        packets,
        first_up: first,
        last_up: last,
        app_port: srv_port,
        end_reason: 2,
    }
}

fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Exporter address `i` (0-based): 127.0.0.2, 127.0.0.3, …
pub fn exporter_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + i as u8)
}

/// Runs the generator; `progress` is called about once a second with the running summary.
pub fn run(cfg: &GenConfig, mut progress: impl FnMut(&Summary)) -> Result<Summary, GenError> {
    cfg.validate()?;
    let per = cfg.records;
    let nstreams = u32::from(cfg.exporters) * cfg.domains;
    let mut streams = Vec::with_capacity(nstreams as usize);
    let each = cfg.flows / nstreams;
    for e in 0..usize::from(cfg.exporters) {
        for d in 0..cfg.domains {
            let i = streams.len() as u32;
            streams.push(Stream {
                exporter: e,
                domain: d + 1,
                flow0: i * each,
                nflows: each,
                sent: 0,
                seq_units: 0,
            });
        }
    }
    let mut sockets = if cfg.send {
        Some(send::Senders::open(cfg.target, cfg.exporters)?)
    } else {
        None
    };
    let mut pcap = match &cfg.pcap {
        Some(p) => {
            Some(
                crate::capture::PcapWriter::create(p).map_err(|source| GenError::Pcap {
                    path: p.display().to_string(),
                    source,
                })?,
            )
        }
        None => None,
    };
    let pcap_err = |source| GenError::Pcap {
        path: cfg
            .pcap
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        source,
    };
    let total = cfg.datagrams;
    let deadline = cfg.duration;
    // batches: at a set rate about a millisecond's worth, flat out 64
    let batch = if cfg.rate == 0 {
        64
    } else {
        (cfg.rate / 1000).clamp(1, 64) as usize
    };
    let unix0 = if cfg.send {
        unix_now_ms()
    } else {
        cfg.start_unix_ms.unwrap_or_else(unix_now_ms)
    };
    let nominal_rate = if cfg.rate == 0 { 100_000 } else { cfg.rate };
    let mut sum = Summary {
        version: cfg.version,
        target: cfg.target.to_string(),
        exporters: cfg.exporters,
        streams: nstreams,
        flows: each * nstreams,
        ..Summary::default()
    };
    let started = Instant::now();
    let mut last_progress = started;
    let mut bufs: Vec<Vec<u8>> = (0..batch).map(|_| Vec::with_capacity(65_536)).collect();
    let mut samples = Vec::with_capacity(per);
    let mut n: u64 = 0; // datagrams built
    let mut si = 0usize; // stream of the next batch
    'outer: loop {
        if total.is_some_and(|t| n >= t) || (total.is_none() && started.elapsed() >= deadline) {
            break;
        }
        if cfg.rate > 0 && cfg.send {
            let due = started + Duration::from_secs_f64(n as f64 / cfg.rate as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        // one batch from one stream (one exporter socket)
        let nstreams = streams.len();
        let s = &mut streams[si];
        si = (si + 1) % nstreams;
        let mut used = 0;
        while used < batch {
            if total.is_some_and(|t| n >= t) {
                break;
            }
            // virtual time of this datagram (real time when sending)
            let elapsed_ms = if cfg.send {
                started.elapsed().as_millis() as i64
            } else {
                (n as i128 * 1000 / i128::from(nominal_rate)) as i64
            };
            let h = Header {
                uptime_ms: UPTIME0_MS.wrapping_add(elapsed_ms as u32),
                unix_ms: unix0 + elapsed_ms,
                sequence: s.seq_units,
                domain: s.domain,
            };
            let blocks = s.blocks(per);
            let block = s.sent % blocks;
            let repeat = s.sent / blocks;
            let v6 = block % 10 == 9;
            samples.clear();
            let lo = u64::from(s.flow0) + block * per as u64;
            let hi = (lo + per as u64).min(u64::from(s.flow0) + u64::from(s.nflows));
            for f in lo..hi {
                samples.push(sample(f as u32, repeat, h.uptime_ms, v6, cfg.version));
            }
            let templates = s.sent % cfg.template_every == 0;
            let buf = &mut bufs[used];
            buf.clear();
            match cfg.version {
                5 => encode::v5(buf, &h, &samples),
                9 => encode::v9(buf, &h, &samples, templates),
                _ => encode::ipfix(buf, &h, &samples, templates),
            }
            s.seq_units = s.seq_units.wrapping_add(match cfg.version {
                9 => 1,
                _ => samples.len() as u32,
            });
            s.sent += 1;
            n += 1;
            used += 1;
            sum.datagrams += 1;
            sum.records += samples.len() as u64;
            sum.packets += samples.iter().map(|x| x.packets).sum::<u64>();
            sum.bytes += samples.iter().map(|x| x.bytes).sum::<u64>();
            sum.template_datagrams += u64::from(templates && cfg.version != 5);
            if let Some(p) = pcap.as_mut() {
                let port = sockets
                    .as_ref()
                    .map(|k| k.port(s.exporter))
                    .unwrap_or(50_000 + s.exporter as u16);
                p.udp(
                    (unix0 + elapsed_ms) as u64 * 1000,
                    SocketAddr::from((exporter_addr(s.exporter), port)),
                    cfg.target,
                    &bufs[used - 1],
                )
                .map_err(pcap_err)?;
            }
        }
        if used == 0 {
            break 'outer;
        }
        if let Some(k) = sockets.as_mut() {
            sum.send_errors += k.send(s.exporter, &bufs[..used]);
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            progress(&sum);
        }
    }
    if let Some(p) = pcap.as_mut() {
        p.finish().map_err(pcap_err)?;
    }
    sum.seconds = started.elapsed().as_secs_f64();
    if sum.seconds > 0.0 {
        sum.datagrams_per_sec = sum.datagrams as f64 / sum.seconds;
        sum.records_per_sec = sum.records as f64 / sum.seconds;
    }
    Ok(sum)
}

#[cfg(test)]
mod tests;
