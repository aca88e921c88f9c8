//! Shared helpers for black-box tests: where `../shared` is, how to skip
//! without it (a failure under `CI=true`), and small pcap writing.

#![allow(dead_code)]

pub mod export;
pub mod mmdb;
pub mod mutate;
pub mod serve;
pub mod traffic;
pub mod v9;

use std::path::PathBuf;

/// `../shared` beside the repository (or `FLOWHOOK_SHARED`), when present.
/// Under `CI=true` a missing folder fails the test; elsewhere the test says it skipped.
pub fn shared_dir(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("FLOWHOOK_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("shared")
        });
    if dir.join("testdata").is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!(
            "{test}: {} is missing; CI must provide ../shared",
            dir.display()
        );
    }
    eprintln!(
        "SKIPPED {test}: {} not found (set FLOWHOOK_SHARED)",
        dir.display()
    );
    None
}

/// Minimal classic pcap writer (Ethernet link type).
pub struct Pcap {
    buf: Vec<u8>,
}

impl Pcap {
    pub fn new() -> Self {
        let mut buf = Vec::new();
        buf.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        buf.extend_from_slice(&2u16.to_le_bytes());
        buf.extend_from_slice(&4u16.to_le_bytes());
        buf.extend_from_slice(&0i32.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        buf.extend_from_slice(&262_144u32.to_le_bytes());
        buf.extend_from_slice(&1u32.to_le_bytes());
        Pcap { buf }
    }

    /// Appends one frame captured at `ts_us` (Unix microseconds).
    pub fn frame(&mut self, ts_us: u64, frame: &[u8]) {
        self.buf
            .extend_from_slice(&((ts_us / 1_000_000) as u32).to_le_bytes());
        self.buf
            .extend_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
        self.buf
            .extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.buf
            .extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(frame);
    }

    /// Appends a UDP datagram `src:sport → dst:dport` carrying `payload`.
    pub fn udp(
        &mut self,
        ts_us: u64,
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
        payload: &[u8],
    ) {
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .udp(sport, dport);
        let mut out = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut out, payload).unwrap();
        self.frame(ts_us, &out);
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}
