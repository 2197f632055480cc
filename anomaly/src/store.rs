//! The verdicts kept for the API and the followers: the last [`CAPACITY`], newest last.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use control_api::AnomalyClass;
use tokio::sync::broadcast;

use crate::detect::Verdict;

/// Verdicts kept; older ones are dropped.
pub const CAPACITY: usize = 10_000;
/// Verdicts a slow follower may lag behind before it misses some (it is told how many).
const FOLLOW_BUFFER: usize = 256;

/// A query over the kept verdicts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Query {
    /// Only this subject (`kind:id`).
    pub subject: Option<String>,
    /// Only this class.
    pub class: Option<AnomalyClass>,
    /// Only verdicts at or after this time (ms since the epoch).
    pub since_ms: Option<u64>,
    /// At most this many (newest first).
    pub limit: usize,
}

/// The kept verdicts, shared (cheap to clone) between the detector's loop and the API.
#[derive(Clone, Debug)]
pub struct Anomalies {
    kept: Arc<Mutex<VecDeque<Verdict>>>,
    follow: broadcast::Sender<Verdict>,
    /// Verdicts ever pushed, by (class, subject kind): a counter that eviction does not lower.
    totals: Arc<Mutex<BTreeMap<(AnomalyClass, String), u64>>>,
}

impl Default for Anomalies {
    fn default() -> Self {
        Self::new()
    }
}

impl Anomalies {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self {
            kept: Arc::new(Mutex::new(VecDeque::new())),
            follow: broadcast::channel(FOLLOW_BUFFER).0,
            totals: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    /// Keeps `v` and sends it to the followers.
    pub fn push(&self, v: Verdict) {
        {
            // Subject kinds are few (`backend`, `principal`, `agent`, `node`): the map stays
            // small whatever the subjects.
            let kind = v.subject.split_once(':').map_or("other", |(k, _)| k);
            let kind = if kind.len() <= 16 { kind } else { "other" };
            let mut totals = self.totals.lock().unwrap_or_else(PoisonError::into_inner);
            *totals.entry((v.class, kind.to_owned())).or_default() += 1;
        }
        {
            let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
            if kept.len() == CAPACITY {
                kept.pop_front();
            }
            kept.push_back(v.clone());
        }
        // No follower is not an error.
        let _ = self.follow.send(v);
    }

    /// Verdicts pushed since start, by class and subject kind (`backend`, `principal`, ...).
    #[must_use]
    pub fn totals(&self) -> Vec<(AnomalyClass, String, u64)> {
        let totals = self.totals.lock().unwrap_or_else(PoisonError::into_inner);
        totals.iter().map(|((c, k), n)| (*c, k.clone(), *n)).collect()
    }

    /// The verdicts matching `q`, newest first.
    #[must_use]
    pub fn query(&self, q: &Query) -> Vec<Verdict> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.iter()
            .rev()
            .filter(|v| q.subject.as_ref().is_none_or(|s| *s == v.subject))
            .filter(|v| q.class.is_none_or(|c| c == v.class))
            .filter(|v| q.since_ms.is_none_or(|t| v.at_ms >= t))
            .take(q.limit)
            .cloned()
            .collect()
    }

    /// Verdicts pushed from now on.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<Verdict> {
        self.follow.subscribe()
    }

    /// Verdicts kept.
    #[must_use]
    pub fn len(&self) -> usize {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether none is kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn verdict(subject: &str, class: AnomalyClass, at_ms: u64) -> Verdict {
        Verdict {
            id: format!("{subject}-{at_ms}"),
            subject: subject.into(),
            class,
            score: 1.0,
            at_ms,
            detectors: vec!["robust_z".into()],
            deviations: vec![],
            summary: String::new(),
        }
    }

    #[tokio::test]
    async fn queries_filter_newest_first_and_followers_get_pushes() {
        let a = Anomalies::new();
        let mut rx = a.subscribe();
        a.push(verdict("backend:b1", AnomalyClass::Malfunction, 10));
        a.push(verdict("principal:K", AnomalyClass::Attack, 20));
        a.push(verdict("backend:b1", AnomalyClass::Tampering, 30));
        let all = a.query(&Query {
            limit: 10,
            ..Query::default()
        });
        assert_eq!(all.iter().map(|v| v.at_ms).collect::<Vec<_>>(), [30, 20, 10]);
        let b1 = a.query(&Query {
            subject: Some("backend:b1".into()),
            since_ms: Some(15),
            limit: 10,
            ..Query::default()
        });
        assert_eq!(b1.len(), 1);
        assert_eq!(b1[0].class, AnomalyClass::Tampering);
        let attacks = a.query(&Query {
            class: Some(AnomalyClass::Attack),
            limit: 1,
            ..Query::default()
        });
        assert_eq!(attacks[0].subject, "principal:K");
        assert_eq!(rx.recv().await.unwrap().at_ms, 10);
    }

    #[test]
    fn the_store_is_bounded() {
        let a = Anomalies::new();
        for i in 0..CAPACITY + 10 {
            a.push(verdict("backend:b", AnomalyClass::Malfunction, i as u64));
        }
        assert_eq!(a.len(), CAPACITY);
        let oldest = a.query(&Query {
            limit: CAPACITY,
            ..Query::default()
        });
        assert_eq!(oldest.last().unwrap().at_ms, 10);
    }
}
