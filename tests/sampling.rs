//! Sampling, every way exporters announce it (docs/flow-record.md,
//! "Sampling"): PSAMP selectors as IOS XR sends them (selectorId with
//! samplingSize/samplingPopulation), with and without `selectorId` in the data
//! records, two selectors on one exporter, NetFlow v9 samplerId with
//! samplerRandomInterval, a rate that changes mid-stream, and `[[sampling]]`
//! rules that fill in or override. Every datagram is written here; each goes
//! through the decoder with and without compiled templates (the two must
//! agree), and the scaled and raw counters and `sampling_source` are checked.
//! A `replay` run checks the flow events and a script's `getExporterInfo()`.

mod common;

use std::net::IpAddr;
use std::process::Command;

use flowhook::config::Config;
use flowhook::decode::Decoder;
use flowhook::record::{FlowRecord, RecordKind, SamplingSource};

use common::export::*;

/// Decoders with and without compiled templates, fed the same datagrams;
/// their flow records must agree (compiled records carry no `fields`).
struct Both {
    crate_path: Decoder,
    compiled: Decoder,
    /// Flow records the compiled path decoded (without `fields`).
    fast: usize,
}

impl Both {
    fn new(cfg: &Config) -> Self {
        let mut compiled = Decoder::from_config(cfg).unwrap();
        compiled.set_compiled(true);
        Both {
            crate_path: Decoder::from_config(cfg).unwrap(),
            compiled,
            fast: 0,
        }
    }

    fn plain() -> Self {
        Self::new(&Config::default())
    }

    /// The flow records of one datagram.
    fn flows(&mut self, exporter: &str, d: &[u8]) -> Vec<FlowRecord> {
        let ip: IpAddr = exporter.parse().unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let oa = self.crate_path.decode(ip, d, &mut a).unwrap();
        let ob = self.compiled.decode(ip, d, &mut b).unwrap();
        assert_eq!(oa.sampling, ob.sampling, "sampling counts of both paths");
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            let mut x = x.clone();
            if y.fields.is_empty() {
                self.fast += 1;
                x.fields.clear();
                x.application_id = None;
            }
            assert_eq!(&x, y, "both decode paths agree");
        }
        a.retain(|r| r.kind == RecordKind::Flow);
        a
    }

    /// The options records of one datagram (crate path).
    fn options(&mut self, exporter: &str, d: &[u8]) -> Vec<FlowRecord> {
        let ip: IpAddr = exporter.parse().unwrap();
        let mut a = Vec::new();
        self.crate_path.decode(ip, d, &mut a).unwrap();
        self.compiled.decode(ip, d, &mut Vec::new()).unwrap();
        a.retain(|r| r.kind == RecordKind::Options);
        a
    }
}

/// Scaled and raw counters and where the rate came from.
#[track_caller]
fn assert_sampled(r: &FlowRecord, rate: u32, source: SamplingSource) {
    let (raw_b, raw_p) = (r.raw_bytes.unwrap(), r.raw_packets.unwrap());
    assert_eq!(r.sampling_interval, Some(rate), "{r:?}");
    assert_eq!(r.sampling_source, Some(source), "{r:?}");
    assert_eq!(r.bytes, Some(raw_b * u64::from(rate)));
    assert_eq!(r.packets, Some(raw_p * u64::from(rate)));
}

#[track_caller]
fn assert_unscaled(r: &FlowRecord) {
    assert_eq!(r.sampling_interval, None, "{r:?}");
    assert_eq!(r.sampling_source, None);
    assert_eq!(r.bytes, r.raw_bytes);
    assert_eq!(r.packets, r.raw_packets);
}

#[test]
fn psamp_selector_named_in_the_data_records() {
    let mut d = Both::plain();
    let tpl = set(2, &template(256, &flow_fields(Some((302, 8)))));
    let opts = d.options(
        "192.0.2.1",
        &ipfix(
            1,
            0,
            &[psamp_template(), tpl, set(PSAMP_OPTIONS, &psamp(1, 1, 256))],
        ),
    );
    assert_eq!(opts.len(), 1);
    assert_eq!(opts[0].sampling_interval, Some(256));
    assert_eq!(opts[0].sampling_source, Some(SamplingSource::Selector));
    for seq in 1..3 {
        let data = set(256, &[flow(1, 4000, 121, &1u64.to_be_bytes())].concat());
        let recs = d.flows("192.0.2.1", &ipfix(1, seq, &[data]));
        assert_eq!(recs.len(), 1);
        assert_sampled(&recs[0], 256, SamplingSource::Selector);
        // what nfacctd reports for IOS XR's 121 packets at 1 in 256
        assert_eq!(recs[0].packets, Some(30_976));
    }
    assert_eq!(d.fast, 2, "data after the template takes the compiled path");
}

#[test]
fn psamp_only_selector_applies_to_records_without_selector_id() {
    let mut d = Both::plain();
    let tpl = set(2, &template(256, &flow_fields(None)));
    // data before any announcement: raw
    let first = d.flows(
        "192.0.2.2",
        &ipfix(1, 0, &[tpl.clone(), set(256, &flow(1, 100, 2, &[]))]),
    );
    assert_unscaled(&first[0]);
    d.options(
        "192.0.2.2",
        &ipfix(
            1,
            1,
            &[psamp_template(), set(PSAMP_OPTIONS, &psamp(7, 1, 1000))],
        ),
    );
    for seq in 2..4 {
        let recs = d.flows(
            "192.0.2.2",
            &ipfix(
                1,
                seq,
                &[set(
                    256,
                    &[flow(1, 100, 2, &[]), flow(2, 50, 1, &[])].concat(),
                )],
            ),
        );
        assert_eq!(recs.len(), 2);
        for r in &recs {
            assert_sampled(r, 1000, SamplingSource::Selector);
        }
    }
    // another exporter (and another domain of this one) has no selector
    let other = d.flows(
        "192.0.2.3",
        &ipfix(1, 0, &[tpl.clone(), set(256, &flow(1, 100, 2, &[]))]),
    );
    assert_unscaled(&other[0]);
    let domain2 = d.flows(
        "192.0.2.2",
        &ipfix(2, 0, &[tpl, set(256, &flow(1, 100, 2, &[]))]),
    );
    assert_unscaled(&domain2[0]);
}

#[test]
fn two_selectors_on_one_exporter() {
    let mut d = Both::plain();
    let with_id = set(2, &template(256, &flow_fields(Some((302, 8)))));
    let without_id = set(2, &template(257, &flow_fields(None)));
    d.options(
        "192.0.2.4",
        &ipfix(
            9,
            0,
            &[
                psamp_template(),
                with_id,
                without_id,
                set(
                    PSAMP_OPTIONS,
                    &[psamp(1, 1, 256), psamp(2, 1, 1000)].concat(),
                ),
            ],
        ),
    );
    let recs = d.flows(
        "192.0.2.4",
        &ipfix(
            9,
            1,
            &[
                set(
                    256,
                    &[
                        flow(1, 100, 2, &1u64.to_be_bytes()),
                        flow(2, 100, 2, &2u64.to_be_bytes()),
                        flow(3, 100, 2, &3u64.to_be_bytes()),
                    ]
                    .concat(),
                ),
                set(257, &flow(4, 100, 2, &[])),
            ],
        ),
    );
    assert_eq!(recs.len(), 4);
    assert_sampled(&recs[0], 256, SamplingSource::Selector);
    assert_sampled(&recs[1], 1000, SamplingSource::Selector);
    // selector 3 was never announced, and with two selectors a record
    // without an id cannot be attributed: both stay raw
    assert_unscaled(&recs[2]);
    assert_unscaled(&recs[3]);
}

#[test]
fn v9_sampler_id_with_random_interval() {
    let mut d = Both::plain();
    // Cisco's sampler options: scope System; FLOW_SAMPLER_ID,
    // FLOW_SAMPLER_MODE, FLOW_SAMPLER_RANDOM_INTERVAL.
    let opt_tpl = set(
        1,
        &v9_options_template(258, &[(1, 4)], &[(48, 1), (49, 1), (50, 4)]),
    );
    let sampler = |id: u8, interval: u32| {
        let mut r = vec![0, 0, 0, 1, id, 2];
        r.extend_from_slice(&interval.to_be_bytes());
        r
    };
    // v9 data template: IPv4 5-tuple, counters, uptime times, FLOW_SAMPLER_ID
    let tpl = set(
        0,
        &template(
            259,
            &[
                (8, 4),
                (12, 4),
                (7, 2),
                (11, 2),
                (4, 1),
                (1, 4),
                (2, 4),
                (22, 4),
                (21, 4),
                (48, 1),
            ],
        ),
    );
    let rec = |n: u8, bytes: u32, packets: u32, sampler: u8| {
        let mut r = vec![10, 1, 0, n, 192, 0, 2, 53];
        r.extend_from_slice(&u16b(5000));
        r.extend_from_slice(&u16b(53));
        r.push(17);
        r.extend_from_slice(&bytes.to_be_bytes());
        r.extend_from_slice(&packets.to_be_bytes());
        r.extend_from_slice(&3_500_000u32.to_be_bytes());
        r.extend_from_slice(&3_590_000u32.to_be_bytes());
        r.push(sampler);
        r
    };
    let opts = d.options(
        "192.0.2.5",
        &v9(
            0,
            0,
            &[
                opt_tpl,
                tpl,
                set(258, &[sampler(1, 100), sampler(2, 10)].concat()),
            ],
            4,
        ),
    );
    assert_eq!(opts.len(), 2);
    assert_eq!(opts[0].sampling_interval, Some(100));
    assert_eq!(opts[0].sampling_source, Some(SamplingSource::Options));
    for seq in 1..3 {
        let recs = d.flows(
            "192.0.2.5",
            &v9(
                0,
                seq,
                &[set(
                    259,
                    &[rec(1, 1000, 10, 1), rec(2, 1000, 10, 2), rec(3, 1, 1, 9)].concat(),
                )],
                3,
            ),
        );
        assert_eq!(recs.len(), 3);
        assert_sampled(&recs[0], 100, SamplingSource::Options);
        assert_sampled(&recs[1], 10, SamplingSource::Options);
        assert_unscaled(&recs[2]);
    }
    assert_eq!(d.fast, 6, "data after the template takes the compiled path");
}

#[test]
fn rate_change_applies_from_the_options_record_on() {
    let mut d = Both::plain();
    let tpl = set(2, &template(256, &flow_fields(Some((302, 8)))));
    let id = 5u64.to_be_bytes();
    d.options(
        "192.0.2.6",
        &ipfix(
            1,
            0,
            &[psamp_template(), tpl, set(PSAMP_OPTIONS, &psamp(5, 1, 64))],
        ),
    );
    let before = d.flows("192.0.2.6", &ipfix(1, 1, &[set(256, &flow(1, 10, 1, &id))]));
    assert_sampled(&before[0], 64, SamplingSource::Selector);
    // one message: data at 1/64, the change to 1/128, data after it
    let mut m = Vec::new();
    let raw = ipfix(
        1,
        2,
        &[
            set(256, &flow(2, 10, 1, &id)),
            set(PSAMP_OPTIONS, &psamp(5, 1, 128)),
            set(256, &flow(3, 10, 1, &id)),
        ],
    );
    m.extend_from_slice(&raw);
    let ip: IpAddr = "192.0.2.6".parse().unwrap();
    let mut out = Vec::new();
    d.crate_path.decode(ip, &m, &mut out).unwrap();
    d.compiled.decode(ip, &m, &mut Vec::new()).unwrap();
    let flows: Vec<_> = out.iter().filter(|r| r.kind == RecordKind::Flow).collect();
    assert_eq!(flows.len(), 2);
    assert_sampled(flows[0], 64, SamplingSource::Selector);
    assert_sampled(flows[1], 128, SamplingSource::Selector);
    let after = d.flows("192.0.2.6", &ipfix(1, 4, &[set(256, &flow(4, 10, 1, &id))]));
    assert_sampled(&after[0], 128, SamplingSource::Selector);
}

#[test]
fn record_with_its_own_interval_and_id_less_options() {
    let mut d = Both::plain();
    // Juniper-style options without an id: samplingInterval for the exporter
    let opt = set(
        3,
        &ipfix_options_template(301, &[(144, 4)], &[(34, 4), (35, 1)]),
    );
    let mut orec = 1u32.to_be_bytes().to_vec();
    orec.extend_from_slice(&1000u32.to_be_bytes());
    orec.push(2);
    let tpl = set(2, &template(256, &flow_fields(None)));
    let own = set(2, &template(257, &flow_fields(Some((34, 4)))));
    d.options("192.0.2.7", &ipfix(1, 0, &[opt, tpl, own, set(301, &orec)]));
    for seq in 1..3 {
        let recs = d.flows(
            "192.0.2.7",
            &ipfix(
                1,
                seq,
                &[
                    set(256, &flow(1, 10, 1, &[])),
                    set(257, &flow(2, 10, 1, &50u32.to_be_bytes())),
                ],
            ),
        );
        assert_sampled(&recs[0], 1000, SamplingSource::Options);
        assert_sampled(&recs[1], 50, SamplingSource::Record);
    }
}

fn config(toml: &str) -> Config {
    let dir = std::env::temp_dir().join(format!("flowhook-sampling-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rules.toml");
    std::fs::write(&path, toml).unwrap();
    Config::load_with_env(Some(&path), Vec::new()).unwrap()
}

#[test]
fn configured_rates_fill_in_or_override() {
    let cfg = config(
        r#"
[[sampling]]
exporter = "192.0.2.8"
rate = 100
mode = "override"

[[sampling]]
exporter = "198.51.100.0/24"
interface = 7
rate = 10

[[sampling]]
exporter = "198.51.100.0/24"
rate = 2000
"#,
    );
    let mut d = Both::new(&cfg);
    // override: the exporter announces 1 in 256, the operator knows better
    let tpl = set(2, &template(256, &flow_fields(None)));
    d.options(
        "192.0.2.8",
        &ipfix(
            1,
            0,
            &[
                psamp_template(),
                tpl.clone(),
                set(PSAMP_OPTIONS, &psamp(1, 1, 256)),
            ],
        ),
    );
    for seq in 1..3 {
        let recs = d.flows(
            "192.0.2.8",
            &ipfix(1, seq, &[set(256, &flow(1, 10, 1, &[]))]),
        );
        assert_sampled(&recs[0], 100, SamplingSource::Config);
    }
    // fill: nothing announced; the first matching rule wins (by interface)
    let with_if = set(
        2,
        &template(257, &[flow_fields(None), vec![(10, 4)]].concat()),
    );
    d.flows("198.51.100.9", &ipfix(1, 0, &[with_if]));
    for seq in 1..3 {
        let mut on7 = flow(1, 10, 1, &[]);
        on7.extend_from_slice(&7u32.to_be_bytes());
        let mut on8 = flow(2, 10, 1, &[]);
        on8.extend_from_slice(&8u32.to_be_bytes());
        let recs = d.flows(
            "198.51.100.9",
            &ipfix(1, seq, &[set(257, &[on7, on8].concat())]),
        );
        assert_sampled(&recs[0], 10, SamplingSource::Config);
        assert_sampled(&recs[1], 2000, SamplingSource::Config);
    }
    // fill does not replace an announced rate
    d.options(
        "198.51.100.10",
        &ipfix(
            1,
            0,
            &[psamp_template(), tpl, set(PSAMP_OPTIONS, &psamp(1, 1, 64))],
        ),
    );
    let recs = d.flows(
        "198.51.100.10",
        &ipfix(1, 1, &[set(256, &flow(1, 10, 1, &[]))]),
    );
    assert_sampled(&recs[0], 64, SamplingSource::Selector);
}

#[test]
fn bad_sampling_rule_is_refused_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("flowhook-sampling-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[[sampling]]\nexporter = \"192.0.2.1\"\nrate = 0\n").unwrap();
    let e = Config::load_with_env(Some(&path), Vec::new()).unwrap_err();
    assert!(e.to_string().contains("sampling.rate"), "{e}");
    std::fs::write(
        &path,
        "[[sampling]]\nexporter = \"192.0.2.1\"\nrate = 5\nmode = \"sometimes\"\n",
    )
    .unwrap();
    let e = Config::load_with_env(Some(&path), Vec::new()).unwrap_err();
    assert!(e.to_string().contains("sometimes"), "{e}");
}

/// `replay`: flows carry the scaled counters and `sampling_source`, and a
/// script reads the rate and its source through `flow.getExporterInfo()`.
#[test]
fn replay_reports_the_source_on_flows_and_to_scripts() {
    let dir = std::env::temp_dir().join(format!("flowhook-sampling-replay-{}", std::process::id()));
    let scripts = dir.join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(
        scripts.join("sampling_report.lua"),
        r#"
local script = { hooks = {}, default_enabled = true }
function script.hooks.flowEnd(now)
  local e = flow.getExporterInfo()
  flow.triggerAlert(10, "rate " .. e.sampling_interval .. " from " .. tostring(e.sampling_source))
end
return script
"#,
    )
    .unwrap();
    let tpl = set(2, &template(256, &flow_fields(Some((302, 8)))));
    let id = 1u64.to_be_bytes();
    let mut p = common::Pcap::new();
    let msgs = [
        ipfix(
            1,
            0,
            &[psamp_template(), tpl, set(PSAMP_OPTIONS, &psamp(1, 1, 256))],
        ),
        ipfix(1, 1, &[set(256, &flow(1, 4000, 121, &id))]),
        ipfix(1, 2, &[set(256, &flow(1, 2000, 60, &id))]),
    ];
    for (i, m) in msgs.iter().enumerate() {
        p.udp(
            u64::from(T0) * 1_000_000 + i as u64 * 1000,
            [192, 0, 2, 1],
            4739,
            [192, 0, 2, 100],
            4739,
            m,
        );
    }
    let pcap = dir.join("psamp.pcap");
    std::fs::write(&pcap, p.bytes()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flowhook"))
        .arg("replay")
        .arg(&pcap)
        .env("FLOWHOOK__SCRIPTS__DIR", &scripts)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let end = lines
        .iter()
        .find(|v| v["event"] == "flowEnd")
        .unwrap_or_else(|| panic!("no flowEnd in {text}"));
    let f = &end["flow"];
    assert_eq!(f["sampling_interval"], 256);
    assert_eq!(f["sampling_source"], "selector");
    assert_eq!(f["cli2srv.packets"], 181 * 256);
    assert_eq!(f["cli2srv.bytes"], 6000 * 256);
    assert!(
        text.contains("rate 256 from selector"),
        "the script's alert reports the rate and its source: {text}"
    );
}
