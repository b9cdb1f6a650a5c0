//! `shoalctl admin …` and the cluster commands `shoalctl members | shards | drain |
//! undrain`: the
//! admin API (needs the profile's admin token).

use crate::json::{actor_json, follower_json, member_json, shard_json, status_json};
use crate::render::{actors_table, members_table, shards_summary, shards_table};
use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;
use shoal_client::{AdminClient, Profile};
use shoal_protocol::{ConversationId, UserId};
use std::io::{self, Write};
use std::process::ExitCode;

/// Token lifetime of `admin token` unless `--ttl-secs` says otherwise: one day.
const TOKEN_TTL_SECS_DEFAULT: u64 = 24 * 60 * 60;

/// `shoalctl admin …`.
#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// The node's status and counters.
    Status {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Actors on every live member: a table NODE KIND STATE FOLLOWERS KEY, by node; a
    /// member that did not answer is named on stderr (the listing goes on).
    Actors {
        /// Print one JSON object per actor per line (node, kind, key, state, followers,
        /// mailbox: null, as the actor runtime does not tell).
        #[arg(long)]
        json: bool,
    },
    /// Followers attached on the node.
    Followers {
        /// Only followers of this conversation.
        #[arg(long, value_name = "ID")]
        conversation: Option<ConversationId>,
        /// Print one JSON object per follower per line.
        #[arg(long)]
        json: bool,
    },
    /// Passivate a conversation's actors now (its agent process is stopped), on whichever
    /// node hosts it.
    Evict {
        /// The conversation id (`c-…`).
        id: ConversationId,
    },
    /// The cluster's recent events from every member, oldest first: joins, suspicions,
    /// deaths, leaderships won and lost, placement changes, drains, new stores.
    ///
    /// Prints `HH:MM:SS.mmm  NODE  KIND  DETAIL` (UTC; each node's own clock), NODE being
    /// the node that saw it.
    Events(crate::events::EventsArgs),
    /// Cancel a conversation's running turn, on whichever node hosts it (it ends as
    /// cancelled, keeping what it streamed).
    Cancel {
        /// The conversation id (`c-…`).
        id: ConversationId,
    },
    /// Mint a user token; prints the token alone.
    Token {
        /// The user the token names.
        #[arg(value_parser = parse_user)]
        user: UserId,
        /// Lifetime of the token in seconds.
        #[arg(long, default_value_t = TOKEN_TTL_SECS_DEFAULT)]
        ttl_secs: u64,
    },
    /// Take a node out of placement, with progress (as `shoalctl drain`).
    Drain(crate::drain::DrainArgs),
    /// Put a drained node back into placement (as `shoalctl undrain`).
    Undrain(crate::drain::UndrainArgs),
    /// Show or change a node's log filter at run time, until it restarts.
    ///
    /// FILTER is `tracing` EnvFilter directives, e.g. `info,shoal_node=debug`; a filter
    /// that does not parse is refused and changes nothing. Without FILTER, prints the
    /// filter in effect.
    LogFilter {
        /// The new filter; omit it to print the current one.
        filter: Option<String>,
        /// The node (default: the profile's node).
        #[arg(long, value_name = "NODE")]
        node: Option<String>,
        /// Print `{"node": …, "filter": …}`.
        #[arg(long)]
        json: bool,
    },
}

/// `shoalctl members | shards | drain | undrain | shard`: top-level commands, as the cluster issue names them.
#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// Cluster members as the node's gossip sees them (needs the admin token).
    ///
    /// Prints a table NODE ADDR STATE LEADERS VERSION, by node id, with `draining` after a
    /// node being drained.
    Members {
        /// Print one JSON array of members (node_id, addr, state, version, leaders,
        /// draining).
        #[arg(long)]
        json: bool,
    },
    /// Every shard's leader, replicas, term and applied index (needs the admin token).
    ///
    /// Prints a table SHARD LEADER REPLICAS TERM APPLIED, by shard, with learners as
    /// `+name` after the replicas and `-` for an unknown leader or applied index, then a
    /// line such as `64 shards, 64 with a leader; leaders per node: n1=22 n2=21 n3=21`.
    Shards {
        /// Print one JSON array of shards (shard, leader, replicas, learners, term,
        /// applied_index, hosted_here: whether the answering node runs the shard now,
        /// quiet: whether the shard is quiet there (`cluster.quiesce_after_ms`);
        /// leader and applied_index are null when unknown).
        #[arg(long)]
        json: bool,
    },
    /// Take a node out of placement: its shard leaderships and replicas move to other
    /// nodes (needs the admin token).
    ///
    /// The drain is kept on the node across restarts until `undrain`. Shows a progress bar
    /// (leaderships and replicas left) and ends once nothing is left to move: with
    /// `drained NODE: ...`, saying whether replicas stay because too few other members
    /// are left; or, after `--timeout-secs`, with an error (the drain goes on).
    Drain(crate::drain::DrainArgs),
    /// Put a drained node back into placement (needs the admin token).
    Undrain(crate::drain::UndrainArgs),
    /// Move a shard by hand: pin its leadership (`lead`) or move one of its replicas
    /// (`move`), with a progress spinner until it is there; `unpin`; `show` (needs the
    /// admin token).
    Shard {
        #[command(subcommand)]
        command: crate::shard::ShardCommand,
    },
    /// The node's metrics as OpenMetrics text, as Prometheus scrapes them from
    /// `telemetry.prometheus_listen` (needs the admin token).
    Metrics,
}

fn parse_user(s: &str) -> Result<UserId, String> {
    UserId::parse(s).map_err(|e| e.to_string())
}

/// Runs one `admin` command.
pub(crate) async fn run(profile: &Profile, command: AdminCommand) -> anyhow::Result<ExitCode> {
    let admin = AdminClient::connect(profile).await?;
    let result = execute(&admin, command).await;
    admin.close().await;
    print_lines(result?)?;
    Ok(ExitCode::SUCCESS)
}

/// Runs one cluster command (`members`, `shards`, `drain`).
pub(crate) async fn run_cluster(
    profile: &Profile,
    command: ClusterCommand,
) -> anyhow::Result<ExitCode> {
    let admin = AdminClient::connect(profile).await?;
    let result = execute_cluster(&admin, command).await;
    admin.close().await;
    print_lines(result?)?;
    Ok(ExitCode::SUCCESS)
}

async fn execute_cluster(
    admin: &AdminClient,
    command: ClusterCommand,
) -> anyhow::Result<Vec<String>> {
    let lines = match command {
        ClusterCommand::Metrics => vec![admin.metrics().await?.trim_end().to_owned()],
        ClusterCommand::Members { json } => {
            let mut members = admin.members().await?;
            members.sort_by(|a, b| a.node_id.cmp(&b.node_id));
            if json {
                vec![Value::Array(members.iter().map(member_json).collect()).to_string()]
            } else {
                members_table(&members)
            }
        }
        ClusterCommand::Shards { json } => {
            let mut shards = admin.shards().await?;
            shards.sort_by_key(|shard| shard.shard);
            if json {
                vec![Value::Array(shards.iter().map(shard_json).collect()).to_string()]
            } else {
                let mut lines = shards_table(&shards);
                lines.push(shards_summary(&shards));
                lines
            }
        }
        ClusterCommand::Drain(args) => crate::drain::drain(admin, args).await?,
        ClusterCommand::Undrain(args) => crate::drain::undrain(admin, args).await?,
        ClusterCommand::Shard { command } => crate::shard::run(admin, command).await?,
    };
    Ok(lines)
}

async fn execute(admin: &AdminClient, command: AdminCommand) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    match command {
        AdminCommand::Status { json } => {
            let status = admin.status().await?;
            if json {
                lines.push(status_json(&status).to_string());
            } else {
                lines.extend([
                    format!("node:                 {}", status.node_id),
                    format!("version:              {}", status.version),
                    format!("listen:               {}", status.listen_addr),
                    format!("uptime:               {} s", status.uptime_secs),
                    format!("conversations active: {}", status.conversations_active),
                    format!("agent processes:      {}", status.agent_processes),
                    format!("turns running:        {}", status.turns_running),
                    format!("followers:            {}", status.followers),
                    format!("connections:          {}", status.connections),
                    format!("follower resyncs:     {}", status.follower_resyncs),
                    format!(
                        "checkpoints:          {} ({} bytes)",
                        status.checkpoints, status.checkpoint_bytes
                    ),
                ]);
            }
        }
        AdminCommand::Actors { json } => {
            let (actors, unreachable, truncated) = admin.cluster_actors().await?;
            if json {
                lines.extend(actors.iter().map(|a| actor_json(a).to_string()));
            } else {
                lines.extend(actors_table(&actors));
            }
            let mut err = io::stderr().lock();
            for member in &unreachable {
                let _ = writeln!(
                    err,
                    "warning: no answer from {member}; its actors are not listed"
                );
            }
            if truncated {
                let _ = writeln!(
                    err,
                    "warning: a member has more than {} actors; only its first are listed",
                    shoal_protocol::admin::ACTORS_PER_MEMBER_MAX
                );
            }
        }
        AdminCommand::Followers { conversation, json } => {
            for follower in admin.followers(conversation).await? {
                lines.push(if json {
                    follower_json(&follower).to_string()
                } else {
                    format!(
                        "{}  {}  last_seq {}  queued {}",
                        follower.conversation,
                        follower.user,
                        follower
                            .last_seq
                            .map_or_else(|| "-".to_owned(), |s| s.to_string()),
                        follower.queued
                    )
                });
            }
        }
        AdminCommand::Evict { id } => {
            lines.push(if admin.evict(id).await? {
                format!("evicted {id}")
            } else {
                format!("{id} was not active")
            });
        }
        AdminCommand::Cancel { id } => {
            lines.push(if admin.cancel_turn(id).await? {
                format!("cancelled the running turn of {id}")
            } else {
                format!("{id} has no running turn")
            });
        }
        AdminCommand::Token { user, ttl_secs } => {
            lines.push(admin.issue_token(user, ttl_secs).await?);
        }
        AdminCommand::LogFilter { filter, node, json } => {
            let (node, filter) = admin.log_filter(node.as_deref(), filter.as_deref()).await?;
            lines.push(if json {
                serde_json::json!({ "node": node, "filter": filter }).to_string()
            } else {
                format!("{node}: log filter `{filter}`")
            });
        }
        AdminCommand::Events(args) => lines = crate::events::run(admin, args).await?,
        AdminCommand::Drain(args) => lines = crate::drain::drain(admin, args).await?,
        AdminCommand::Undrain(args) => lines = crate::drain::undrain(admin, args).await?,
    }
    Ok(lines)
}

/// Prints the lines of a finished command on stdout.
pub(crate) fn print_lines(lines: Vec<String>) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    for line in lines {
        writeln!(out, "{line}").context(STDOUT_ERROR)?;
    }
    out.flush().context(STDOUT_ERROR)
}

const STDOUT_ERROR: &str = "cannot write to stdout; check where the output goes";
