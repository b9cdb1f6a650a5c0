//! `shoalctl admin events [--follow]`: the cluster's recent events, merged from every
//! member, oldest first; `--follow` keeps printing new ones until Ctrl-C.

use crate::admin::print_lines;
use crate::render::{cell, safe_line};
use clap::Args;
use serde_json::{Value, json};
use shoal_client::AdminClient;
use shoal_protocol::admin::{ClusterEvent, EVENTS_PER_ANSWER_MAX};
use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

/// Longest detail printed, in characters.
const DETAIL_CHARS_MAX: usize = 600;
/// Events printed unless `--limit` says otherwise.
const LIMIT_DEFAULT: u32 = 50;
/// How often `--follow` asks for new events.
const FOLLOW_POLL_MS: u64 = 1_000;
/// `--follow` asks again for this much before the newest event it printed, so that an
/// event a node recorded a little earlier by its clock (or answered late) is not missed;
/// what was already printed is skipped.
const FOLLOW_OVERLAP_MS: u64 = 5_000;

/// `admin events`.
#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    /// How many of the newest events to print (1 to 1000).
    #[arg(long, default_value_t = LIMIT_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(EVENTS_PER_ANSWER_MAX)))]
    limit: u32,
    /// Keep printing new events as they happen, until Ctrl-C.
    #[arg(long)]
    follow: bool,
    /// One JSON object per event per line (at_ms, node, seq, kind, detail).
    #[arg(long)]
    json: bool,
}

/// Prints the events; with `--follow`, until Ctrl-C.
pub(crate) async fn run(admin: &AdminClient, args: EventsArgs) -> anyhow::Result<Vec<String>> {
    let (events, unreachable) = admin.events(None, args.limit).await?;
    warn_unreachable(&unreachable, &mut Vec::new());
    if !args.follow {
        return Ok(events.iter().map(|e| line(e, args.json)).collect());
    }
    let mut printed: BTreeSet<(u64, String, u64)> = BTreeSet::new();
    let mut warned = unreachable;
    let mut newest = 0;
    // The first answer holds every event from its oldest on (it is the newest `limit`):
    // an older one a later answer brings back was left out on purpose, not missed.
    let floor_ms = events.first().map_or(0, |e| e.at_ms);
    let show = |events: Vec<ClusterEvent>,
                printed: &mut BTreeSet<(u64, String, u64)>,
                newest: &mut u64|
     -> anyhow::Result<()> {
        let mut lines = Vec::new();
        for e in events.into_iter().filter(|e| e.at_ms >= floor_ms) {
            *newest = (*newest).max(e.at_ms);
            if printed.insert((e.at_ms, e.node.clone(), e.seq)) {
                lines.push(line(&e, args.json));
            }
        }
        // Only what the overlap can still return needs remembering.
        let keep_from = newest.saturating_sub(FOLLOW_OVERLAP_MS);
        printed.retain(|(at, _, _)| *at >= keep_from);
        print_lines(lines)
    };
    show(events, &mut printed, &mut newest)?;
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(Vec::new()),
            () = tokio::time::sleep(Duration::from_millis(FOLLOW_POLL_MS)) => {}
        }
        let after = (newest > 0).then(|| newest.saturating_sub(FOLLOW_OVERLAP_MS));
        let (events, unreachable) = admin.events(after, EVENTS_PER_ANSWER_MAX).await?;
        warn_unreachable(&unreachable, &mut warned);
        show(events, &mut printed, &mut newest)?;
    }
}

/// Names members that did not answer on stderr, once until the set changes.
fn warn_unreachable(unreachable: &[String], warned: &mut Vec<String>) {
    if unreachable == warned.as_slice() {
        return;
    }
    let mut err = std::io::stderr().lock();
    for member in unreachable {
        let _ = writeln!(
            err,
            "warning: no answer from {member}; its events are missing"
        );
    }
    *warned = unreachable.to_vec();
}

/// One event: `HH:MM:SS.mmm  NODE  KIND  DETAIL` (UTC), or its JSON object.
pub(crate) fn line(e: &ClusterEvent, json: bool) -> String {
    if json {
        return event_json(e).to_string();
    }
    format!(
        "{}  {:<8} {:<9} {}",
        clock_ms(e.at_ms),
        cell(&e.node),
        cell(&e.kind),
        safe_line(&e.detail, DETAIL_CHARS_MAX)
    )
}

fn event_json(e: &ClusterEvent) -> Value {
    json!({
        "at_ms": e.at_ms,
        "node": e.node,
        "seq": e.seq,
        "kind": e.kind,
        "detail": e.detail,
    })
}

/// `HH:MM:SS.mmm` (UTC).
fn clock_ms(ms: u64) -> String {
    format!("{}.{:03}", crate::top::clock_time(ms), ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_one_line_or_one_object() {
        let e = ClusterEvent {
            at_ms: 3_723_004,
            node: "n1".into(),
            seq: 7,
            kind: "down".into(),
            detail: "n3 is down\n(forged line)".into(),
        };
        assert_eq!(
            line(&e, false),
            "01:02:03.004  n1       down      n3 is down (forged line)"
        );
        assert_eq!(
            serde_json::from_str::<Value>(&line(&e, true)).unwrap(),
            json!({"at_ms": 3_723_004, "node": "n1", "seq": 7, "kind": "down", "detail": "n3 is down\n(forged line)"})
        );
    }
}
