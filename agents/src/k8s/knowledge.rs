//! What the cluster agent knows about containers, shared with the extender and the controller:
//! each app component with the buckets it reads, each node with how it reaches the backends,
//! the backends' trust, and the node each component is placed on (set by the
//! `container_placement` mechanism, so every placement is a logged decision).
//!
//! The cluster agent refreshes the picture every period; the extender and controller read it
//! from their own tasks, so it sits behind a lock and is cloned cheaply.

use super::controller::{Placement, Placer};
use super::extender::Knowledge;
use placement::containers::{Backend, Component, Node};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// The node a component is placed on, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preferred {
    /// The node's name.
    pub node: String,
    /// The other fitting nodes, best first (the controller prefers them with lower weights).
    #[serde(default)]
    pub runners_up: Vec<String>,
    /// The decision's reason.
    pub reason: String,
    /// The decision's id.
    pub decision: String,
    /// When, Unix ms.
    pub at_ms: i64,
}

#[derive(Debug, Default)]
struct State {
    components: BTreeMap<(String, String), Component>,
    nodes: BTreeMap<String, Node>,
    backends: BTreeMap<String, Backend>,
    preferred: BTreeMap<(String, String), Preferred>,
}

/// The shared picture (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Containers {
    state: Arc<RwLock<State>>,
}

impl Containers {
    /// Replaces the measured picture (components, nodes, backends); placements stay.
    pub fn refresh(
        &self,
        components: BTreeMap<(String, String), Component>,
        nodes: BTreeMap<String, Node>,
        backends: BTreeMap<String, Backend>,
    ) {
        if let Ok(mut s) = self.state.write() {
            s.preferred.retain(|key, _| components.contains_key(key));
            s.components = components;
            s.nodes = nodes;
            s.backends = backends;
        }
    }

    /// Records where `component` of `app` is placed.
    pub fn place(&self, app: &str, component: &str, preferred: Preferred) {
        if let Ok(mut s) = self.state.write() {
            s.preferred.insert((app.to_owned(), component.to_owned()), preferred);
        }
    }

    /// Where `component` of `app` is placed, if it is.
    #[must_use]
    pub fn preferred(&self, app: &str, component: &str) -> Option<Preferred> {
        let s = self.state.read().ok()?;
        s.preferred.get(&(app.to_owned(), component.to_owned())).cloned()
    }

    /// Every placement, by `app/component`.
    #[must_use]
    pub fn placements(&self) -> BTreeMap<String, Preferred> {
        self.state
            .read()
            .map(|s| {
                s.preferred
                    .iter()
                    .map(|((a, c), p)| (format!("{a}/{c}"), p.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Knowledge for Containers {
    fn component(&self, app: &str, component: &str) -> Option<Component> {
        let s = self.state.read().ok()?;
        s.components.get(&(app.to_owned(), component.to_owned())).cloned()
    }

    fn node(&self, name: &str) -> Option<Node> {
        self.state.read().ok()?.nodes.get(name).cloned()
    }

    fn backends(&self) -> BTreeMap<String, Backend> {
        self.state.read().map(|s| s.backends.clone()).unwrap_or_default()
    }
}

/// Weights of the preferred node and the runners-up in a nodeAffinity preference.
const WEIGHTS: [i32; 3] = [100, 50, 25];

impl Placer for Containers {
    fn place(&self, app: &str, component: &str) -> Option<Placement> {
        let p = self.preferred(app, component)?;
        let preferred = std::iter::once(p.node.clone())
            .chain(p.runners_up.iter().cloned())
            .zip(WEIGHTS)
            .collect();
        Some(Placement {
            required: Vec::new(),
            preferred,
            reason: format!("decision {}: {}", p.decision, p.reason),
        })
    }
}
