//! The `shoal-node` command line (the binary is a thin wrapper, so other binaries, such as
//! the chaos tests' node, can be the same program).

use crate::{Node, dev};
use anyhow::Context;
use clap::{Parser, Subcommand};
use shoal_cluster_config::NodeConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// A Shoal node: runs coding-agent conversations and streams them to followers.
#[derive(Parser)]
#[command(name = "shoal-node", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a single dev node on embedded defaults with the demo agent.
    Dev {
        /// Where the store, certificates, keys, workspaces and profile.toml live.
        #[arg(long, default_value = dev::DEV_DATA_DIR_DEFAULT)]
        data_dir: PathBuf,
        /// UDP address to listen on (port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Start a local cluster on loopback for trying things: certificates, configs and a
    /// profile are generated under the data dir; Ctrl-C stops every node.
    Up {
        /// Number of nodes (1..=9).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=9))]
        nodes: u16,
        /// Where each node's data, the certificates and profile.toml live.
        #[arg(long, default_value = ".shoal-cluster")]
        data_dir: PathBuf,
        /// UDP port of n1; the others use the next ports.
        #[arg(long, default_value_t = 7443)]
        first_port: u16,
    },
    /// Run a node from a config file.
    Start {
        /// The node's TOML config (see cluster-config/README.md).
        #[arg(long)]
        config: PathBuf,
    },
    /// Config file tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Certificate tools for a cluster.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Run the built-in demo ACP agent on stdin/stdout (used by dev mode).
    #[command(hide = true)]
    DemoAgent,
    /// Run the agent watchdog on stdin (started by a node of a replicated cluster).
    #[command(hide = true)]
    AgentWatchdog,
    /// Store passivated conversations in a stopped single-replica node's store, through
    /// the shard state machine in batches (for `shoal-bench activation`).
    #[command(hide = true)]
    BenchSeed {
        /// The node's TOML config (`cluster.replicas` must be 1).
        #[arg(long)]
        config: PathBuf,
        /// How many conversations to store.
        #[arg(long)]
        conversations: u64,
        /// How many users own them (`bench-0`, `bench-1`, …).
        #[arg(long, default_value_t = 1_000)]
        users: u32,
    },
    /// Measure one replica's state-machine apply alone (for `shoal-bench throughput`):
    /// prints one JSON line.
    #[command(hide = true)]
    BenchApply {
        /// A directory that does not exist yet, for the new store.
        #[arg(long)]
        dir: PathBuf,
        /// Shards of the store.
        #[arg(long, default_value_t = 64)]
        shards: u16,
        /// Users creating conversations (`tp-0`, `tp-1`, …).
        #[arg(long, default_value_t = 256)]
        users: usize,
        /// Creates per log entry.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Seconds to apply for.
        #[arg(long, default_value_t = 3)]
        secs: u64,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create a cluster CA, one certificate per node, an admin client certificate and the
    /// client CA bundle.
    Init {
        /// Output directory (must not hold a CA already).
        #[arg(long)]
        out: PathBuf,
        /// Comma-separated node ids, e.g. n1,n2,n3.
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a config file: exit 0 if valid, else print what is wrong and exit 1.
    Check {
        /// The file.
        file: PathBuf,
    },
}

/// The `shoal-node` command line: parses the process arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Ok(exe) = std::env::current_exe() {
        crate::watchdog::set_program(exe);
    }
    match cli.command {
        Command::DemoAgent => shoal_demo_agent::run_blocking(),
        Command::AgentWatchdog => crate::watchdog::run_blocking(),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => match NodeConfig::load(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                ExitCode::FAILURE
            }
        },
        Command::Certs {
            command: CertsCommand::Init { out, nodes },
        } => {
            for node in &nodes {
                if let Err(e) = shoal_cluster_config::NodeId::new(node.as_str()) {
                    eprintln!("error: --nodes: {e}");
                    return ExitCode::FAILURE;
                }
            }
            match crate::security::tls::init_cluster_certs(&out, &nodes) {
                Ok(certs) => {
                    println!("cluster CA:      {}", certs.ca_cert.display());
                    for (node, cert, key) in &certs.nodes {
                        println!("node {node}: {} {}", cert.display(), key.display());
                    }
                    println!(
                        "admin client:    {} {}",
                        certs.admin.0.display(),
                        certs.admin.1.display()
                    );
                    println!("client CA:       {}", certs.client_ca_bundle.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Dev { data_dir, listen } => run(|| async move {
            let exe = std::env::current_exe()
                .context("cannot find the shoal-node executable for the demo agent")?;
            let config = dev::dev_config(
                &data_dir,
                listen,
                exe,
                vec!["demo-agent".into()],
                std::env::vars(),
            )?;
            let telemetry = crate::telemetry::init(&config)?;
            dev::prepare(&config)?;
            serve(config, true, telemetry).await
        }),
        Command::Up {
            nodes,
            data_dir,
            first_port,
        } => run(|| async move { up(nodes, &data_dir, first_port).await }),
        Command::BenchSeed {
            config,
            conversations,
            users,
        } => run(|| async move {
            let config = NodeConfig::load(&config)?;
            dev::seed::seed(&config, conversations, users, |stored| {
                eprintln!("bench-seed: {stored} of {conversations} conversations stored");
            })
            .await?;
            println!("bench-seed: {conversations} conversations stored");
            Ok(())
        }),
        Command::BenchApply {
            dir,
            shards,
            users,
            batch,
            secs,
        } => run(|| async move {
            let done = dev::apply_alone::run(&dir, shards, users, batch, secs)
                .await
                .map_err(|e| anyhow::anyhow!("bench-apply: {e}"))?;
            println!("{}", serde_json::to_string(&done)?);
            Ok(())
        }),
        Command::Start { config } => run(|| async move {
            let config = NodeConfig::load(&config)?;
            let telemetry = crate::telemetry::init(&config)?;
            serve(config, false, telemetry).await
        }),
    }
}

fn run<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(f()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    config: NodeConfig,
    dev_mode: bool,
    telemetry: crate::telemetry::Telemetry,
) -> anyhow::Result<()> {
    let node = Node::start(config.clone()).await?;
    telemetry.export_metrics(&node.context().metrics);
    let addr = node.addr();
    if dev_mode {
        let profile = dev::write_profile(&config, addr, node.context().now_secs())?;
        println!(
            "shoal-node ready: listening on {addr} (node {}), profile {}",
            config.node.id.as_str(),
            profile.display()
        );
        println!("try: shoalctl --profile {} conv new", profile.display());
    } else {
        println!(
            "shoal-node ready: listening on {addr} (node {})",
            config.node.id.as_str()
        );
    }
    tokio::select! {
        () = wait_for_signal() => {}
        reason = node.failed() => {
            // Fail-stop: no graceful shutdown, which would keep writing. The agent
            // watchdog kills every agent when this process is gone.
            anyhow::bail!("the node stopped itself (fail-stop): {reason}");
        }
    }
    eprintln!("shutting down");
    node.shutdown().await;
    telemetry.shutdown().await;
    Ok(())
}

/// How long `up` waits for every node's ready line.
const UP_READY_TIMEOUT_MS: u64 = 60_000;

async fn up(nodes: u16, data_dir: &std::path::Path, first_port: u16) -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt;
    let exe = std::env::current_exe().context("cannot find the shoal-node executable")?;
    let layout = dev::prepare_cluster(
        data_dir,
        nodes,
        first_port,
        exe.clone(),
        vec!["demo-agent".into()],
        |_| {},
    )?;
    let mut children = Vec::new();
    for node in &layout {
        let log_path = node.data_dir.join("node.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let mut child = tokio::process::Command::new(&exe)
            .arg("start")
            .arg("--config")
            .arg(&node.config_path)
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start node {}", node.name))?;
        let stdout = child.stdout.take().context("no stdout")?;
        children.push((node.clone(), child, stdout, log_path));
    }
    let deadline = std::time::Duration::from_millis(UP_READY_TIMEOUT_MS);
    for (node, _, stdout, log_path) in &mut children {
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let ready = async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("shoal-node ready") {
                    return true;
                }
            }
            false
        };
        match tokio::time::timeout(deadline, ready).await {
            Ok(true) => println!("  {}  {}  log {}", node.name, node.addr, log_path.display()),
            _ => anyhow::bail!(
                "node {} did not start; see {}",
                node.name,
                log_path.display()
            ),
        }
    }
    let profile = data_dir.join("profile.toml");
    println!(
        "shoal cluster up: {nodes} nodes; profile {}",
        profile.display()
    );
    println!("try: shoalctl --profile {} members", profile.display());
    println!("     shoalctl --profile {} conv new", profile.display());
    println!(
        "kill any node with kill -9 and restart it with: shoal-node start --config DIR/nN/shoal.toml"
    );
    println!("Ctrl-C stops every node.");
    let mut waits = Vec::new();
    let mut pids = Vec::new();
    for (node, mut child, _, _) in children {
        pids.push(child.id());
        waits.push(tokio::spawn(async move {
            if let Ok(status) = child.wait().await {
                eprintln!("node {} exited ({status})", node.name);
            }
        }));
    }
    wait_for_signal().await;
    eprintln!("stopping every node");
    for pid in pids.into_iter().flatten() {
        // SIGTERM: each node shuts down gracefully (leaves gossip, stops agents).
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).context("bad pid")?,
            rustix::process::Signal::TERM,
        );
    }
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        futures::future::join_all(waits),
    )
    .await;
    Ok(())
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
