//! The agent's own RocksDB: intents, apps, the decision log and the plan uids already taken,
//! so a restarted agent resumes where it stopped (holds, cool-downs, no plan applied twice).
//! Keys are `<kind>/<name>`; values JSON. Every write is synced: a decision the agent acted on
//! must survive a crash of the agent.

use crate::error::{Error, Result};
use rocksdb::{Direction, IteratorMode, Options, WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

/// A handle on the agent's store; clones share the database.
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
}

fn store_err(what: impl Into<String>, e: impl std::fmt::Display) -> Error {
    Error::Store {
        what: what.into(),
        message: e.to_string(),
    }
}

impl Store {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| store_err(format!("creating {}", dir.display()), e))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_keep_log_file_num(2);
        let db = DB::open(&opts, dir).map_err(|e| store_err(format!("opening {}", dir.display()), e))?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Writes `value` under `key`, synced.
    pub fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| store_err(format!("encoding {key}"), e))?;
        let mut w = WriteOptions::default();
        w.set_sync(true);
        self.db
            .put_opt(key.as_bytes(), bytes, &w)
            .map_err(|e| store_err(format!("writing {key}"), e))
    }

    /// The value under `key`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let Some(bytes) = self
            .db
            .get(key.as_bytes())
            .map_err(|e| store_err(format!("reading {key}"), e))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| store_err(format!("decoding {key}"), e))
    }

    /// Removes `key`, synced.
    pub fn delete(&self, key: &str) -> Result<()> {
        let mut w = WriteOptions::default();
        w.set_sync(true);
        self.db
            .delete_opt(key.as_bytes(), &w)
            .map_err(|e| store_err(format!("deleting {key}"), e))
    }

    /// Every value under `prefix`, in key order (newest last for time-ordered keys), with
    /// `keep` deciding which to return and `limit` bounding how many.
    pub fn scan<T: DeserializeOwned>(
        &self,
        prefix: &str,
        reverse: bool,
        limit: usize,
        mut keep: impl FnMut(&T) -> bool,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        // The key just after every key with `prefix`: the prefix with its last byte raised.
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let mode = if reverse {
            IteratorMode::From(&end, Direction::Reverse)
        } else {
            IteratorMode::From(prefix.as_bytes(), Direction::Forward)
        };
        for item in self.db.iterator(mode) {
            let (k, v) = item.map_err(|e| store_err(format!("scanning {prefix}"), e))?;
            if !k.starts_with(prefix.as_bytes()) {
                if reverse && k.as_ref() >= end.as_slice() {
                    continue;
                }
                break;
            }
            let value: T = serde_json::from_slice(&v)
                .map_err(|e| store_err(format!("decoding {}", String::from_utf8_lossy(&k)), e))?;
            if keep(&value) {
                out.push(value);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_respect_prefix_order_filter_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        for (k, v) in [("a/1", 1), ("b/1", 10), ("b/2", 20), ("b/3", 30), ("c/1", 100)] {
            s.put(k, &v).unwrap();
        }
        let all: Vec<i32> = s.scan("b/", false, 10, |_| true).unwrap();
        assert_eq!(all, [10, 20, 30]);
        let rev: Vec<i32> = s.scan("b/", true, 2, |_| true).unwrap();
        assert_eq!(rev, [30, 20]);
        let odd: Vec<i32> = s.scan("b/", true, 10, |v: &i32| *v != 20).unwrap();
        assert_eq!(odd, [30, 10]);
        s.delete("b/2").unwrap();
        assert_eq!(s.get::<i32>("b/2").unwrap(), None);
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.get::<i32>("b/3").unwrap(), Some(30));
    }
}
