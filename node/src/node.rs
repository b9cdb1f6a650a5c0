//! Starting and stopping a node.
//!
//! [`Node::start`] opens the store, loads keys and certificates, binds the UDP socket
//! (or takes one already bound: the I/O seam), starts the actor tree and the accept loop.

use crate::actors::shard_host::{ShardHost, ShardHostMsg};
use crate::cluster::Cluster;
use crate::context::{Metrics, NodeContext};
use crate::seam::Seams;
use crate::security::tls::{self, TlsPaths};
use crate::security::tokens::TokenSigner;
use crate::shard::store::{Store, StoreError};
use ractor::{Actor, ActorRef};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use shoal_cluster_config::NodeConfig;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long shutdown waits for actors (and their agent processes) to stop.
const SHUTDOWN_TIMEOUT_MS: u64 = 15_000;
/// Election timeouts (max) that handing leaderships over may take at shutdown.
const HANDOFF_ELECTIONS: u64 = 4;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::shard::store::StoreError),
    /// TLS material is missing or invalid.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The signing key could not be loaded.
    #[error(transparent)]
    Key(#[from] crate::security::tokens::KeyError),
    /// `sandbox.isolation` asks for something this machine cannot do.
    #[error("{0}")]
    Sandbox(String),
    /// The credentials key could not be loaded.
    #[error(transparent)]
    CredentialsKey(#[from] crate::security::credentials::CredentialsKeyError),
    /// The listen address could not be bound.
    #[error(
        "cannot listen on {addr}: {source}; pick a free address with `node.listen_addr` (or --listen)"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The metrics address could not be bound.
    #[error(
        "cannot serve metrics on {addr}: {source}; pick a free address with `telemetry.prometheus_listen` or remove the key"
    )]
    MetricsBind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The Raft groups could not start.
    #[error("cannot start the shard groups: {0}")]
    Cluster(String),
    /// The actor system could not start.
    #[error("cannot start the actor tree: {0}")]
    Actors(String),
    /// The agents' run-time settings could not be read from the store.
    #[error("cannot read the agents' run-time settings from the store: {0}")]
    Agents(String),
}

/// A running node.
#[derive(Debug)]
pub struct NodeHandle {
    ctx: Arc<NodeContext>,
    endpoint: quinn::Endpoint,
    host: ActorRef<ShardHostMsg>,
    accept: tokio::task::JoinHandle<()>,
    background: crate::cluster::reconciler::Background,
    /// The Prometheus endpoint (`telemetry.prometheus_listen`), when on, and where it
    /// listens.
    metrics: Option<(tokio::task::JoinHandle<()>, SocketAddr)>,
}

/// Entry points.
#[derive(Debug)]
pub struct Node;

impl Node {
    /// Starts a node with `config`, binding `config.node.listen_addr`.
    pub async fn start(config: NodeConfig) -> Result<NodeHandle, NodeError> {
        let addr = config.node.listen_addr;
        let socket = UdpSocket::bind(addr).map_err(|source| NodeError::Bind { addr, source })?;
        Self::start_with_socket(config, socket).await
    }

    /// Starts a node on an already-bound UDP socket.
    pub async fn start_with_socket(
        config: NodeConfig,
        socket: UdpSocket,
    ) -> Result<NodeHandle, NodeError> {
        let addr = config.node.listen_addr;
        let runtime = Arc::new(quinn::TokioRuntime);
        let socket = quinn::Runtime::wrap_udp_socket(runtime.as_ref(), socket)
            .map_err(|source| NodeError::Bind { addr, source })?;
        let seams = Seams {
            fault_injection: crate::seam::fault_injection_from_env(),
            ..Seams::default()
        };
        Self::start_with_seams(config, socket, seams).await
    }

    /// Starts a node on an abstract UDP socket with simulation hooks (see
    /// [`crate::seam`]): a simulated network hands its socket here. With
    /// `Seams::default()` this is [`Self::start_with_socket`].
    pub async fn start_with_seams(
        config: NodeConfig,
        socket: Arc<dyn quinn::AsyncUdpSocket>,
        seams: Seams,
    ) -> Result<NodeHandle, NodeError> {
        let listen_addr = socket.local_addr().map_err(|source| NodeError::Bind {
            addr: config.node.listen_addr,
            source,
        })?;
        let mut rng = match seams.rng_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let random_generation = rng.next_u64();
        // Simulation keeps one Raft id per node name across runs (as before store
        // generations): some simulated schedules still depend on the id values (see
        // chaos-tests/README.md), and the simulation never loses a store.
        let new_generation = if seams.rng_seed.is_some() {
            SIM_STORE_GENERATION
        } else {
            random_generation
        };
        let store = open_store(&config, seams.inline_blocking, new_generation)?;
        let signer = TokenSigner::load_or_create(&config.auth.signing_key_path)?;
        let paths = TlsPaths {
            ca_cert: config.tls.ca_cert_path.clone(),
            cert: config.tls.cert_path.clone(),
            key: config.tls.key_path.clone(),
        };
        let max_streams = config.limits.max_streams_per_connection.get();
        let server_config = tls::server_config(&paths, max_streams)?;
        let peer_config = crate::peer::client_config(&paths)?;
        let mut endpoint_config = quinn::EndpointConfig::default();
        if seams.rng_seed.is_some() {
            let mut quic_seed = [0_u8; 32];
            rng.fill_bytes(&mut quic_seed);
            endpoint_config.rng_seed(Some(quic_seed));
        }
        let metrics = Arc::new(Metrics::default());
        let socket = crate::telemetry::traffic::CountingSocket::wrap(socket, metrics.clone());
        let endpoint = quinn::Endpoint::new_with_abstract_socket(
            endpoint_config,
            Some(server_config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| NodeError::Bind {
            addr: listen_addr,
            source,
        })?;
        // An advertise address left at the listen address (port 0 in tests, or an
        // unspecified IP) means "the address actually bound".
        let advertise = if config.node.advertise_addr == config.node.listen_addr {
            listen_addr
        } else {
            config.node.advertise_addr
        };
        let peers = crate::peer::PeerClient::new(endpoint.clone(), peer_config);
        let peers_for_gossip = peers.clone();
        // A single voter is never superseded: its agents need no watchdog; nor do
        // in-process agents (simulation), which stop with the node.
        let watchdog = crate::watchdog::Watchdog::start(
            config.cluster.replicas.get() > 1 && seams.agent_launcher.is_none(),
        );
        let cluster = Cluster::start(
            &config,
            &store,
            peers,
            advertise,
            watchdog.clone(),
            metrics.clone(),
        )
        .await
        .map_err(|e| NodeError::Cluster(e.to_string()))?;
        let fence = crate::fence::AgentFence::new(config.cluster.shard_count.get(), watchdog);
        let gossip_seed = match (seams.rng_seed, &seams.wall_clock) {
            (Some(_), Some(clock)) => Some(crate::cluster::membership::GossipSeed {
                bump: clock(),
                rng_seed: rng.next_u64(),
            }),
            _ => None,
        };
        // A drain outlives restarts (crate::cluster::drain): gossip it from the start.
        let draining = store.draining()?;
        let initialized = cluster.initialized().await;
        if draining {
            tracing::warn!(
                "this node is drained (an earlier `shoalctl drain`): it takes no shards; `shoalctl undrain {}` puts it back",
                cluster.me_node.name
            );
        }
        let membership = crate::cluster::membership::Membership::spawn_seeded(
            crate::cluster::membership::NodeMeta {
                name: cluster.me_node.name.clone(),
                raft_id: cluster.me,
                addr: advertise,
                version: env!("CARGO_PKG_VERSION").to_owned(),
                leaders: 0,
                led: Vec::new(),
                initialized,
                draining,
            },
            config.cluster.seeds.clone(),
            crate::cluster::membership::GossipTimings::from_config(&config.gossip),
            Arc::new(crate::cluster::PeerGossip(peers_for_gossip)),
            gossip_seed,
        );
        let agent_slots =
            crate::agent_slots::AgentSlots::new(config.limits.agent_processes_max.get() as usize);
        let blobs = Arc::new(crate::workspace::blobs::BlobStore::new(
            config.node.data_dir.join("blobs"),
        ));
        if config.sandbox.isolation == shoal_cluster_config::Isolation::Bwrap {
            crate::agent_process::check_bwrap().map_err(NodeError::Sandbox)?;
        }
        let credentials_key = match &config.auth.credentials_key_path {
            Some(path) => Some(crate::security::credentials::CredentialsKey::load_or_create(path)?),
            None => None,
        };
        let agents = crate::agents::AgentRegistry::open(&config.agents, store.db())
            .map_err(|e| NodeError::Agents(e.to_string()))?;
        let ctx = Arc::new(NodeContext {
            agents,
            blobs,
            credentials_key,
            sandboxes: crate::workspace::Sandboxes::default(),
            config,
            store,
            cluster,
            fence,
            agent_slots,
            membership,
            signer,
            metrics,
            started: Instant::now(),
            listen_addr,
            advertise_addr: advertise,
            seams,
            rng: std::sync::Mutex::new(rng),
            shard_host: std::sync::OnceLock::new(),
            sharing: crate::sharing::Sharing::default(),
            events: crate::telemetry::events::EventLog::default(),
        });
        ctx.event(
            crate::telemetry::events::EventKind::Start,
            format!(
                "started (store generation {:016x}{})",
                ctx.store.generation(),
                if initialized {
                    ""
                } else {
                    ", no Raft state yet: shard leaders add it and seed it by snapshot"
                }
            ),
        );
        let (host, _) = Actor::spawn(None, ShardHost, ctx.clone())
            .await
            .map_err(|e| NodeError::Actors(e.to_string()))?;
        let _ = ctx.shard_host.set(host.clone());
        let accept = tokio::spawn(crate::gateway::serve(
            endpoint.clone(),
            ctx.clone(),
            host.clone(),
        ));
        let metrics = match ctx.config.telemetry.prometheus_listen {
            Some(addr) => {
                let bind = |source| NodeError::MetricsBind { addr, source };
                let listener = tokio::net::TcpListener::bind(addr).await.map_err(bind)?;
                let bound = listener.local_addr().map_err(bind)?;
                tracing::info!(addr = %bound, "serving metrics at /metrics");
                let task = tokio::spawn(crate::telemetry::prometheus::serve(listener, ctx.clone()));
                Some((task, bound))
            }
            None => None,
        };
        let background = crate::cluster::reconciler::spawn(ctx.clone());
        crate::agents::spawn_startup_probe(ctx.clone());
        if ctx.config.cluster.seeds.is_empty() && ctx.cluster.replicas() == 1 {
            // A single node forms its own cluster: be ready before returning, so the
            // first request does not meet an election.
            wait_hosting_all(&ctx).await?;
        }
        tracing::info!(node = ctx.node_id(), %listen_addr, "node started");
        Ok(NodeHandle {
            ctx,
            endpoint,
            host,
            accept,
            background,
            metrics,
        })
    }
}

/// Opens the store. In a replicated cluster, a store found damaged (e.g. after a crash
/// mid-write) is moved aside and the node starts empty: its peers re-seed it by
/// snapshot. With one replica there is no other copy, so it is an error.
///
/// A store created here gets `new_generation`: a new Raft identity for this node (see
/// [`Store::generation`]).
///
/// Only damage moves a store aside. A store in use (its lock held: another node on the
/// same data dir) is waited for (see [`Store::open_with`]), then refused; one that cannot
/// be read for a reason outside it (permissions, no space, the disk) is refused and left
/// as it is: those may pass, or hit every replica at once (disks filling together), and
/// moving good stores aside would lose what they hold.
fn open_store(
    config: &NodeConfig,
    inline_blocking: bool,
    new_generation: u64,
) -> Result<Arc<Store>, NodeError> {
    let dir = store_dir(config);
    // sled recovers its log at open: long for a large store, and without end on some
    // damage (it spins on a file corrupted mid-way), so a node stuck here says where.
    tracing::info!(store = %dir.display(), "opening the store");
    let started = Instant::now();
    let mut wait = Store::lock_waiter(&dir);
    let store = open_store_waiting(config, inline_blocking, new_generation, &mut wait)?;
    tracing::info!(
        store = %dir.display(),
        ms = started.elapsed().as_millis(),
        generation = store.generation(),
        "store opened"
    );
    Ok(store)
}

/// [`open_store`], waiting for a held lock with `wait_for_lock` (see
/// [`Store::open_waiting`]).
fn open_store_waiting(
    config: &NodeConfig,
    inline_blocking: bool,
    new_generation: u64,
    wait_for_lock: &mut dyn FnMut() -> bool,
) -> Result<Arc<Store>, NodeError> {
    let dir = store_dir(config);
    let shards = config.cluster.shard_count.get();
    match Store::open_waiting(&dir, shards, inline_blocking, new_generation, wait_for_lock) {
        Ok(store) => Ok(store),
        Err(e @ StoreError::Damaged { .. }) if config.cluster.replicas.get() > 1 => {
            let stamp = crate::context::wall_clock_ms() / 1000;
            let aside = config.node.data_dir.join(format!("store.damaged-{stamp}"));
            tracing::error!(error = %e, moved_to = %aside.display(), "the store is damaged; moving it aside and rejoining as an empty replica (peers re-seed it)");
            std::fs::rename(&dir, &aside).map_err(|io| StoreError::Open {
                path: dir.clone(),
                message: format!("{e}; and moving it aside failed: {io}"),
            })?;
            Ok(Store::open_waiting(
                &dir,
                shards,
                inline_blocking,
                new_generation,
                wait_for_lock,
            )?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Where `config`'s node keeps its store.
fn store_dir(config: &NodeConfig) -> std::path::PathBuf {
    config.node.data_dir.join("store")
}

/// The generation of every store a simulated node creates.
const SIM_STORE_GENERATION: u64 = 1;

/// How long a single node may take to elect itself for every shard.
const SINGLE_NODE_READY_TIMEOUT_MS: u64 = 30_000;

async fn wait_hosting_all(ctx: &NodeContext) -> Result<(), NodeError> {
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(SINGLE_NODE_READY_TIMEOUT_MS);
    for group in ctx.cluster.groups() {
        let Some(mut hosting) = ctx.cluster.watch_hosting(group.shard) else {
            continue;
        };
        let ready = hosting.wait_for(|h| matches!(h, crate::cluster::Hosting::Active { .. }));
        match tokio::time::timeout_at(deadline, ready).await {
            Ok(Ok(_)) => {}
            _ => {
                return Err(NodeError::Cluster(format!(
                    "shard {} did not elect this node within {SINGLE_NODE_READY_TIMEOUT_MS} ms",
                    group.shard
                )));
            }
        }
    }
    Ok(())
}

impl NodeHandle {
    /// The client address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.ctx.listen_addr
    }

    /// Where `GET /metrics` is served (`telemetry.prometheus_listen`), when it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, addr)| *addr)
    }

    /// Resolves with the reason when the node hit a fault that stops it (fail-stop, see
    /// [`crate::shard::store::Store::fail_stop`]): the caller should exit.
    pub async fn failed(&self) -> String {
        self.ctx.store.failed().await
    }

    /// The node's shared context (counters, config, signer).
    pub fn context(&self) -> &Arc<NodeContext> {
        &self.ctx
    }

    /// Stops the node gracefully, in the order that keeps work:
    /// 1. every shard is handed over ([`crate::actors::shard_host::hand_over`]): running
    ///    turns end now as interrupted with what they streamed committed, agent processes
    ///    stop cleanly, no conversation activates again here;
    /// 2. leaderships go to other replicas (a replicated cluster), so requests move on
    ///    without waiting out an election timeout;
    /// 3. the node leaves gossip, then closes its endpoint, stops Raft and flushes.
    ///
    /// The endpoint stays open until then: the commits of steps 1–2 need the peers.
    pub async fn shutdown(self) {
        let started = Instant::now();
        // Others stop planning moves onto this node; its own reconciler stops planning.
        self.ctx.membership.update_meta(|m| m.draining = true);
        self.background.stop();
        let now = tokio::time::Instant::now();
        let handovers = self.ctx.cluster.groups().iter().map(|group| {
            crate::actors::shard_host::hand_over(
                &self.host,
                group.shard,
                crate::actors::shard_host::Handover::Until(now),
                "the node is shutting down",
            )
        });
        let handed = tokio::time::timeout(
            Duration::from_millis(SHUTDOWN_TIMEOUT_MS),
            futures::future::join_all(handovers),
        )
        .await;
        if handed.is_err() {
            tracing::warn!("conversations did not all stop in time; stopping the rest");
        }
        if self.ctx.cluster.replicas() > 1 {
            let bound = Duration::from_millis(
                self.ctx
                    .config
                    .cluster
                    .election_timeout_max_ms
                    .get()
                    .saturating_mul(HANDOFF_ELECTIONS),
            );
            crate::cluster::reconciler::hand_off_leaderships(&self.ctx, bound).await;
        }
        // Leave gossip so peers mark us down at once rather than by suspicion.
        self.background.leave().await;
        tracing::info!(
            node = self.ctx.node_id(),
            ms = started.elapsed().as_millis() as u64,
            "work handed over; closing"
        );
        self.endpoint.close(
            crate::gateway::close_code::SHUTDOWN.into(),
            b"node shutting down",
        );
        self.accept.abort();
        if let Some((metrics, _)) = &self.metrics {
            metrics.abort();
        }
        let timeout = Some(Duration::from_millis(SHUTDOWN_TIMEOUT_MS));
        if let Err(e) = self
            .host
            .stop_and_wait(Some("node shutting down".into()), timeout)
            .await
        {
            tracing::warn!(error = %e, "actors did not stop in time");
        }
        self.ctx
            .sandboxes
            .stop_all(Duration::from_millis(SHUTDOWN_TIMEOUT_MS))
            .await;
        self.ctx.cluster.shutdown().await;
        if let Err(e) = self.ctx.store.flush().await {
            tracing::error!(error = %e, "final flush failed");
        }
        self.endpoint.wait_idle().await;
        tracing::info!(node = self.ctx.node_id(), "node stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::ShardId;
    use std::num::NonZeroU8;

    /// A replicated node whose store another node holds (two nodes given one data dir)
    /// refuses to start: the store is never taken for damaged and moved aside from under
    /// the node using it.
    #[tokio::test]
    async fn a_store_in_use_is_refused_never_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = NodeConfig::dev(dir.path().to_owned(), "demo-agent".into(), Vec::new());
        config.cluster.replicas = NonZeroU8::new(3).unwrap();
        let held = open_store(&config, false, 1).unwrap();

        let err = open_store_waiting(&config, false, 2, &mut || false).unwrap_err();
        assert!(err.to_string().contains("is in use"), "{err}");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n.starts_with("store.damaged")),
            "nothing is moved aside: {names:?}"
        );
        held.db().insert(b"still-here", b"1").unwrap();
        drop(held);
        let mut wait = Store::lock_waiter(&store_dir(&config));
        let reopened = open_store_waiting(&config, false, 2, &mut wait).unwrap();
        assert!(reopened.db().get(b"still-here").unwrap().is_some());
        assert_eq!(
            reopened.generation(),
            1,
            "the first node's store, not a new one"
        );
    }

    /// Only a damaged store is moved aside (and a new one made, under a new generation);
    /// one that cannot be read for a reason outside it is refused and left as it is.
    #[tokio::test]
    async fn a_store_is_moved_aside_only_when_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = NodeConfig::dev(dir.path().to_owned(), "demo-agent".into(), Vec::new());
        config.cluster.replicas = NonZeroU8::new(3).unwrap();
        let store_path = store_dir(&config);
        let db_file = store_path.join("db");
        let open = |config: &NodeConfig, generation| {
            let mut wait = Store::lock_waiter(&store_path);
            open_store_waiting(config, false, generation, &mut wait)
        };
        let aside = || {
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| {
                    let name = e.as_ref().unwrap().file_name();
                    name.to_string_lossy().starts_with("store.damaged")
                })
                .count()
        };
        // A store with data, reopened once (so sled has a snapshot of its page table to
        // check its file against), then its file overwritten.
        let fill_and_damage = |config: &NodeConfig| {
            let store = open(config, 1).unwrap();
            let tree = store.shard_tree(ShardId(0)).unwrap();
            for i in 0..2_000_u32 {
                tree.insert(i.to_be_bytes(), vec![7; 300]).unwrap();
            }
            store.db().flush().unwrap();
            drop(store);
            drop(open(config, 1).unwrap());
            let len = std::fs::metadata(&db_file).unwrap().len();
            std::fs::write(&db_file, vec![0xAB; len as usize]).unwrap();
        };

        // Unreachable, not damaged: sled's file is not a file it can open (as root, the
        // tests cannot take a permission away; this is the same kind of I/O error).
        drop(open(&config, 1).unwrap());
        std::fs::remove_file(&db_file).unwrap();
        std::fs::create_dir(&db_file).unwrap();
        let err = open(&config, 2).unwrap_err();
        assert!(
            err.to_string().contains("the store was left as it is"),
            "{err}"
        );
        assert_eq!(aside(), 0, "nothing is moved aside");
        assert!(db_file.is_dir(), "the store is as it was");
        std::fs::remove_dir_all(&store_path).unwrap();

        // Damaged: sled finds its file corrupt.
        fill_and_damage(&config);
        let store = open(&config, 2).unwrap();
        assert_eq!(aside(), 1, "the damaged store is moved aside");
        assert_eq!(store.generation(), 3, "a new store (2, made odd)");
        drop(store);

        // With one replica there is no other copy: damage is an error.
        std::fs::remove_dir_all(&store_path).unwrap();
        config.cluster.replicas = NonZeroU8::MIN;
        fill_and_damage(&config);
        let err = open(&config, 4).unwrap_err();
        assert!(err.to_string().contains("is damaged"), "{err}");
        assert_eq!(aside(), 1, "nothing more is moved aside");
        assert!(db_file.is_file(), "the store is as it was");
    }
}
