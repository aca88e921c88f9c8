//! Writing captures: a classic pcap (Ethernet link type, microsecond times)
//! of UDP datagrams, as the load generator produces them for `replay`.
//!
//! In: (time, source, destination, payload). Out: a pcap file any tool reads.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::Path;

/// A pcap being written.
pub struct PcapWriter {
    out: BufWriter<File>,
    frame: Vec<u8>,
}

impl PcapWriter {
    /// Creates (truncates) `path` and writes the pcap global header.
    pub fn create(path: &Path) -> io::Result<Self> {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
        out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?;
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&0i32.to_le_bytes())?;
        out.write_all(&0u32.to_le_bytes())?;
        out.write_all(&262_144u32.to_le_bytes())?;
        out.write_all(&1u32.to_le_bytes())?; // LINKTYPE_ETHERNET
        Ok(PcapWriter {
            out,
            frame: Vec::with_capacity(65_600),
        })
    }

    /// Appends the UDP datagram `src → dst` carrying `payload`, captured at `ts_us` (Unix µs).
    pub fn udp(
        &mut self,
        ts_us: u64,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
    ) -> io::Result<()> {
        let eth = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        self.frame.clear();
        let r = match (src, dst) {
            (SocketAddr::V4(s), SocketAddr::V4(d)) => {
                let b = eth
                    .ipv4(s.ip().octets(), d.ip().octets(), 64)
                    .udp(s.port(), d.port());
                b.write(&mut self.frame, payload)
            }
            (s, d) => {
                let v6 = |a: SocketAddr| match a {
                    SocketAddr::V4(x) => x.ip().to_ipv6_mapped().octets(),
                    SocketAddr::V6(x) => x.ip().octets(),
                };
                let b = eth.ipv6(v6(s), v6(d), 64).udp(s.port(), d.port());
                b.write(&mut self.frame, payload)
            }
        };
        r.map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let len = self.frame.len() as u32;
        self.out
            .write_all(&((ts_us / 1_000_000) as u32).to_le_bytes())?;
        self.out
            .write_all(&((ts_us % 1_000_000) as u32).to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&self.frame)
    }

    /// Flushes everything to the file.
    pub fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
