//! The ML connector: a [`Model`] trait and the models policies may consult in `ml` mode.
//! (Being written: see issue 12, item 5.)

/// The models an agent holds.
#[derive(Default)]
pub struct Models {}
impl Models {
    /// Feeds a period's world to the models (stub).
    pub fn observe(&mut self, _world: &crate::world::World) {}
}
