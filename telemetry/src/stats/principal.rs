//! Per-principal counters of S3 requests (1 min, 15 min, 1 h windows and totals): the evidence
//! trust and anomaly detection judge a client by (403 bursts, HEAD/404 scans, bytes out,
//! deletes), and what a throttle is decided from.
//!
//! A principal is the access key id a request *claims* (see [`is_valid_name`]), checked or not:
//! a forged signature is exactly what must be counted against the key it names. Names come
//! from clients, so the map is bounded: at most [`MAX_PRINCIPALS`] principals, the least
//! recently seen one forgotten (windows and totals) to admit a new one. An attacker cycling
//! through made-up keys therefore evicts idle principals, never grows memory; a principal
//! evicted and seen again starts from zero.
//!
//! Memory: each principal keeps 12 five-second slots (the minute window) and 60 one-minute
//! slots (the 15-minute and hour windows), about 9.5 KiB, so at most about 40 MiB in all.
//! The coarse slots make the 15-minute and hour windows cover between 14 and 15 (59 and 60)
//! minutes, where a backend's cover them to 5 seconds.

use super::window::{epoch_of, SlotData, SlotRing, Window};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// Principals tracked at once; the least recently seen is evicted beyond it.
pub const MAX_PRINCIPALS: usize = 4096;
/// Longest valid principal name.
pub const MAX_NAME_LEN: usize = 128;
/// The principal of requests without credentials.
pub const ANONYMOUS: &str = "anonymous";
/// The principal of requests whose claimed access key is not a valid name (or is one of the
/// reserved names).
pub const INVALID: &str = "invalid";
/// The principal the admin API's own refusals are counted under: it has no access key, only
/// the one admin token, so everything it is asked is asked by this one principal.
pub const ADMIN_API: &str = "admin-api";
/// Names no claimed access key is counted under, so no S3 client can pass for them.
pub const RESERVED: [&str; 3] = [ANONYMOUS, INVALID, ADMIN_API];
/// The operation label of requests refused by a principal's throttle before s3s saw them.
pub const THROTTLED_OPERATION: &str = "throttled";

/// Five-second slots of the minute window.
const FINE_SLOTS: usize = 12;
/// One-minute slots of the hour window.
const COARSE_SLOTS: usize = 60;
/// Five-second epochs per coarse slot.
const FINE_PER_COARSE: u64 = 12;

/// Whether `name` is a valid principal name: 1 to 128 characters of `A-Z a-z 0-9 . _ + = @ -`
/// (what AWS access key ids and IAM names use; nothing that needs escaping in a path or a log).
#[must_use]
pub fn is_valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'=' | b'@' | b'-'))
}

/// The principal a claimed access key is counted under: itself when valid, [`INVALID`] when
/// not (or when it is one of the [`RESERVED`] names), [`ANONYMOUS`] without one.
#[must_use]
pub fn principal_of(claimed: Option<&str>) -> &str {
    match claimed {
        None => ANONYMOUS,
        Some(k) if is_valid_name(k) && !RESERVED.contains(&k) => k,
        Some(_) => INVALID,
    }
}

/// Counts of one principal over a window, or since it was first seen (every field a count of
/// requests, except the two byte counts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalCounters {
    /// Requests.
    pub requests: u64,
    /// Requests refused because their signature or access key did not check out: 403s of
    /// requests that never reached an operation (`SignatureDoesNotMatch`, `InvalidAccessKeyId`,
    /// expired presigned URLs).
    pub auth_failures: u64,
    /// Every 403.
    pub denied: u64,
    /// Every 4xx.
    pub client_errors: u64,
    /// Every 5xx (throttled requests excepted: they count in `throttled`).
    pub server_errors: u64,
    /// Every 404.
    pub not_found: u64,
    /// HeadObject and HeadBucket.
    pub heads: u64,
    /// GetObject.
    pub gets: u64,
    /// PutObject, UploadPart, CopyObject, CompleteMultipartUpload.
    pub puts: u64,
    /// DeleteObject, DeleteObjects.
    pub deletes: u64,
    /// Listings (buckets, objects, parts, uploads, versions).
    pub lists: u64,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// Refused storage-policy changes for a missing or wrong `policy_update_token`.
    pub token_failures: u64,
    /// Requests refused with 503 SlowDown by the principal's throttle.
    pub throttled: u64,
}

/// One finished S3 request, as counted for its principal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrincipalRequest<'a> {
    /// S3 operation name ("GetObject"); empty or "unknown" when s3s never routed the request,
    /// [`THROTTLED_OPERATION`] when a throttle refused it.
    pub operation: &'a str,
    /// HTTP status of the response.
    pub status: u16,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
}

impl PrincipalCounters {
    /// The counts one request adds.
    #[must_use]
    pub fn of_request(r: &PrincipalRequest<'_>) -> Self {
        let unrouted = r.operation.is_empty() || r.operation == "unknown";
        let throttled = r.operation == THROTTLED_OPERATION;
        let status = r.status;
        let flag = |b: bool| u64::from(b);
        Self {
            requests: 1,
            auth_failures: flag(status == 403 && unrouted),
            denied: flag(status == 403),
            client_errors: flag((400..500).contains(&status)),
            server_errors: flag((500..600).contains(&status) && !throttled),
            not_found: flag(status == 404),
            heads: flag(matches!(r.operation, "HeadObject" | "HeadBucket")),
            gets: flag(r.operation == "GetObject"),
            puts: flag(matches!(
                r.operation,
                "PutObject" | "UploadPart" | "CopyObject" | "CompleteMultipartUpload"
            )),
            deletes: flag(matches!(r.operation, "DeleteObject" | "DeleteObjects")),
            lists: flag(matches!(
                r.operation,
                "ListBuckets"
                    | "ListObjects"
                    | "ListObjectsV2"
                    | "ListObjectVersions"
                    | "ListParts"
                    | "ListMultipartUploads"
            )),
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            token_failures: 0,
            throttled: flag(throttled),
        }
    }

    /// Adds `o`'s counts.
    pub fn add(&mut self, o: &Self) {
        let Self {
            requests,
            auth_failures,
            denied,
            client_errors,
            server_errors,
            not_found,
            heads,
            gets,
            puts,
            deletes,
            lists,
            bytes_in,
            bytes_out,
            token_failures,
            throttled,
        } = o;
        let pairs = [
            (&mut self.requests, requests),
            (&mut self.auth_failures, auth_failures),
            (&mut self.denied, denied),
            (&mut self.client_errors, client_errors),
            (&mut self.server_errors, server_errors),
            (&mut self.not_found, not_found),
            (&mut self.heads, heads),
            (&mut self.gets, gets),
            (&mut self.puts, puts),
            (&mut self.deletes, deletes),
            (&mut self.lists, lists),
            (&mut self.bytes_in, bytes_in),
            (&mut self.bytes_out, bytes_out),
            (&mut self.token_failures, token_failures),
            (&mut self.throttled, throttled),
        ];
        for (mine, theirs) in pairs {
            *mine = mine.saturating_add(*theirs);
        }
    }
}

impl SlotData for PrincipalCounters {
    fn reset(&mut self) {
        *self = Self::default();
    }
}

/// One principal's counts over one window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalWindow {
    /// Which window.
    pub window: Window,
    /// Its length.
    pub seconds: u64,
    /// The counts, flattened into the window's object.
    #[serde(flatten)]
    pub counts: PrincipalCounters,
}

/// One principal's counts over every window (1 m, 15 m, 1 h) and since it was first seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalSnapshot {
    /// The claimed access key id, or `anonymous`, `invalid`, `admin-api`.
    pub principal: String,
    /// 1 m, 15 m, 1 h.
    pub windows: Vec<PrincipalWindow>,
    /// Since the principal was first seen (or last evicted and seen again).
    pub total: PrincipalCounters,
}

#[derive(Debug, Default)]
struct PrincipalState {
    /// When last recorded into, in the map's own order: the eviction order.
    tick: u64,
    fine: SlotRing<PrincipalCounters, FINE_SLOTS>,
    coarse: SlotRing<PrincipalCounters, COARSE_SLOTS>,
    total: PrincipalCounters,
}

impl PrincipalState {
    /// The counts of window `w` ending in 5-second epoch `epoch`: the minute (and 15 s) from
    /// the fine slots, longer windows from the coarse ones.
    fn over(&self, epoch: u64, w: Window) -> PrincipalCounters {
        let mut counts = PrincipalCounters::default();
        match w {
            Window::OneMinute | Window::FifteenSeconds => {
                for (_, c) in self.fine.recent(epoch, w.slots()) {
                    counts.add(c);
                }
            }
            Window::FifteenMinutes | Window::OneHour => {
                let coarse_slots = w.slots() / FINE_PER_COARSE;
                for (_, c) in self.coarse.recent(epoch / FINE_PER_COARSE, coarse_slots) {
                    counts.add(c);
                }
            }
        }
        counts
    }
}

#[derive(Debug, Default)]
struct Map {
    next_tick: u64,
    principals: HashMap<String, PrincipalState>,
    /// tick -> principal: the least recently seen first.
    order: BTreeMap<u64, String>,
}

/// Sliding-window and total counts of every principal seen recently; shared by reference.
#[derive(Debug)]
pub struct PrincipalStats {
    origin: Instant,
    capacity: usize,
    map: Mutex<Map>,
}

impl Default for PrincipalStats {
    fn default() -> Self {
        Self::new()
    }
}

impl PrincipalStats {
    /// Empty statistics whose slots start now, holding up to [`MAX_PRINCIPALS`].
    #[must_use]
    pub fn new() -> Self {
        Self::with_capacity_at(Instant::now(), MAX_PRINCIPALS)
    }

    /// Empty statistics whose slots start at `origin`, holding up to `capacity` principals (at
    /// least one).
    #[must_use]
    pub fn with_capacity_at(origin: Instant, capacity: usize) -> Self {
        Self {
            origin,
            capacity: capacity.max(1),
            map: Mutex::new(Map::default()),
        }
    }

    /// Counts one request of `principal` (a name from [`principal_of`]).
    pub fn record(&self, principal: &str, counts: &PrincipalCounters) {
        self.record_at(Instant::now(), principal, counts);
    }

    /// Counts `counts` for `principal` at `now`; admits the principal first, evicting the least
    /// recently seen one when full.
    pub fn record_at(&self, now: Instant, principal: &str, counts: &PrincipalCounters) {
        let epoch = epoch_of(self.origin, now);
        let mut guard = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let map = &mut *guard;
        let tick = map.next_tick;
        map.next_tick += 1;
        if let Some(state) = map.principals.get_mut(principal) {
            map.order.remove(&state.tick);
        } else {
            while map.principals.len() >= self.capacity {
                let Some((_, oldest)) = map.order.pop_first() else {
                    break;
                };
                map.principals.remove(&oldest);
            }
            map.principals.insert(principal.to_owned(), PrincipalState::default());
        }
        map.order.insert(tick, principal.to_owned());
        let Some(state) = map.principals.get_mut(principal) else {
            return;
        };
        state.tick = tick;
        state.total.add(counts);
        if let Some(slot) = state.fine.slot_mut(epoch) {
            slot.add(counts);
        }
        if let Some(slot) = state.coarse.slot_mut(epoch / FINE_PER_COARSE) {
            slot.add(counts);
        }
    }

    /// Principals tracked now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).principals.len()
    }

    /// Whether no principal is tracked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every principal over every window, sorted by name.
    #[must_use]
    pub fn snapshot(&self) -> Vec<PrincipalSnapshot> {
        self.snapshot_at(Instant::now())
    }

    /// Every principal over every window ending at `now`, sorted by name.
    #[must_use]
    pub fn snapshot_at(&self, now: Instant) -> Vec<PrincipalSnapshot> {
        let epoch = epoch_of(self.origin, now);
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<PrincipalSnapshot> = map
            .principals
            .iter()
            .map(|(name, state)| PrincipalSnapshot {
                principal: name.clone(),
                windows: Window::ALL
                    .into_iter()
                    .map(|w| PrincipalWindow {
                        window: w,
                        seconds: w.seconds(),
                        counts: state.over(epoch, w),
                    })
                    .collect(),
                total: state.total,
            })
            .collect();
        out.sort_by(|a, b| a.principal.cmp(&b.principal));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn req(operation: &str, status: u16) -> PrincipalCounters {
        PrincipalCounters::of_request(&PrincipalRequest {
            operation,
            status,
            bytes_in: 10,
            bytes_out: 100,
        })
    }

    fn window(s: &PrincipalSnapshot, w: Window) -> &PrincipalCounters {
        &s.windows.iter().find(|x| x.window == w).expect("window listed").counts
    }

    #[test]
    fn names_are_validated() {
        assert!(is_valid_name("AKIAIOSFODNN7EXAMPLE"));
        assert!(is_valid_name("user.name+tag=x@example-1_2"));
        assert!(is_valid_name(&"a".repeat(128)));
        assert!(!is_valid_name(&"a".repeat(129)));
        assert!(!is_valid_name(""));
        for bad in ["a b", "a/b", "a%2F", "é", "a\n", "a;b", "a:b"] {
            assert!(!is_valid_name(bad), "{bad:?} accepted");
        }
        assert_eq!(principal_of(Some("AKIA1")), "AKIA1");
        assert_eq!(principal_of(Some("bad key")), INVALID);
        assert_eq!(principal_of(None), ANONYMOUS);
        for reserved in RESERVED {
            assert_eq!(principal_of(Some(reserved)), INVALID);
        }
    }

    #[test]
    fn requests_are_classified() {
        let c = req("GetObject", 200);
        assert_eq!((c.requests, c.gets, c.bytes_in, c.bytes_out), (1, 1, 10, 100));
        assert_eq!(c.client_errors + c.server_errors + c.denied, 0);
        let c = req("unknown", 403);
        assert_eq!((c.auth_failures, c.denied, c.client_errors), (1, 1, 1));
        let c = req("", 403);
        assert_eq!(c.auth_failures, 1);
        // Denied after routing (an anonymous request, an access rule): not an auth failure.
        let c = req("anonymous", 403);
        assert_eq!((c.auth_failures, c.denied), (0, 1));
        let c = req("HeadObject", 404);
        assert_eq!((c.heads, c.not_found, c.client_errors), (1, 1, 1));
        assert_eq!(req("HeadBucket", 200).heads, 1);
        for op in ["PutObject", "UploadPart", "CopyObject", "CompleteMultipartUpload"] {
            assert_eq!(req(op, 200).puts, 1, "{op}");
        }
        assert_eq!(req("UploadPartCopy", 200).puts, 0);
        for op in ["DeleteObject", "DeleteObjects"] {
            assert_eq!(req(op, 204).deletes, 1, "{op}");
        }
        for op in ["ListObjectsV2", "ListObjects", "ListBuckets", "ListParts"] {
            assert_eq!(req(op, 200).lists, 1, "{op}");
        }
        let c = req("GetObject", 500);
        assert_eq!(c.server_errors, 1);
        let c = req(THROTTLED_OPERATION, 503);
        assert_eq!((c.throttled, c.server_errors, c.requests), (1, 0, 1));
    }

    #[test]
    fn windows_and_totals_count_and_expire() {
        let t0 = Instant::now();
        let s = PrincipalStats::with_capacity_at(t0, 16);
        s.record_at(t0, "AKIA1", &req("GetObject", 200));
        s.record_at(t0 + Duration::from_secs(1), "AKIA1", &req("unknown", 403));
        s.record_at(t0, "AKIA2", &req("PutObject", 200));
        let snap = s.snapshot_at(t0 + Duration::from_secs(2));
        assert_eq!(
            snap.iter().map(|p| p.principal.as_str()).collect::<Vec<_>>(),
            ["AKIA1", "AKIA2"]
        );
        for w in Window::ALL {
            let c = window(&snap[0], w);
            assert_eq!((c.requests, c.gets, c.auth_failures, c.denied), (2, 1, 1, 1), "{w}");
        }
        assert_eq!(snap[0].total.requests, 2);
        assert_eq!(window(&snap[1], Window::OneMinute).puts, 1);

        // Two minutes later: gone from the minute, kept by the longer windows and the total.
        let later = t0 + Duration::from_secs(120);
        s.record_at(later, "AKIA1", &req("HeadObject", 404));
        let snap = s.snapshot_at(later);
        let one = |w| *window(&snap[0], w);
        assert_eq!((one(Window::OneMinute).requests, one(Window::OneMinute).heads), (1, 1));
        assert_eq!(one(Window::FifteenMinutes).requests, 3);
        assert_eq!(one(Window::OneHour).requests, 3);
        assert_eq!(snap[0].total.requests, 3);
        assert_eq!(snap[0].total.not_found, 1);

        // Twenty minutes later: only the hour and the total still hold them.
        let snap = s.snapshot_at(t0 + Duration::from_secs(20 * 60));
        assert_eq!(window(&snap[0], Window::FifteenMinutes).requests, 0);
        assert_eq!(window(&snap[0], Window::OneHour).requests, 3);
        // Past the hour: only the total.
        let snap = s.snapshot_at(t0 + Duration::from_secs(2 * 3600));
        assert_eq!(window(&snap[0], Window::OneHour).requests, 0);
        assert_eq!(snap[0].total.requests, 3);
        assert_eq!(snap[0].total.bytes_out, 300);
    }

    #[test]
    fn the_least_recently_seen_principal_is_evicted() {
        let t0 = Instant::now();
        let s = PrincipalStats::with_capacity_at(t0, 3);
        for p in ["a", "b", "c"] {
            s.record_at(t0, p, &req("GetObject", 200));
        }
        // "a" seen again: "b" is now the oldest.
        s.record_at(t0, "a", &req("GetObject", 200));
        s.record_at(t0, "d", &req("GetObject", 200));
        let names: Vec<String> = s.snapshot_at(t0).into_iter().map(|p| p.principal).collect();
        assert_eq!(names, ["a", "c", "d"]);
        assert_eq!(s.len(), 3);
        // "b" comes back from zero.
        s.record_at(t0, "b", &req("GetObject", 200));
        let snap = s.snapshot_at(t0);
        let b = snap.iter().find(|p| p.principal == "b").expect("b admitted");
        assert_eq!(b.total.requests, 1);
        assert!(!snap.iter().any(|p| p.principal == "c"));
    }

    #[test]
    fn memory_stays_bounded_under_many_names() {
        let s = PrincipalStats::new();
        for i in 0..(MAX_PRINCIPALS + 500) {
            s.record(&format!("AKIA{i}"), &req("GetObject", 403));
        }
        assert_eq!(s.len(), MAX_PRINCIPALS);
        let snap = s.snapshot();
        assert!(!snap.iter().any(|p| p.principal == "AKIA0"));
        assert!(snap
            .iter()
            .any(|p| p.principal == format!("AKIA{}", MAX_PRINCIPALS + 499)));
    }

    #[test]
    fn snapshot_serializes_flat_with_the_documented_names() {
        let t0 = Instant::now();
        let s = PrincipalStats::with_capacity_at(t0, 4);
        s.record_at(t0, "AKIA1", &req("GetObject", 200));
        let v = serde_json::to_value(s.snapshot_at(t0)).unwrap();
        let p = &v[0];
        assert_eq!(p["principal"], "AKIA1");
        let w = &p["windows"][0];
        assert_eq!((w["window"].as_str(), w["seconds"].as_u64()), (Some("1m"), Some(60)));
        assert_eq!(p["windows"][1]["window"], "15m");
        assert_eq!(p["windows"][2]["window"], "1h");
        for k in [
            "requests",
            "auth_failures",
            "denied",
            "client_errors",
            "server_errors",
            "not_found",
            "heads",
            "gets",
            "puts",
            "deletes",
            "lists",
            "bytes_in",
            "bytes_out",
            "token_failures",
            "throttled",
        ] {
            assert!(w[k].is_u64(), "window lacks {k}: {w}");
            assert!(p["total"][k].is_u64(), "total lacks {k}");
        }
        assert_eq!(w.as_object().unwrap().len(), 17);
        let back: Vec<PrincipalSnapshot> = serde_json::from_value(v).unwrap();
        assert_eq!(back[0].windows[0].counts.gets, 1);
    }
}
