//! `shoalctl shard lead | move | unpin | show`: move a shard by hand. The node stores the
//! operator's pin in the shard and its leader's reconciler moves it (learner, catch up,
//! promote, remove, hand the leadership over between turns); this command shows the
//! progress until the shard is where the pin wants it.

use anyhow::bail;
use clap::builder::NonEmptyStringValueParser;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use shoal_client::AdminClient;
use shoal_protocol::admin::{ShardPin, ShardPinChange, ShardPlacement};
use std::time::Duration;

/// How long a move waits for the shard to settle unless `--timeout-secs` says otherwise.
const MOVE_WAIT_SECS_DEFAULT: u64 = 120;
/// The longest `--timeout-secs`: one hour.
const MOVE_WAIT_SECS_MAX: u64 = 3600;
/// How often a move asks for progress.
const PROGRESS_POLL_MS: u64 = 500;

/// `shoalctl shard …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ShardCommand {
    /// Pin the shard's leadership to NODE (made a replica first if it is not one) and wait
    /// until it leads. Leadership balance leaves a pinned shard alone until `unpin`.
    Lead {
        /// The shard, as `shoalctl shards` lists it.
        shard: u16,
        /// The node id, as `shoalctl members` lists it.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        node: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Move the shard's replica from one node to another and wait until it has moved:
    /// TO is added and caught up, then FROM is removed (a leadership on FROM moves
    /// between turns). The replicas stay pinned there until `unpin`.
    Move {
        /// The shard, as `shoalctl shards` lists it.
        shard: u16,
        /// The node that gives its replica up.
        #[arg(long, value_parser = NonEmptyStringValueParser::new())]
        from: String,
        /// The node that takes it (alive, not draining, not yet a replica).
        #[arg(long, value_parser = NonEmptyStringValueParser::new())]
        to: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Clear the shard's pin: automatic placement (rendezvous and leadership balance) may
    /// move it again.
    Unpin {
        /// The shard.
        shard: u16,
        /// Print `{"shard": N, "pin": null}`.
        #[arg(long)]
        json: bool,
    },
    /// The shard's placement from its leader: leader, voters, learners, the pin, the
    /// replicas placement wants, and whether it is there (`settled`).
    Show {
        /// The shard.
        shard: u16,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// How a move is followed.
#[derive(Debug, Args)]
pub(crate) struct WaitArgs {
    /// Return once the pin is stored instead of waiting for the shard to move.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for the shard to settle before giving up (the move goes on).
    #[arg(long, default_value_t = MOVE_WAIT_SECS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..=MOVE_WAIT_SECS_MAX))]
    timeout_secs: u64,
    /// Print one JSON object: the pin with `--no-wait`, else the final placement.
    #[arg(long)]
    json: bool,
}

/// Runs one `shard` command.
pub(crate) async fn run(admin: &AdminClient, command: ShardCommand) -> anyhow::Result<Vec<String>> {
    let (shard, change, wait) = match command {
        ShardCommand::Show { shard, json } => {
            let placement = admin.shard_placement(shard).await?;
            return Ok(if json {
                vec![placement_json(&placement).to_string()]
            } else {
                placement_lines(&placement)
            });
        }
        ShardCommand::Unpin { shard, json } => {
            admin.pin_shard(shard, ShardPinChange::Clear).await?;
            return Ok(vec![if json {
                json!({ "shard": shard, "pin": null }).to_string()
            } else {
                format!(
                    "shard {shard} unpinned: automatic placement may move it over the next seconds"
                )
            }]);
        }
        ShardCommand::Lead { shard, node, wait } => (shard, ShardPinChange::Lead { node }, wait),
        ShardCommand::Move {
            shard,
            from,
            to,
            wait,
        } => (shard, ShardPinChange::Move { from, to }, wait),
    };
    let pin = admin.pin_shard(shard, change).await?;
    if wait.no_wait {
        return Ok(vec![if wait.json {
            json!({ "shard": shard, "pin": pin.as_ref().map(pin_json) }).to_string()
        } else {
            format!(
                "shard {shard} pinned ({}): it moves over the next seconds; follow it with `shoalctl shard show {shard}`",
                pin.as_ref().map_or_else(|| "nothing".to_owned(), pin_text)
            )
        }]);
    }
    let placement = follow(admin, shard, wait.timeout_secs).await?;
    Ok(if wait.json {
        vec![placement_json(&placement).to_string()]
    } else {
        let mut lines = vec![format!("shard {shard} moved")];
        lines.extend(placement_lines(&placement));
        lines
    })
}

/// Asks for the shard's placement until it is settled, with a spinner saying what is
/// left (hidden when stderr is not a terminal).
async fn follow(
    admin: &AdminClient,
    shard: u16,
    timeout_secs: u64,
) -> anyhow::Result<ShardPlacement> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout_secs);
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} moving shard {prefix}: {msg}")
            .expect("a valid template"),
    );
    bar.set_prefix(shard.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    loop {
        // A leadership moving answers `unavailable` for a moment: keep asking.
        let placement = match admin.shard_placement(shard).await {
            Ok(placement) => Some(placement),
            Err(shoal_client::ClientError::Server(e))
                if e.code == shoal_protocol::ErrorCode::Unavailable =>
            {
                bar.set_message(e.message);
                None
            }
            Err(e) => {
                bar.finish_and_clear();
                return Err(e.into());
            }
        };
        if let Some(placement) = placement {
            if placement.settled {
                bar.finish_and_clear();
                return Ok(placement);
            }
            bar.set_message(left_text(&placement));
            if tokio::time::Instant::now() >= deadline {
                bar.finish_and_clear();
                bail!(
                    "shard {shard} has not moved after {timeout_secs} s ({}); the move goes on — follow it with `shoalctl shard show {shard}`",
                    left_text(&placement)
                );
            }
        } else if tokio::time::Instant::now() >= deadline {
            bar.finish_and_clear();
            bail!(
                "shard {shard} had no leader to ask for {timeout_secs} s; the move goes on — follow it with `shoalctl shard show {shard}`"
            );
        }
        tokio::time::sleep(Duration::from_millis(PROGRESS_POLL_MS)).await;
    }
}

/// What a move still waits for.
fn left_text(p: &ShardPlacement) -> String {
    let mut left = Vec::new();
    let joining: Vec<&String> = p.desired.iter().filter(|n| !p.voters.contains(n)).collect();
    for node in joining {
        if p.learners.contains(node) {
            left.push(format!("{node} catching up"));
        } else {
            left.push(format!("{node} to be added"));
        }
    }
    let leaving: Vec<&String> = p.voters.iter().filter(|n| !p.desired.contains(n)).collect();
    for node in leaving {
        left.push(format!("{node} to be removed"));
    }
    if let Some(leader) = p.pin.as_ref().and_then(|pin| pin.leader.as_ref())
        && *leader != p.leader
        && left.is_empty()
    {
        left.push(format!("leadership moving from {} to {leader}", p.leader));
    }
    if left.is_empty() {
        "settling".to_owned()
    } else {
        left.join(", ")
    }
}

fn pin_text(pin: &ShardPin) -> String {
    let mut parts = Vec::new();
    if let Some(leader) = &pin.leader {
        parts.push(format!("leader {leader}"));
    }
    if !pin.replicas.is_empty() {
        parts.push(format!("replicas {}", pin.replicas.join(",")));
    }
    parts.join("; ")
}

fn pin_json(pin: &ShardPin) -> Value {
    json!({ "leader": pin.leader, "replicas": pin.replicas })
}

/// `shard show`'s lines.
fn placement_lines(p: &ShardPlacement) -> Vec<String> {
    let list = |names: &[String]| {
        if names.is_empty() {
            "-".to_owned()
        } else {
            names.join(", ")
        }
    };
    vec![
        format!("shard:     {}", p.shard),
        format!("leader:    {}", p.leader),
        format!("voters:    {}", list(&p.voters)),
        format!("learners:  {}", list(&p.learners)),
        format!(
            "pin:       {}",
            p.pin
                .as_ref()
                .map_or_else(|| "none (automatic placement)".to_owned(), pin_text)
        ),
        format!("desired:   {}", list(&p.desired)),
        format!(
            "settled:   {}",
            if p.settled {
                "yes".to_owned()
            } else {
                format!("no ({})", left_text(p))
            }
        ),
    ]
}

fn placement_json(p: &ShardPlacement) -> Value {
    json!({
        "shard": p.shard,
        "leader": p.leader,
        "voters": p.voters,
        "learners": p.learners,
        "pin": p.pin.as_ref().map(pin_json),
        "desired": p.desired,
        "settled": p.settled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(voters: &[&str], learners: &[&str], desired: &[&str]) -> ShardPlacement {
        let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect();
        ShardPlacement {
            shard: 7,
            leader: "n1".into(),
            voters: names(voters),
            learners: names(learners),
            pin: Some(ShardPin {
                leader: Some("n2".into()),
                replicas: Vec::new(),
            }),
            desired: names(desired),
            settled: false,
        }
    }

    #[test]
    fn progress_names_what_is_left() {
        assert_eq!(
            left_text(&placement(
                &["n1", "n2", "n3"],
                &["n4"],
                &["n2", "n3", "n4"]
            )),
            "n4 catching up, n1 to be removed"
        );
        assert_eq!(
            left_text(&placement(&["n1", "n2", "n3"], &[], &["n1", "n2", "n4"])),
            "n4 to be added, n3 to be removed"
        );
        assert_eq!(
            left_text(&placement(&["n1", "n2", "n3"], &[], &["n1", "n2", "n3"])),
            "leadership moving from n1 to n2"
        );
    }

    #[test]
    fn show_prints_the_pin_and_what_is_left() {
        let lines = placement_lines(&placement(&["n1", "n2"], &[], &["n1", "n2"]));
        assert!(
            lines.contains(&"pin:       leader n2".to_owned()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"settled:   no (leadership moving from n1 to n2)".to_owned()),
            "{lines:?}"
        );
        let value = placement_json(&placement(&["n1"], &[], &["n1"]));
        assert_eq!(value["pin"]["leader"], "n2");
        assert_eq!(value["settled"], false);
    }
}
