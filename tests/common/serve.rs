//! A `flowhook serve` child process for black-box tests: started with the
//! given environment (metrics on an ephemeral port), its log lines readable,
//! stopped with SIGTERM, killed if a test fails.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// A state directory no other test uses.
pub fn fresh_state_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "flowhook-test-state-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

pub struct Serve {
    pub child: Child,
    lines: Receiver<String>,
    /// Every line read so far.
    history: std::cell::RefCell<Vec<String>>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    /// Starts `flowhook serve` and waits until it says it is serving.
    pub fn start(envs: &[(&str, String)]) -> Serve {
        let s = Self::spawn(envs);
        s.wait_for("flowhook serving");
        s
    }

    /// Starts `flowhook serve` without waiting.
    pub fn spawn(envs: &[(&str, String)]) -> Serve {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flowhook"));
        cmd.arg("serve")
            .env("RUST_LOG", "info")
            .env("FLOWHOOK__METRICS__LISTEN", "127.0.0.1:0");
        if !envs.iter().any(|(k, _)| *k == "FLOWHOOK__STATE__DIR") {
            // each test's own state file: no templates from another test's run
            cmd.env("FLOWHOOK__STATE__DIR", fresh_state_dir());
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Serve {
            child,
            lines: rx,
            history: Default::default(),
        }
    }

    /// Waits (bounded) for a log line containing `text` and returns it.
    pub fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(l) => {
                    self.history.borrow_mut().push(l.clone());
                    if l.contains(text) {
                        return l;
                    }
                }
                Err(_) => panic!("no log line with {text:?} within 60 s"),
            }
        }
    }

    /// A log line containing `text`, already read (by an earlier wait) or to come.
    pub fn logged(&self, text: &str) -> String {
        let earlier = self
            .history
            .borrow()
            .iter()
            .find(|l| l.contains(text))
            .cloned();
        earlier.unwrap_or_else(|| self.wait_for(text))
    }

    /// The metrics endpoint's address, from the start-up log.
    pub fn metrics_addr(&self) -> String {
        let l = self.logged("metrics endpoint listening");
        l.split("local=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }

    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// SIGTERM, then waits (bounded) for the exit.
    pub fn stop(mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The settings of a `serve` on `port` writing to `out` with its state in
/// `state` (written often), without scripts.
pub fn restart_envs(
    port: u16,
    out: &std::path::Path,
    state: &std::path::Path,
) -> Vec<(&'static str, String)> {
    vec![
        ("FLOWHOOK__INGEST__LISTEN", format!("127.0.0.1:{port}")),
        ("FLOWHOOK__OUTPUT__PATH", out.display().to_string()),
        ("FLOWHOOK__STATE__DIR", state.display().to_string()),
        ("FLOWHOOK__STATE__WRITE_INTERVAL", "100ms".into()),
        ("FLOWHOOK__SCRIPTS__DIR", "/nonexistent".into()),
    ]
}

/// Packets accounted in an output file (`flowEnd` events: every flow ends
/// at shutdown), per exporter.
pub fn flow_end_packets(out: &std::path::Path) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    let text = std::fs::read_to_string(out).unwrap_or_default();
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        if v["event"] != "flowEnd" {
            continue;
        }
        let f = &v["flow"];
        let n = f["cli2srv.packets"].as_u64().unwrap() + f["srv2cli.packets"].as_u64().unwrap();
        *m.entry(f["exporter"].as_str().unwrap().to_string())
            .or_default() += n;
    }
    m
}
