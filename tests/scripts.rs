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

/// `script`'s alerts as (server address, `pick` of the alert), sorted.
fn alerts_by_server(
    r: &Run,
    script: &str,
    pick: impl Fn(&Value) -> &Value,
) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = r
        .lines
        .iter()
        .filter(|l| l["event"] == "alert" && l["script"] == script)
        .map(|l| {
            (
                l["flow"]["srv.ip"].as_str().unwrap().to_string(),
                pick(l).as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
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
fn geolocation_tables_hold_what_get_info_says() {
    let tmp = tempfile::tempdir().unwrap();
    let s = script_dir(&[(
        "geo.lua",
        r#"
local KEYS = { "country", "city", "latitude", "longitude", "asn", "as_name" }
local function same(t, info, side)
  local n = 0
  for k, v in pairs(t) do
    if info[k] ~= v then return "differs at " .. k end
    n = n + 1
  end
  for _, k in ipairs(KEYS) do
    if info[side .. k] ~= nil and t[side .. k] == nil then return "lacks " .. side .. k end
  end
  return tostring(n)
end
return { hooks = { protocolDetected = function()
  local info = flow.getInfo()
  flow.triggerAlert(0, same(flow.getClientGeolocation(), info, "cli.") .. "|" ..
    same(flow.getServerGeolocation(), info, "srv."))
end } }
"#,
    )]);
    let r = replay(tmp.path(), s.path(), &[]);
    assert!(r.ok, "{}", r.stderr);
    let got = alerts_by_server(&r, "geo", |l| &l["message"]);
    assert_eq!(got.len(), 5, "{}", r.stderr);
    // every field agrees; the servers in the test databases have theirs
    let find = |ip: &str| got.iter().find(|(a, _)| a == ip).unwrap().1.clone();
    assert_eq!(find("175.16.199.1"), "0|6", "{got:?}");
    assert_eq!(find("81.2.69.142"), "0|6", "{got:?}");
    assert!(got.iter().all(|(_, m)| m.starts_with("0|")), "{got:?}");
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
fn shipped_blocklist_matches_addresses_and_networks() {
    let tmp = tempfile::tempdir().unwrap();
    let src = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/blocklist.lua"),
    )
    .unwrap();
    let default = r#"entries = { "198.51.100.66", "203.0.113.0/24" }"#;
    assert!(src.contains(default), "the shipped default list changed");
    // networks of several lengths, and near misses that share a text
    // prefix with a flow's address (175.16.19. / 175.16.199.1) or the
    // first octets with a network (81.2.80.0/20 does not hold 81.2.69.142)
    let entries = r#"entries = { "175.16.19.0/24", "81.2.80.0/20", "10.0.0.2/32",
        "175.16.199.0/24", "81.2.64.0/20", "10.0.0.3/32", "10.0.0.7" }"#;
    let s = script_dir(&[("blocklist.lua", &src.replace(default, entries))]);
    let r = replay(tmp.path(), s.path(), &[]);
    assert!(r.ok, "{}", r.stderr);
    let hits = alerts_by_server(&r, "blocklist", |l| &l["info"]["entry"]);
    let want = [
        ("10.0.0.3", "10.0.0.3/32"),
        ("10.0.0.7", "10.0.0.7"),
        // the client matched
        ("10.0.0.9", "10.0.0.2/32"),
        ("175.16.199.1", "175.16.199.0/24"),
        ("81.2.69.142", "81.2.64.0/20"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(hits, want, "{}", r.stderr);
}

#[test]
fn networks_sets_match_the_most_specific_entry_of_either_family() {
    let tmp = tempfile::tempdir().unwrap();
    let s = script_dir(&[(
        "nets.lua",
        r#"
local set = networks{ "10.0.0.0/8", "10.0.0.3", "2001:db8::/32", "2001:db8:1::/48", "175.16.0.0/16" }
local ok, err = pcall(networks, { "10.0.0.0/8", "not-an-address" })
local named = tostring(err):find("'not-an-address' is neither an address nor a network", 1, true) ~= nil
local v6 = set:match("2001:db8:1::9") .. " " .. set:match("2001:db8:2::9")
local misses = tostring(set:match("192.0.2.1")) .. " " .. tostring(set:match("nonsense"))
return { hooks = { protocolDetected = function()
  local c, s = flow.matchNetworks(set)
  flow.triggerAlert(0, table.concat({ tostring(c), tostring(s), tostring(ok), tostring(named), v6, misses, #set }, "|"))
end } }
"#,
    )]);
    let r = replay(tmp.path(), s.path(), &[]);
    assert!(r.ok, "{}", r.stderr);
    let got = alerts_by_server(&r, "nets", |l| &l["message"]);
    let tail = "false|true|2001:db8:1::/48 2001:db8::/32|nil nil|5";
    let want: Vec<(String, String)> = [
        ("10.0.0.3", "10.0.0.0/8|10.0.0.3"),
        ("10.0.0.7", "10.0.0.0/8|10.0.0.0/8"),
        ("10.0.0.9", "10.0.0.0/8|10.0.0.0/8"),
        ("175.16.199.1", "10.0.0.0/8|175.16.0.0/16"),
        ("81.2.69.142", "10.0.0.0/8|nil"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), format!("{b}|{tail}")))
    .collect();
    assert_eq!(got, want, "{}", r.stderr);
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

/// `replay` with a bound: a run that does not end within 60 s fails the test
/// (and is killed) instead of hanging it.
fn replay_bounded(dir: &Path, scripts: &Path, extra: &[(&str, String)]) -> Run {
    let (tx, rx) = std::sync::mpsc::channel();
    let (d, s) = (dir.to_path_buf(), scripts.to_path_buf());
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    std::thread::spawn(move || {
        let e: Vec<(&str, String)> = extra.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let _ = tx.send(replay(&d, &s, &e));
    });
    match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(r) => r,
        Err(_) => {
            // the child would outlive the test: end every replay of this script dir
            let _ = Command::new("pkill")
                .args(["-f", &scripts.display().to_string()])
                .status();
            panic!("replay did not end within 60 s");
        }
    }
}

/// A script that checks, on every flow's end, that what it sees is intact.
const VICTIM: &str = r#"
local script = { hooks = {} }
function script.hooks.flowEnd(now)
  local ok = type(flow) == "table" and type(flow.getKey()) == "string"
    and string.rep("a", 2) == "aa" and ("b"):rep(2) == "bb"
    and shared_secret == nil and type(pcall) == "function"
    and string.find("hello", "l+") == 3
  flow.triggerAlert(0, ok and "intact" or "tampered")
end
return script
"#;

/// Each hostile script alone beside the victim: the replay ends, every flow
/// ends, the attack is counted with its kind, and the victim sees an intact
/// `flow` and library.
#[test]
fn hostile_scripts_are_stopped_and_isolated() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "coroutine_loop",
            "coroutine.wrap(function() while true do end end)()",
            "timeout",
        ),
        (
            "protected_loop",
            "while true do pcall(function() while true do end end) end",
            "timeout",
        ),
        (
            "nested_protection",
            r#"while true do
                 xpcall(function()
                   local co = coroutine.create(function() while true do pcall(error, "x") end end)
                   while true do coroutine.resume(co) end
                 end, function() while true do end end)
               end"#,
            "timeout",
        ),
        (
            "coroutine_close",
            r#"while true do
                 local co = coroutine.create(function()
                   local x <close> = setmetatable({}, { __close = function() while true do end end })
                   coroutine.yield()
                 end)
                 coroutine.resume(co)
                 coroutine.close(co)
               end"#,
            "timeout",
        ),
        (
            "finaliser",
            "setmetatable({}, {__gc = function() while true do end end}); collectgarbage()",
            "runtime",
        ),
        ("gc_stop", "collectgarbage('stop')", "runtime"),
        (
            "close_loop",
            "do local x <close> = setmetatable({}, {__close = function() while true do end end}) end",
            "timeout",
        ),
        (
            "find_backtracking",
            r#"string.find(string.rep("a", 5000), ".-.-.-.-.-.-.-b")"#,
            "timeout",
        ),
        (
            "match_backtracking",
            r#"local s = ("a"):rep(5000); s:match("(.-)(.-)(.-)(.-)(.-)(.-)(.-)b")"#,
            "timeout",
        ),
        (
            "gmatch_backtracking",
            r#"for x in string.gmatch(string.rep("a", 5000), ".-.-.-.-.-.-.-b") do end"#,
            "timeout",
        ),
        (
            "gsub_backtracking",
            r#"string.gsub(string.rep("a", 3000), "(.-.-.-.-.-.-b)", "%1")"#,
            "timeout",
        ),
        ("huge_rep", r#"local s = string.rep("x", 1e9)"#, "memory"),
        (
            "huge_concat",
            r#"local t = {} for i = 1, 1e8 do t[i] = "xxxxxxxx" end local s = table.concat(t)"#,
            "memory|timeout",
        ),
        (
            "empty_rep",
            r#"local s = string.rep("", 1e15) .. ("").rep("", 1e15)"#,
            "",
        ),
        ("table_move", "table.move({}, 1, 1e15, 2)", "timeout"),
        (
            "huge_format",
            r#"local s = string.format("%099999d", 1)"#,
            "runtime",
        ),
        (
            "deep_recursion",
            "local function f(n) return 1 + f(n + 1) end f(1)",
            "runtime|timeout|memory",
        ),
        (
            "clobber_globals",
            r#"flow = nil; string.rep = function() return "hijacked" end; shared_secret = "x"
               pcall = nil; string.find = nil"#,
            "",
        ),
    ];
    for (name, body, kind) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let hostile = format!(
            "local script = {{ hooks = {{}} }}\nfunction script.hooks.protocolDetected(now)\n{body}\nend\nreturn script\n"
        );
        let s = script_dir(&[("hostile.lua", hostile.as_str()), ("victim.lua", VICTIM)]);
        eprintln!("hostile script: {name}");
        let t = std::time::Instant::now();
        let r = replay_bounded(
            tmp.path(),
            s.path(),
            &[("FLOWHOOK__SCRIPTS__DEADLINE", "20ms".into())],
        );
        assert!(r.ok, "{name}: {}", r.stderr);
        assert!(
            t.elapsed() < std::time::Duration::from_secs(30),
            "{name}: took {:?}",
            t.elapsed()
        );
        let ends = count(&r.lines, |l| l["event"] == "flowEnd");
        assert_eq!(ends, 5, "{name}: every flow ends");
        assert_eq!(
            count(&r.lines, |l| l["message"] == "intact"),
            5,
            "{name}: the victim sees an intact flow and library: {:?}",
            r.lines
                .iter()
                .filter(|l| l["event"] == "alert")
                .collect::<Vec<_>>()
        );
        // clobbering its own globals is no error: the writes stay in its environment
        assert!(
            kind.is_empty()
                || kind
                    .split('|')
                    .any(|k| r.stderr.contains(&format!("kind=\"{k}\""))),
            "{name}: counted as {kind}: {}",
            r.stderr
        );
    }
}
