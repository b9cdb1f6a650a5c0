//! `shoalctl usage`: what your turns used, as the agents reported it (token counts and
//! cost), summed per conversation, agent or workspace.

use crate::conv::print_line;
use crate::lookup;
use crate::render::cell;
use anyhow::anyhow;
use clap::{Args, ValueEnum};
use shoal_client::{Client, Profile};
use shoal_protocol::client::{UsageBy, UsageRow};
use std::process::ExitCode;

/// `shoalctl usage`.
#[derive(Debug, Args)]
pub(crate) struct UsageArgs {
    /// Only this workspace's turns, by id (`w-…`) or name.
    #[arg(long, value_name = "WS")]
    workspace: Option<String>,
    /// Only this agent's turns.
    #[arg(long)]
    agent: Option<String>,
    /// Only turns that ended in the last DURATION (`30m`, `24h`, `7d`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
    since: Option<u64>,
    /// One row per what (`credential`: per workspace credential the agent ran with).
    #[arg(long, value_enum, default_value_t = By::Conversation)]
    by: By,
    /// Print `{rows, total}` as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum By {
    Conversation,
    Agent,
    Workspace,
    Credential,
}

/// Parses `30m`, `24h`, `7d`, `90s` into milliseconds.
fn parse_duration_ms(arg: &str) -> Result<u64, String> {
    let bad = || format!("`{arg}` is not a duration; use e.g. 30m, 24h or 7d");
    let (number, unit) = arg.split_at(arg.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let per = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(per).ok_or_else(bad)
}

/// `1234567` micros of `USD` → `1.234567 USD`.
fn cost_text(cost: &[(String, u64)]) -> String {
    if cost.is_empty() {
        return "-".to_owned();
    }
    cost.iter()
        .map(|(currency, micros)| {
            format!(
                "{}.{:06} {}",
                micros / 1_000_000,
                micros % 1_000_000,
                cell(currency)
            )
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

fn row_json(row: &UsageRow) -> serde_json::Value {
    let cost: serde_json::Map<String, serde_json::Value> = row
        .cost
        .iter()
        .map(|(currency, micros)| (currency.clone(), (*micros as f64 / 1e6).into()))
        .collect();
    serde_json::json!({
        "key": row.key,
        "turns": row.turns,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "thought_tokens": row.thought_tokens,
        "cached_read_tokens": row.cached_read_tokens,
        "cached_write_tokens": row.cached_write_tokens,
        "cost": cost,
    })
}

fn row_line(row: &UsageRow) -> String {
    format!(
        "{:<38} {:>6} {:>10} {:>10} {:>8} {:>9} {:>9}  {}",
        cell(&row.key),
        row.turns,
        row.input_tokens,
        row.output_tokens,
        row.thought_tokens,
        row.cached_read_tokens,
        row.cached_write_tokens,
        cost_text(&row.cost)
    )
}

/// Runs `shoalctl usage`.
pub(crate) async fn run(profile: &Profile, args: UsageArgs) -> anyhow::Result<ExitCode> {
    let client = Client::connect(profile).await?;
    let result = report(&client, args).await;
    client.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

async fn report(client: &Client, args: UsageArgs) -> anyhow::Result<()> {
    let workspace = match &args.workspace {
        Some(ws) => Some(lookup::workspace_id(client, ws).await?),
        None => None,
    };
    let since_ms = match args.since {
        Some(ago) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|_| anyhow!("the system clock is before 1970"))?
                .as_millis() as u64;
            Some(now.saturating_sub(ago))
        }
        None => None,
    };
    let by = match args.by {
        By::Conversation => UsageBy::Conversation,
        By::Agent => UsageBy::Agent,
        By::Workspace => UsageBy::Workspace,
        By::Credential => UsageBy::Credential,
    };
    let (rows, total) = client.usage(workspace, args.agent, since_ms, by).await?;
    if args.json {
        let rows: Vec<_> = rows.iter().map(row_json).collect();
        return print_line(
            &serde_json::json!({ "rows": rows, "total": row_json(&total) }).to_string(),
        );
    }
    print_line(&format!(
        "{:<38} {:>6} {:>10} {:>10} {:>8} {:>9} {:>9}  COST",
        "KEY", "TURNS", "IN", "OUT", "THOUGHT", "CACHE-R", "CACHE-W"
    ))?;
    for row in &rows {
        print_line(&row_line(row))?;
    }
    print_line(&row_line(&total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_costs_read_and_print_plainly() {
        assert_eq!(parse_duration_ms("90s"), Ok(90_000));
        assert_eq!(parse_duration_ms("24h"), Ok(86_400_000));
        assert_eq!(parse_duration_ms("7d"), Ok(604_800_000));
        for bad in ["", "7", "d", "7w", "-1h", "99999999999999999999d"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
        assert_eq!(cost_text(&[]), "-");
        assert_eq!(cost_text(&[("USD".into(), 20_000)]), "0.020000 USD");
        assert_eq!(
            cost_text(&[("USD".into(), 1_500_000), ("EUR".into(), 1)]),
            "1.500000 USD + 0.000001 EUR"
        );
    }
}
