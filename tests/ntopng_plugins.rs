//! ntopng 4.x plugins run unchanged: the tests write plugin trees in
//! ntopng's layouts (4.2 nested `plugins/<area>/<category>/<plugin>/`, 4.0
//! flat `plugins/<plugin>/`) with flow scripts written the way ntopng's own
//! are (`require "flow_consts"`, `status_types.X.create`, the four-argument
//! `triggerStatus`, status and alert definitions, locales, modules), and run
//! them through `flowhook replay --scripts` on captures they generate.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use common::Pcap;
use common::export::{T0, ipfix, set, template, u16b};

const BIN: &str = env!("CARGO_BIN_EXE_flowhook");

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// IPFIX template 256: addresses, ports, protocol, TCP flags, counters, times.
const FIELDS: [(u16, u16); 10] = [
    (8, 4),
    (12, 4),
    (7, 2),
    (11, 2),
    (4, 1),
    (6, 1),
    (1, 8),
    (2, 8),
    (152, 8),
    (153, 8),
];

struct Rec {
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    proto: u8,
    flags: u8,
}

fn record(r: &Rec) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&r.src);
    b.extend_from_slice(&r.dst);
    b.extend_from_slice(&u16b(r.sport));
    b.extend_from_slice(&u16b(r.dport));
    b.push(r.proto);
    b.push(r.flags);
    b.extend_from_slice(&1500u64.to_be_bytes());
    b.extend_from_slice(&10u64.to_be_bytes());
    let ms = u64::from(T0) * 1000;
    b.extend_from_slice(&(ms - 5000).to_be_bytes());
    b.extend_from_slice(&(ms - 1000).to_be_bytes());
    b
}

/// The capture: each flow's two directions (the server answering where it can).
fn capture(dir: &Path) -> std::path::PathBuf {
    let flows = [
        // public to public: remote to remote, unicast
        ([8, 8, 4, 4], [1, 1, 1, 1], 40000, 443, 6),
        // private to public: not remote to remote
        ([10, 0, 0, 5], [1, 1, 1, 1], 40001, 443, 6),
        // public to multicast: remote to remote, but not unicast
        ([9, 9, 9, 9], [224, 0, 0, 251], 5353, 5353, 17),
        // no address to broadcast (a DHCP discover)
        ([0, 0, 0, 0], [255, 255, 255, 255], 68, 67, 17),
        // DNS to a public resolver
        ([10, 0, 0, 6], [9, 9, 9, 10], 40002, 53, 17),
    ];
    let mut recs = Vec::new();
    for (src, dst, sport, dport, proto) in flows {
        let flags = if proto == 6 { 0x12 | 0x01 } else { 0 };
        recs.extend(record(&Rec {
            src,
            dst,
            sport,
            dport,
            proto,
            flags,
        }));
        // the unicast server answers
        if dst[0] < 224 && src != [0, 0, 0, 0] {
            recs.extend(record(&Rec {
                src: dst,
                dst: src,
                sport: dport,
                dport: sport,
                proto,
                flags,
            }));
        }
    }
    let msg = ipfix(1, 0, &[set(2, &template(256, &FIELDS)), set(256, &recs)]);
    let mut p = Pcap::new();
    p.udp(
        u64::from(T0) * 1_000_000,
        [192, 0, 2, 1],
        50000,
        [192, 0, 2, 9],
        4739,
        &msg,
    );
    let path = dir.join("flows.pcap");
    std::fs::write(&path, p.bytes()).unwrap();
    path
}

/// Runs `flowhook replay` of `pcap` with `scripts`; returns the output lines.
fn replay(pcap: &Path, scripts: &Path, config: Option<&Path>) -> (Vec<Value>, String) {
    let mut cmd = Command::new(BIN);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd
        .arg("replay")
        .arg(pcap)
        .arg("--scripts")
        .arg(scripts)
        .env("FLOWHOOK__OUTPUT__EVENTS", "flowEnd")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, err)
}

fn alerts<'a>(lines: &'a [Value], status: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["event"] == "alert" && l["status"] == status)
        .collect()
}

/// A 4.2 plugin tree: nested, with manifests, locales, a status and an
/// alert definition, a module, host scripts (skipped) and a disabled plugin.
fn tree_42(root: &Path) {
    let p = "plugins/alerts/network/r2r";
    write(
        root,
        &format!("{p}/manifest.lua"),
        "return { title = 'R2R', description = 'Remote to remote', author = 'test', dependencies = {} }\n",
    );
    write(
        root,
        &format!("{p}/user_scripts/flow/r2r.lua"),
        r#"local flow_consts = require("flow_consts")
local user_scripts = require("user_scripts")
local script = {
  category = user_scripts.script_categories.network,
  hooks = {},
  gui = { i18n_title = "r2r.title", i18n_description = "r2r.description" },
}
function script.hooks.protocolDetected(now)
  if flow.isRemoteToRemote() and flow.isUnicast() then
    flow.triggerStatus(
      flow_consts.status_types.status_remote_to_remote.create(
        flow_consts.status_types.status_remote_to_remote.alert_severity),
      10, 20, 30)
  end
end
return script
"#,
    );
    write(
        root,
        &format!("{p}/user_scripts/host/r2r_hosts.lua"),
        "error('host scripts must not load')\n",
    );
    write(
        root,
        &format!("{p}/user_scripts/system/r2r_sys.lua"),
        "error('system scripts must not load')\n",
    );
    write(
        root,
        &format!("{p}/locales/en.lua"),
        "return { title = 'Remote to remote', description = 'Both ends remote' }\n",
    );

    let q = "plugins/alerts/security/bad_dns";
    write(
        root,
        &format!("{q}/manifest.lua"),
        "return { title = 'Bad DNS', description = 'x', author = 'test', dependencies = {} }\n",
    );
    write(
        root,
        &format!("{q}/alert_definitions/alert_bad_dns.lua"),
        r#"local alert_keys = require "alert_keys"
local function creator(server, port)
  return { server = server, port = port }
end
return {
  alert_key = { 4242, 1 },
  i18n_title = "bad_dns.alert_title",
  icon = "fas fa-exclamation",
  creator = creator,
}
"#,
    );
    write(
        root,
        &format!("{q}/status_definitions/status_bad_dns.lua"),
        r#"local alert_consts = require("alert_consts")
return {
  status_key = 60,
  alert_severity = alert_consts.alert_severities.critical,
  alert_type = alert_consts.alert_types.alert_bad_dns,
  i18n_title = "bad_dns.status_title",
  i18n_description = function(info)
    return i18n("bad_dns.status_description", { server = info.server, port = info.port })
  end,
}
"#,
    );
    write(
        root,
        &format!("{q}/locales/en.lua"),
        "return { status_title = 'Unexpected DNS server', status_description = 'DNS to %{server} port %{port}' }\n",
    );
    write(
        root,
        &format!("{q}/modules/checks.lua"),
        "local M = {}\nfunction M.is_dns() return flow.getnDPIAppProtoId() == 5 end\nreturn M\n",
    );
    write(
        root,
        &format!("{q}/user_scripts/flow/bad_dns.lua"),
        r#"local flow_consts = require "flow_consts"
local user_scripts = require "user_scripts"
local plugins_utils = require "plugins_utils"
local checks = plugins_utils.loadModule("bad_dns", "checks")
local script = {
  category = user_scripts.script_categories.security,
  prio = -20,
  default_enabled = false,
  l7_proto_id = 5,
  default_value = { items = {} },
  hooks = {},
  gui = { i18n_title = "bad_dns.title", i18n_description = "bad_dns.description", input_builder = "items_list" },
}
function script.onEnable(hook, hook_config)
  if isEmptyString(ntop.getCache("test.enabled")) then ntop.setCache("test.enabled", "1") end
end
function script.hooks.protocolDetected(now, conf)
  if not checks.is_dns() or table.len(conf.items) == 0 then return end
  local server = flow.getInfo()["srv.ip"]
  for _, ok in pairs(conf.items) do if ok == server then return end end
  local st = flow_consts.status_types.status_bad_dns
  flow.triggerStatus(st.create(st.alert_severity, server, 53), 100, 0, 100)
end
return script
"#,
    );
    // what NetFlow cannot carry answers "no data"; an unknown status still works
    let r = "plugins/alerts/internals/probe";
    write(
        root,
        &format!("{r}/manifest.lua"),
        "return { title = 'Probe', description = 'x', author = 'test', dependencies = {} }\n",
    );
    write(
        root,
        &format!("{r}/user_scripts/flow/probe.lua"),
        r#"local flow_consts = require("flow_consts")
local alert_consts = require("alert_consts")
local json = require("dkjson")
local script = { hooks = {}, gui = { i18n_title = "probe", i18n_description = "probe" } }
function script.hooks.protocolDetected(now)
  local st = flow_consts.status_types.status_probe_answers
  local info = {
    tcp = flow.getTCPStats(),
    risk = flow.hasRisk(),
    risks = flow.getRiskInfo(),
    tls = flow.getTLSInfo(),
    cli_issues = flow.getClientTCPIssues(),
    goodput = flow.getGoodputBytes(),
    unicast = flow.isUnicast(),
    cli_unicast = flow.isClientUnicast(),
    srv_unicast = flow.isServerUnicast(),
    cli_noip = flow.isClientNoIP(),
    r2r = flow.isRemoteToRemote(),
    app_id = flow.getnDPIAppProtoId(),
    cat = flow.getnDPICategoryName(),
    cli_key = flow.getClientKey(),
    blacklisted = flow.isBlacklisted(),
    not_purged = flow.isNotPurged(),
    twh = flow.isTwhOK(),
    json = json.decode(json.encode({ a = 1 })).a,
    sev = alert_consts.alertSeverityById(5) == alert_consts.alert_severities.error,
    max_score = flow_consts.max_score,
  }
  flow.triggerStatus(st.create(st.alert_severity, info), 1)
end
return script
"#,
    );
    // a disabled plugin (its manifest says so) is not loaded at all
    write(
        root,
        "plugins/examples/broken/manifest.lua",
        "return { title = 'x', description = 'x', author = 'x', dependencies = {}, disabled = true }\n",
    );
    write(
        root,
        "plugins/examples/broken/user_scripts/flow/broken.lua",
        "error('a disabled plugin must not load')\n",
    );
}

#[test]
fn a_42_tree_loads_and_its_scripts_raise_statuses_with_three_scores() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = dir.path().join("scripts");
    tree_42(&scripts);
    // `check` lists what it loaded from where
    let out = Command::new(BIN)
        .arg("check")
        .env("FLOWHOOK__SCRIPTS__DIR", &scripts)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for want in [
        "r2r  ",
        "plugins/alerts/network/r2r",
        "bad_dns  ",
        "off (default_enabled = false",
        "probe  ",
        "skipped: user scripts of other subjects than flow (host 1, system 1)",
        "skipped: plugin",
        "status definitions 1, alert definitions 1, locales 2",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }

    let pcap = capture(dir.path());
    let cfg = dir.path().join("f.toml");
    std::fs::write(
        &cfg,
        "[scripts]\nenable = [\"bad_dns\"]\n[scripts.conf.bad_dns]\nitems = [\"192.0.2.53\"]\n",
    )
    .unwrap();
    let (lines, err) = replay(&pcap, &scripts, Some(&cfg));
    assert!(!err.contains("failed"), "{err}");

    // remote to remote: only the public unicast pair, with ntopng's three scores
    let r2r = alerts(&lines, "remote_to_remote");
    assert_eq!(r2r.len(), 1, "{lines:#?}");
    let a = r2r[0];
    assert_eq!(a["script"], "r2r");
    assert_eq!(a["severity"], "notice");
    assert_eq!(a["score"], 10);
    assert_eq!(a["flow"]["cli.ip"], "8.8.4.4");
    assert_eq!(a["flow"]["cli.score"], 20);
    assert_eq!(a["flow"]["srv.score"], 30);
    let end = lines
        .iter()
        .find(|l| l["event"] == "flowEnd" && l["flow"]["cli.ip"] == "8.8.4.4")
        .unwrap();
    assert_eq!(end["flow"]["cli.score"], 20);
    assert_eq!(end["flow"]["srv.score"], 30);
    assert!(
        end["flow"]["status"]
            .as_array()
            .unwrap()
            .contains(&Value::from("remote_to_remote"))
    );

    // the plugin's own status, alert type, locale and module
    let bad = alerts(&lines, "bad_dns");
    assert_eq!(bad.len(), 1, "{lines:#?}");
    assert_eq!(bad[0]["severity"], "critical");
    assert_eq!(bad[0]["message"], "DNS to 9.9.9.10 port 53");
    assert_eq!(bad[0]["info"]["server"], "9.9.9.10");
    assert_eq!(bad[0]["flow"]["srv.score"], 100);

    // no-data answers, address classes, ids
    let probes = alerts(&lines, "probe_answers");
    assert_eq!(probes.len(), 5, "{lines:#?}");
    let by_cli = |ip: &str| {
        probes
            .iter()
            .find(|p| p["flow"]["cli.ip"] == ip)
            .map(|p| &p["info"])
            .unwrap_or_else(|| panic!("no probe for {ip}"))
    };
    let public = by_cli("8.8.4.4");
    assert_eq!(public["tcp"]["cli2srv.retransmissions"], 0);
    assert_eq!(public["risk"], false);
    assert_eq!(public["cli_issues"], 0);
    assert_eq!(public["goodput"], 0);
    assert_eq!(public["unicast"], true);
    assert_eq!(public["r2r"], true);
    assert_eq!(public["cli_key"], "8.8.4.4@0");
    assert_eq!(public["blacklisted"], false);
    assert_eq!(public["not_purged"], false);
    assert_eq!(public["json"], 1);
    assert_eq!(public["sev"], true);
    assert_eq!(public["max_score"], 1024);
    assert_eq!(by_cli("10.0.0.5")["r2r"], false);
    let mcast = by_cli("9.9.9.9");
    assert_eq!(
        (mcast["unicast"].clone(), mcast["srv_unicast"].clone()),
        (Value::from(false), Value::from(false))
    );
    let dhcp = by_cli("0.0.0.0");
    assert_eq!(dhcp["cli_noip"], true);
    assert_eq!(dhcp["srv_unicast"], false);
    let dns = by_cli("10.0.0.6");
    assert_eq!(dns["app_id"], 5);
    assert_eq!(dns["cat"], "Network");
    // an unknown status is usable: warning, with the given info
    assert_eq!(probes[0]["severity"], "warning");
}

#[test]
fn a_40_tree_loads_with_its_status_definitions_and_the_40_call_forms() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("plugins");
    write(
        &root,
        "builtin_types/manifest.lua",
        "return { title = 'Builtin', description = 'x', author = 'x', dependencies = {} }\n",
    );
    write(
        &root,
        "builtin_types/status_definitions/status_normal.lua",
        "local alert_consts = require('alert_consts')\nreturn { alert_severity = alert_consts.alert_severities.info, alert_type = alert_consts.alert_types.alert_none, i18n_title = 'flow_details.normal' }\n",
    );
    write(
        &root,
        "udp_oneway/manifest.lua",
        "return { title = 'UDP one way', description = 'x', author = 'x', dependencies = {} }\n",
    );
    write(
        &root,
        "udp_oneway/status_definitions/status_udp_oneway.lua",
        "local alert_consts = require('alert_consts')\nreturn { alert_severity = alert_consts.alert_severities.warning, alert_type = alert_consts.alert_types.alert_udp_oneway, i18n_title = 'udp_oneway.title' }\n",
    );
    write(
        &root,
        "udp_oneway/alert_definitions/alert_udp_oneway.lua",
        "return { i18n_title = 'udp_oneway.alert', icon = 'fas fa-exclamation' }\n",
    );
    write(
        &root,
        "udp_oneway/locales/en.lua",
        "return { title = 'UDP in one direction only' }\n",
    );
    write(
        &root,
        "udp_oneway/user_scripts/flow/udp_oneway.lua",
        r#"local flow_consts = require("flow_consts")
local user_scripts = require("user_scripts")
local script = {
  category = user_scripts.script_categories.network,
  l4_proto = "udp",
  hooks = {},
  gui = { i18n_title = "udp_oneway.title", i18n_description = "udp_oneway.title" },
}
function script.hooks.all(now)
  if flow.getPacketsRcvd() == 0 and flow.getPacketsSent() > 0 and flow.isServerUnicast() then
    -- the 4.0 form: status type, info, flow / client / server score
    flow.triggerStatus(flow_consts.status_types.status_udp_oneway, { sent = flow.getPacketsSent() }, 40, 30, 1)
  end
  -- and 4.0's setStatus / clearStatus
  if flow.setStatus(flow_consts.status_types.status_normal, 0, 0, 0) then
    flow.clearStatus(flow_consts.status_types.status_normal)
  end
end
return script
"#,
    );
    let pcap = capture(dir.path());
    let (lines, err) = replay(&pcap, &root, None);
    assert!(
        !err.contains("failed") && !err.contains("not loaded"),
        "{err}"
    );
    // unicast one-way UDP: only the DHCP discover (its server does not answer, but is broadcast: no)
    let oneway = alerts(&lines, "udp_oneway");
    assert!(oneway.is_empty(), "{oneway:#?}");
    // multicast has no answer but is not unicast; every UDP flow here with an answer is two-way
    let ends: Vec<_> = lines.iter().filter(|l| l["event"] == "flowEnd").collect();
    assert_eq!(ends.len(), 5);
    for e in &ends {
        let st = e["flow"]["status"].as_array().unwrap();
        assert!(!st.contains(&Value::from("normal")), "{e}");
    }
    // a one-way unicast UDP flow does alert, with the locale's title as message
    let mut p = Pcap::new();
    let msg = ipfix(
        1,
        0,
        &[
            set(2, &template(256, &FIELDS)),
            set(
                256,
                &record(&Rec {
                    src: [10, 0, 0, 7],
                    dst: [192, 0, 2, 77],
                    sport: 45000,
                    dport: 7777,
                    proto: 17,
                    flags: 0,
                }),
            ),
        ],
    );
    p.udp(
        u64::from(T0) * 1_000_000,
        [192, 0, 2, 1],
        50000,
        [192, 0, 2, 9],
        4739,
        &msg,
    );
    let one = dir.path().join("oneway.pcap");
    std::fs::write(&one, p.bytes()).unwrap();
    let (lines, _) = replay(&one, &root, None);
    let a = alerts(&lines, "udp_oneway");
    assert_eq!(a.len(), 1, "{lines:#?}");
    assert_eq!(a[0]["severity"], "warning");
    assert_eq!(a[0]["message"], "UDP in one direction only");
    assert_eq!(a[0]["info"]["sent"], 10);
    assert_eq!(a[0]["score"], 40);
    assert_eq!(a[0]["flow"]["cli.score"], 30);
}

#[test]
fn two_plugins_with_one_script_name_are_reported_with_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("plugins");
    for p in ["a/one", "b/two"] {
        write(
            &root,
            &format!("{p}/manifest.lua"),
            "return { title = 'x', description = 'x', author = 'x', dependencies = {} }\n",
        );
        write(
            &root,
            &format!("{p}/user_scripts/flow/same.lua"),
            "return { hooks = { flowEnd = function() end } }\n",
        );
    }
    let out = Command::new(BIN)
        .arg("check")
        .env("FLOWHOOK__SCRIPTS__DIR", &root)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("a/one/user_scripts/flow/same.lua")
            && err.contains("b/two/user_scripts/flow/same.lua"),
        "{err}"
    );
}
