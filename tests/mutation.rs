//! Mutation test: at least 100,000 corrupted datagrams derived from the vendor
//! corpus (bit flips, truncations, length and count fields set to extremes,
//! spliced sets) through the real decode path. Asserts no panic, every error
//! has a stable code, and the decoder's state stays within its caps.

mod common;

use std::net::IpAddr;

use flowhook::decode::{Decoder, DecoderLimits};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const EXTREMES: [u16; 6] = [0, 1, 3, 4, 0x7fff, 0xffff];

/// Offsets of 16-bit length/count fields worth attacking: the header's
/// count/length and each set's id and length, plus template field counts.
fn length_offsets(d: &[u8]) -> Vec<usize> {
    let mut v = vec![2];
    let version = u16::from_be_bytes([d[0], d[1]]);
    let mut at = match version {
        9 => 20,
        10 => 16,
        _ => return v,
    };
    while at + 4 <= d.len() {
        v.push(at);
        v.push(at + 2);
        v.push(at + 6); // first template's field count / first field
        let len = u16::from_be_bytes([d[at + 2], d[at + 3]]) as usize;
        if len < 4 {
            break;
        }
        at += len;
    }
    v
}

fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut d = seed.to_vec();
    match rng.below(6) {
        0 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
        }
        1 => d.truncate(rng.below(d.len())),
        2 => {
            let offs = length_offsets(&d);
            let at = offs[rng.below(offs.len())];
            if at + 2 <= d.len() {
                d[at..at + 2].copy_from_slice(&EXTREMES[rng.below(EXTREMES.len())].to_be_bytes());
            }
        }
        3 => {
            // splice the tail of another datagram after a random point
            let cut = rng.below(d.len());
            let from = rng.below(other.len());
            d.truncate(cut);
            d.extend_from_slice(&other[from..]);
        }
        4 => {
            for _ in 0..1 + rng.below(16) {
                let i = rng.below(d.len());
                d[i] = rng.next() as u8;
            }
        }
        _ => {
            // random bytes after a valid header
            let keep = 16.min(d.len());
            d.truncate(keep);
            for _ in 0..rng.below(1500) {
                d.push(rng.next() as u8);
            }
        }
    }
    d
}

#[test]
fn hundred_thousand_corrupted_datagrams() {
    let Some(shared) = common::shared_dir("hundred_thousand_corrupted_datagrams") else {
        return;
    };
    let dir = shared.join("testdata/vendor");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "dat"))
        .map(|e| std::fs::read(e.path()).unwrap())
        .filter(|d| d.len() >= 4)
        .collect();
    seeds.sort();
    assert!(seeds.len() > 50, "vendor corpus too small: {}", seeds.len());

    let limits = DecoderLimits {
        max_exporters: 16,
        max_templates_per_exporter: 32,
        pending_max_templates: 8,
        pending_max_sets_per_template: 8,
        ..DecoderLimits::default()
    };
    let mut decoder = Decoder::new(&limits).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::new();
    let (mut ok, mut failed, mut records) = (0u64, 0u64, 0u64);
    let mut codes = std::collections::BTreeMap::new();
    const N: usize = 100_000;
    for i in 0..N {
        let exporter = IpAddr::from([10, 0, (i % 7) as u8, rng.below(40) as u8]);
        // keep templates flowing: every 4th datagram is an intact seed
        let seed = &seeds[rng.below(seeds.len())];
        let other = &seeds[rng.below(seeds.len())];
        let d = if i % 4 == 0 {
            seed.clone()
        } else {
            mutate(&mut rng, seed, other)
        };
        out.clear();
        match decoder.decode(exporter, &d, &mut out) {
            Ok(o) => {
                ok += 1;
                if let Some(e) = o.partial_error {
                    *codes.entry(e.code()).or_insert(0u64) += 1;
                }
            }
            Err(e) => {
                failed += 1;
                *codes.entry(e.code()).or_insert(0u64) += 1;
            }
        }
        records += out.len() as u64;
        assert!(
            out.len() <= 65_536,
            "datagram {i} produced {} records",
            out.len()
        );
        assert!(
            decoder.streams() <= limits.max_exporters,
            "stream state grew past its cap: {}",
            decoder.streams()
        );
    }
    eprintln!(
        "mutation: {N} datagrams, {ok} decoded, {failed} rejected, {records} records; reasons {codes:?}"
    );
    assert_eq!(ok + failed, N as u64);
    assert!(
        failed > 10_000,
        "mutations should mostly be rejected, only {failed} were"
    );
    assert!(
        decoder.stats.streams_evicted > 0,
        "exporter cap never exercised"
    );
}
