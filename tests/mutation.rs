//! Mutation test: at least 100,000 corrupted datagrams derived from the vendor
//! corpus (bit flips, truncations, length and count fields set to extremes,
//! spliced sets) through the real decode path. Asserts no panic, every error
//! has a stable code, and the decoder's state stays within its caps.

mod common;

use std::net::IpAddr;

use common::mutate::{Rng, mutate, vendor_seeds};
use flowhook::decode::{Decoder, DecoderLimits};

#[test]
fn hundred_thousand_corrupted_datagrams() {
    let Some(shared) = common::shared_dir("hundred_thousand_corrupted_datagrams") else {
        return;
    };
    let seeds = vendor_seeds(&shared);

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
