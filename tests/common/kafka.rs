//! A real Kafka-protocol broker for the tests (`tansu`, installed by
//! `./run-tests.sh` into the cargo bin directory) and an independent
//! consumer (`kafka_consume.py`, librdkafka from PyPI's `confluent-kafka`
//! in the virtualenv `./run-tests.sh` makes).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The topics flowhook writes to by default.
pub const TOPICS: [&str; 3] = ["flowhook.events", "flowhook.alerts", "flowhook.records"];

/// Partitions of each test topic (several, so keys matter).
pub const PARTITIONS: u32 = 4;

fn tansu() -> PathBuf {
    if let Some(p) = std::env::var_os("FLOWHOOK_TEST_TANSU") {
        return p.into();
    }
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_default()
        .join("bin/tansu");
    if cargo_bin.exists() {
        cargo_bin
    } else {
        "tansu".into()
    }
}

/// The Python with `confluent_kafka` (`FLOWHOOK_TEST_PYTHON`, or the
/// virtualenv `./run-tests.sh` makes in `~/.cache/flowhook-test/venv`).
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("FLOWHOOK_TEST_PYTHON") {
        return p.into();
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache/flowhook-test/venv/bin/python")
}

/// Whether the broker and the consumer are here; under `CI=true` a missing
/// one fails the test, elsewhere the test says it skipped.
pub fn available() -> bool {
    let ok = |c: &mut Command| {
        c.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let broker = ok(Command::new(tansu()).arg("--version"));
    let consumer = ok(Command::new(python()).args(["-c", "import confluent_kafka"]));
    if broker && consumer {
        return true;
    }
    let what = if broker {
        "confluent-kafka (Python)"
    } else {
        "tansu"
    };
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!("{what} is not installed; ./run-tests.sh installs it");
    }
    eprintln!("SKIPPED: {what} not installed (./run-tests.sh installs it)");
    false
}

/// A tansu broker on 127.0.0.1 with in-memory storage; killed when dropped.
pub struct Broker {
    pub port: u16,
    child: Option<Child>,
}

impl Broker {
    /// A broker on a free port, with the topics made.
    pub fn start() -> Broker {
        let mut b = Broker::at(super::free_tcp_port());
        b.up();
        b
    }

    /// A broker that will listen on `port` once [`Broker::up`] is called.
    pub fn at(port: u16) -> Broker {
        Broker { port, child: None }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker (empty: in-memory storage) and makes the topics.
    pub fn up(&mut self) {
        assert!(self.child.is_none(), "the broker is already up");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut child = Command::new(tansu())
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                ])
                .args(["--storage-engine", "memory://tansu/"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("tansu starts");
            // ready once it accepts connections (and still runs: a port still
            // held by the broker before makes it exit)
            let mut up = false;
            for _ in 0..50 {
                std::thread::sleep(Duration::from_millis(100));
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    up = true;
                    break;
                }
            }
            if up && child.try_wait().unwrap().is_none() {
                self.child = Some(child);
                break;
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(Instant::now() < deadline, "tansu did not start on {url}");
            std::thread::sleep(Duration::from_millis(500));
        }
        for t in TOPICS {
            let out = Command::new(tansu())
                .args(["topic", "create", "--broker", &url])
                .args(["--partitions", &PARTITIONS.to_string(), t])
                .output()
                .expect("tansu topic create runs");
            assert!(
                out.status.success(),
                "tansu topic create {t}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Kills the broker (its in-memory topics go with it).
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Broker {
    /// Stops the broker process (SIGSTOP): it holds its state but answers
    /// nothing, as a hung or partitioned broker.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a paused broker go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: i32) {
        let c = self.child.as_ref().expect("the broker is up");
        unsafe { libc::kill(c.id() as i32, sig) };
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.resume();
        }
        self.down();
    }
}

/// One consumed message.
#[derive(Debug, Clone)]
pub struct Msg {
    pub topic: String,
    pub partition: i64,
    pub offset: i64,
    pub key: String,
    /// The value as text (JSON) or, with `hex`, its bytes in hex.
    pub value: String,
}

/// Reads `topics` from the start in a new consumer group until `count`
/// messages arrived (0: until nothing came for a few seconds).
pub fn consume(broker: &str, topics: &[&str], count: usize, hex: bool) -> Vec<Msg> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/kafka_consume.py");
    let group = format!(
        "test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let mut c = Command::new(python());
    c.arg(script)
        .args(["--brokers", broker, "--group", &group])
        .args(["--count", &count.to_string(), "--idle", "4", "--wait", "60"]);
    if hex {
        c.arg("--hex");
    }
    let out = c.args(topics).output().expect("the consumer runs");
    assert!(
        out.status.success(),
        "consumer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            Msg {
                topic: v["topic"].as_str().unwrap().to_string(),
                partition: v["partition"].as_i64().unwrap(),
                offset: v["offset"].as_i64().unwrap(),
                key: v["key"].as_str().unwrap().to_string(),
                value: v["value"].as_str().unwrap().to_string(),
            }
        })
        .collect()
}
