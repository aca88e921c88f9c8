//! Lua flow scripts through `flowhook replay --scripts`: exact hook counts,
//! `all`, filters, `script_conf` from the configuration, the reference ntopng
//! script unchanged, statuses and alerts, the sandbox, deadlines, the memory
//! limit, load errors with file and line. Captures and databases are
//! generated here.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::v9::{Rec, v9};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_flowhook");
const T0: u32 = 1_700_000_000;

// one positional argument per column of the capture tables below reads best there
#[allow(clippy::too_many_arguments)]
fn rec(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    proto: u8,
    flags: u8,
    at_up: u32,
    end: u8,
) -> Rec {
    Rec {
        src,
        dst,
        sport,
        dport,
        proto,
        flags,
        bytes: 100,
        packets: 2,
        first_up: at_up,
        last_up: at_up,
        end,
    }
}

/// Flows: a TLS flow to a server in China exported twice (active timeout) then
/// ended (at +65 s, before the idle timeout); DNS to Great Britain; a refused SMTP connection; a flow to port 9999
/// (the "slow" one for deadline tests); and a late NTP flow.
fn capture(dir: &Path) -> std::path::PathBuf {
    let mut p = common::Pcap::new();
    let us = |s: u32| u64::from(T0 + s) * 1_000_000;
    let cn = [175, 16, 199, 1];
    let gb = [81, 2, 69, 142];
    let c = [10, 0, 0, 1];
    let msgs: Vec<(u32, Vec<Rec>)> = vec![
        (
            10,
            vec![
                rec(c, 40000, cn, 443, 6, 0x1a, 1_010_000, 2),
                rec(cn, 443, c, 40000, 6, 0x1a, 1_010_000, 2),
            ],
        ),
        (
            11,
            vec![
                rec(c, 5353, gb, 53, 17, 0, 1_011_000, 1),
                rec(gb, 53, c, 5353, 17, 0, 1_011_000, 1),
            ],
        ),
        (
            12,
            vec![
                rec(c, 40001, [10, 0, 0, 3], 25, 6, 0x02, 1_012_000, 0),
                rec([10, 0, 0, 3], 25, c, 40001, 6, 0x14, 1_012_000, 0),
            ],
        ),
        (
            13,
            vec![rec(
                [10, 0, 0, 2],
                40002,
                [10, 0, 0, 9],
                9999,
                6,
                0x18,
                1_013_000,
                0,
            )],
        ),
        (
            65,
            vec![
                rec(c, 40000, cn, 443, 6, 0x1b, 1_065_000, 3),
                rec(cn, 443, c, 40000, 6, 0x1b, 1_065_000, 3),
            ],
        ),
        (
            200,
            vec![rec(c, 1234, [10, 0, 0, 7], 123, 17, 0, 1_200_000, 0)],
        ),
    ];
    for (i, (at, recs)) in msgs.iter().enumerate() {
        p.udp(
            us(*at),
            [192, 0, 2, 10],
            50000,
            [127, 0, 0, 1],
            2055,
            &v9(1_000_000 + at * 1000, T0 + at, i as u32, recs, i == 0),
        );
    }
    let path = dir.join("c.pcap");
    std::fs::write(&path, p.bytes()).unwrap();
    path
}

struct Run {
    lines: Vec<Value>,
    stderr: String,
    ok: bool,
    code: Option<i32>,
}

fn replay(dir: &Path, scripts: &Path, extra: &[(&str, String)]) -> Run {
    let f = common::mmdb::write_all(dir);
    let mut cmd = Command::new(BIN);
    cmd.arg("replay")
        .arg(capture(dir))
        .arg("--scripts")
        .arg(scripts);
    cmd.env("FLOWHOOK__GEO__CITY_DB", &f.city)
        .env("FLOWHOOK__GEO__ASN_DB", &f.asn);
    cmd.env(
        "FLOWHOOK__OUTPUT__EVENTS",
        "protocolDetected,statusChanged,periodicUpdate,flowEnd",
    );
    cmd.env("RUST_LOG", "info");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    Run {
        lines: String::from_utf8(stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        ok: status.success(),
        code: status.code(),
    }
}

fn script_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, src) in files {
        std::fs::write(d.path().join(name), src).unwrap();
    }
    d
}

fn count(lines: &[Value], pred: impl Fn(&Value) -> bool) -> usize {
    lines.iter().filter(|l| pred(l)).count()
}

const COUNTER: &str = r#"
local script = { hooks = {} }
local function on(name)
  return function(now, conf) flow.triggerAlert(0, name, { key = flow.getKey() }) end
end
script.hooks.protocolDetected = on("protocolDetected")
script.hooks.statusChanged = on("statusChanged")
script.hooks.periodicUpdate = on("periodicUpdate")
script.hooks.flowEnd = on("flowEnd")
return script
"#;

#[test]
fn every_hook_is_called_exactly_once_per_event() {
    let tmp = tempfile::tempdir().unwrap();
    let s = script_dir(&[("counter.lua", COUNTER)]);
    let r = replay(
        tmp.path(),
        s.path(),
        &[("FLOWHOOK__FLOW__PERIODIC_UPDATE_SECS", "30".into())],
    );
    assert!(r.ok, "{}", r.stderr);
    for hook in [
        "protocolDetected",
        "statusChanged",
        "periodicUpdate",
        "flowEnd",
    ] {
        let events = count(&r.lines, |l| l["event"] == hook);
        let calls = count(&r.lines, |l| l["event"] == "alert" && l["message"] == hook);
        assert_eq!(calls, events, "{hook}: {calls} calls for {events} events");
    }
    assert_eq!(count(&r.lines, |l| l["event"] == "flowEnd"), 5);
    assert!(count(&r.lines, |l| l["event"] == "periodicUpdate") >= 1);
    assert_eq!(
        count(&r.lines, |l| l["event"] == "statusChanged"),
        3,
        "refused, and two one-way flows (unidirectional)"
    );
}

#[test]
fn all_hook_and_filters() {
    let tmp = tempfile::tempdir().unwrap();
    let s = script_dir(&[
        (
            "every.lua",
            r#"return { hooks = { all = function() flow.triggerAlert(0, "all") end } }"#,
        ),
        (
            "udp_only.lua",
            r#"return { l4_proto = "UDP", hooks = { flowEnd = function() flow.triggerAlert(0, "udp " .. flow.getL4ProtocolName()) end } }"#,
        ),
        (
            "dns_only.lua",
            r#"return { l7_proto = {"DNS"}, hooks = { flowEnd = function() flow.triggerAlert(0, "dns " .. flow.getnDPIProtocolName()) end } }"#,
        ),
    ]);
    let r = replay(tmp.path(), s.path(), &[]);
    assert!(r.ok, "{}", r.stderr);
    let events = count(&r.lines, |l| l["event"] != "alert");
    assert_eq!(count(&r.lines, |l| l["message"] == "all"), events);
    assert_eq!(count(&r.lines, |l| l["message"] == "udp UDP"), 2);
    assert_eq!(count(&r.lines, |l| l["message"] == "dns DNS"), 1);
}

#[test]
fn script_conf_comes_from_default_value_or_the_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    let s = script_dir(&[(
        "confd.lua",
        r#"return { default_value = { label = "default" }, hooks = { flowEnd = function(now, conf) flow.triggerAlert(0, conf.label .. " " .. tostring(now > 1700000000)) end } }"#,
    )]);
    let r = replay(tmp.path(), s.path(), &[]);
    assert_eq!(
        count(&r.lines, |l| l["message"] == "default true"),
        5,
        "{}",
        r.stderr
    );
    let cfg = tmp.path().join("f.toml");
    std::fs::write(&cfg, "[scripts.conf.confd]\nlabel = \"from-config\"\n").unwrap();
    let r = replay(
        tmp.path(),
        s.path(),
        &[("FLOWHOOK_CONFIG", cfg.display().to_string())],
    );
    assert_eq!(
        count(&r.lines, |l| l["message"] == "from-config true"),
        5,
        "{}",
        r.stderr
    );
}

/// The reference script of the issue, byte for byte.
const REFERENCE: &str = r#"local user_scripts = require("user_scripts")
local script = { hooks = {}, gui = { i18n_title = "Suspicious Countries",
  i18n_description = "Trigger an alert when at least one among the client and server is from a suspicious country" } }
function script.hooks.protocolDetected()
  local cli_geo = flow.getClientGeolocation()
  local srv_geo = flow.getServerGeolocation()
  if cli_geo["cli.country"] == "CN" or srv_geo["srv.country"] == "CN" then
    tprint("From China")
  end
end
return(script)
"#;

#[test]
fn reference_script_runs_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let s = script_dir(&[("suspicious_countries.lua", REFERENCE)]);
    let r = replay(tmp.path(), s.path(), &[]);
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(
        r.stderr.matches("tprint: \"From China\"").count(),
        1,
        "{}",
        r.stderr
    );
}

#[test]
fn shipped_suspicious_countries_raises_status_alert_and_score() {
    let tmp = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let r = replay(tmp.path(), &shipped, &[]);
    assert!(r.ok, "{}", r.stderr);
    let alerts: Vec<&Value> = r
        .lines
        .iter()
        .filter(|l| l["event"] == "alert" && l["script"] == "suspicious_countries")
        .collect();
    assert_eq!(alerts.len(), 1, "the same (flow, status) alerts once");
    let a = alerts[0];
    assert_eq!(a["status"], "suspicious_country");
    assert_eq!(a["severity"], "warning");
    assert_eq!(a["score"], 50);
    assert_eq!(a["info"]["srv_country"], "CN");
    assert_eq!(a["flow"]["srv.ip"], "175.16.199.1");
    let key = a["flow"]["key"].clone();
    let changed: Vec<&Value> = r
        .lines
        .iter()
        .filter(|l| l["event"] == "statusChanged" && l["flow"]["key"] == key)
        .collect();
    assert_eq!(changed.len(), 1, "statusChanged fires once");
    assert_eq!(changed[0]["flow"]["status"][0], "suspicious_country");
    let end = r
        .lines
        .iter()
        .find(|l| l["event"] == "flowEnd" && l["flow"]["key"] == key)
        .unwrap();
    assert_eq!(end["flow"]["score"], 50);
}

#[test]
fn sandbox_refuses_escapes() {
    let tmp = tempfile::tempdir().unwrap();
    let s = script_dir(&[(
        "escape.lua",
        r#"
local function try(name, f)
  local ok, err = pcall(f)
  flow.triggerAlert(0, name .. (ok and " ALLOWED" or " refused"))
end
return { hooks = { protocolDetected = function()
  if flow.getnDPIProtocolName() ~= "DNS" then return end
  try("io.open", function() return io.open("/etc/passwd") end)
  try("os.execute", function() return os.execute("true") end)
  try("os.remove", function() return os.remove("/tmp/x") end)
  try("require outside", function() return require("../../etc/passwd") end)
  try("require os module", function() return require("socket") end)
  try("dofile", function() return dofile("/etc/passwd") end)
  try("loadfile", function() return loadfile("/etc/passwd") end)
  try("string.dump", function() return string.dump(print) end)
  try("bytecode", function() assert(load("\27Lua\84\0\25\147\13\10\26\10\4\8\8", "x", "b")) end)
  try("debug", function() return debug.getinfo(1) end)
  try("package.loadlib", function() return package.loadlib("libc.so.6", "system") end)
end } }
"#,
    )]);
    let r = replay(tmp.path(), s.path(), &[]);
    assert!(r.ok, "{}", r.stderr);
    let msgs: Vec<&str> = r
        .lines
        .iter()
        .filter(|l| l["event"] == "alert")
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert_eq!(msgs.len(), 11, "{msgs:?}");
    assert!(msgs.iter().all(|m| m.ends_with(" refused")), "{msgs:?}");
}

#[test]
fn endless_loop_is_aborted_and_other_flows_keep_flowing() {
    let tmp = tempfile::tempdir().unwrap();
    let s = script_dir(&[
        (
            "spin.lua",
            r#"return { hooks = { all = function() if flow.getInfo()["srv.port"] == 9999 then while true do end end end } }"#,
        ),
        (
            "ok.lua",
            r#"return { hooks = { flowEnd = function() flow.triggerAlert(0, "done") end } }"#,
        ),
    ]);
    let r = replay(
        tmp.path(),
        s.path(),
        &[("FLOWHOOK__SCRIPTS__DEADLINE", "20ms".into())],
    );
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stderr.contains("kind=\"timeout\"") || r.stderr.contains("kind=timeout"),
        "{}",
        r.stderr
    );
    assert_eq!(
        count(&r.lines, |l| l["message"] == "done"),
        5,
        "every flow still ends and reaches the other script"
    );
}

#[test]
fn repeated_timeouts_disable_the_script() {
    let tmp = tempfile::tempdir().unwrap();
    let s = script_dir(&[(
        "spin.lua",
        r#"return { hooks = { all = function() while true do end end } }"#,
    )]);
    let r = replay(
        tmp.path(),
        s.path(),
        &[
            ("FLOWHOOK__SCRIPTS__DEADLINE", "5ms".into()),
            ("FLOWHOOK__SCRIPTS__MAX_CONSECUTIVE_TIMEOUTS", "3".into()),
        ],
    );
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stderr.contains("script disabled after repeated timeouts"),
        "{}",
        r.stderr
    );
}

#[test]
fn memory_bomb_is_aborted() {
    let tmp = tempfile::tempdir().unwrap();
    let s = script_dir(&[
        (
            "bomb.lua",
            r#"return { hooks = { protocolDetected = function() local t = {} for i = 1, 1e9 do t[i] = string.rep("x", 64) .. i end end } }"#,
        ),
        (
            "ok.lua",
            r#"return { hooks = { flowEnd = function() flow.triggerAlert(0, "done") end } }"#,
        ),
    ]);
    let r = replay(
        tmp.path(),
        s.path(),
        &[
            ("FLOWHOOK__SCRIPTS__MEMORY_LIMIT_MB", "8".into()),
            ("FLOWHOOK__SCRIPTS__DEADLINE", "5s".into()),
        ],
    );
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stderr.contains("kind=\"memory\"") || r.stderr.contains("kind=memory"),
        "{}",
        r.stderr
    );
    assert_eq!(count(&r.lines, |l| l["message"] == "done"), 5);
}

#[test]
fn syntax_errors_name_file_and_line() {
    let s = script_dir(&[(
        "broken.lua",
        "local script = { hooks = {} }\nfunction script.hooks.flowEnd(\n  x = = 1\nend\nreturn script\n",
    )]);
    let out = Command::new(BIN)
        .arg("check")
        .env("FLOWHOOK__SCRIPTS__DIR", s.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.lua:3:"), "{err}");
    let tmp = tempfile::tempdir().unwrap();
    let r = replay(tmp.path(), s.path(), &[]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("broken.lua:3:"), "{}", r.stderr);
}

#[test]
fn runtime_errors_are_counted_and_affect_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let s = script_dir(&[
        (
            "bad.lua",
            "return { hooks = { flowEnd = function() local x = nil; return x.y end } }\n",
        ),
        (
            "ok.lua",
            r#"return { hooks = { flowEnd = function() flow.triggerAlert(0, "done") end } }"#,
        ),
    ]);
    let r = replay(tmp.path(), s.path(), &[]);
    assert!(r.ok);
    assert!(r.stderr.contains("bad.lua:1:"), "{}", r.stderr);
    assert_eq!(count(&r.lines, |l| l["message"] == "done"), 5);
}
