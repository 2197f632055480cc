//! TEMPORARY stub (replaced by the built-in policies).
use crate::framework::Policy;
/// The built-in policies with their defaults.
#[must_use]
pub fn builtin() -> Vec<Box<dyn Policy>> {
    Vec::new()
}
