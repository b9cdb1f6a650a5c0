//! `shoalctl drain NODE` and `shoalctl undrain NODE` (also under `shoalctl admin`): take a
//! node out of placement with a progress bar until nothing is left to move, and put it
//! back.

use anyhow::bail;
use clap::Args;
use clap::builder::NonEmptyStringValueParser;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use shoal_client::AdminClient;
use shoal_protocol::admin::DrainProgress;
use std::time::Duration;

/// How long `drain` waits for the node to be empty unless `--timeout-secs` says otherwise.
const DRAIN_WAIT_SECS_DEFAULT: u64 = 300;
/// The longest `--timeout-secs`: one day.
const DRAIN_WAIT_SECS_MAX: u64 = 24 * 3600;
/// How often `drain` asks for progress.
const PROGRESS_POLL_MS: u64 = 500;

/// `drain NODE`.
#[derive(Debug, Args)]
pub(crate) struct DrainArgs {
    /// The node id, as `shoalctl members` lists it.
    #[arg(value_parser = NonEmptyStringValueParser::new())]
    pub(crate) node: String,
    /// Return once the node accepted the drain instead of waiting until its leaderships
    /// and replicas have moved.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for the node to be empty before giving up (the drain goes on).
    #[arg(long, default_value_t = DRAIN_WAIT_SECS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..=DRAIN_WAIT_SECS_MAX))]
    timeout_secs: u64,
    /// Print one JSON object: `{"draining": NODE}` with `--no-wait`, else the final
    /// progress (node, drained, leaderships, replicas, replicas_stay).
    #[arg(long)]
    pub(crate) json: bool,
}

/// `undrain NODE`.
#[derive(Debug, Args)]
pub(crate) struct UndrainArgs {
    /// The node id, as `shoalctl members` lists it.
    #[arg(value_parser = NonEmptyStringValueParser::new())]
    pub(crate) node: String,
    /// Print `{"undrained": NODE}`.
    #[arg(long)]
    json: bool,
}

/// Starts the drain, then (unless `--no-wait`) follows it to its end.
pub(crate) async fn drain(admin: &AdminClient, args: DrainArgs) -> anyhow::Result<Vec<String>> {
    let DrainArgs {
        node,
        no_wait,
        timeout_secs,
        json,
    } = args;
    admin.drain(&node).await?;
    if no_wait {
        return Ok(vec![if json {
            json!({ "draining": node }).to_string()
        } else {
            format!(
                "draining {node}: its shard leaderships and replicas move to other nodes over the next seconds"
            )
        }]);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout_secs);
    // Hidden when stderr is not a terminal (indicatif checks).
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} draining {prefix} [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(node.clone());
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut first_left = None;
    let last = loop {
        let progress = admin.drain_progress(&node).await?;
        let left = u64::from(progress.leaderships) + movable_replicas(&progress);
        let total = *first_left.get_or_insert(left);
        bar.set_length(total.max(left));
        bar.set_position(total.max(left) - left);
        bar.set_message(left_text(&progress));
        if progress.finished() {
            break progress;
        }
        if tokio::time::Instant::now() >= deadline {
            bar.finish_and_clear();
            bail!(
                "{node} still holds {} after {timeout_secs} s{}; the drain goes on — run `shoalctl drain {node}` again to follow it, or see `shoalctl shards`",
                left_text(&progress),
                unreachable_text(&progress)
            );
        }
        tokio::time::sleep(Duration::from_millis(PROGRESS_POLL_MS)).await;
    };
    bar.finish_and_clear();
    Ok(vec![if json {
        progress_json(&last).to_string()
    } else {
        finished_text(&last)
    }])
}

/// Puts the node back into placement.
pub(crate) async fn undrain(admin: &AdminClient, args: UndrainArgs) -> anyhow::Result<Vec<String>> {
    admin.undrain(&args.node).await?;
    Ok(vec![if args.json {
        json!({ "undrained": args.node }).to_string()
    } else {
        format!(
            "undrained {}: it is back in placement; shards move to it over the next seconds",
            args.node
        )
    }])
}

/// Replicas that will still move off the node (none when they cannot).
fn movable_replicas(p: &DrainProgress) -> u64 {
    if p.replicas_stay() {
        0
    } else {
        u64::from(p.replicas)
    }
}

fn left_text(p: &DrainProgress) -> String {
    let mut text = format!(
        "{} leaderships, {} replicas left",
        p.leaderships, p.replicas
    );
    if p.shards_unknown > 0 {
        text.push_str(&format!(", {} shards without a leader", p.shards_unknown));
    }
    text
}

fn unreachable_text(p: &DrainProgress) -> String {
    if p.unreachable.is_empty() {
        String::new()
    } else {
        format!(" (no answer from {})", p.unreachable.join("; "))
    }
}

/// The line `drain` ends with.
fn finished_text(p: &DrainProgress) -> String {
    if p.replicas == 0 {
        format!("drained {}: it leads no shard and holds no replica", p.node)
    } else {
        format!(
            "drained {}: it leads no shard; its {} replicas stay, as only {} members can hold replicas for {} per shard (add a node to move them)",
            p.node, p.replicas, p.placeable_members, p.replicas_per_shard
        )
    }
}

/// `drain --json`'s final object.
fn progress_json(p: &DrainProgress) -> Value {
    json!({
        "node": p.node,
        "drained": p.finished(),
        "leaderships": p.leaderships,
        "replicas": p.replicas,
        "replicas_stay": p.replicas > 0 && p.replicas_stay(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(leaderships: u32, replicas: u32, placeable: u32) -> DrainProgress {
        DrainProgress {
            node: "n2".into(),
            draining: true,
            leaderships,
            replicas,
            placeable_members: placeable,
            replicas_per_shard: 3,
            shards_unknown: 0,
            unreachable: Vec::new(),
        }
    }

    #[test]
    fn the_final_line_says_whether_replicas_stay_and_why() {
        assert_eq!(
            finished_text(&progress(0, 0, 3)),
            "drained n2: it leads no shard and holds no replica"
        );
        assert_eq!(
            finished_text(&progress(0, 64, 2)),
            "drained n2: it leads no shard; its 64 replicas stay, as only 2 members can hold replicas for 3 per shard (add a node to move them)"
        );
        assert_eq!(
            progress_json(&progress(0, 64, 2)),
            json!({"node": "n2", "drained": true, "leaderships": 0, "replicas": 64, "replicas_stay": true})
        );
        assert_eq!(movable_replicas(&progress(3, 64, 2)), 0);
        assert_eq!(movable_replicas(&progress(3, 64, 3)), 64);
    }
}
