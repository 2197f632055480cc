//! The mechanisms the agents change the storage with.

pub mod containers;
pub mod principal;
pub mod reads;
pub mod storage_policy;
pub mod throttle;

pub use containers::ContainerPlacementMechanism;
pub use principal::PrincipalThrottleMechanism;
pub use reads::ReadSettingsMechanism;
pub use storage_policy::StoragePolicyMechanism;
pub use throttle::MigrationThrottleMechanism;
