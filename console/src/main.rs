//! `shoalctl`: conversations and node administration from the command line.
//!
//! # Layout
//! * `main.rs` (this file): the command tree, profile loading, the error line and exit codes.
//! * `conv`: `shoalctl conv …`, built on the client SDK.
//! * `creds`: `shoalctl creds …`: workspace credentials (values from stdin only).
//! * `ws`: `shoalctl ws …`: workspaces (create, list, rename, reorder, delete).
//! * `skills`: `shoalctl skills …`: skill packs (list, show, import, attach, detach,
//!   delete); `skills_import` reads a pack from a local directory.
//! * `lookup`: workspaces and skill packs named by id or by name.
//! * `share`: `shoalctl share …`: grants for viewers and editors, links, revocation, the
//!   lock, "shared with me"; how a shared conversation is shown.
//! * `admin`: `shoalctl admin …` and the cluster commands `shoalctl members | shards |
//!   drain`, built on the admin client.
//! * `drain`: `shoalctl drain | undrain` (also under `admin`): the drain with its progress
//!   bar.
//! * `shard`: `shoalctl shard lead | move | unpin | show`: moving a shard by hand.
//! * `events`: `shoalctl admin events [--follow]`: the cluster's recent events.
//! * `agents`: `shoalctl agents [probe [ID] | enable ID | disable ID]`: the node's agent
//!   registry (admin client).
//! * `json`: the JSON shapes of `--json` output (events, messages, conversations, status,
//!   members, shards).
//! * `render`: human-readable output (transcripts, member and shard tables).
//! * `top`: `shoalctl top`, the live terminal UI (`top/app.rs` its state, `top/draw.rs`
//!   the screen).
//!
//! Every failure prints exactly one line `error: <what happened>; <what to do>` on stderr
//! and exits with status 1.

mod admin;
mod agents;
mod conv;
mod conv_history;
mod conv_settings;
mod creds;
mod drain;
mod events;
mod json;
mod lookup;
mod render;
mod shard;
mod share;
mod skills;
mod skills_import;
mod top;
mod usage;
mod ws;
mod ws_mcp;

use anyhow::anyhow;
use clap::{Parser, Subcommand};
use shoal_client::Profile;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where `shoal-node dev` writes its profile, relative to the directory it runs in.
const DEFAULT_PROFILE: &str = ".shoal-dev/profile.toml";

/// Talk to a Shoal node: conversations and administration.
#[derive(Debug, Parser)]
#[command(name = "shoalctl", version, about, propagate_version = true)]
struct Cli {
    /// Profile file naming the node, its CA certificate and the tokens.
    #[arg(
        long,
        global = true,
        env = "SHOAL_PROFILE",
        default_value = DEFAULT_PROFILE,
        value_name = "FILE"
    )]
    profile: PathBuf,

    /// Act on conversations with this share token (`shoalshare1.…`, from `share create`)
    /// instead of as their owner: `conv show|follow|send|fork|cancel ID --token T`.
    #[arg(long, global = true, env = "SHOAL_SHARE_TOKEN", value_name = "TOKEN")]
    token: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, message, follow and inspect conversations.
    #[command(subcommand)]
    Conv(conv::ConvCommand),
    /// Workspaces: create, list, rename, reorder and delete them.
    #[command(subcommand)]
    Ws(ws::WsCommand),
    /// Skill packs: import them from a directory, attach them to workspaces.
    #[command(subcommand)]
    Skills(skills::SkillsCommand),
    /// Workspace credentials: environment variables for your agents (write-only).
    #[command(subcommand)]
    Creds(creds::CredsCommand),
    /// Share conversations with viewers and editors; see what is shared with you.
    #[command(subcommand)]
    Share(share::ShareCommand),
    /// What your turns used (tokens, cost), per conversation, agent or workspace.
    Usage(usage::UsageArgs),
    /// Node status, actors, followers, eviction and tokens (needs the admin token).
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    #[command(flatten)]
    Cluster(admin::ClusterCommand),
    /// The agents the node can run: status, version, capabilities; probe, enable and
    /// disable them (needs the admin token).
    ///
    /// Prints a table ID LABEL COMMAND STATUS VERSION CAPABILITIES (status ready, missing,
    /// disabled, failed or unknown), then why each agent that is not ready is not.
    Agents(agents::AgentsArgs),
    /// A live view of the cluster in the terminal (needs the admin token).
    ///
    /// Views: 1 Nodes (members and this node's counters), 2 Shards (the shard map by leader
    /// and the shard table), 3 Actors (every member's actors); an events pane shows the
    /// cluster's events as its members recorded them (as `admin events`). Keys: 1 2 3 or Tab switch views, arrows PgUp PgDn Home
    /// End scroll, q Esc or Ctrl-C quit.
    Top(top::TopArgs),
}

fn main() -> ExitCode {
    // A bug must still end in one error line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(
            stderr,
            "error: shoalctl crashed ({}); please report this with the command you ran",
            render::one_line(&info.to_string(), 300)
        );
    }));

    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            return fail(&anyhow!(
                "cannot start the async runtime: {err}; check the system's resource limits"
            ));
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => fail(&err),
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut profile = load_profile(&cli.profile)?;
    if let Some(token) = cli.token {
        profile.share_token = Some(token);
    }
    match cli.command {
        Command::Conv(command) => conv::run(&profile, command).await,
        Command::Ws(command) => ws::run(&profile, command).await,
        Command::Skills(command) => skills::run(&profile, command).await,
        Command::Creds(command) => creds::run(&profile, command).await,
        Command::Share(command) => share::run(&profile, command).await,
        Command::Usage(args) => usage::run(&profile, args).await,
        Command::Admin(command) => admin::run(&profile, command).await,
        Command::Cluster(command) => admin::run_cluster(&profile, command).await,
        Command::Agents(args) => agents::run(&profile, args).await,
        Command::Top(args) => top::run(&profile, args).await,
    }
}

/// Loads the profile; a missing file gets a hint on how to make one.
fn load_profile(path: &Path) -> anyhow::Result<Profile> {
    if !path.exists() {
        return Err(anyhow!(
            "no profile at {}; start `shoal-node dev` (it writes {DEFAULT_PROFILE}) or pass --profile FILE",
            path.display()
        ));
    }
    Ok(Profile::load(path)?)
}

/// Prints the one error line and returns exit status 1.
fn fail(err: &anyhow::Error) -> ExitCode {
    let text = format!("{err:#}");
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let _ = writeln!(std::io::stderr().lock(), "error: {line}");
    ExitCode::FAILURE
}

/// `--help` and `--version` print normally; a usage mistake is one error line.
fn usage_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = err.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            ExitCode::FAILURE
        }
        _ => {
            let rendered = err.render().to_string();
            let first = rendered
                .lines()
                .find(|line| !line.trim().is_empty())
                .unwrap_or("invalid command line");
            let first = first.trim().trim_start_matches("error:").trim();
            fail(&anyhow!("{first}; see `shoalctl --help`"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ids_are_parsed_by_clap() {
        let err = Cli::try_parse_from(["shoalctl", "conv", "show", "nope"]).unwrap_err();
        assert!(
            err.to_string().contains("not a valid conversation id"),
            "{err}"
        );
        let cli = Cli::try_parse_from([
            "shoalctl",
            "--profile",
            "/tmp/p.toml",
            "conv",
            "follow",
            "c-1-00000000000000000000000000000002",
            "--since",
            "5",
            "--json",
            "--until-done",
        ])
        .unwrap();
        assert_eq!(cli.profile, PathBuf::from("/tmp/p.toml"));
        assert!(matches!(cli.command, Command::Conv(_)));
    }

    #[test]
    fn cluster_commands_are_top_level() {
        let cli = Cli::try_parse_from(["shoalctl", "drain", "n2", "--json"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Cluster(admin::ClusterCommand::Drain(ref args)) if args.node == "n2" && args.json
        ));
        let cli = Cli::try_parse_from(["shoalctl", "admin", "undrain", "n2"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Admin(admin::AdminCommand::Undrain(ref args)) if args.node == "n2"
        ));
        assert!(Cli::try_parse_from(["shoalctl", "drain", "n2", "--timeout-secs", "0"]).is_err());
        let cli = Cli::try_parse_from(["shoalctl", "members"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Cluster(admin::ClusterCommand::Members { json: false })
        ));
        let cli = Cli::try_parse_from(["shoalctl", "shards", "--json"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Cluster(admin::ClusterCommand::Shards { json: true })
        ));
        let cli = Cli::try_parse_from([
            "shoalctl",
            "shard",
            "move",
            "7",
            "--from",
            "n1",
            "--to",
            "n4",
            "--no-wait",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Cluster(admin::ClusterCommand::Shard {
                command: shard::ShardCommand::Move { shard: 7, ref from, ref to, .. }
            }) if from == "n1" && to == "n4"
        ));
        assert!(Cli::try_parse_from(["shoalctl", "shard", "lead", "x", "n1"]).is_err());
        assert!(Cli::try_parse_from(["shoalctl", "shard", "move", "7", "--to", "n4"]).is_err());
        assert!(Cli::try_parse_from(["shoalctl", "drain", ""]).is_err());
        assert!(Cli::try_parse_from(["shoalctl", "drain"]).is_err());
        let help = Cli::command().render_help().to_string();
        for name in [
            "members", "shards", "drain", "undrain", "shard", "admin", "conv", "ws", "skills",
            "top",
        ] {
            assert!(help.contains(name), "`{name}` missing from --help:\n{help}");
        }
    }

    #[test]
    fn workspace_and_skill_commands_parse() {
        let cli = Cli::try_parse_from(["shoalctl", "ws", "rm", "Project X", "--yes"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Ws(ws::WsCommand::Rm { ref workspace, yes: true }) if workspace == "Project X"
        ));
        let cli = Cli::try_parse_from(["shoalctl", "ws", "reorder", "web", "1"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Ws(ws::WsCommand::Reorder { position: 1, .. })
        ));
        // Positions are 1-based.
        assert!(Cli::try_parse_from(["shoalctl", "ws", "reorder", "web", "0"]).is_err());
        let cli = Cli::try_parse_from([
            "shoalctl", "skills", "import", "./pack", "--name", "tools", "--update", "tools",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Skills(skills::SkillsCommand::Import { ref name, ref update, .. })
                if name.as_deref() == Some("tools") && update.as_deref() == Some("tools")
        ));
        let cli = Cli::try_parse_from([
            "shoalctl",
            "conv",
            "list",
            "--workspace",
            "web",
            "--limit",
            "5",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Conv(conv::ConvCommand::List { ref workspace, limit: 5, .. })
                if workspace.as_deref() == Some("web")
        ));
        assert!(Cli::try_parse_from(["shoalctl", "skills", "attach"]).is_err());
    }
}
