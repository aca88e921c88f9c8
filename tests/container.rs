//! The container image, run for real: `deploy/container-test.sh` builds
//! `localhost/flowhook:dev` from `deploy/Dockerfile` with podman and then
//! runs this test (`FLOWHOOK_IMAGE` names the image; ignored in the plain
//! `cargo test`, where no image exists). With `--network host` and only
//! `FLOWHOOK__…` settings: the HEALTHCHECK (`flowhook health`) turns
//! healthy and `/readyz` answers 200; the process is not root; softflowd's
//! exports of the generated capture give one `flowEnd` per conversation and
//! alerts from a shipped script in `podman logs`, and the same lines in the
//! topics of a Kafka-protocol broker on the host (the image has the Kafka
//! sink); `podman stop` ends it with exit code 0 well within its timeout.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn podman(args: &[&str]) -> std::process::Output {
    Command::new("podman").args(args).output().unwrap()
}

struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", &self.0]);
    }
}

#[test]
#[ignore = "run by deploy/container-test.sh, which builds the image"]
fn image_runs_with_host_networking() {
    let image = std::env::var("FLOWHOOK_IMAGE").expect("FLOWHOOK_IMAGE names the image to test");
    assert!(
        common::kafka::available(),
        "the Kafka test broker and consumer"
    );
    let broker = common::kafka::Broker::start();
    let (port, mport) = (common::free_udp_port(), common::free_udp_port());
    let name = format!("flowhook-test-{}", std::process::id());
    let metrics = format!("127.0.0.1:{mport}");
    let run = podman(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        "-e",
        &format!("FLOWHOOK__INGEST__LISTEN=127.0.0.1:{port}"),
        "-e",
        &format!("FLOWHOOK__METRICS__LISTEN={metrics}"),
        "-e",
        "FLOWHOOK__SCRIPTS__CONF__ELEPHANT_FLOW__BYTES=1000",
        "-e",
        "FLOWHOOK__SCRIPTS__ALERT_RATE_PER_SEC=100000",
        "-e",
        &format!("FLOWHOOK__KAFKA__BROKERS={}", broker.address()),
        &image,
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let c = Container(name.clone());

    // the image's HEALTHCHECK (flowhook health, no shell tools) turns healthy
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if podman(&["healthcheck", "run", &c.0]).status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "never healthy: {}", logs(&c.0));
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(common::http_get(&metrics, "/readyz").0, 200);

    // not root
    let pid =
        String::from_utf8(podman(&["inspect", "--format", "{{.State.Pid}}", &c.0]).stdout).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap();
    assert_ne!(uid, "0", "the process runs as root");

    // softflowd exports the generated capture (NetFlow v9) to it
    let dir = tempfile::tempdir().unwrap();
    let traffic = common::traffic::generate(1_700_000_000);
    let pcap = dir.path().join("t.pcap");
    std::fs::write(&pcap, &traffic.pcap).unwrap();
    let ctl = format!("/tmp/fc{}", std::process::id() % 10_000);
    let out = Command::new("softflowd")
        .args(["-d", "-r"])
        .arg(&pcap)
        .args(["-n", &format!("127.0.0.1:{port}"), "-v", "9", "-c", &ctl])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(out.success());
    std::thread::sleep(Duration::from_secs(2));

    // podman stop: SIGTERM to the binary as PID 1, graceful, exit code 0
    let t = Instant::now();
    let stop = podman(&["stop", "-t", "30", &c.0]);
    assert!(stop.status.success());
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "stop took {:?}",
        t.elapsed()
    );
    let code =
        String::from_utf8(podman(&["inspect", "--format", "{{.State.ExitCode}}", &c.0]).stdout)
            .unwrap();
    assert_eq!(code.trim(), "0", "{}", logs(&c.0));

    let text = String::from_utf8(podman(&["logs", &c.0]).stdout).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let ends = lines.iter().filter(|l| l["event"] == "flowEnd").count();
    assert_eq!(
        ends,
        traffic.conversations.len(),
        "one flowEnd per conversation: {text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "alert" && l["script"] == "elephant_flow"),
        "an alert from a shipped script: {text}"
    );

    // the same lines in Kafka
    let mut want: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("{\"event\":"))
        .collect();
    want.sort();
    let mut got: Vec<String> = common::kafka::consume(
        &broker.address(),
        &["flowhook.events", "flowhook.alerts"],
        0,
        false,
    )
    .into_iter()
    .map(|m| m.value)
    .collect();
    got.sort();
    assert_eq!(got, want, "the event and alert lines in the Kafka topics");
}

fn logs(name: &str) -> String {
    let o = podman(&["logs", name]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
