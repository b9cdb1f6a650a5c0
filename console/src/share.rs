//! `shoalctl share …`: sharing conversations (grants for viewers and editors, links,
//! invitations, revocation, rotation, the lock) and the "shared with me" list; and how a
//! shared conversation is shown (`conv show` with a share token or a user grant).

use crate::conv::print_line;
use crate::render;
use anyhow::{Context, anyhow};
use clap::Subcommand;
use serde_json::{Value, json};
use shoal_client::{Client, NewGrant, Profile, ShareWith};
use shoal_protocol::sharing::{GrantId, GrantInfo, GrantTarget, Role, SharedListing, SharedView};
use shoal_protocol::{ConversationId, UserId};
use std::io::{self, Write};
use std::process::ExitCode;

/// `shoalctl share …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ShareCommand {
    /// Share a conversation you own. Prints the grant id, and for a link or invitation
    /// its token (shown once: the node keeps only a hash).
    Create {
        /// The conversation id (`c-…`).
        id: ConversationId,
        /// What the grant allows: `viewer` (read, follow, fork) or `editor` (also send,
        /// cancel, answer permission requests; never with your credentials).
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// For this user (no token; it appears in their `share with-me`).
        #[arg(long, value_name = "USER", value_parser = parse_user, conflicts_with = "invite")]
        user: Option<UserId>,
        /// A link bound to the first user who opens it.
        #[arg(long)]
        invite: bool,
        /// Stops working after this long: `90s`, `30m`, `12h`, `7d`.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
        expires: Option<u64>,
        /// Print the grant (and token) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Your grants: of one conversation, or of all of yours ("shared by me").
    List {
        /// Only this conversation's.
        id: Option<ConversationId>,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a grant: it stops working at once, and open follows with it end.
    Revoke {
        /// The grant id (`g…`), as `share list` prints it.
        grant: GrantId,
    },
    /// Give a link or invitation a new token; the old one stops working at once.
    Rotate {
        /// The grant id (`g…`).
        grant: GrantId,
        /// Print the grant and token as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lock sharing of a conversation: editors are read-only until unlocked.
    Lock {
        /// The conversation id (`c-…`).
        id: ConversationId,
    },
    /// Unlock sharing of a conversation.
    Unlock {
        /// The conversation id (`c-…`).
        id: ConversationId,
    },
    /// Conversations shared with you (user grants and invitations you opened).
    WithMe {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse()
}

fn parse_user(text: &str) -> Result<UserId, String> {
    UserId::parse(text).map_err(|e| e.to_string())
}

/// `90s`, `30m`, `12h`, `7d` → milliseconds.
pub(crate) fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let bad = || format!("`{text}` is not a duration; write e.g. 90s, 30m, 12h or 7d");
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    match number.checked_mul(unit_ms) {
        Some(0) | None => Err(bad()),
        Some(ms) => Ok(ms),
    }
}

/// Runs one `share` command.
pub(crate) async fn run(profile: &Profile, command: ShareCommand) -> anyhow::Result<ExitCode> {
    let client = Client::connect(profile).await?;
    let result = match command {
        ShareCommand::Create {
            id,
            role,
            user,
            invite,
            expires,
            json,
        } => {
            let with = match (user, invite) {
                (Some(user), _) => ShareWith::User(user),
                (None, true) => ShareWith::Invite,
                (None, false) => ShareWith::Link,
            };
            let made = client.share(id, role, with, expires).await?;
            print_new(&made, json)
        }
        ShareCommand::List { id, json } => {
            let grants = client.grants(id).await?;
            if json {
                let values: Vec<Value> = grants.iter().map(grant_json).collect();
                print_line(&Value::Array(values).to_string())
            } else if grants.is_empty() {
                print_line("no grants")
            } else {
                grants.iter().try_for_each(|g| print_line(&grant_line(g)))
            }
        }
        ShareCommand::Revoke { grant } => {
            if client.revoke_grant(grant).await? {
                print_line("revoked")
            } else {
                Err(anyhow!(
                    "grant {grant} does not exist (or is not yours); `shoalctl share list` shows yours"
                ))
            }
        }
        ShareCommand::Rotate { grant, json } => {
            let made = client.rotate_grant(grant).await?;
            print_new(&made, json)
        }
        ShareCommand::Lock { id } => {
            client.set_share_lock(id, true).await?;
            print_line("locked: editors are read-only until `shoalctl share unlock`")
        }
        ShareCommand::Unlock { id } => {
            client.set_share_lock(id, false).await?;
            print_line("unlocked")
        }
        ShareCommand::WithMe { json } => {
            let listed = client.shared_with_me().await?;
            if json {
                let values: Vec<Value> = listed.iter().map(listing_json).collect();
                print_line(&Value::Array(values).to_string())
            } else if listed.is_empty() {
                print_line("nothing is shared with you")
            } else {
                listed.iter().try_for_each(|l| print_line(&listing_line(l)))
            }
        }
    };
    client.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

fn print_new(made: &NewGrant, json: bool) -> anyhow::Result<()> {
    if json {
        let mut value = grant_json(&made.grant);
        value["token"] = made.token.clone().map_or(Value::Null, Value::String);
        return print_line(&value.to_string());
    }
    print_line(&grant_line(&made.grant))?;
    if let Some(token) = &made.token {
        print_line(&format!(
            "token (shown once): {token}\nuse it with: shoalctl conv show {} --token <token>",
            made.grant.id.conversation
        ))?;
    }
    Ok(())
}

fn target_text(target: &GrantTarget) -> String {
    match target {
        GrantTarget::Link => "link".to_owned(),
        GrantTarget::Invite { bound_to: None } => "invitation (not opened yet)".to_owned(),
        GrantTarget::Invite {
            bound_to: Some(user),
        } => format!("invitation opened by {user}"),
        GrantTarget::User { user } => format!("user {user}"),
    }
}

fn grant_line(grant: &GrantInfo) -> String {
    let expires = grant
        .expires_at_ms
        .map_or_else(String::new, |at| format!("  expires at {at} ms"));
    format!(
        "{}  {}  {}{}",
        grant.id,
        grant.role.as_str(),
        target_text(&grant.target),
        expires
    )
}

fn grant_json(grant: &GrantInfo) -> Value {
    let (target, user) = match &grant.target {
        GrantTarget::Link => ("link", None),
        GrantTarget::Invite { bound_to } => ("invite", bound_to.as_ref()),
        GrantTarget::User { user } => ("user", Some(user)),
    };
    json!({
        "id": grant.id.to_string(),
        "conversation": grant.id.conversation.to_string(),
        "role": grant.role.as_str(),
        "target": target,
        "user": user.map(|u| u.0.clone()),
        "created_at_ms": grant.created_at_ms,
        "expires_at_ms": grant.expires_at_ms,
        "rotations": grant.rotations,
    })
}

fn listing_line(listing: &SharedListing) -> String {
    format!(
        "{}  {}  {}  by {}",
        listing.conversation,
        listing.title.as_deref().unwrap_or("(untitled)"),
        listing.role.as_str(),
        listing.owner
    )
}

fn listing_json(listing: &SharedListing) -> Value {
    json!({
        "conversation": listing.conversation.to_string(),
        "grant": listing.grant.to_string(),
        "role": listing.role.as_str(),
        "owner": listing.owner.0,
        "title": listing.title,
        "shared_at_ms": listing.shared_at_ms,
    })
}

/// `conv show` of a conversation shared with the caller.
pub(crate) fn show_shared(view: &SharedView, json: bool) -> anyhow::Result<()> {
    if json {
        let messages: Vec<Value> = view
            .messages
            .iter()
            .map(crate::json::message_json)
            .collect();
        let value = json!({
            "id": view.conversation.to_string(),
            "role": view.role.as_str(),
            "locked": view.locked,
            "title": view.title,
            "turn_running": view.turn_running,
            "earlier": view.earlier,
            "messages": messages,
            "in_flight": view.in_flight.as_ref().map_or(Value::Null, crate::json::message_json),
        });
        return print_line(&value.to_string());
    }
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{}  {}  shared with you as {}{}{}",
        view.conversation,
        view.title.as_deref().unwrap_or("(untitled)"),
        view.role.as_str(),
        if view.locked { "  (locked)" } else { "" },
        if view.turn_running {
            "  (turn running)"
        } else {
            ""
        }
    )
    .context(crate::conv::STDOUT_ERROR)?;
    render::transcript(&mut out, &view.messages, view.in_flight.as_ref())
        .context(crate::conv::STDOUT_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_a_unit_and_refuse_junk() {
        assert_eq!(parse_duration_ms("90s"), Ok(90_000));
        assert_eq!(parse_duration_ms("2h"), Ok(7_200_000));
        assert_eq!(parse_duration_ms("7d"), Ok(604_800_000));
        for bad in ["", "s", "10", "0m", "5w", "-1h", "99999999999999999999d"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }
}
