//! The agents as text.

use crate::text::{columns, time_ms};
use control_api::{AgentMode, AgentsView};

/// The mode, then one line per agent.
pub(super) fn format_agents(view: &AgentsView) -> String {
    let mode = match view.mode {
        AgentMode::Heuristic => "heuristic",
        AgentMode::Ml => "ml",
    };
    let dry_run = if view.dry_run {
        " (dry run: plans are explained, never applied)"
    } else {
        ""
    };
    let mut out = format!("mode: {mode}{dry_run}\n");
    if view.agents.is_empty() {
        out.push_str("no agent running\n");
        return out;
    }
    let rows: Vec<Vec<String>> = view
        .agents
        .iter()
        .map(|a| {
            vec![
                a.id.clone(),
                a.tier.clone(),
                if a.remote { "remote" } else { "local" }.into(),
                if a.healthy { "healthy" } else { "UNHEALTHY" }.into(),
                format!("{}s", a.period_secs),
                time_ms(a.last_period_ms),
                a.last_period_took_ms.map_or_else(|| "-".into(), |ms| format!("{ms}ms")),
                if a.plans_pending.is_empty() {
                    "-".into()
                } else {
                    a.plans_pending.join(",")
                },
                a.last_error.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&columns(
        &[
            "ID",
            "TIER",
            "WHERE",
            "HEALTH",
            "PERIOD",
            "LAST PERIOD",
            "TOOK",
            "PENDING",
            "LAST ERROR",
        ],
        &rows,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use control_api::AgentStatus;

    #[test]
    fn agents_read_as_a_table_under_the_mode() {
        let node = AgentStatus {
            id: "node-gw1".into(),
            tier: "node".into(),
            remote: true,
            healthy: false,
            period_secs: 10,
            last_period_ms: None,
            last_period_took_ms: None,
            plans_pending: vec![],
            last_error: Some("link down".into()),
        };
        let cluster = AgentStatus {
            id: "cluster".into(),
            tier: "cluster".into(),
            remote: false,
            healthy: true,
            period_secs: 10,
            last_period_ms: Some(1_764_300_000_000),
            last_period_took_ms: Some(12),
            plans_pending: vec!["p1".into(), "p2".into()],
            last_error: None,
        };
        let view = AgentsView {
            mode: AgentMode::Ml,
            dry_run: true,
            agents: vec![cluster, node],
        };
        assert_eq!(
            format_agents(&view),
            "\
mode: ml (dry run: plans are explained, never applied)

ID        TIER     WHERE   HEALTH     PERIOD  LAST PERIOD           TOOK  PENDING  LAST ERROR
cluster   cluster  local   healthy    10s     2025-11-28T03:20:00Z  12ms  p1,p2    -
node-gw1  node     remote  UNHEALTHY  10s     -                     -     -        link down
"
        );
        let none = AgentsView {
            mode: AgentMode::Heuristic,
            dry_run: false,
            agents: vec![],
        };
        assert_eq!(format_agents(&none), "mode: heuristic\nno agent running\n");
    }
}
