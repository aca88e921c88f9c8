//! Compact decoding through 8-byte windows: the hot loop of the flow table's way in.
//!
//! In: a [`Fast`] plan whose every slot the compact record reads is short
//! enough that its value always fits (ports in 2 bytes, interfaces in 4, …)
//! and whose sides each have one address slot. Out: [`Quick`], which decodes
//! one record into its [`Compact`] form the way [`Fast::decode_compact`]
//! does, reading each present slot as one big-endian 8-byte load shifted
//! down: no per-slot length or range checks, no `Option` per slot. The
//! record is first copied into a [`WIN`]-byte buffer (a slot starts in its
//! first 256 bytes), so each window is read at a fixed place in it: no
//! bounds check survives (offsets are below 256), and the bytes a window
//! reads past the record are shifted out. Plans this cannot take go through
//! [`Fast::decode_compact`]. `tests/differential.rs` holds both to the
//! crate's records.

use super::{Dest, Fast, abs_time, finish_compact};
use crate::decode::normalize::{Ctx, TimeFields};
use crate::decode::sampling::{Resolved, Rules};
use crate::record::{Compact, Has};

/// Bytes of the buffer a record is read from: a slot starts below 256, and
/// an address window reads 16 bytes from there.
pub(super) const WIN: usize = 272;

/// A slot read as the 8-byte big-endian window at `off` shifted right by `shift`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Win {
    off: u16,
    shift: u8,
    on: bool,
}

impl Win {
    #[inline(always)]
    fn read(self, w: &[u8; WIN]) -> u64 {
        // below 256 (`Quick::of`): the mask only shows the compiler the window fits
        let o = usize::from(self.off) & 0xff;
        let b: [u8; 8] = w[o..o + 8].try_into().unwrap_or_default();
        u64::from_be_bytes(b) >> self.shift
    }

    /// The value, 0 when the template has no such field.
    #[inline(always)]
    fn or0(self, w: &[u8; WIN]) -> u64 {
        if self.on { self.read(w) } else { 0 }
    }

    #[inline(always)]
    fn opt(self, w: &[u8; WIN]) -> Option<u64> {
        self.on.then(|| self.read(w))
    }
}

/// One side's address slot.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
enum Addr {
    #[default]
    None,
    V4(u16),
    V6(u16),
}

impl Addr {
    #[inline(always)]
    fn read(self, w: &[u8; WIN]) -> Option<[u8; 16]> {
        let mut m = [0u8; 16];
        match self {
            Addr::None => return None,
            Addr::V4(o) => {
                let o = usize::from(o) & 0xff;
                m[10] = 0xff;
                m[11] = 0xff;
                m[12..].copy_from_slice(&w[o..o + 4]);
            }
            Addr::V6(o) => {
                let o = usize::from(o) & 0xff;
                m.copy_from_slice(&w[o..o + 16]);
            }
        }
        Some(m)
    }
}

/// A [`Fast`] plan as windows (see the module header).
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Quick {
    bytes: Win,
    packets: Win,
    protocol: Win,
    tcp_flags: Win,
    src_port: Win,
    dst_port: Win,
    in_if: Win,
    out_if: Win,
    end_reason: Win,
    start_abs: Win,
    end_abs: Win,
    start_up: Win,
    end_up: Win,
    start_delta: Win,
    end_delta: Win,
    src: Addr,
    dst: Addr,
    tcp_mask: u64,
    start_unit: i64,
    end_unit: i64,
    /// Has bits every record of the plan gets from its slots alone.
    has: u32,
}

impl Quick {
    /// The windows of `f`, when every slot the compact record reads fits
    /// its destination whatever its bytes hold and starts in the record's
    /// first 256 bytes (else `None`).
    pub(super) fn of(f: &Fast) -> Option<Quick> {
        let mut max_off = 0u16;
        let mut win = |d: Dest, max_len: u16| -> Option<Win> {
            let a = f.at[d as usize];
            if a.len == 0 {
                return Some(Win::default());
            }
            if a.len > max_len {
                return None;
            }
            max_off = max_off.max(a.off);
            Some(Win {
                off: a.off,
                shift: ((8 - a.len) * 8) as u8,
                on: true,
            })
        };
        let mut q = Quick {
            bytes: win(Dest::RawBytes, 8)?,
            packets: win(Dest::RawPackets, 8)?,
            protocol: win(Dest::Protocol, 1)?,
            // masked by the crate's typing (9 bits) or at most 2 bytes: fits u16
            tcp_flags: win(Dest::TcpFlags, 2)?,
            src_port: win(Dest::SrcPort, 2)?,
            dst_port: win(Dest::DstPort, 2)?,
            in_if: win(Dest::InIf, 4)?,
            out_if: win(Dest::OutIf, 4)?,
            end_reason: win(Dest::EndReason, 1)?,
            start_abs: win(Dest::StartAbs, 8)?,
            end_abs: win(Dest::EndAbs, 8)?,
            start_up: win(Dest::StartUp, 8)?,
            end_up: win(Dest::EndUp, 8)?,
            start_delta: win(Dest::StartDelta, 8)?,
            end_delta: win(Dest::EndDelta, 8)?,
            tcp_mask: f.tcp_mask,
            start_unit: f.start_unit,
            end_unit: f.end_unit,
            ..Quick::default()
        };
        let mut addr = |d4: Dest, d6: Dest| -> Option<Addr> {
            let (a4, a6) = (f.at[d4 as usize], f.at[d6 as usize]);
            // both slots: which one wins depends on the bytes (`Fast::addr`)
            let (a, v6) = match (a4.len, a6.len) {
                (0, 0) => return Some(Addr::None),
                (_, 0) => (a4, a4.len == 16),
                (0, _) => (a6, a6.len == 16),
                _ => return None,
            };
            max_off = max_off.max(a.off);
            Some(if v6 { Addr::V6(a.off) } else { Addr::V4(a.off) })
        };
        q.src = addr(Dest::Src4, Dest::Src6)?;
        q.dst = addr(Dest::Dst4, Dest::Dst6)?;
        let mut has = 0;
        for (w, bit) in [
            (q.src_port, Has::SRC_PORT),
            (q.dst_port, Has::DST_PORT),
            (q.in_if, Has::IN_IF),
            (q.out_if, Has::OUT_IF),
            (q.end_reason, Has::END_REASON),
        ] {
            if w.on {
                has |= bit;
            }
        }
        if q.src != Addr::None {
            has |= Has::SRC;
        }
        if q.dst != Addr::None {
            has |= Has::DST;
        }
        q.has = has;
        (max_off < 256).then_some(q)
    }

    /// One record (copied to the start of `w`) into `c` (fresh), as
    /// [`Fast::decode_compact`] makes it.
    #[inline(always)]
    pub(super) fn decode(
        &self,
        w: &[u8; WIN],
        c: &mut Compact,
        ctx: &Ctx,
        announced: Resolved,
        rules: &Rules,
    ) -> Resolved {
        let mut has = self.has;
        let src_port = self.src_port.or0(w) as u16;
        let dst_port = self.dst_port.or0(w) as u16;
        let in_if = self.in_if.or0(w) as u32;
        c.src_port = src_port;
        c.dst_port = dst_port;
        c.in_if = in_if;
        c.out_if = self.out_if.or0(w) as u32;
        c.end_reason = self.end_reason.or0(w) as u8;
        // `icmp_from_ports`: the destination port's high byte when the source port is 0
        if self.dst_port.on && src_port == 0 {
            c.icmp_type = (dst_port >> 8) as u8;
            has |= Has::ICMP;
        }
        c.protocol = self.protocol.or0(w) as u8;
        c.tcp_flags = (self.tcp_flags.or0(w) & self.tcp_mask) as u16;
        if let Some(a) = self.src.read(w) {
            c.src = a;
        }
        if let Some(a) = self.dst.read(w) {
            c.dst = a;
        }
        c.has.0 |= has;
        let t = TimeFields {
            start_abs: self
                .start_abs
                .opt(w)
                .and_then(|v| abs_time(v, self.start_unit)),
            end_abs: self.end_abs.opt(w).and_then(|v| abs_time(v, self.end_unit)),
            start_up: self.start_up.opt(w),
            end_up: self.end_up.opt(w),
            start_delta_us: self.start_delta.opt(w),
            end_delta_us: self.end_delta.opt(w),
        };
        let in_if = self.in_if.on.then_some(in_if);
        let counters = (self.bytes.opt(w), self.packets.opt(w));
        finish_compact(c, in_if, counters, t, ctx, announced, rules)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::super::{At, DESTS, Fast};
    use super::{Dest, Quick, WIN};
    use crate::decode::normalize::Ctx;
    use crate::decode::sampling::{Resolved, Rule, Rules};
    use crate::record::{Compact, SamplingSource};

    /// xorshift64*: the same pseudo-random layouts and bytes in every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A plan with a random subset of the slots Quick reads, at random
    /// offsets, with the lengths each may have.
    fn layout(rng: &mut Rng) -> Fast {
        let mut f = Fast::default();
        let mut off = 0u16;
        let mut slot = |f: &mut Fast, d: Dest, lens: &[u16], rng: &mut Rng| {
            if rng.below(4) == 0 {
                return;
            }
            let len = lens[rng.below(lens.len() as u64) as usize];
            // fields in between: now and then a long run of them (records past `WIN` bytes)
            off += if rng.below(12) == 0 {
                90
            } else {
                rng.below(3) as u16
            };
            f.at[d as usize] = At { off, len };
            off += len;
        };
        slot(&mut f, Dest::RawBytes, &[1, 2, 4, 8], rng);
        slot(&mut f, Dest::RawPackets, &[4, 8], rng);
        slot(&mut f, Dest::Protocol, &[1], rng);
        slot(&mut f, Dest::TcpFlags, &[1, 2], rng);
        slot(&mut f, Dest::SrcPort, &[2], rng);
        slot(&mut f, Dest::DstPort, &[1, 2], rng);
        slot(&mut f, Dest::InIf, &[2, 4], rng);
        slot(&mut f, Dest::OutIf, &[2, 4], rng);
        slot(&mut f, Dest::EndReason, &[1], rng);
        match rng.below(3) {
            0 => {
                slot(&mut f, Dest::StartUp, &[4], rng);
                slot(&mut f, Dest::EndUp, &[4], rng);
            }
            1 => {
                slot(&mut f, Dest::StartAbs, &[4, 8], rng);
                slot(&mut f, Dest::EndAbs, &[8], rng);
            }
            _ => {
                slot(&mut f, Dest::StartDelta, &[4], rng);
                slot(&mut f, Dest::EndDelta, &[4], rng);
            }
        }
        let v6 = rng.below(2) == 0;
        slot(
            &mut f,
            if v6 { Dest::Src6 } else { Dest::Src4 },
            &[if v6 { 16 } else { 4 }],
            rng,
        );
        slot(
            &mut f,
            if v6 { Dest::Dst6 } else { Dest::Dst4 },
            &[if v6 { 16 } else { 4 }],
            rng,
        );
        f.tcp_mask = if rng.below(2) == 0 { 0x1ff } else { u64::MAX };
        f.start_unit = [0, 1, 1000][rng.below(3) as usize];
        f.end_unit = [0, 1, 1000][rng.below(3) as usize];
        assert!(f.at.len() == DESTS);
        f
    }

    /// Every record Quick reads decodes as [`Fast::decode_compact`] decodes
    /// it: random layouts, random bytes (zeros and all-ones often), with and
    /// without sampling rules, v9 and IPFIX clocks.
    #[test]
    fn windows_decode_as_the_slots_do() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let rules = [
            Rules::default(),
            Rules::new(vec![Rule {
                exporter: "10.0.0.0/8".parse().unwrap(),
                domain: None,
                interface: Some(3),
                rate: 100,
                overrides: true,
            }]),
        ];
        let (mut checked, mut long) = (0, 0);
        for _ in 0..2000 {
            let f = layout(&mut rng);
            let Some(q) = Quick::of(&f) else {
                continue;
            };
            // fields nothing reads after the last slot, now and then many
            let tail = if rng.below(3) == 0 {
                100
            } else {
                rng.below(3) as usize
            };
            let last = f.at.iter().map(|a| usize::from(a.off + a.len)).max();
            let rec_len = tail + last.unwrap_or(0);
            for _ in 0..20 {
                let ctx = Ctx {
                    exporter: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                    version: if rng.below(2) == 0 { 9 } else { 10 },
                    domain: rng.below(3) as u32,
                    export_ms: 1_795_000_000_000 + rng.below(1 << 30) as i64,
                    uptime_ms: (rng.below(2) == 0).then(|| rng.next() as u32),
                    sampling: None,
                    system_init_ms: (rng.below(2) == 0).then_some(1_700_000_000_000),
                };
                let announced = match rng.below(3) {
                    0 => Resolved::Unknown,
                    1 => Resolved::Rate(1 + rng.below(1000) as u32, SamplingSource::Options),
                    _ => Resolved::Unscalable,
                };
                let mut body: Vec<u8> = (0..rec_len)
                    .map(|_| match rng.below(8) {
                        0 => 0,
                        1 => 0xff,
                        _ => rng.next() as u8,
                    })
                    .collect();
                if rng.below(4) == 0 && f.at[Dest::InIf as usize].len > 0 {
                    let o = usize::from(f.at[Dest::InIf as usize].off);
                    let l = usize::from(f.at[Dest::InIf as usize].len);
                    body[o..o + l].fill(0);
                    body[o + l - 1] = 3;
                }
                for r in &rules {
                    let fresh = Compact {
                        domain: ctx.domain,
                        ..Compact::default()
                    };
                    let (mut a, mut b) = (fresh, fresh);
                    let ra = f.decode_compact(&body, &mut a, &ctx, announced, r);
                    // as `Plan::decode_compact_set`: after another record's bytes
                    let mut win = [0xa5u8; WIN];
                    let n = rec_len.min(WIN);
                    win[..n].copy_from_slice(&body[..n]);
                    let rb = q.decode(&win, &mut b, &ctx, announced, r);
                    assert_eq!(ra, rb, "resolved, layout {f:?}");
                    assert_eq!(a, b, "record, layout {f:?} bytes {body:?}");
                    checked += 1;
                    long += usize::from(rec_len > WIN);
                }
            }
        }
        assert!(checked > 10_000, "only {checked} records compared");
        assert!(
            long > 100,
            "only {long} records longer than the window buffer"
        );
    }

    /// A slot longer than its destination takes (a port in 4 bytes) or both
    /// address families on one side: the plan keeps to the checked slots.
    #[test]
    fn plans_it_cannot_take_are_left_to_the_slots() {
        let mut f = Fast::default();
        f.at[Dest::SrcPort as usize] = At { off: 0, len: 4 };
        assert!(Quick::of(&f).is_none());
        let mut f = Fast::default();
        f.at[Dest::Src4 as usize] = At { off: 0, len: 4 };
        f.at[Dest::Src6 as usize] = At { off: 4, len: 16 };
        assert!(Quick::of(&f).is_none());
        let mut f = Fast::default();
        f.at[Dest::Src4 as usize] = At { off: 0, len: 4 };
        f.at[Dest::InIf as usize] = At { off: 255, len: 4 };
        assert!(Quick::of(&f).is_some(), "a slot starting at byte 255");
        f.at[Dest::OutIf as usize] = At { off: 256, len: 4 };
        assert!(Quick::of(&f).is_none(), "a slot starting past byte 255");
    }
}
