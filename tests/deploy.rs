//! Deployment files that can be checked here: the systemd unit passes
//! `systemd-analyze verify` (pointed at the binary just built), and
//! `flowhook health` answers for a running instance and fails for a stopped
//! one, as a HEALTHCHECK or exec probe relies on.

mod common;

use std::process::Command;

use common::serve::Serve;

const BIN: &str = env!("CARGO_BIN_EXE_flowhook");

#[test]
fn systemd_unit_verifies() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is not installed; ./run-tests.sh installs it"
        );
        eprintln!("SKIPPED: systemd-analyze not installed");
        return;
    }
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/systemd/flowhook.service"
    ))
    .unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/flowhook serve"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flowhook.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/flowhook", BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // only complaints about this unit count (the host's own units may have some)
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("flowhook.service"))
        .collect();
    assert!(out.status.success() && ours.is_empty(), "{err}");
}

#[test]
fn health_answers_for_a_running_instance() {
    let s = Serve::start(&[
        ("FLOWHOOK__INGEST__LISTEN", "127.0.0.1:0".into()),
        ("FLOWHOOK__SCRIPTS__DIR", "/nonexistent".into()),
    ]);
    let addr = s.metrics_addr();
    let port = addr.rsplit(':').next().unwrap().to_string();
    let health = |args: &[&str], listen: Option<String>| {
        let mut c = Command::new(BIN);
        c.arg("health").args(args);
        if let Some(l) = listen {
            c.env("FLOWHOOK__METRICS__LISTEN", l);
        }
        c.output().unwrap()
    };
    let ok = health(&["--address", &addr], None);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("/readyz: 200"));
    // the configured metrics.listen, unspecified address → loopback
    let ok = health(&["--path", "/healthz"], Some(format!("0.0.0.0:{port}")));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(s.stop().success());
    let down = health(&["--address", &addr], None);
    assert_eq!(down.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&down.stderr).contains(&addr),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
}

/// The configurations shipped for the image and for Kubernetes load, with
/// their scripts (the Kubernetes example script included).
#[test]
fn shipped_configurations_check_out() {
    let root = env!("CARGO_MANIFEST_DIR");
    for (config, scripts, expect) in [
        ("deploy/flowhook.toml", "scripts", "blocklist"),
        (
            "deploy/kubernetes/flowhook.toml",
            "deploy/kubernetes/scripts",
            "exporter_sampling",
        ),
    ] {
        let out = Command::new(BIN)
            .arg("check")
            .arg("--config")
            .arg(format!("{root}/{config}"))
            .env("FLOWHOOK__SCRIPTS__DIR", format!("{root}/{scripts}"))
            .env("FLOWHOOK__STATE__DIR", "/tmp")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{config}: {err}");
        assert!(err.contains(expect), "{config}: {err}");
    }
}
