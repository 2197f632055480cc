//! The built-in policies of the cluster agent, each changing buckets' storage policies through
//! the `storage_policy` mechanism, and only of buckets with an intent and a policy-update token:
//!
//! - [`slo::SloKeeper`]: drains backends that miss a bucket's latency or bandwidth target and
//!   readmits them once they recover;
//! - [`cost::CostOptimiser`]: the cheapest code and backends that meet the intent;
//! - [`hotcold::HotCold`]: wide codes on cheap backends for cold buckets, the fastest backends
//!   for hot ones;
//! - [`reprotect::Reprotect`]: rebuilds elsewhere the shards of a backend down too long;
//! - [`trust::TrustKeeper`]: drains backends whose trust fell below a bucket's `min_trust`;
//! - [`principals::PrincipalGuard`]: throttles S3 principals classified as attacking (through
//!   the `principal_throttle` mechanism);
//! - [`containers::ContainerPlacer`]: places app components (containers) on the node that
//!   reaches their buckets' data fastest (through the `container_placement` mechanism).
//!
//! Their plans' `command` is a `control_api::StoragePolicyRequest` (JSON) with only the fields
//! that change (`k`, `m`, `backends` as a list of ids, `encryption`) and `reason`; the mechanism
//! adds `automatic` and the bucket's token. They share [`candidates::Shared`] so they do not undo
//! each other: the keeper's drained backends stay out of other plans, and the cost optimiser
//! leaves hot buckets to hot/cold.

pub mod candidates;
pub mod containers;
pub mod cost;
pub mod hotcold;
pub mod principals;
pub mod reprotect;
pub mod slo;
pub mod trust;

use crate::framework::Policy;
use serde::{Deserialize, Serialize};

/// Settings of every built-in policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BuiltinConfig {
    /// The SLO keeper.
    pub slo: slo::SloConfig,
    /// The cost optimiser.
    pub cost: cost::CostConfig,
    /// Hot/cold.
    pub hotcold: hotcold::HotColdConfig,
    /// Re-protection.
    pub reprotect: reprotect::ReprotectConfig,
    /// The trust keeper.
    pub trust: trust::TrustConfig,
    /// The principal guard.
    pub principals: principals::PrincipalGuardConfig,
    /// The container placer.
    pub containers: containers::ContainerConfig,
}

/// The seven built-in policies, the five on storage sharing their state.
#[must_use]
pub fn builtin(config: BuiltinConfig) -> Vec<Box<dyn Policy>> {
    let shared = candidates::SharedState::default();
    vec![
        Box::new(reprotect::Reprotect::with_shared(config.reprotect, shared.clone())),
        Box::new(trust::TrustKeeper::with_shared(config.trust, shared.clone())),
        Box::new(slo::SloKeeper::with_shared(config.slo, shared.clone())),
        Box::new(hotcold::HotCold::with_shared(config.hotcold, shared.clone())),
        Box::new(cost::CostOptimiser::with_shared(config.cost, shared)),
        Box::new(principals::PrincipalGuard::new(config.principals)),
        Box::new(containers::ContainerPlacer::new(config.containers)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_gives_seven_named_policies_and_only_reprotect_is_core() {
        let policies = builtin(BuiltinConfig::default());
        let manifests: Vec<_> = policies.iter().map(|p| p.manifest()).collect();
        let names: Vec<&str> = manifests.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "reprotect",
                "trust_keeper",
                "slo_keeper",
                "hot_cold",
                "cost_optimiser",
                "principal_guard",
                "container_placement"
            ]
        );
        for m in &manifests {
            assert_eq!(m.core, m.name == "reprotect", "{}", m.name);
            let mechanism = match m.name.as_str() {
                "principal_guard" => "principal_throttle",
                "container_placement" => "container_placement",
                _ => "storage_policy",
            };
            assert_eq!(m.mechanisms, [mechanism]);
        }
        assert_eq!(manifests[4].every_periods, 6);
        let config: BuiltinConfig = serde_json::from_str(r#"{"slo": {"readmit_after": 5}}"#).unwrap();
        assert_eq!(config.slo.readmit_after, 5);
        assert_eq!(config.slo.min_samples, 5, "unset fields keep their defaults");
        assert!(serde_json::from_str::<BuiltinConfig>(r#"{"slo": {"readmit": 5}}"#).is_err());
    }
}
