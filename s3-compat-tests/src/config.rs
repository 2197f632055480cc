//! TOML config files for `mlsysops serve --config`.

use std::collections::BTreeMap;
use std::path::Path;

/// A TOML config of six local backends `b0`..`b5` under `root`; `faults[i]`, when present, is
/// the inline `faults` table of backend i (e.g. `latency_ms = 40`).
pub fn six_local_backends<S: AsRef<str>>(root: &Path, faults: &BTreeMap<usize, S>) -> String {
    (0..6)
        .map(|i| {
            let f = faults
                .get(&i)
                .map(|f| format!("faults = {{ {} }}\n", f.as_ref()))
                .unwrap_or_default();
            format!(
                "[[backend]]\nid = \"b{i}\"\nkind = \"local\"\npath = {:?}\n{f}\n",
                root.join(format!("b{i}"))
            )
        })
        .collect()
}
