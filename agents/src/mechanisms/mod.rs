//! The mechanisms the agents change the storage with.

pub mod storage_policy;
pub mod throttle;

pub use storage_policy::StoragePolicyMechanism;
pub use throttle::MigrationThrottleMechanism;
