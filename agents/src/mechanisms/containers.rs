//! `container_placement`: records the node an app component should run on, where the
//! kube-scheduler extender and the nodeAffinity controller read it ([`Containers`]). The
//! command is `{"app", "component", "node", "runners_up": [..]}`.

use crate::error::{Error, Result};
use crate::framework::{Applied, Mechanism};
use crate::k8s::knowledge::{Containers, Preferred};
use crate::plan::Plan;
use crate::world::World;
use async_trait::async_trait;
use control_api::Decision;
use serde_json::{json, Value};

/// The mechanism's name, as plans give it.
pub const NAME: &str = "container_placement";

/// Where components are placed.
pub struct ContainerPlacementMechanism {
    containers: Containers,
}

impl ContainerPlacementMechanism {
    /// Recording into `containers`.
    #[must_use]
    pub fn new(containers: Containers) -> Self {
        Self { containers }
    }
}

fn field<'a>(plan: &'a Plan, name: &str) -> Result<&'a str> {
    plan.command[name].as_str().ok_or_else(|| Error::Mechanism {
        mechanism: NAME.into(),
        message: format!("command names no {name}"),
    })
}

#[async_trait]
impl Mechanism for ContainerPlacementMechanism {
    fn name(&self) -> &str {
        NAME
    }

    async fn apply(&self, plan: &Plan) -> Result<Applied> {
        let (app, component, node) = (field(plan, "app")?, field(plan, "component")?, field(plan, "node")?);
        let before = self.containers.preferred(app, component);
        let runners_up = plan.command["runners_up"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let same = before
            .as_ref()
            .is_some_and(|b| b.node == node && b.runners_up == runners_up);
        self.containers.place(
            app,
            component,
            Preferred {
                node: node.to_owned(),
                runners_up,
                reason: plan.explanation.reason.clone(),
                decision: plan.uid.to_string(),
                at_ms: crate::world::now_ms(),
            },
        );
        if same {
            // The reason changed (a "data must move" note), the placement did not.
            return Ok(Applied::Unchanged);
        }
        Ok(Applied::Done {
            epoch: None,
            undo: before
                .map(|b| json!({"app": app, "component": component, "node": b.node, "runners_up": b.runners_up})),
        })
    }

    fn finished(&self, _: &Decision, _: &World) -> bool {
        true
    }

    async fn get_state(&self) -> Value {
        json!({"placements": self.containers.placements()})
    }

    async fn get_options(&self) -> Value {
        json!({"app": "an app", "component": "one of its components", "node": "a node's name", "runners_up": "node names, best first"})
    }
}
