//! The mutation corpus: corrupted datagrams derived from the vendor corpus
//! (bit flips, truncations, extreme length and count fields, spliced sets,
//! random bodies), deterministic from a seed. Used by the mutation and the
//! differential tests.

use std::path::Path;

/// xorshift64*: deterministic, no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
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

pub fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
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

/// Every vendor payload of `shared/testdata/vendor`, sorted, as mutation seeds.
pub fn vendor_seeds(shared: &Path) -> Vec<Vec<u8>> {
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
    seeds
}
