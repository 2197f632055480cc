//! Detection quality on the labelled synthetic trace, through the whole pipeline: telemetry
//! JSON → Extractor → Detector → verdicts, scored against the injected episodes.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use anomaly::trace::{self, Fault, Trace, TraceConfig, WINDOW_MS};
use anomaly::{Detector, DetectorConfig, Extractor, Verdict};
use control_api::AnomalyClass;

/// A verdict counts for an episode up to this many windows after it ended.
const GRACE: usize = 2;

/// The trace and the verdicts on it, computed once for both tests (a debug build takes ~30 s).
fn measured() -> &'static (Trace, Vec<(usize, Verdict)>) {
    static RUN: OnceLock<(Trace, Vec<(usize, Verdict)>)> = OnceLock::new();
    RUN.get_or_init(|| {
        let t = trace::generate(&TraceConfig::default());
        let v = run(&t);
        (t, v)
    })
}

fn run(t: &Trace) -> Vec<(usize, Verdict)> {
    let mut x = Extractor::new();
    let mut d = Detector::new(DetectorConfig::default());
    let mut out = Vec::new();
    for (w, win) in t.windows.iter().enumerate() {
        let samples = x.extract(&win.backends, &win.principals, win.at_ms);
        for v in d.observe(&samples) {
            assert_eq!(v.at_ms, win.at_ms);
            out.push((w, v));
        }
    }
    out
}

struct Score {
    /// Per class: verdicts, verdicts that matched an episode, episodes, episodes detected.
    table: BTreeMap<AnomalyClass, [usize; 4]>,
    /// Windows from an episode's start to its first right verdict, per fault.
    delays: BTreeMap<String, Vec<usize>>,
    false_positives: Vec<(usize, Verdict)>,
}

fn score(t: &Trace, verdicts: &[(usize, Verdict)]) -> Score {
    let mut table: BTreeMap<AnomalyClass, [usize; 4]> = AnomalyClass::ALL.iter().map(|c| (*c, [0; 4])).collect();
    let mut delays: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut false_positives = Vec::new();
    let matches = |e: &trace::Episode, w: usize, v: &Verdict| {
        v.subject == e.subject && v.class == e.class && (e.start..e.end + GRACE).contains(&w)
    };
    for (w, v) in verdicts {
        let row = table.get_mut(&v.class).unwrap();
        row[0] += 1;
        if t.episodes.iter().any(|e| matches(e, *w, v)) {
            row[1] += 1;
        } else {
            false_positives.push((*w, v.clone()));
        }
    }
    for e in &t.episodes {
        let row = table.get_mut(&e.class).unwrap();
        row[2] += 1;
        if let Some((w, _)) = verdicts.iter().find(|(w, v)| matches(e, *w, v)) {
            row[3] += 1;
            delays
                .entry(format!("{:?}", e.fault))
                .or_default()
                .push(w - e.start + 1);
        }
    }
    Score {
        table,
        delays,
        false_positives,
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        #[allow(clippy::cast_precision_loss)]
        let r = a as f64 / b as f64;
        r
    }
}

#[test]
fn precision_and_recall_per_class_stay_above_their_floors() {
    let (t, verdicts) = measured();
    let s = score(t, verdicts);
    println!("class        verdicts  right  episodes  found  precision  recall");
    for (c, [v, right, eps, found]) in &s.table {
        println!(
            "{:<12} {v:>8} {right:>6} {eps:>9} {found:>6} {:>10.2} {:>7.2}",
            c.name(),
            ratio(*right, *v),
            ratio(*found, *eps)
        );
    }
    println!("time to detect (windows from the episode's first window):");
    for (fault, d) in &s.delays {
        println!("  {fault:<22} {d:?}");
    }
    for (w, v) in &s.false_positives {
        println!("false positive at window {w}: {} {}", v.class, v.summary);
    }
    for e in &t.episodes {
        if !verdicts
            .iter()
            .any(|(w, v)| v.subject == e.subject && v.class == e.class && (e.start..e.end + GRACE).contains(w))
        {
            println!("missed: {e:?}");
        }
    }
    // Floors just below what the defaults reach on this trace (see docs/anomaly.md).
    for (c, [v, right, eps, found]) in &s.table {
        assert!(ratio(*right, *v) >= 0.9, "{c} precision {right}/{v}");
        assert!(ratio(*found, *eps) >= 0.9, "{c} recall {found}/{eps}");
    }
}

#[test]
fn a_slow_and_erratic_backend_is_a_malfunction_and_bad_signatures_name_the_principal() {
    let (t, verdicts) = measured();
    for fault in [Fault::Jitter, Fault::BadSignatures, Fault::NewcomerBadSignatures] {
        let eps: Vec<_> = t.episodes.iter().filter(|e| e.fault == fault).collect();
        assert!(!eps.is_empty(), "{fault:?} injected");
        for e in eps {
            let about: Vec<&Verdict> = verdicts
                .iter()
                .filter(|(w, v)| v.subject == e.subject && (e.start..e.end + GRACE).contains(w))
                .map(|(_, v)| v)
                .collect();
            assert!(!about.is_empty(), "{e:?} not detected");
            for v in about {
                assert_eq!(v.class, e.class, "{e:?}: {v:?}");
                if fault == Fault::Jitter {
                    assert_ne!(v.class, AnomalyClass::Attack);
                } else {
                    assert!(v.summary.starts_with(&e.subject), "{}", v.summary);
                    assert!(v.deviations.iter().any(|d| d.feature == "auth_failures_per_s"), "{v:?}");
                }
            }
        }
    }
    assert_eq!(t.windows[1].at_ms, 2 * WINDOW_MS);
}
