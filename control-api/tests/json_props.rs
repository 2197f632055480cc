//! Property tests of the admin API's request bodies as JSON: every request a client can build
//! survives the wire unchanged, and any bytes at all are either a request or a parse error,
//! never a panic. (What the gateway then does with a parsed request is tested beside it, in
//! storage-gateway's storage_policy.)

use control_api::{
    BackendsField, LocationRestrictions, MigrationThrottleRequest, Redundancy, StoragePolicyRequest, WorkerChange,
};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn redundancy() -> impl Strategy<Value = Redundancy> {
    prop_oneof![Just(Redundancy::High), Just(Redundancy::One), Just(Redundancy::None)]
}

/// A set field (`Some(Some)`), a field set to `null` (`Some(None)`), or a field left out.
fn nullable<T: std::fmt::Debug + Clone>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Option<Option<T>>> {
    proptest::option::of(proptest::option::of(s))
}

/// Numbers JSON carries exactly: finite (JSON has no NaN or infinity; serde_json writes them as
/// `null`) and with few significant bits (its default float parser may miss the last bit of
/// others, which is not what is under test).
fn finite() -> impl Strategy<Value = f64> {
    (-4000i32..4_000_000).prop_map(|i| f64::from(i) / 8.0)
}

fn backends() -> impl Strategy<Value = BackendsField> {
    prop_oneof![
        "[ -~]{0,30}".prop_map(BackendsField::Selector),
        proptest::collection::vec("[a-z0-9=, ]{0,10}", 0..5).prop_map(BackendsField::Ids),
    ]
}

prop_compose! {
    fn storage_policy_request()(
        preset in proptest::option::of(prop_oneof!["ec-[0-9]{1,2}-[0-9]{1,2}", "replicate-[0-9]", "[ -~]{0,12}"]),
        k in proptest::option::of(any::<u8>()),
        m in proptest::option::of(any::<u8>()),
        block_size in proptest::option::of(any::<u32>()),
        backends in proptest::option::of(backends()),
        encryption in proptest::option::of(any::<bool>()),
        server_side_encryption in proptest::option::of("(on|off|ON|Off|[a-z]{0,5})"),
        redundancy in nullable(redundancy()),
        max_latency in nullable(any::<u64>()),
        min_download_speed in nullable(finite()),
        location_restrictions in proptest::option::of(any::<bool>().prop_map(|gdpr| LocationRestrictions { gdpr })),
        policy_update_token in proptest::option::of("\\PC{0,20}"),
        automatic in any::<bool>(),
        changed_by in proptest::option::of("\\PC{0,20}"),
        reason in proptest::option::of("\\PC{0,40}"),
    ) -> StoragePolicyRequest {
        StoragePolicyRequest {
            preset, k, m, block_size, backends, encryption, server_side_encryption, redundancy,
            max_latency, min_download_speed, location_restrictions, policy_update_token, automatic,
            changed_by, reason, prefixes: None,
        }
    }
}

/// JSON-ish bytes: mangled JSON objects, and plain noise.
fn bodies() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        storage_policy_request().prop_flat_map(|r| {
            let json = serde_json::to_vec(&r).expect("serializes");
            let n = json.len();
            (Just(json), 0..=n, any::<u8>()).prop_map(|(mut j, at, b)| {
                if at < j.len() {
                    j[at] = b;
                } else {
                    j.push(b);
                }
                j
            })
        }),
        r#"\{"[a-z_]{1,24}": ?(null|true|-?[0-9]{1,25}(\.[0-9]+)?(e[0-9]{1,3})?|"[ -~]{0,10}"|\[\]|\{\})\}"#
            .prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..64),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn storage_policy_requests_survive_the_wire(req in storage_policy_request()) {
        let json = serde_json::to_string(&req).expect("serializes");
        let back: StoragePolicyRequest = serde_json::from_str(&json).map_err(|e| TestCaseError::fail(format!("{json}: {e}")))?;
        prop_assert_eq!(back, req);
    }

    #[test]
    fn throttle_and_worker_changes_survive_the_wire(
        mib in proptest::option::of(finite()),
        concurrency in proptest::option::of(any::<usize>()),
        paused in proptest::option::of(any::<bool>()),
    ) {
        let t = MigrationThrottleRequest { max_mib_per_sec: mib, concurrency, paused };
        let json = serde_json::to_string(&t).expect("serializes");
        prop_assert_eq!(serde_json::from_str::<MigrationThrottleRequest>(&json).ok(), Some(t));
        let w = WorkerChange { paused, max_mib_per_sec: mib, concurrency };
        let json = serde_json::to_string(&w).expect("serializes");
        prop_assert_eq!(serde_json::from_str::<WorkerChange>(&json).ok(), Some(w));
    }

    #[test]
    fn any_body_is_a_request_or_an_error(body in bodies()) {
        // Never a panic, whatever the bytes; a body that parses serializes again.
        if let Ok(r) = serde_json::from_slice::<StoragePolicyRequest>(&body) {
            prop_assert!(serde_json::to_vec(&r).is_ok());
        }
        let _ = serde_json::from_slice::<MigrationThrottleRequest>(&body);
        let _ = serde_json::from_slice::<WorkerChange>(&body);
    }

    #[test]
    fn backend_texts_split_into_ids_or_stay_a_selector(text in "[ -~]{0,30}") {
        match BackendsField::from_text(&text) {
            BackendsField::Ids(ids) => {
                prop_assert!(!ids.is_empty());
                prop_assert!(ids.iter().all(|i| !i.is_empty() && !i.contains('=') && !i.contains(',')));
                prop_assert_eq!(ids.join(","), text.split(',').map(str::trim).collect::<Vec<_>>().join(","));
            }
            BackendsField::Selector(s) => prop_assert_eq!(s, text.trim()),
        }
    }
}

#[test]
fn unknown_fields_are_refused() {
    for body in [
        r#"{"colour": 1}"#,
        r#"{"preset": "ec-4-2", "k ": 4}"#,
        r#"{"location_restrictions": {"gdpr": true, "eu": true}}"#,
    ] {
        assert!(
            serde_json::from_str::<StoragePolicyRequest>(body).is_err(),
            "{body} accepted"
        );
    }
    assert!(serde_json::from_str::<MigrationThrottleRequest>(r#"{"paused": true, "x": 1}"#).is_err());
}
