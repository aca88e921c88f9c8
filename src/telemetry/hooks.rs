//! Hook-call timings: `flowhook_script_hook_duration_seconds` (a histogram
//! with buckets from 1 µs to 1 s) and `flowhook_script_calls_total`, kept here
//! rather than by the `metrics` recorder, whose histograms queue every sample
//! (a shared lock-free list per series, drained at scrape time): that queue
//! was most of what timing a hook call cost.
//!
//! Each script host times its calls into a [`HookTimer`] of its own: one
//! counter per bucket and a sum in nanoseconds, written by that host's worker
//! only (plain loads and stores, no read-modify-write). The registry keeps a
//! weak reference to every live timer and folds a timer's counts into its
//! series when the host goes away (a reload, a replaced worker), so the
//! series only ever grow. `/metrics` appends [`render`]'s text, every
//! (script, hook) summed over the workers, to the recorder's.
//!
//! In: durations from the script hosts. Out: Prometheus text.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::catalog::METRICS;

/// Bucket bounds of `flowhook_script_hook_duration_seconds`, in seconds.
pub const HOOK_BUCKETS: [f64; 19] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2,
    5e-2, 0.1, 0.25, 0.5, 1.0,
];

/// The same bounds in nanoseconds (each a whole number of them).
const BOUNDS_NS: [u64; 19] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];

/// Buckets: one per bound, then the calls above the last (`+Inf` counts all).
const SLOTS: usize = BOUNDS_NS.len() + 1;

const DURATION: &str = "flowhook_script_hook_duration_seconds";
const CALLS: &str = "flowhook_script_calls_total";

/// One timer's counts (not cumulative: slot `i` counts the calls in bucket `i` only).
#[derive(Default)]
struct Counts {
    slots: [AtomicU64; SLOTS],
    sum_ns: AtomicU64,
}

/// Adds `n` to a counter only its owner writes (readers may see the old value).
#[inline]
fn bump(a: &AtomicU64, n: u64) {
    a.store(a.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Summed counts of one series (what is rendered).
#[derive(Default, Clone, Copy)]
struct Totals {
    slots: [u64; SLOTS],
    sum_ns: u64,
}

impl Totals {
    fn add(&mut self, c: &Counts) {
        for (t, s) in self.slots.iter_mut().zip(&c.slots) {
            *t = t.wrapping_add(s.load(Ordering::Relaxed));
        }
        self.sum_ns = self.sum_ns.wrapping_add(c.sum_ns.load(Ordering::Relaxed));
    }
}

/// One (script, hook): the counts of timers gone, and the live timers.
#[derive(Default)]
struct Series {
    retired: Totals,
    live: Vec<Weak<Counts>>,
}

type Registry = BTreeMap<(String, &'static str), Series>;

fn registry() -> &'static Mutex<Registry> {
    static R: std::sync::OnceLock<Mutex<Registry>> = std::sync::OnceLock::new();
    R.get_or_init(Default::default)
}

fn lock() -> std::sync::MutexGuard<'static, Registry> {
    registry().lock().unwrap_or_else(|p| p.into_inner())
}

/// The timing of one (script, hook) in one script host. Not `Clone`: its
/// counters have one writer.
pub struct HookTimer {
    key: (String, &'static str),
    counts: Arc<Counts>,
}

impl HookTimer {
    /// A timer for `hook` of `script`, its series registered (at zero) now.
    pub fn new(script: &str, hook: &'static str) -> Self {
        let key = (script.to_string(), hook);
        let counts = Arc::new(Counts::default());
        lock()
            .entry(key.clone())
            .or_default()
            .live
            .push(Arc::downgrade(&counts));
        HookTimer { key, counts }
    }

    /// One call that took `took`.
    #[inline]
    pub fn record(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let slot = BOUNDS_NS
            .iter()
            .position(|b| ns <= *b)
            .unwrap_or(BOUNDS_NS.len());
        bump(&self.counts.slots[slot], 1);
        bump(&self.counts.sum_ns, ns);
    }
}

impl Drop for HookTimer {
    fn drop(&mut self) {
        let mut r = lock();
        if let Some(s) = r.get_mut(&self.key) {
            s.retired.add(&self.counts);
            s.live
                .retain(|w| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), &*self.counts));
        }
    }
}

fn help(name: &str) -> &'static str {
    METRICS
        .iter()
        .find(|m| m.name == name)
        .map(|m| m.help)
        .unwrap_or("")
}

/// A label value as the text format wants it (backslash, quote and newline escaped).
fn label(out: &mut String, v: &str) {
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The two families in Prometheus text format (nothing before any timer exists).
pub fn render() -> String {
    let series: Vec<((String, &'static str), Totals)> = lock()
        .iter()
        .map(|(k, s)| {
            let mut t = s.retired;
            for c in s.live.iter().filter_map(Weak::upgrade) {
                t.add(&c);
            }
            (k.clone(), t)
        })
        .collect();
    let mut out = String::new();
    if series.is_empty() {
        return out;
    }
    let head = |out: &mut String, name: &str, kind: &str| {
        let _ = writeln!(out, "# HELP {name} {}", help(name));
        let _ = writeln!(out, "# TYPE {name} {kind}");
    };
    let labels = |out: &mut String, (script, hook): &(String, &str)| {
        out.push_str("script=\"");
        label(out, script);
        out.push_str("\",hook=\"");
        label(out, hook);
        out.push('"');
    };
    head(&mut out, CALLS, "counter");
    for (k, t) in &series {
        out.push_str(CALLS);
        out.push('{');
        labels(&mut out, k);
        let _ = writeln!(out, "}} {}", t.slots.iter().sum::<u64>());
    }
    out.push('\n');
    head(&mut out, DURATION, "histogram");
    for (k, t) in &series {
        let mut below = 0u64;
        for (i, n) in t.slots.iter().enumerate() {
            below += n;
            let _ = write!(out, "{DURATION}_bucket{{");
            labels(&mut out, k);
            match HOOK_BUCKETS.get(i) {
                Some(b) => {
                    let _ = writeln!(out, ",le=\"{b}\"}} {below}");
                }
                None => {
                    let _ = writeln!(out, ",le=\"+Inf\"}} {below}");
                }
            }
        }
        let _ = write!(out, "{DURATION}_sum{{");
        labels(&mut out, k);
        let _ = writeln!(out, "}} {}", t.sum_ns as f64 / 1e9);
        let _ = write!(out, "{DURATION}_count{{");
        labels(&mut out, k);
        let _ = writeln!(out, "}} {below}");
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(text: &str, script: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.contains(&format!("script=\"{script}\"")))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn bounds_match_the_buckets() {
        for (ns, s) in BOUNDS_NS.iter().zip(HOOK_BUCKETS) {
            assert_eq!(*ns as f64 / 1e9, s);
        }
    }

    #[test]
    fn timers_sum_across_hosts_and_survive_their_host() {
        let a = HookTimer::new("hooks-test \"q\"", "flowEnd");
        let b = HookTimer::new("hooks-test \"q\"", "flowEnd");
        a.record(Duration::from_nanos(1_000)); // le 1e-6 (bounds are inclusive)
        a.record(Duration::from_nanos(1_001)); // le 2.5e-6
        b.record(Duration::from_millis(2)); // le 0.0025
        b.record(Duration::from_secs(3)); // +Inf only
        let text = render();
        let l = lines_of(&text, "hooks-test \\\"q\\\"");
        let get = |suffix: &str| {
            l.iter()
                .find(|x| x.contains(suffix))
                .unwrap_or_else(|| panic!("{suffix} missing in {l:?}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_string()
        };
        assert_eq!(get("calls_total{"), "4");
        assert_eq!(get("le=\"0.000001\"}"), "1");
        assert_eq!(get("le=\"0.0000025\"}"), "2");
        assert_eq!(get("le=\"0.001\"}"), "2");
        assert_eq!(get("le=\"0.0025\"}"), "3");
        assert_eq!(get("le=\"1\"}"), "3");
        assert_eq!(get("le=\"+Inf\"}"), "4");
        assert_eq!(get("_count{"), "4");
        assert_eq!(get("_sum{").parse::<f64>().unwrap(), 3.002002001);
        assert!(text.contains("# TYPE flowhook_script_hook_duration_seconds histogram"));
        assert!(text.contains("# HELP flowhook_script_calls_total Hook calls."));
        // a host that goes away leaves its counts in the series
        drop(a);
        drop(b);
        let again = render();
        assert_eq!(lines_of(&again, "hooks-test \\\"q\\\""), l);
        let c = HookTimer::new("hooks-test \"q\"", "flowEnd");
        c.record(Duration::from_micros(7));
        let after = render();
        let l2 = lines_of(&after, "hooks-test \\\"q\\\"");
        assert!(
            l2.iter()
                .any(|x| x.contains("calls_total{") && x.ends_with(" 5"))
        );
        assert!(
            l2.iter()
                .any(|x| x.contains("le=\"0.00001\"}") && x.ends_with(" 3"))
        );
    }
}
