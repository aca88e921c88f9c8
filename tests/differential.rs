//! Differential test of the compiled-template hot path against the decoder
//! crate: the vendor corpus (every case twice, so data after its template
//! takes the compiled path), the mutation corpus and generated v9/IPFIX
//! streams go through two decoders, one with compiled templates and one
//! without, and every datagram must give the same outcome and the same
//! records (compared on everything the compiled path fills: all but the
//! `fields` map and `application_id`). A third decoder takes the flow
//! table's way in (`decode_split`): its compact records must be the compact
//! form of the crate's records, field for field.

mod common;

use std::net::IpAddr;

use common::mutate::{Rng, mutate, vendor_seeds};
use flowhook::decode::{DecodeError, Decoder, DecoderLimits, Outcome};
use flowhook::generate::{GenConfig, run};
use flowhook::record::{Compact, FlowRecord, RecordKind};

/// Two decoders fed the same datagrams.
struct Pair {
    reference: Decoder,
    compiled: Decoder,
    /// Compiled templates, records for the flow table (`decode_split`).
    split: Decoder,
    a: Vec<FlowRecord>,
    b: Vec<FlowRecord>,
    c: Vec<FlowRecord>,
    compact: Vec<Compact>,
    /// Records decoded straight into compact form.
    compact_records: u64,
    /// Records decoded on the compiled path (outcomes the crate was not asked for).
    datagrams: u64,
    records: u64,
}

fn projected(r: &FlowRecord) -> FlowRecord {
    let mut r = r.clone();
    r.fields.clear();
    r.application_id = None;
    r
}

fn outcome_key(o: &Result<Outcome, DecodeError>) -> String {
    match o {
        Ok(o) => format!(
            "ok v{} d{} flows {} options {} trailing {} {:?} missing {} partial {:?} sampling {:?}",
            o.version,
            o.domain,
            o.flows,
            o.options,
            o.trailing,
            o.sequence,
            o.missing_templates,
            o.partial_error.as_ref().map(|e| e.code()),
            o.sampling
        ),
        Err(e) => format!("err {}", e.code()),
    }
}

impl Pair {
    fn new(limits: &DecoderLimits) -> Self {
        let mut compiled = Decoder::new(limits).unwrap();
        compiled.set_compiled(true);
        let mut split = Decoder::new(limits).unwrap();
        split.set_compiled(true);
        Pair {
            reference: Decoder::new(limits).unwrap(),
            compiled,
            split,
            a: Vec::new(),
            b: Vec::new(),
            c: Vec::new(),
            compact: Vec::new(),
            compact_records: 0,
            datagrams: 0,
            records: 0,
        }
    }

    fn feed(&mut self, what: &str, exporter: IpAddr, d: &[u8]) {
        self.a.clear();
        self.b.clear();
        let oa = self.reference.decode(exporter, d, &mut self.a);
        let ob = self.compiled.decode(exporter, d, &mut self.b);
        assert_eq!(outcome_key(&oa), outcome_key(&ob), "{what}: outcome");
        assert_eq!(self.a.len(), self.b.len(), "{what}: record count");
        // (v5/v7 records have no `fields` either: they never take the compiled path)
        let fast = self
            .b
            .first()
            .is_some_and(|r| r.fields.is_empty() && r.version >= 9);
        for (i, (x, y)) in self.a.iter().zip(&self.b).enumerate() {
            if fast {
                assert_eq!(projected(x), *y, "{what}: record {i}");
            } else {
                assert_eq!(x, y, "{what}: record {i} (crate path in both)");
            }
        }
        if fast {
            self.datagrams += 1;
            self.records += self.b.len() as u64;
        }
        self.c.clear();
        self.compact.clear();
        let oc = self
            .split
            .decode_split(exporter, d, &mut self.c, &mut self.compact);
        assert_eq!(outcome_key(&oa), outcome_key(&oc), "{what}: split outcome");
        if self.compact.is_empty() {
            assert_eq!(self.b, self.c, "{what}: split records");
        } else {
            assert!(self.c.is_empty(), "{what}: one datagram, one form");
            assert_eq!(self.a.len(), self.compact.len(), "{what}: compact count");
            for (i, (x, y)) in self.a.iter().zip(&self.compact).enumerate() {
                assert_eq!(x.kind, RecordKind::Flow, "{what}: record {i} kind");
                assert_eq!(Compact::of(x), *y, "{what}: compact record {i}");
            }
            self.compact_records += self.compact.len() as u64;
        }
    }

    fn finish(&self, what: &str) {
        assert_eq!(
            self.reference.stats, self.compiled.stats,
            "{what}: decoder counters"
        );
        assert_eq!(
            self.reference.stats, self.split.stats,
            "{what}: decoder counters (split)"
        );
        assert_eq!(
            self.records, self.compact_records,
            "{what}: every compiled record also in compact form"
        );
        eprintln!(
            "{what}: {} datagrams, {} records on the compiled path",
            self.datagrams, self.records
        );
    }
}

#[test]
fn vendor_corpus_decodes_identically() {
    let Some(shared) = common::shared_dir("vendor_corpus_decodes_identically") else {
        return;
    };
    let dir = shared.join("testdata/vendor");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let mut pair = Pair::new(&DecoderLimits::default());
    let cases = manifest["cases"].as_array().expect("manifest cases");
    for (ci, case) in cases.iter().enumerate() {
        // each case from its own exporter, its files twice
        let exporter = IpAddr::from([192, 0, 2, (ci % 250) as u8 + 1]);
        let files: Vec<&str> = case["files"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str())
            .collect();
        for pass in 0..2 {
            for f in &files {
                let data = std::fs::read(dir.join(f)).unwrap();
                pair.feed(&format!("{f} (pass {pass})"), exporter, &data);
            }
        }
    }
    pair.finish("vendor corpus");
    assert!(pair.records > 100, "the compiled path was hardly used");
}

#[test]
fn mutation_corpus_decodes_identically() {
    let Some(shared) = common::shared_dir("mutation_corpus_decodes_identically") else {
        return;
    };
    let seeds = vendor_seeds(&shared);
    // No template eviction here: the compiled path does not refresh the
    // crate's LRU order, so under template-cap pressure the two may evict
    // different templates (docs/compatibility.md).
    let limits = DecoderLimits {
        max_exporters: 16,
        max_templates_per_exporter: 65_535,
        pending_max_templates: 8,
        pending_max_sets_per_template: 8,
        ..DecoderLimits::default()
    };
    let mut pair = Pair::new(&limits);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for i in 0..40_000 {
        let exporter = IpAddr::from([10, 0, 0, rng.below(8) as u8]);
        let seed = &seeds[rng.below(seeds.len())];
        let other = &seeds[rng.below(seeds.len())];
        // intact seeds keep templates (and the compiled path) alive
        let d = if i % 3 == 0 {
            seed.clone()
        } else {
            mutate(&mut rng, seed, other)
        };
        pair.feed(&format!("mutation {i}"), exporter, &d);
    }
    pair.finish("mutation corpus");
    assert!(pair.records > 1000, "the compiled path was hardly used");
}

#[test]
fn generated_streams_decode_identically() {
    let dir = tempfile::tempdir().unwrap();
    for (version, exporters, domains) in [(9, 1, 1), (10, 1, 1), (9, 4, 2), (10, 3, 3)] {
        let path = dir.path().join(format!("g{version}.pcap"));
        let cfg = GenConfig {
            version,
            exporters,
            domains,
            flows: 9000,
            datagrams: Some(2000),
            pcap: Some(path.clone()),
            send: false,
            start_unix_ms: Some(1_700_000_000_000),
            ..GenConfig::default()
        };
        run(&cfg, |_| {}).unwrap();
        let mut pair = Pair::new(&DecoderLimits::default());
        flowhook::capture::for_each_datagram(&path, |d| {
            pair.feed(
                &format!("v{version} frame {}", d.frame),
                d.exporter,
                &d.payload,
            );
        })
        .unwrap();
        pair.finish(&format!("generated v{version}"));
        assert!(
            pair.datagrams > 1800,
            "v{version}: most datagrams carry no template and take the compiled path"
        );
    }
}
