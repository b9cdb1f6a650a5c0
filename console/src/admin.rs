//! `shoalctl admin …`: the admin API (needs the profile's admin token).

use crate::json::{actor_json, follower_json, status_json};
use anyhow::Context;
use clap::Subcommand;
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
    /// Actors running on the node.
    Actors {
        /// Print one JSON object per actor per line.
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
    /// Passivate a conversation's actors now (its agent process is stopped).
    Evict {
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
}

fn parse_user(s: &str) -> Result<UserId, String> {
    UserId::parse(s).map_err(|e| e.to_string())
}

/// Runs one `admin` command.
pub(crate) async fn run(profile: &Profile, command: AdminCommand) -> anyhow::Result<ExitCode> {
    let admin = AdminClient::connect(profile).await?;
    let result = execute(&admin, command).await;
    admin.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

async fn execute(admin: &AdminClient, command: AdminCommand) -> anyhow::Result<()> {
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
                ]);
            }
        }
        AdminCommand::Actors { json } => {
            for actor in admin.actors().await? {
                lines.push(if json {
                    actor_json(&actor).to_string()
                } else {
                    format!("{:<14} {:<9} {}", actor.kind, actor.state, actor.key)
                });
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
        AdminCommand::Token { user, ttl_secs } => {
            lines.push(admin.issue_token(user, ttl_secs).await?);
        }
    }
    let mut out = io::stdout().lock();
    for line in lines {
        writeln!(out, "{line}").context(STDOUT_ERROR)?;
    }
    out.flush().context(STDOUT_ERROR)
}

const STDOUT_ERROR: &str = "cannot write to stdout; check where the output goes";
