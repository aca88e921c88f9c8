//! Event JSON written by hand: static keys, integers through `itoa`, floats
//! through `zmij` (what serde_json uses), no allocation and no lock per event. Byte for byte what the
//! serde implementations of [`FlowEvent`] and [`FlowView`] produce (those
//! stay as the reference; `tests` below compares the two).
//!
//! In: a [`FlowEvent`]. Out: one JSON object appended to a buffer. A line
//! is written straight into the buffer's spare capacity, the most it can
//! take reserved first (`room`), its length kept in a register and
//! committed once (a `Vec`'s own length would be stored and reloaded around
//! every byte).

use std::net::IpAddr;

use super::classify::l4_name;
use super::event::{EventKind, FlowEvent, FlowView};
use crate::enrich::GeoInfo;

/// Where the writers below put bytes.
pub trait Buf {
    fn push(&mut self, b: u8);
    fn put(&mut self, s: &[u8]);
    /// `v` in decimal (what `itoa` writes).
    #[inline(always)]
    fn uint(&mut self, v: u64) {
        for &c in itoa::Buffer::new().format(v).as_bytes() {
            self.push(c);
        }
    }
}

/// Digit pairs "00" to "99".
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Decimal digits of `v` (1 to 20).
#[inline(always)]
fn digit_count(v: u64) -> usize {
    const POW10: [u64; 20] = {
        let mut t = [0u64; 20];
        let mut i = 0;
        let mut p = 1u64;
        while i < 20 {
            t[i] = p;
            p = p.wrapping_mul(10);
            i += 1;
        }
        t
    };
    // from the bit length (1233/4096 ≈ log10 2): t is the digit count or
    // one less (t <= 19), and it is one less exactly when v >= 10^t
    let bits = 64 - (v | 1).leading_zeros() as usize;
    let t = (bits * 1233) >> 12;
    (t + usize::from(v >= POW10[t])).max(1)
}

/// Writes `v` in decimal at the start of `dst` (20 bytes: the longest);
/// returns how many bytes.
#[inline(always)]
fn write_uint(dst: &mut [std::mem::MaybeUninit<u8>; 20], mut v: u64) -> usize {
    let n = digit_count(v);
    let mut i = n;
    while v >= 100 {
        let r = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        dst[i].write(PAIRS[r]);
        dst[i + 1].write(PAIRS[r + 1]);
    }
    if v >= 10 {
        let r = v as usize * 2;
        dst[i - 2].write(PAIRS[r]);
        dst[i - 1].write(PAIRS[r + 1]);
    } else {
        dst[i - 1].write(b'0' + v as u8);
    }
    n
}

impl Buf for Vec<u8> {
    #[inline(always)]
    fn push(&mut self, b: u8) {
        Vec::push(self, b)
    }
    #[inline(always)]
    fn put(&mut self, s: &[u8]) {
        self.extend_from_slice(s)
    }
}

/// Bytes written on the stack (their count stays in a register), not
/// zeroed first.
pub struct Stack<const N: usize> {
    buf: [std::mem::MaybeUninit<u8>; N],
    n: usize,
}

impl<const N: usize> Stack<N> {
    pub fn new() -> Self {
        Stack {
            buf: [std::mem::MaybeUninit::uninit(); N],
            n: 0,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the first `n` bytes were written (`push`, `put`).
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr().cast::<u8>(), self.n) }
    }
}

impl<const N: usize> Default for Stack<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Buf for Stack<N> {
    #[inline(always)]
    fn push(&mut self, b: u8) {
        self.buf[self.n].write(b);
        self.n += 1;
    }
    #[inline(always)]
    fn uint(&mut self, v: u64) {
        match self.buf.get_mut(self.n..self.n + 20) {
            Some(room) => {
                let dst: &mut [std::mem::MaybeUninit<u8>; 20] = room.try_into().expect("20 bytes");
                self.n += write_uint(dst, v);
            }
            None => {
                for &c in itoa::Buffer::new().format(v).as_bytes() {
                    self.push(c);
                }
            }
        }
    }
    #[inline(always)]
    fn put(&mut self, s: &[u8]) {
        let dst = &mut self.buf[self.n..self.n + s.len()];
        // SAFETY: `dst` is exactly `s.len()` bytes of this buffer (bounds checked above).
        unsafe {
            std::ptr::copy_nonoverlapping(s.as_ptr(), dst.as_mut_ptr().cast::<u8>(), s.len())
        };
        self.n += s.len();
    }
}

/// A line written straight into a `Vec`'s spare capacity (no copy from a
/// buffer aside). Only a cursor and the end of the room: as a local of the
/// (inlined) writers the compiler keeps both in registers, where a `Vec`'s
/// length, or any length behind a pointer, would be stored and reloaded
/// around every byte (a byte written through a pointer might alias it).
struct Spare {
    p: *mut u8,
    end: *mut u8,
}

impl Spare {
    /// Runs `f` on the spare capacity of `vec` (at least `room` bytes),
    /// then takes what it wrote into `vec`.
    #[inline(always)]
    fn write(vec: &mut Vec<u8>, room: usize, f: impl FnOnce(&mut Spare)) {
        vec.reserve(room);
        let len = vec.len();
        let spare = vec.spare_capacity_mut();
        let start = spare.as_mut_ptr().cast::<u8>();
        // SAFETY: one past the end of the spare capacity.
        let end = unsafe { start.add(spare.len()) };
        let mut s = Spare { p: start, end };
        f(&mut s);
        let n = s.p as usize - start as usize;
        // SAFETY: the `n` bytes after `len` were written (`push`, `put` stay below `end`).
        unsafe { vec.set_len(len + n) }
    }
}

impl Buf for Spare {
    #[inline(always)]
    fn uint(&mut self, v: u64) {
        assert!(
            self.end as usize - self.p as usize >= 20,
            "line longer than its room"
        );
        // SAFETY: 20 bytes below `end` (checked above), uninitialised spare capacity.
        let dst = unsafe { &mut *self.p.cast::<[std::mem::MaybeUninit<u8>; 20]>() };
        let n = write_uint(dst, v);
        // SAFETY: n <= 20, checked above.
        self.p = unsafe { self.p.add(n) };
    }
    #[inline(always)]
    fn push(&mut self, b: u8) {
        assert!(self.p < self.end, "line longer than its room");
        // SAFETY: below `end`, inside the spare capacity (checked above).
        unsafe {
            self.p.write(b);
            self.p = self.p.add(1);
        }
    }
    #[inline(always)]
    fn put(&mut self, s: &[u8]) {
        assert!(
            s.len() <= self.end as usize - self.p as usize,
            "line longer than its room"
        );
        // SAFETY: inside the spare capacity (checked above); `s` is not part of it.
        unsafe {
            std::ptr::copy_nonoverlapping(s.as_ptr(), self.p, s.len());
            self.p = self.p.add(s.len());
        }
    }
}

/// Appends `s` as a JSON string (serde_json's escaping).
#[inline(always)]
pub fn string<B: Buf>(out: &mut B, s: &str) {
    out.push(b'"');
    let b = s.as_bytes();
    // most strings need no escape: one pass to know, one copy
    if b.iter().all(|&c| c >= 0x20 && c != b'"' && c != b'\\') {
        out.put(b);
        out.push(b'"');
        return;
    }
    escaped(out, b);
    out.push(b'"');
}

/// The rest of [`string`] for a string that needs escapes (out of line: rare).
#[cold]
#[inline(never)]
fn escaped<B: Buf>(out: &mut B, b: &[u8]) {
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => {
                out.put(&b[start..i]);
                let hex = b"0123456789abcdef";
                out.put(b"\\u00");
                out.push(hex[usize::from(c >> 4)]);
                out.push(hex[usize::from(c & 0xf)]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.put(&b[start..i]);
        out.put(esc);
        start = i + 1;
    }
    out.put(&b[start..]);
}

/// Appends short pieces (numbers, address octets) a byte at a time: a line
/// is dozens of them, and a `memcpy` call for each cost more than the bytes
/// (the line's capacity is reserved up front, so a push does not grow it).
#[inline(always)]
fn bytes<B: Buf>(out: &mut B, b: &[u8]) {
    for &c in b {
        out.push(c);
    }
}

#[inline(always)]
fn int<B: Buf>(out: &mut B, v: impl Into<u64>) {
    out.uint(v.into());
}

#[inline(always)]
fn float<B: Buf>(out: &mut B, v: f64) {
    if v.is_finite() {
        bytes(out, zmij::Buffer::new().format_finite(v).as_bytes());
    } else {
        out.put(b"null");
    }
}

/// Milliseconds below this are written by [`secs`] itself (seconds below
/// 10^11, the year 5138: well inside the range `zmij` writes without an
/// exponent, and where doubles are far closer together than a millisecond).
const SECS_DIRECT_BELOW_MS: i64 = 100_000_000_000_000;

/// `ms / 1000` as the f64 serde_json writes (`1795950975.998`, `1.0`,
/// `0.25`): for a whole number of milliseconds the shortest decimal that
/// reads back as that double is the seconds, a point, and the milliseconds
/// without trailing zeros (at least one digit). Other values take `float`.
#[inline(always)]
fn secs<B: Buf>(out: &mut B, ms: i64) {
    if !(0..SECS_DIRECT_BELOW_MS).contains(&ms) {
        return float(out, ms as f64 / 1000.0);
    }
    int(out, (ms / 1000) as u64);
    out.push(b'.');
    let m = (ms % 1000) as u32;
    let (d1, d2, d3) = ((m / 100) as u8, (m / 10 % 10) as u8, (m % 10) as u8);
    out.push(b'0' + d1);
    if d2 != 0 || d3 != 0 {
        out.push(b'0' + d2);
    }
    if d3 != 0 {
        out.push(b'0' + d3);
    }
}

#[inline(always)]
fn ip<B: Buf>(out: &mut B, a: IpAddr) {
    out.push(b'"');
    ip_text(out, a);
    out.push(b'"');
}

/// Every octet's decimal digits, then how many there are.
const OCTETS: [[u8; 4]; 256] = {
    let mut t = [[0u8; 4]; 256];
    let mut i = 0;
    while i < 256 {
        let (h, d, u) = ((i / 100) as u8, (i / 10 % 10) as u8, (i % 10) as u8);
        t[i] = if i >= 100 {
            [b'0' + h, b'0' + d, b'0' + u, 3]
        } else if i >= 10 {
            [b'0' + d, b'0' + u, 0, 2]
        } else {
            [b'0' + u, 0, 0, 1]
        };
        i += 1;
    }
    t
};

/// An address as text (what `Display` writes).
#[inline(always)]
fn ip_text<B: Buf>(out: &mut B, a: IpAddr) {
    match a {
        // dotted quad without the formatting machinery
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                let [a, b, c, len] = OCTETS[usize::from(*o)];
                out.push(a);
                if len > 1 {
                    out.push(b);
                }
                if len > 2 {
                    out.push(c);
                }
            }
        }
        IpAddr::V6(v6) => ip6_text(out, v6),
    }
}

/// An IPv6 address as `Display` writes it (RFC 5952: lower-case hex
/// without leading zeros, the longest run of two or more zero groups (the
/// first of equals) as `::`; IPv4-mapped addresses as `::ffff:a.b.c.d`).
#[inline(always)]
fn ip6_text<B: Buf>(out: &mut B, a: std::net::Ipv6Addr) {
    if let Some(v4) = a.to_ipv4_mapped() {
        out.put(b"::ffff:");
        return ip_text(out, IpAddr::V4(v4));
    }
    let g = a.segments();
    // the longest run of zero groups (two or more)
    let (mut best, mut best_len, mut run, mut run_len) = (0, 0, 0, 0);
    for (i, &x) in g.iter().enumerate() {
        if x == 0 {
            if run_len == 0 {
                run = i;
            }
            run_len += 1;
            if run_len > best_len {
                (best, best_len) = (run, run_len);
            }
        } else {
            run_len = 0;
        }
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let group = |out: &mut B, x: u16| {
        let mut started = false;
        for shift in [12u32, 8, 4, 0] {
            let d = (x >> shift) & 0xf;
            if d != 0 || started || shift == 0 {
                out.push(HEX[usize::from(d)]);
                started = true;
            }
        }
    };
    if best_len < 2 {
        for (i, &x) in g.iter().enumerate() {
            if i > 0 {
                out.push(b':');
            }
            group(out, x);
        }
        return;
    }
    for (i, &x) in g[..best].iter().enumerate() {
        if i > 0 {
            out.push(b':');
        }
        group(out, x);
    }
    out.put(b"::");
    for (i, &x) in g[best + best_len..].iter().enumerate() {
        if i > 0 {
            out.push(b':');
        }
        group(out, x);
    }
}

/// An address's text on the stack (for Lua strings of addresses), with
/// room after it (the longest address text is 45 bytes).
pub fn ip_string(a: IpAddr) -> Stack<64> {
    let mut t = Stack::new();
    ip_text(&mut t, a);
    t
}

/// `v` as 16 lowercase hex digits.
#[inline(always)]
fn hex16<B: Buf>(out: &mut B, v: u64) {
    let mut b = [0u8; 16];
    hex16_into(&mut b, v);
    out.put(&b);
}

/// `v` as 16 lower-case hex digits (a flow's `key`).
pub fn hex16_into(b: &mut [u8; 16], v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, d) in b.iter_mut().enumerate() {
        *d = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (the civil-from-days algorithm of Howard Hinnant's date library).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// RFC 3339 UTC with milliseconds (`2026-11-29T01:40:23.123Z`), as
/// `record::rfc3339_ms` writes it, for times from 1970 to 9999.
#[inline(always)]
pub fn rfc3339_ms<B: Buf>(out: &mut B, ms: i64) {
    let ms = ms.clamp(0, 253_402_300_799_999);
    let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000) as u32);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
    let (y, mo, d) = civil(days);
    let two = |out: &mut B, v: u32| {
        out.push(b'0' + (v / 10) as u8);
        out.push(b'0' + (v % 10) as u8);
    };
    let y = y as u32;
    two(out, y / 100);
    two(out, y % 100);
    out.push(b'-');
    two(out, mo);
    out.push(b'-');
    two(out, d);
    out.push(b'T');
    two(out, sod / 3600);
    out.push(b':');
    two(out, sod / 60 % 60);
    out.push(b':');
    two(out, sod % 60);
    out.push(b'.');
    out.push(b'0' + (milli / 100) as u8);
    two(out, milli % 100);
    out.push(b'Z');
}

/// `,"k":` in one piece.
macro_rules! key {
    ($out:expr, $k:literal) => {
        $out.put(concat!(",\"", $k, "\":").as_bytes())
    };
}

/// One side's enrichment keys (`,"cli.country":` …), whole.
struct GeoKeys {
    country: &'static str,
    city: &'static str,
    latitude: &'static str,
    longitude: &'static str,
    asn: &'static str,
    as_name: &'static str,
    network: &'static str,
    private: &'static str,
    local: &'static str,
}

macro_rules! geo_keys {
    ($side:literal) => {
        GeoKeys {
            country: concat!(",\"", $side, ".country\":"),
            city: concat!(",\"", $side, ".city\":"),
            latitude: concat!(",\"", $side, ".latitude\":"),
            longitude: concat!(",\"", $side, ".longitude\":"),
            asn: concat!(",\"", $side, ".asn\":"),
            as_name: concat!(",\"", $side, ".as_name\":"),
            network: concat!(",\"", $side, ".network\":"),
            private: concat!(",\"", $side, ".private\":"),
            local: concat!(",\"", $side, ".local\":"),
        }
    };
}

const CLI: GeoKeys = geo_keys!("cli");
const SRV: GeoKeys = geo_keys!("srv");
#[inline(always)]
fn boolean<B: Buf>(out: &mut B, v: bool) {
    out.put(if v { b"true" } else { b"false" });
}
#[inline(always)]
fn geo<B: Buf>(out: &mut B, k: &GeoKeys, g: &GeoInfo) {
    if let Some(v) = &g.country {
        out.put(k.country.as_bytes());
        string(out, v);
    }
    if let Some(v) = &g.city {
        out.put(k.city.as_bytes());
        string(out, v);
    }
    if let (Some(lat), Some(lon)) = (g.latitude, g.longitude) {
        out.put(k.latitude.as_bytes());
        float(out, lat);
        out.put(k.longitude.as_bytes());
        float(out, lon);
    }
    if let Some(v) = g.asn {
        out.put(k.asn.as_bytes());
        int(out, v);
    }
    if let Some(v) = &g.as_name {
        out.put(k.as_name.as_bytes());
        string(out, v);
    }
    if let Some(n) = &g.network {
        out.put(k.network.as_bytes());
        string(out, &n.name);
    }
    out.put(k.private.as_bytes());
    boolean(out, g.private);
    out.put(k.local.as_bytes());
    boolean(out, g.local);
}

/// Room for a line but its strings (keys, numbers, addresses: about 1,150
/// bytes at most, see the test `room_covers_the_longest_line`); each string
/// adds at most six bytes per byte (`\u00XX`).
const LINE_ROOM: usize = 1536;

fn strings_room(g: &GeoInfo) -> usize {
    [&g.country, &g.city, &g.as_name]
        .into_iter()
        .flatten()
        .map(|s| s.len())
        .sum::<usize>()
        + g.network.as_ref().map_or(0, |n| n.name.len())
}

/// Bytes a line about `v` takes at most: the fixed part, its strings
/// escaped at worst (six bytes per byte, `\u00XX`) and the event's name.
fn room(v: &FlowView) -> usize {
    LINE_ROOM
        + 6 * (v.l7.len()
            + strings_room(&v.cli_geo)
            + strings_room(&v.srv_geo)
            + v.status.iter_names().map(|n| n.len() + 3).sum::<usize>())
}

/// Appends the flow snapshot as a JSON object.
pub fn view(out: &mut Vec<u8>, v: &FlowView) {
    Spare::write(out, room(v), |line| view_into(line, v));
}
#[inline(always)]
fn view_into<B: Buf>(out: &mut B, v: &FlowView) {
    out.put(b"{\"key\":\"");
    hex16(out, v.key);
    out.push(b'"');
    key!(out, "cli.ip");
    ip(out, v.cli_ip);
    key!(out, "srv.ip");
    ip(out, v.srv_ip);
    key!(out, "cli.port");
    int(out, v.cli_port);
    key!(out, "srv.port");
    int(out, v.srv_port);
    key!(out, "proto.l4");
    match l4_name(v.proto) {
        Some(n) => string(out, n),
        None => int(out, v.proto),
    }
    key!(out, "proto.l7");
    string(out, &v.l7);
    key!(out, "cli2srv.bytes");
    int(out, v.cli2srv_bytes);
    key!(out, "srv2cli.bytes");
    int(out, v.srv2cli_bytes);
    key!(out, "cli2srv.packets");
    int(out, v.cli2srv_packets);
    key!(out, "srv2cli.packets");
    int(out, v.srv2cli_packets);
    key!(out, "cli2srv.tcp_flags");
    int(out, v.cli_tcp_flags);
    key!(out, "srv2cli.tcp_flags");
    int(out, v.srv_tcp_flags);
    key!(out, "first_seen");
    secs(out, v.first_ms);
    key!(out, "last_seen");
    secs(out, v.last_ms);
    key!(out, "duration");
    secs(out, v.duration_ms());
    key!(out, "exporter");
    ip(out, v.exporter);
    key!(out, "observation_domain");
    int(out, v.observation_domain);
    key!(out, "vlan");
    int(out, v.vlan);
    key!(out, "in_if");
    int(out, v.in_if);
    key!(out, "out_if");
    int(out, v.out_if);
    key!(out, "sampling_interval");
    int(out, v.sampling_interval);
    if let Some(s) = v.sampling_source {
        key!(out, "sampling_source");
        string(out, s.as_str());
    }
    geo(out, &CLI, &v.cli_geo);
    geo(out, &SRV, &v.srv_geo);
    key!(out, "status");
    out.push(b'[');
    for (i, n) in v.status.iter_names().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, n);
    }
    out.push(b']');
    key!(out, "score");
    int(out, v.score);
    if v.cli_score > 0 || v.srv_score > 0 {
        key!(out, "cli.score");
        int(out, v.cli_score);
        key!(out, "srv.score");
        int(out, v.srv_score);
    }
    if let Some(r) = v.end_reason {
        key!(out, "end_reason");
        string(out, r.name());
    }
    out.push(b'}');
}

/// Appends the event as a JSON object (no newline).
pub fn event(out: &mut Vec<u8>, e: &FlowEvent) {
    event_of(out, e.kind, e.time_ms, &e.flow)
}

/// Appends the event `kind` at `time_ms` about `flow` (no newline).
pub fn event_of(out: &mut Vec<u8>, kind: EventKind, time_ms: i64, flow: &FlowView) {
    Spare::write(out, room(flow), |line| {
        event_into(line, kind, time_ms, flow)
    });
}
#[inline(always)]
fn event_into<B: Buf>(out: &mut B, kind: EventKind, time_ms: i64, flow: &FlowView) {
    out.put(b"{\"event\":");
    string(out, kind.name());
    out.put(b",\"time\":\"");
    rfc3339_ms(out, time_ms);
    out.put(b"\",\"flow\":");
    view_into(out, flow);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    #[test]
    fn fast_formatters_match_the_reference() {
        let mut next = crate::flow::tests::xorshift(0x9e37_79b9_7f4a_7c15u64);
        let mut times = vec![
            0i64,
            1,
            999,
            86_399_999,
            951_782_400_000,
            253_402_300_799_999,
            -5,
            i64::MAX,
        ];
        for _ in 0..20_000 {
            times.push((next() % 253_402_300_800_000) as i64);
        }
        for t in times {
            let mut a = Vec::new();
            rfc3339_ms(&mut a, t);
            assert_eq!(
                String::from_utf8(a).unwrap(),
                crate::record::rfc3339_ms(t),
                "{t}"
            );
        }
        for _ in 0..20_000 {
            let k = next();
            let mut a = Vec::new();
            hex16(&mut a, k);
            assert_eq!(String::from_utf8(a).unwrap(), format!("{k:016x}"));
            let v4 = std::net::Ipv4Addr::from(k as u32);
            let mut a = Vec::new();
            ip(&mut a, IpAddr::V4(v4));
            assert_eq!(String::from_utf8(a).unwrap(), format!("\"{v4}\""));
            // IPv6: random groups, many of them zero (runs of every length and place)
            let mut g = [0u16; 8];
            let (r, zeros) = (next(), next());
            for (i, x) in g.iter_mut().enumerate() {
                if zeros >> (i * 2) & 3 != 0 {
                    *x = (r >> (i * 8)) as u16
                        & [0xffff, 0x0fff, 0x00ff, 0x000f][(r >> (i + 40)) as usize & 3];
                }
            }
            for v6 in [
                std::net::Ipv6Addr::from(g),
                std::net::Ipv6Addr::from(u128::from(k) << 64 | u128::from(next())),
            ] {
                let mut a = Vec::new();
                ip(&mut a, IpAddr::V6(v6));
                assert_eq!(String::from_utf8(a).unwrap(), format!("\"{v6}\""));
            }
        }
        for t in [
            "::",
            "::1",
            "1::",
            "::ffff:1.2.3.4",
            "::1.2.3.4",
            "64:ff9b::1.2.3.4",
            "1:0:0:1:0:0:0:1",
            "1:0:0:0:1:0:0:1",
            "0:0:1:0:0:1:0:0",
            "2001:db8::ff00:42:8329",
            "1:2:3:4:5:6:7:8",
            "1:0:2:0:3:0:4:0",
        ] {
            let v6: std::net::Ipv6Addr = t.parse().unwrap();
            let mut a = Vec::new();
            ip(&mut a, IpAddr::V6(v6));
            assert_eq!(String::from_utf8(a).unwrap(), format!("\"{v6}\""), "{t}");
        }
    }

    /// Integers written in place read as `itoa` (and `Display`) writes them.
    #[test]
    fn integers_match_the_reference() {
        let mut vals = vec![0u64, 1, 9, 10, 99, 100, 999, 1000, u64::MAX, u64::MAX - 1];
        let mut p = 1u64;
        for _ in 0..19 {
            p *= 10;
            vals.extend([p - 1, p, p + 1]);
        }
        let mut next = crate::flow::tests::xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..100_000 {
            let rng = next();
            vals.push(rng >> (rng % 64));
        }
        for v in vals {
            let mut line = Vec::new();
            Spare::write(&mut line, 64, |w| w.uint(v));
            let mut st = Stack::<24>::new();
            st.uint(v);
            assert_eq!(line, v.to_string().as_bytes(), "{v}");
            assert_eq!(st.bytes(), v.to_string().as_bytes(), "{v}");
            // fewer than 20 bytes left: digit by digit
            if v < 10_000_000_000_000_000_000 {
                let mut tight = Stack::<24>::new();
                tight.put(b"12345");
                tight.uint(v);
                assert_eq!(&tight.bytes()[5..], v.to_string().as_bytes(), "{v}");
            }
        }
    }

    /// `secs` writes what serde_json writes for the f64 `ms / 1000`.
    #[test]
    fn seconds_match_the_reference() {
        let mut next = crate::flow::tests::xorshift(0x2545_f491_4f6c_dd1du64);
        let mut ms = vec![
            0i64,
            1,
            5,
            10,
            50,
            100,
            101,
            110,
            999,
            1000,
            1001,
            1010,
            1100,
            60_000,
            1_795_950_975_998,
            1_795_950_976_000,
            SECS_DIRECT_BELOW_MS - 1,
            SECS_DIRECT_BELOW_MS,
            -1,
            -1500,
            i64::MAX,
            i64::MIN,
        ];
        for _ in 0..200_000 {
            let r = next();
            // every magnitude, and today's times
            ms.push((r >> (r % 50)) as i64 % SECS_DIRECT_BELOW_MS);
            ms.push(1_700_000_000_000 + (r % 200_000_000_000) as i64);
        }
        for m in ms {
            let mut a = Vec::new();
            secs(&mut a, m);
            let reference = serde_json::to_vec(&(m as f64 / 1000.0)).unwrap();
            assert_eq!(
                String::from_utf8(a).unwrap(),
                String::from_utf8(reference).unwrap(),
                "{m}"
            );
        }
    }

    use super::*;
    use crate::enrich::NetworkLabel;
    use crate::flow::status::{self, StatusSet};
    use crate::flow::{EndReason, EventKind};

    fn sample(proto: u8, geo: bool, weird: &str) -> FlowEvent {
        let g = |country: &str| {
            Arc::new(if geo {
                GeoInfo {
                    country: Some(Arc::from(country)),
                    city: Some(Arc::from(weird)),
                    latitude: Some(51.5142),
                    longitude: Some(-0.0931),
                    asn: Some(64_512),
                    as_name: Some(Arc::from("Example \"AS\" \\ net")),
                    network: Some(Arc::new(NetworkLabel {
                        cidr: "10.0.0.0/8".parse().unwrap(),
                        name: Arc::from("lab\u{7}"),
                        role: None,
                        site: None,
                        tags: Vec::new(),
                        local: true,
                        country: None,
                        asn: None,
                        as_name: None,
                    })),
                    private: false,
                    local: true,
                }
            } else {
                GeoInfo {
                    private: true,
                    ..GeoInfo::default()
                }
            })
        };
        let mut st = StatusSet::default();
        st.set(status::TCP_RESET);
        st.set(status::register("json_test_status").unwrap());
        FlowEvent {
            kind: EventKind::FlowEnd,
            time_ms: 1_700_000_123_456,
            flow: FlowView {
                key: 0x00ab_cdef_0123_4567,
                exporter: "192.0.2.1".parse().unwrap(),
                observation_domain: 7,
                vlan: 12,
                cli_ip: "10.0.0.1".parse().unwrap(),
                srv_ip: "2001:db8::1".parse().unwrap(),
                cli_port: 40000,
                srv_port: 443,
                proto,
                l7: Arc::from(weird),
                cli2srv_bytes: u64::MAX,
                srv2cli_bytes: 0,
                cli2srv_packets: 3,
                srv2cli_packets: 4,
                cli_tcp_flags: 0x1b,
                srv_tcp_flags: 0x12,
                first_ms: 1_700_000_000_000,
                last_ms: 1_700_000_000_999,
                in_if: 1,
                out_if: 2,
                sampling_interval: 0,
                sampling_source: None,
                cli_geo: g("GB"),
                srv_geo: g("CN"),
                status: st,
                score: 15,
                cli_score: 0,
                srv_score: 0,
                end_reason: Some(EndReason::TcpRst),
            },
        }
    }

    /// The room a line is given covers the longest line there can be:
    /// IPv6 addresses, the largest numbers, every geo value, both scores.
    #[test]
    fn room_covers_the_longest_line() {
        for (weird, strings) in [
            ("", false),
            ("", true),
            ("x", true),
            ("\u{1}\u{2}\u{3}\"\\", true),
        ] {
            let mut e = sample(200, true, weird);
            let v = &mut e.flow;
            v.exporter = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
                .parse()
                .unwrap();
            v.cli_ip = v.exporter;
            v.srv_ip = v.exporter;
            v.key = u64::MAX;
            (v.cli_port, v.srv_port) = (u16::MAX, u16::MAX);
            v.cli2srv_bytes = u64::MAX;
            v.srv2cli_bytes = u64::MAX;
            v.cli2srv_packets = u64::MAX;
            v.srv2cli_packets = u64::MAX;
            (v.cli_tcp_flags, v.srv_tcp_flags) = (u8::MAX, u8::MAX);
            (v.first_ms, v.last_ms) = (i64::MIN, i64::MAX);
            v.observation_domain = u32::MAX;
            v.vlan = u16::MAX;
            (v.in_if, v.out_if) = (u32::MAX, u32::MAX);
            v.sampling_interval = u32::MAX;
            v.sampling_source = Some(crate::record::SamplingSource::Selector);
            (v.score, v.cli_score, v.srv_score) = (u16::MAX, u16::MAX, u16::MAX);
            v.end_reason = Some(EndReason::LackOfResources);
            for g in [&mut v.cli_geo, &mut v.srv_geo] {
                let mut x = (**g).clone();
                (x.latitude, x.longitude) = (
                    Some(-1.2345678901234567e-300),
                    Some(-1.7976931348623157e308),
                );
                x.asn = Some(u32::MAX);
                if !strings {
                    (x.country, x.city, x.as_name, x.network) = (None, None, None, None);
                }
                *g = Arc::new(x);
            }
            if !strings {
                v.status = StatusSet::default();
            }
            let mut line = Vec::new();
            event_into(&mut line, EventKind::PeriodicUpdate, i64::MIN, &e.flow);
            assert!(
                line.len() <= room(&e.flow),
                "{} bytes, room {}",
                line.len(),
                room(&e.flow)
            );
        }
    }

    #[test]
    fn hand_written_json_equals_serde() {
        for (proto, geo, weird) in [
            (6, true, "TLS.Google"),
            (17, false, "DNS"),
            (
                200,
                true,
                "quote\" back\\ nl\n tab\t ctl\u{1} del\u{7f} é ✓",
            ),
        ] {
            let mut e = sample(proto, geo, weird);
            for end in [Some(EndReason::TcpRst), None] {
                e.flow.end_reason = end;
                let mut ours = Vec::new();
                event(&mut ours, &e);
                let reference = serde_json::to_vec(&e).unwrap();
                assert_eq!(
                    String::from_utf8(ours).unwrap(),
                    String::from_utf8(reference).unwrap()
                );
            }
        }
    }
}
