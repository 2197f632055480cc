//! The mechanisms the agents change the storage with.

pub mod reads;
pub mod storage_policy;
pub mod throttle;

pub use reads::ReadSettingsMechanism;
pub use storage_policy::StoragePolicyMechanism;
pub use throttle::MigrationThrottleMechanism;
