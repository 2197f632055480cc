//! Where the shards of a test server are on disk: backend dirs, the shard sets on each, the
//! backends of each set, and waits for an expected layout.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::data::md5_hex;
use crate::process::TestServer;
use crate::wait::eventually;

impl TestServer {
    /// Directory of local backend `i` (`<data>/backends/local<i>`).
    pub fn backend_dir(&self, i: usize) -> PathBuf {
        self.data_dir().join("backends").join(format!("local{i}"))
    }

    /// Directories of all local backends, in index order.
    pub fn backend_dirs(&self) -> Vec<PathBuf> {
        (0..self.options().backend_count())
            .map(|i| self.backend_dir(i))
            .collect()
    }

    /// Shard-set directory names on one backend (`<backend>/shards/<set>`).
    pub fn shard_sets(&self, backend: usize) -> BTreeSet<String> {
        shard_sets_in(&self.backend_dir(backend))
    }

    /// Shard sets per backend, indexed like the backends.
    pub fn all_shard_sets(&self) -> Vec<BTreeSet<String>> {
        (0..self.options().backend_count())
            .map(|i| self.shard_sets(i))
            .collect()
    }

    /// Distinct shard sets found on any backend.
    pub fn distinct_shard_sets(&self) -> BTreeSet<String> {
        self.all_shard_sets().into_iter().flatten().collect()
    }
}

fn shard_sets_in(backend: &Path) -> BTreeSet<String> {
    let dir = backend.join("shards");
    match fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => panic!("reading {}: {e}", dir.display()),
    }
}

/// Shard set -> the backend indexes holding a directory of it.
pub fn set_locations(srv: &TestServer) -> BTreeMap<String, BTreeSet<usize>> {
    let mut out: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for (i, sets) in srv.all_shard_sets().into_iter().enumerate() {
        for set in sets {
            out.entry(set).or_default().insert(i);
        }
    }
    out
}

/// What is wrong with the layout, if anything: a set on a backend outside `allowed`, a set
/// not on exactly `width` backends, or a number of sets outside `sets`.
pub fn layout_problem(
    srv: &TestServer,
    allowed: &BTreeSet<usize>,
    width: usize,
    sets: std::ops::RangeInclusive<usize>,
) -> Option<String> {
    let locations = set_locations(srv);
    for (set, on) in &locations {
        if !on.is_subset(allowed) {
            return Some(format!("set {set} is on backends {on:?}, allowed are {allowed:?}"));
        }
        if on.len() != width {
            return Some(format!("set {set} is on {} backends {on:?}, want {width}", on.len()));
        }
    }
    if !sets.contains(&locations.len()) {
        return Some(format!("{} shard sets, want {sets:?}: {locations:?}", locations.len()));
    }
    None
}

/// Waits (settling stragglers, then up to 30 s for the reaper) until every shard set is on
/// exactly `width` backends, all within `allowed`, and there are `sets` of them; panics with
/// what is wrong otherwise.
pub async fn wait_for_layout(
    srv: &TestServer,
    allowed: &BTreeSet<usize>,
    width: usize,
    sets: std::ops::RangeInclusive<usize>,
) {
    srv.settled().await;
    let ok = eventually(Duration::from_secs(30), || {
        layout_problem(srv, allowed, width, sets.clone()).is_none()
    })
    .await;
    assert!(
        ok,
        "shard layout: {}",
        layout_problem(srv, allowed, width, sets.clone()).unwrap_or_default()
    );
}

/// Every regular file under `dir` (relative path) with its size and MD5.
pub fn snapshot_files(dir: &Path) -> BTreeMap<String, (u64, String)> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, (u64, String)>) {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => panic!("reading {}: {e}", dir.display()),
        };
        for entry in entries {
            let entry = entry.expect("dir entry");
            let path = entry.path();
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                walk(base, &path, out);
            } else {
                let data = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let rel = path
                    .strip_prefix(base)
                    .expect("under base")
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, (data.len() as u64, md5_hex(&data)));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}
