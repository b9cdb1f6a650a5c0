//! `shoalctl agents [probe [ID] | enable ID | disable ID]`: the agents one node can run
//! (the profile's node; the admin token is needed), their probe results, and enabling or
//! disabling them there.

use crate::render::{Align, cell, one_line, safe_line, table};
use clap::builder::NonEmptyStringValueParser;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use shoal_client::{AdminClient, Profile};
use shoal_protocol::admin::{AgentInfo, AgentStatus};
use std::process::ExitCode;

/// Longest status shown in the table's STATUS column, in characters; the reason is
/// printed under the table.
const STATUS_CELL_CHARS_MAX: usize = 40;
/// Longest reason printed under the table, in characters.
const REASON_CHARS_MAX: usize = 300;

/// `shoalctl agents …`.
#[derive(Debug, Args)]
pub(crate) struct AgentsArgs {
    #[command(subcommand)]
    command: Option<AgentsCommand>,
    /// Print one JSON object {node, agents: [...]} instead of the table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum AgentsCommand {
    /// Probe agents now: find the command, then a bounded ACP `initialize`.
    Probe {
        /// Only this agent (default: every enabled agent).
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        id: Option<String>,
    },
    /// Enable an agent on the node (kept across restarts; no restart needed).
    Enable {
        /// The agent id, as `shoalctl agents` lists it.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        id: String,
    },
    /// Disable an agent on the node: no new conversation can use it, and turns of its
    /// conversations there are refused (kept across restarts; no restart needed).
    Disable {
        /// The agent id, as `shoalctl agents` lists it.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        id: String,
    },
}

/// Runs one `agents` command.
pub(crate) async fn run(profile: &Profile, args: AgentsArgs) -> anyhow::Result<ExitCode> {
    let admin = AdminClient::connect(profile).await?;
    let result = match args.command {
        None => admin.agents().await,
        Some(AgentsCommand::Probe { id }) => admin.probe_agents(id).await,
        Some(AgentsCommand::Enable { id }) => admin.set_agent_enabled(&id, true).await,
        Some(AgentsCommand::Disable { id }) => admin.set_agent_enabled(&id, false).await,
    };
    admin.close().await;
    let (node, agents) = result?;
    let lines = if args.json {
        vec![agents_json(&node, &agents).to_string()]
    } else {
        agents_table(&node, &agents)
    };
    crate::admin::print_lines(lines)?;
    Ok(ExitCode::SUCCESS)
}

/// `ID LABEL COMMAND STATUS VERSION CAPABILITIES`, then one line per agent that is not
/// ready saying why, then which node answered.
pub(crate) fn agents_table(node: &str, agents: &[AgentInfo]) -> Vec<String> {
    let header = [
        ("ID", Align::Left),
        ("LABEL", Align::Left),
        ("COMMAND", Align::Left),
        ("STATUS", Align::Left),
        ("VERSION", Align::Left),
        ("CAPABILITIES", Align::Left),
    ];
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|agent| {
            vec![
                cell(&agent.id),
                cell(&agent.label),
                cell(&agent.command.join(" ")),
                cell(&one_line(&agent.status.to_string(), STATUS_CELL_CHARS_MAX)),
                cell(agent.version.as_deref().unwrap_or("-")),
                cell(&capabilities(agent).join(",")),
            ]
        })
        .collect();
    let mut lines = table(&header, &rows);
    for agent in agents {
        let why = match &agent.status {
            AgentStatus::Missing { detail } => detail.clone(),
            AgentStatus::Failed { reason } => reason.clone(),
            AgentStatus::Disabled if agent.enabled_at_run_time => {
                format!(
                    "disabled at run time; `shoalctl agents enable {}`",
                    agent.id
                )
            }
            AgentStatus::Disabled => "disabled in the node config (`enabled = false`)".to_owned(),
            AgentStatus::Unknown => "not probed yet; `shoalctl agents probe`".to_owned(),
            AgentStatus::Ready => continue,
        };
        lines.push(format!(
            "{}: {}",
            cell(&agent.id),
            safe_line(&why, REASON_CHARS_MAX)
        ));
    }
    lines.push(format!("(as node {} sees them)", cell(node)));
    lines
}

/// `loadSession`, the prompt capabilities, and `auth:<id>` per auth method.
fn capabilities(agent: &AgentInfo) -> Vec<String> {
    let mut out = Vec::new();
    if agent.load_session {
        out.push("loadSession".to_owned());
    }
    out.extend(agent.prompt_capabilities.iter().cloned());
    out.extend(agent.auth_methods.iter().map(|m| format!("auth:{m}")));
    if out.is_empty() {
        out.push("-".to_owned());
    }
    out
}

/// `{node, agents: [{id, label, command, enabled, enabled_at_run_time, status, detail,
/// agent_name, version, load_session, prompt_capabilities, auth_methods, probed_at_ms}]}`;
/// `status` is `ready`, `missing`, `disabled`, `failed` or `unknown`, `detail` the
/// reason (or `null`).
pub(crate) fn agents_json(node: &str, agents: &[AgentInfo]) -> Value {
    let agents: Vec<Value> = agents
        .iter()
        .map(|a| {
            let (status, detail) = match &a.status {
                AgentStatus::Ready => ("ready", None),
                AgentStatus::Missing { detail } => ("missing", Some(detail)),
                AgentStatus::Disabled => ("disabled", None),
                AgentStatus::Failed { reason } => ("failed", Some(reason)),
                AgentStatus::Unknown => ("unknown", None),
            };
            json!({
                "id": a.id,
                "label": a.label,
                "command": a.command,
                "enabled": a.enabled,
                "enabled_at_run_time": a.enabled_at_run_time,
                "status": status,
                "detail": detail,
                "agent_name": a.agent_name,
                "version": a.version,
                "load_session": a.load_session,
                "prompt_capabilities": a.prompt_capabilities,
                "auth_methods": a.auth_methods,
                "probed_at_ms": a.probed_at_ms,
            })
        })
        .collect();
    json!({ "node": node, "agents": agents })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, status: AgentStatus) -> AgentInfo {
        AgentInfo {
            id: id.into(),
            label: id.to_uppercase(),
            command: vec![id.into(), "acp".into()],
            enabled: status != AgentStatus::Disabled,
            enabled_at_run_time: false,
            status,
            agent_name: None,
            version: None,
            load_session: false,
            prompt_capabilities: Vec::new(),
            auth_methods: Vec::new(),
            probed_at_ms: None,
        }
    }

    #[test]
    fn the_table_shows_capabilities_and_why_an_agent_is_not_ready() {
        let mut ready = agent("demo", AgentStatus::Ready);
        ready.version = Some("0.1.0".into());
        ready.load_session = true;
        ready.prompt_capabilities = vec!["image".into()];
        ready.auth_methods = vec!["login".into()];
        let long = "x".repeat(200);
        let agents = [
            ready,
            agent(
                "ghost",
                AgentStatus::Missing {
                    detail: "`ghost` was not found on PATH".into(),
                },
            ),
            agent(
                "hangs",
                AgentStatus::Failed {
                    reason: long.clone(),
                },
            ),
            agent("off", AgentStatus::Disabled),
        ];
        let lines = agents_table("n1", &agents);
        assert!(lines[0].starts_with("ID"), "{lines:?}");
        assert!(
            lines[1].contains("loadSession,image,auth:login"),
            "{lines:?}"
        );
        assert!(lines[1].contains("demo acp") && lines[1].contains("0.1.0"));
        assert!(lines[2].contains("missing") && lines[2].contains(" -"));
        assert!(
            lines[3].chars().count() < 200,
            "the reason is cut in the table"
        );
        assert!(lines.contains(&"ghost: `ghost` was not found on PATH".to_owned()));
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("hangs: failed") || l.contains(&long[..100]))
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("off: disabled in the node config"))
        );
        assert_eq!(
            lines.last().map(String::as_str),
            Some("(as node n1 sees them)")
        );

        let json = agents_json("n1", &agents);
        assert_eq!(json["node"], "n1");
        assert_eq!(json["agents"][1]["status"], "missing");
        assert_eq!(json["agents"][1]["detail"], "`ghost` was not found on PATH");
        assert_eq!(json["agents"][0]["detail"], Value::Null);
    }
}
