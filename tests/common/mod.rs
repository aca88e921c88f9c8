//! Shared helpers for black-box tests: where `../shared` is, how to skip
//! without it (a failure under `CI=true`), small pcap writing, a free UDP
//! port and a one-shot HTTP GET.

#![allow(dead_code)]

pub mod export;
pub mod kafka;
pub mod mmdb;
pub mod mutate;
pub mod serve;
pub mod traffic;
pub mod v9;

use std::path::{Path, PathBuf};

/// The shipped scripts directory (`scripts/` of the repository).
pub fn shipped_scripts() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .display()
        .to_string()
}

/// Polls `f` every 200 ms until it returns `Some`, for at most `secs`.
pub fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

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

/// A UDP port free on loopback right now.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP port free on loopback right now.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One metric sample: name, labels, value.
pub type Sample = (String, std::collections::BTreeMap<String, String>, f64);

/// Whether `tool` runs; under `CI=true` a missing tool fails the test, elsewhere it says it skipped.
pub fn have(tool: &str, arg: &str) -> bool {
    if std::process::Command::new(tool)
        .arg(arg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
    {
        return true;
    }
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!("{tool} is not installed; ./run-tests.sh installs it");
    }
    eprintln!("SKIPPED: {tool} not installed");
    false
}

/// `name{labels} value` samples of a Prometheus text scrape.
pub fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let body = rest.trim_end_matches('}');
                let mut m = std::collections::BTreeMap::new();
                for kv in body.split("\",").filter(|s| !s.is_empty()) {
                    let (k, v) = kv.split_once("=\"").unwrap();
                    m.insert(k.to_string(), v.trim_end_matches('"').to_string());
                }
                (n.to_string(), m)
            }
            None => (series.to_string(), std::collections::BTreeMap::new()),
        };
        out.push((name, labels, value.parse().unwrap_or(f64::NAN)));
    }
    out
}

/// Sum of the samples of `name` whose labels include `filter`.
pub fn sum(s: &[Sample], name: &str, filter: &[(&str, &str)]) -> f64 {
    s.iter()
        .filter(|(n, l, _)| {
            n == name
                && filter
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
        .sum()
}

/// GET `path` from `addr`: (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (code, body)
}

/// The body of a chunked HTTP/1.1 response.
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n =
            usize::from_str_radix(size.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
