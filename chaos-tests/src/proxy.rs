//! A UDP fault proxy between Shoal nodes, for chaos tests on loopback.
//!
//! Every node binds its real *listen* address (also the source of every packet it
//! sends) and *advertises* the address of its proxy, so all traffic to a node passes
//! that proxy. The harness switches faults at run time: one-way blocks, partitions,
//! isolation, seeded random loss, delay with jitter (which reorders).
//!
//! ```text
//!   node A (listen a) ──► P(B) proxy socket ──► U(a,B) upstream socket ──► node B (listen b)
//!   node A (listen a) ◄── P(B) proxy socket ◄── U(a,B) upstream socket ◄── node B (listen b)
//! ```
//!
//! For each distinct source `S` sending to `P(B)` the proxy binds an upstream socket
//! `U(S,B)` on `127.0.0.1:0`; what `B` sends back to `U(S,B)` leaves through `P(B)` to
//! `S`. So both directions of a connection `A` opened to `B` are judged at `P(B)`, and
//! traffic `B` opens to `A` passes `P(A)`. Rules name (from node, to node) pairs, where a
//! node's identity is its upstream address; a source that is no node is a *client*.
//!
//! # Layout
//! * [`Net`]: the handle (cheap `Clone`); owns every task through one `JoinSet`.
//! * [`Fault`]: one rule change, with [`Fault::describe`] for the harness log.
//! * `Rules`: the fault state and the seeded RNG; `Rules::judge` decides per datagram.
//! * `run_proxy` / `run_upstream_replies`: one task per proxy socket and per upstream
//!   socket; `run_timer`: one task delivering delayed datagrams from a bounded heap.
//!
//! Determinism is not promised (real sockets, real time), but one seeded RNG judges
//! every datagram, so a loss pattern repeats for the same packet order.

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

/// Upstream sockets one proxy keeps (one per distinct source); the idle-longest is
/// evicted when a new source arrives at the limit.
pub const UPSTREAMS_PER_PROXY_MAX: usize = 256;
/// Largest datagram received or forwarded; longer ones are truncated by the kernel.
pub const DATAGRAM_BYTES_MAX: usize = 65_535;
/// Datagrams waiting in the delay queue at once; more are dropped and counted.
pub const DELAYED_DATAGRAMS_MAX: usize = 4_096;
/// Payload bytes waiting in the delay queue at once; more are dropped and counted.
pub const DELAYED_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Nodes (so proxies) one [`Net`] holds.
pub const NODES_MAX: usize = 64;
/// Largest base delay accepted by [`Net::set_delay`], in milliseconds.
pub const DELAY_BASE_MS_MAX: u64 = 60_000;
/// Largest jitter accepted by [`Net::set_delay`], in milliseconds.
pub const DELAY_JITTER_MS_MAX: u64 = 60_000;

/// Why a proxy operation failed. No variant changes any state.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The proxy socket could not be bound or its address read.
    #[error(
        "cannot bind the proxy socket for node {node:?} on {listen}: {source}; pick a free loopback address or port 0"
    )]
    Bind {
        /// The node being added.
        node: String,
        /// The address asked for.
        listen: SocketAddr,
        /// The operating-system error.
        source: io::Error,
    },
    /// An address outside 127.0.0.0/8 was given; the proxy is for loopback only.
    #[error("address {0} is not a loopback address; use 127.0.0.1")]
    NotLoopback(SocketAddr),
    /// A node with this name exists already.
    #[error("node {0:?} is already registered; give every node a unique name")]
    DuplicateName(String),
    /// Another node already has this upstream address (node identity must be unique).
    #[error(
        "upstream {upstream} is already registered as node {existing:?}; each node needs its own listen address"
    )]
    DuplicateUpstream {
        /// The address given.
        upstream: SocketAddr,
        /// The node that has it.
        existing: String,
    },
    /// The upstream is a proxy address (or the proxy would listen on a node's upstream),
    /// which would loop datagrams forever.
    #[error(
        "address {0} is both a proxy and a node's upstream; give the node its real listen address"
    )]
    ProxyLoop(SocketAddr),
    /// [`NODES_MAX`] nodes exist already.
    #[error("cannot add node {0:?}: the net already has NODES_MAX ({NODES_MAX}) nodes")]
    TooManyNodes(String),
    /// A rule named a node that was never added.
    #[error("unknown node {0:?}; add it with Net::add_node first")]
    UnknownNode(String),
    /// A partition listed a node in two different groups.
    #[error("node {0:?} is in more than one partition group; list each node at most once")]
    NodeInTwoGroups(String),
    /// Loss above 100 %.
    #[error("loss {0}% is above 100%")]
    LossOutOfRange(u8),
    /// Delay above [`DELAY_BASE_MS_MAX`] or jitter above [`DELAY_JITTER_MS_MAX`].
    #[error(
        "delay {base_ms} ms + jitter {jitter_ms} ms is too long; the limits are {DELAY_BASE_MS_MAX} ms and {DELAY_JITTER_MS_MAX} ms"
    )]
    DelayOutOfRange {
        /// The base asked for, in milliseconds.
        base_ms: u64,
        /// The jitter asked for, in milliseconds.
        jitter_ms: u64,
    },
    /// [`Net::shutdown`] was called; create a new [`Net`].
    #[error("the net was shut down; create a new Net")]
    Shutdown,
}

/// One change to the fault rules, as applied by [`Net::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Drop node-to-node datagrams from `from` to `to` (one way).
    Block {
        /// Sending node.
        from: String,
        /// Receiving node.
        to: String,
    },
    /// Remove the one-way block from `from` to `to`, if any.
    Unblock {
        /// Sending node.
        from: String,
        /// Receiving node.
        to: String,
    },
    /// Block every pair of nodes in different groups, both ways. Adds to existing
    /// blocks; nodes in no group are not affected.
    Partition {
        /// Disjoint groups of node names.
        groups: Vec<Vec<String>>,
    },
    /// Block `node` from and to every node registered now, both ways.
    Isolate {
        /// The node cut off.
        node: String,
    },
    /// Remove all blocks, loss and delay (client-fault switch and queued datagrams stay).
    Heal,
    /// Drop this percentage of datagrams at random (seeded).
    Loss {
        /// 0..=100.
        percent: u8,
    },
    /// Delay each datagram by `base_ms` + uniform `[0, jitter_ms]` (so packets reorder).
    Delay {
        /// Fixed part, in milliseconds.
        base_ms: u64,
        /// Upper bound of the random part, in milliseconds.
        jitter_ms: u64,
    },
    /// Whether loss and delay also apply to client traffic (blocks never do).
    ClientFaults {
        /// On or off.
        enabled: bool,
    },
}

impl Fault {
    /// One-line text for a harness log, e.g. `partition {n1} | {n2,n3}`.
    pub fn describe(&self) -> String {
        match self {
            Fault::Block { from, to } => format!("block {from} -> {to}"),
            Fault::Unblock { from, to } => format!("unblock {from} -> {to}"),
            Fault::Partition { groups } => {
                let groups: Vec<String> = groups
                    .iter()
                    .map(|group| format!("{{{}}}", group.join(",")))
                    .collect();
                format!("partition {}", groups.join(" | "))
            }
            Fault::Isolate { node } => format!("isolate {node}"),
            Fault::Heal => "heal".to_owned(),
            Fault::Loss { percent } => format!("loss {percent}%"),
            Fault::Delay { base_ms, jitter_ms } => {
                format!("delay {base_ms}ms + jitter 0..={jitter_ms}ms")
            }
            Fault::ClientFaults { enabled } => {
                format!("client faults {}", if *enabled { "on" } else { "off" })
            }
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Counters over all proxies of a [`Net`] since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams sent on, immediately or after their delay.
    pub forwarded: u64,
    /// Datagrams dropped by a block, partition or isolation.
    pub dropped_blocked: u64,
    /// Datagrams dropped by random loss.
    pub dropped_loss: u64,
    /// Datagrams put in the delay queue.
    pub delayed: u64,
    /// Datagrams dropped because the delay queue was full.
    pub dropped_queue_full: u64,
    /// Datagrams lost because a send or an upstream bind failed.
    pub send_failed: u64,
    /// Upstream sockets closed because a proxy reached [`UPSTREAMS_PER_PROXY_MAX`].
    pub upstreams_evicted: u64,
}

/// A set of fault-injecting UDP proxies, one per node, and their rules.
///
/// Cheap to clone; the tasks stop at [`Net::shutdown`] or when the last clone drops.
#[derive(Clone)]
pub struct Net {
    handle: Arc<Handle>,
}

impl fmt::Debug for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Net")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Net {
    /// A net with no nodes, whose loss and jitter draws come from an RNG seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        let shared = Shared {
            epoch: Instant::now(),
            rules: Mutex::new(Rules::new(seed)),
            counters: Counters::default(),
            tick: AtomicU64::new(0),
            delayed: Mutex::new(DelayQueue::default()),
            delayed_wake: Notify::new(),
            tasks: Mutex::new(Some(Tasks {
                set: JoinSet::new(),
                timer_spawned: false,
            })),
        };
        Net {
            handle: Arc::new(Handle {
                shared: Arc::new(shared),
            }),
        }
    }

    /// Add node `name` whose real listen address is `upstream`: bind its proxy on
    /// `127.0.0.1:0` and return the proxy address (the one the node advertises).
    pub async fn add_node(
        &self,
        name: &str,
        upstream: SocketAddr,
    ) -> Result<SocketAddr, ProxyError> {
        self.add_node_at(name, upstream, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
    }

    /// Like [`Net::add_node`], with the proxy bound on `listen` (a loopback address).
    pub async fn add_node_at(
        &self,
        name: &str,
        upstream: SocketAddr,
        listen: SocketAddr,
    ) -> Result<SocketAddr, ProxyError> {
        for address in [upstream, listen] {
            if !address.ip().is_loopback() {
                return Err(ProxyError::NotLoopback(address));
            }
        }
        let shared = &self.handle.shared;
        if lock(&shared.tasks).is_none() {
            return Err(ProxyError::Shutdown);
        }
        let bind_error = |source| ProxyError::Bind {
            node: name.to_owned(),
            listen,
            source,
        };
        let socket = UdpSocket::bind(listen).await.map_err(bind_error)?;
        let proxy = socket.local_addr().map_err(bind_error)?;
        lock(&shared.rules).add_node(name, upstream, proxy)?;
        let task = run_proxy(Arc::clone(shared), Arc::new(socket), upstream);
        if let Err(error) = shared.spawn_proxy(task) {
            lock(&shared.rules).remove_node(name);
            return Err(error);
        }
        info!(node = name, %upstream, %proxy, "proxy added");
        Ok(proxy)
    }

    /// The proxy (advertised) address of node `name`, if it was added.
    pub fn proxy_addr(&self, name: &str) -> Option<SocketAddr> {
        lock(&self.handle.shared.rules)
            .nodes
            .get(name)
            .map(|node| node.proxy)
    }

    /// Apply one rule change and log it with the time since the net was created.
    pub fn apply(&self, fault: &Fault) -> Result<(), ProxyError> {
        let shared = &self.handle.shared;
        lock(&shared.rules).apply(fault)?;
        let elapsed_s = shared.epoch.elapsed().as_secs_f64();
        info!("t={elapsed_s:.1}s {}", fault.describe());
        Ok(())
    }

    /// Drop node-to-node datagrams from `from` to `to` (one way).
    pub fn block(&self, from: &str, to: &str) -> Result<(), ProxyError> {
        self.apply(&Fault::Block {
            from: from.to_owned(),
            to: to.to_owned(),
        })
    }

    /// Remove the one-way block from `from` to `to`, if any.
    pub fn unblock(&self, from: &str, to: &str) -> Result<(), ProxyError> {
        self.apply(&Fault::Unblock {
            from: from.to_owned(),
            to: to.to_owned(),
        })
    }

    /// Block every pair of nodes in different `groups`, both ways (adds to existing blocks).
    pub fn partition(&self, groups: &[&[&str]]) -> Result<(), ProxyError> {
        let groups = groups
            .iter()
            .map(|group| group.iter().map(|name| (*name).to_owned()).collect())
            .collect();
        self.apply(&Fault::Partition { groups })
    }

    /// Block `name` from and to every node registered now, both ways.
    pub fn isolate(&self, name: &str) -> Result<(), ProxyError> {
        self.apply(&Fault::Isolate {
            node: name.to_owned(),
        })
    }

    /// Remove all blocks, loss and delay.
    pub fn heal(&self) {
        let healed = self.apply(&Fault::Heal);
        assert!(healed.is_ok(), "heal cannot fail: {healed:?}");
    }

    /// Drop `percent` % of datagrams at random (seeded); 0 turns loss off.
    pub fn set_loss(&self, percent: u8) -> Result<(), ProxyError> {
        self.apply(&Fault::Loss { percent })
    }

    /// Delay each datagram by `base_ms` + uniform `[0, jitter_ms]`; `(0, 0)` turns it off.
    pub fn set_delay(&self, base_ms: u64, jitter_ms: u64) -> Result<(), ProxyError> {
        self.apply(&Fault::Delay { base_ms, jitter_ms })
    }

    /// Whether loss and delay also apply to client traffic (blocks never do).
    pub fn set_client_faults(&self, enabled: bool) {
        let applied = self.apply(&Fault::ClientFaults { enabled });
        assert!(applied.is_ok(), "client faults cannot fail: {applied:?}");
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> NetStats {
        self.handle.shared.counters.snapshot()
    }

    /// Wait until `done` holds for the counters and return them. Never returns if it
    /// never holds (e.g. after [`Net::shutdown`]): wrap it in a timeout.
    pub async fn wait_for_stats(&self, done: impl Fn(&NetStats) -> bool) -> NetStats {
        let counters = &self.handle.shared.counters;
        loop {
            let changed = counters.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so a change after it still wakes us.
            changed.as_mut().enable();
            let stats = counters.snapshot();
            if done(&stats) {
                return stats;
            }
            changed.await;
        }
    }

    /// Stop every task, drop queued datagrams and close every socket; returns once all
    /// sockets are closed. Later [`Net::add_node`] calls fail with [`ProxyError::Shutdown`].
    pub async fn shutdown(&self) {
        let shared = &self.handle.shared;
        let tasks = lock(&shared.tasks).take();
        if let Some(mut tasks) = tasks {
            tasks.set.shutdown().await;
        }
        lock(&shared.delayed).clear();
    }
}

/// Owned by the [`Net`] clones only (never by tasks), so its drop stops the tasks.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Dropping a JoinSet aborts its tasks; they then release their sockets.
        let tasks = lock(&self.shared.tasks).take();
        drop(tasks);
        lock(&self.shared.delayed).clear();
    }
}

/// State shared by the handle and every task.
struct Shared {
    /// When the net was created, for log timestamps.
    epoch: Instant,
    rules: Mutex<Rules>,
    counters: Counters,
    /// Logical clock for least-recently-used eviction of upstream sockets.
    tick: AtomicU64,
    delayed: Mutex<DelayQueue>,
    /// Wakes the timer task when a datagram is queued.
    delayed_wake: Notify,
    /// `None` once shut down.
    tasks: Mutex<Option<Tasks>>,
}

struct Tasks {
    set: JoinSet<()>,
    timer_spawned: bool,
}

impl Shared {
    /// Spawn a proxy task, and the timer task with the first one.
    fn spawn_proxy(
        self: &Arc<Self>,
        task: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ProxyError> {
        let mut tasks = lock(&self.tasks);
        let tasks = tasks.as_mut().ok_or(ProxyError::Shutdown)?;
        if !tasks.timer_spawned {
            tasks.set.spawn(run_timer(Arc::clone(self)));
            tasks.timer_spawned = true;
        }
        reap(&mut tasks.set);
        tasks.set.spawn(task);
        Ok(())
    }

    /// Spawn a task owned by the net; `None` once shut down.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> Option<AbortHandle> {
        let mut tasks = lock(&self.tasks);
        let tasks = tasks.as_mut()?;
        reap(&mut tasks.set);
        Some(tasks.set.spawn(task))
    }

    fn next_tick(&self) -> u64 {
        self.tick.fetch_add(1, Ordering::Relaxed)
    }

    /// Judge a datagram from `from` to `to` and send it on `socket` to `to`, now or later.
    async fn route(
        &self,
        from: SocketAddr,
        to: SocketAddr,
        socket: &Arc<UdpSocket>,
        payload: &[u8],
    ) {
        let verdict = lock(&self.rules).judge(from, to);
        match verdict {
            Verdict::Forward => self.send(socket, to, payload).await,
            Verdict::Delay(delay) => self.enqueue(Delayed {
                due: Instant::now() + delay,
                seq: 0,
                socket: Arc::clone(socket),
                dest: to,
                payload: payload.to_vec(),
            }),
            Verdict::DropBlocked => self.counters.bump(Counter::DroppedBlocked),
            Verdict::DropLoss => self.counters.bump(Counter::DroppedLoss),
        }
    }

    async fn send(&self, socket: &UdpSocket, dest: SocketAddr, payload: &[u8]) {
        match socket.send_to(payload, dest).await {
            Ok(_) => self.counters.bump(Counter::Forwarded),
            Err(error) => {
                debug!(%dest, %error, "proxy send failed");
                self.counters.bump(Counter::SendFailed);
            }
        }
    }

    fn enqueue(&self, delayed: Delayed) {
        let queued = lock(&self.delayed).push(delayed);
        if queued {
            self.counters.bump(Counter::Delayed);
            self.delayed_wake.notify_one();
        } else {
            self.counters.bump(Counter::DroppedQueueFull);
        }
    }
}

/// Drop finished tasks' results so the set only holds live tasks.
fn reap(set: &mut JoinSet<()>) {
    while let Some(result) = set.try_join_next() {
        if let Err(error) = result
            && error.is_panic()
        {
            error!(%error, "a proxy task panicked");
        }
    }
}

/// Which counter to bump.
#[derive(Debug, Clone, Copy)]
enum Counter {
    Forwarded,
    DroppedBlocked,
    DroppedLoss,
    Delayed,
    DroppedQueueFull,
    SendFailed,
    UpstreamsEvicted,
}

#[derive(Default)]
struct Counters {
    /// Woken after every change, for [`Net::wait_for_stats`].
    changed: Notify,
    forwarded: AtomicU64,
    dropped_blocked: AtomicU64,
    dropped_loss: AtomicU64,
    delayed: AtomicU64,
    dropped_queue_full: AtomicU64,
    send_failed: AtomicU64,
    upstreams_evicted: AtomicU64,
}

impl Counters {
    fn bump(&self, counter: Counter) {
        let counter = match counter {
            Counter::Forwarded => &self.forwarded,
            Counter::DroppedBlocked => &self.dropped_blocked,
            Counter::DroppedLoss => &self.dropped_loss,
            Counter::Delayed => &self.delayed,
            Counter::DroppedQueueFull => &self.dropped_queue_full,
            Counter::SendFailed => &self.send_failed,
            Counter::UpstreamsEvicted => &self.upstreams_evicted,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    fn snapshot(&self) -> NetStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        NetStats {
            forwarded: read(&self.forwarded),
            dropped_blocked: read(&self.dropped_blocked),
            dropped_loss: read(&self.dropped_loss),
            delayed: read(&self.delayed),
            dropped_queue_full: read(&self.dropped_queue_full),
            send_failed: read(&self.send_failed),
            upstreams_evicted: read(&self.upstreams_evicted),
        }
    }
}

/// A registered node.
struct NodeInfo {
    upstream: SocketAddr,
    proxy: SocketAddr,
}

/// What happens to one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Forward,
    Delay(Duration),
    DropBlocked,
    DropLoss,
}

/// The fault rules. Blocks are kept as (from upstream, to upstream) pairs so judging a
/// datagram is two map look-ups.
struct Rules {
    nodes: BTreeMap<String, NodeInfo>,
    names_by_upstream: HashMap<SocketAddr, String>,
    blocked: BTreeSet<(SocketAddr, SocketAddr)>,
    loss_percent: u8,
    delay_base_ms: u64,
    delay_jitter_ms: u64,
    client_faults: bool,
    rng: StdRng,
}

impl Rules {
    fn new(seed: u64) -> Self {
        Rules {
            nodes: BTreeMap::new(),
            names_by_upstream: HashMap::new(),
            blocked: BTreeSet::new(),
            loss_percent: 0,
            delay_base_ms: 0,
            delay_jitter_ms: 0,
            client_faults: false,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    fn add_node(
        &mut self,
        name: &str,
        upstream: SocketAddr,
        proxy: SocketAddr,
    ) -> Result<(), ProxyError> {
        if self.nodes.contains_key(name) {
            return Err(ProxyError::DuplicateName(name.to_owned()));
        }
        if let Some(existing) = self.names_by_upstream.get(&upstream) {
            return Err(ProxyError::DuplicateUpstream {
                upstream,
                existing: existing.clone(),
            });
        }
        if self.nodes.len() >= NODES_MAX {
            return Err(ProxyError::TooManyNodes(name.to_owned()));
        }
        if upstream == proxy || self.nodes.values().any(|node| node.proxy == upstream) {
            return Err(ProxyError::ProxyLoop(upstream));
        }
        if self.names_by_upstream.contains_key(&proxy) {
            return Err(ProxyError::ProxyLoop(proxy));
        }
        self.nodes
            .insert(name.to_owned(), NodeInfo { upstream, proxy });
        self.names_by_upstream.insert(upstream, name.to_owned());
        Ok(())
    }

    fn remove_node(&mut self, name: &str) {
        if let Some(node) = self.nodes.remove(name) {
            self.names_by_upstream.remove(&node.upstream);
        }
    }

    fn upstream_of(&self, name: &str) -> Result<SocketAddr, ProxyError> {
        self.nodes
            .get(name)
            .map(|node| node.upstream)
            .ok_or_else(|| ProxyError::UnknownNode(name.to_owned()))
    }

    /// Validate, then change; on error nothing changed.
    fn apply(&mut self, fault: &Fault) -> Result<(), ProxyError> {
        match fault {
            Fault::Block { from, to } => {
                let pair = (self.upstream_of(from)?, self.upstream_of(to)?);
                self.blocked.insert(pair);
            }
            Fault::Unblock { from, to } => {
                let pair = (self.upstream_of(from)?, self.upstream_of(to)?);
                self.blocked.remove(&pair);
            }
            Fault::Partition { groups } => {
                let mut group_of: BTreeMap<&str, usize> = BTreeMap::new();
                let mut addresses: Vec<Vec<SocketAddr>> = Vec::with_capacity(groups.len());
                for (index, group) in groups.iter().enumerate() {
                    let mut group_addresses = Vec::with_capacity(group.len());
                    for name in group {
                        group_addresses.push(self.upstream_of(name)?);
                        if let Some(other) = group_of.insert(name, index)
                            && other != index
                        {
                            return Err(ProxyError::NodeInTwoGroups(name.clone()));
                        }
                    }
                    addresses.push(group_addresses);
                }
                for (index, group) in addresses.iter().enumerate() {
                    for other in &addresses[index + 1..] {
                        for &a in group {
                            for &b in other {
                                self.blocked.insert((a, b));
                                self.blocked.insert((b, a));
                            }
                        }
                    }
                }
            }
            Fault::Isolate { node } => {
                let isolated = self.upstream_of(node)?;
                for other in self.nodes.values() {
                    if other.upstream != isolated {
                        self.blocked.insert((isolated, other.upstream));
                        self.blocked.insert((other.upstream, isolated));
                    }
                }
            }
            Fault::Heal => {
                self.blocked.clear();
                self.loss_percent = 0;
                self.delay_base_ms = 0;
                self.delay_jitter_ms = 0;
            }
            Fault::Loss { percent } => {
                if *percent > 100 {
                    return Err(ProxyError::LossOutOfRange(*percent));
                }
                self.loss_percent = *percent;
            }
            Fault::Delay { base_ms, jitter_ms } => {
                if *base_ms > DELAY_BASE_MS_MAX || *jitter_ms > DELAY_JITTER_MS_MAX {
                    return Err(ProxyError::DelayOutOfRange {
                        base_ms: *base_ms,
                        jitter_ms: *jitter_ms,
                    });
                }
                self.delay_base_ms = *base_ms;
                self.delay_jitter_ms = *jitter_ms;
            }
            Fault::ClientFaults { enabled } => self.client_faults = *enabled,
        }
        Ok(())
    }

    /// Decide the fate of one datagram from `from` to `to` (both real addresses).
    /// Draws from the RNG only when loss or jitter is on and applies.
    fn judge(&mut self, from: SocketAddr, to: SocketAddr) -> Verdict {
        let node_to_node =
            self.names_by_upstream.contains_key(&from) && self.names_by_upstream.contains_key(&to);
        if node_to_node && self.blocked.contains(&(from, to)) {
            return Verdict::DropBlocked;
        }
        if !node_to_node && !self.client_faults {
            return Verdict::Forward;
        }
        if self.loss_percent > 0 && self.rng.random_range(0..100u8) < self.loss_percent {
            return Verdict::DropLoss;
        }
        if self.delay_base_ms == 0 && self.delay_jitter_ms == 0 {
            return Verdict::Forward;
        }
        let jitter_ms = if self.delay_jitter_ms > 0 {
            self.rng.random_range(0..=self.delay_jitter_ms)
        } else {
            0
        };
        Verdict::Delay(Duration::from_millis(self.delay_base_ms + jitter_ms))
    }
}

/// A datagram waiting for its delivery time.
struct Delayed {
    due: Instant,
    /// Insertion order, so equal due times keep their order.
    seq: u64,
    socket: Arc<UdpSocket>,
    dest: SocketAddr,
    payload: Vec<u8>,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}

impl Eq for Delayed {}

impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// The bounded delay queue, earliest first.
#[derive(Default)]
struct DelayQueue {
    heap: BinaryHeap<Reverse<Delayed>>,
    payload_bytes: usize,
    next_seq: u64,
}

impl DelayQueue {
    /// Queue `delayed`; false (and dropped) when a limit would be exceeded.
    fn push(&mut self, mut delayed: Delayed) -> bool {
        if self.heap.len() >= DELAYED_DATAGRAMS_MAX
            || self.payload_bytes + delayed.payload.len() > DELAYED_BYTES_MAX
        {
            return false;
        }
        delayed.seq = self.next_seq;
        self.next_seq += 1;
        self.payload_bytes += delayed.payload.len();
        self.heap.push(Reverse(delayed));
        true
    }

    /// Take every datagram due at `now`; also return the next due time, if any.
    fn pop_due(&mut self, now: Instant) -> (Vec<Delayed>, Option<Instant>) {
        let mut due = Vec::new();
        while let Some(Reverse(first)) = self.heap.peek() {
            if first.due > now {
                return (due, Some(first.due));
            }
            if let Some(Reverse(item)) = self.heap.pop() {
                self.payload_bytes -= item.payload.len();
                due.push(item);
            }
        }
        (due, None)
    }

    fn clear(&mut self) {
        self.heap.clear();
        self.payload_bytes = 0;
    }
}

/// Deliver delayed datagrams when they are due.
async fn run_timer(shared: Arc<Shared>) {
    loop {
        let (due, next) = lock(&shared.delayed).pop_due(Instant::now());
        for item in due {
            shared.send(&item.socket, item.dest, &item.payload).await;
        }
        match next {
            Some(deadline) => {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => {}
                    () = shared.delayed_wake.notified() => {}
                }
            }
            None => shared.delayed_wake.notified().await,
        }
    }
}

/// One upstream socket `U(S,B)` of a proxy.
struct Upstream {
    socket: Arc<UdpSocket>,
    /// Value of `Shared::tick` at its last datagram, either way.
    last_used: Arc<AtomicU64>,
    replies: AbortHandle,
}

/// Receive on proxy socket `P(B)` and forward each datagram to `upstream` (B's real
/// address) through the upstream socket of its source.
async fn run_proxy(shared: Arc<Shared>, socket: Arc<UdpSocket>, upstream: SocketAddr) {
    let mut buffer = vec![0u8; DATAGRAM_BYTES_MAX];
    let mut upstreams: HashMap<SocketAddr, Upstream> = HashMap::new();
    loop {
        let (len, source) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) if is_transient(&error) => continue,
            Err(error) => {
                error!(%upstream, %error, "proxy socket failed; this proxy stops forwarding");
                return;
            }
        };
        let Some(up) = upstream_for(&shared, &socket, &mut upstreams, source, upstream).await
        else {
            shared.counters.bump(Counter::SendFailed);
            continue;
        };
        up.last_used.store(shared.next_tick(), Ordering::Relaxed);
        let up_socket = Arc::clone(&up.socket);
        shared
            .route(source, upstream, &up_socket, &buffer[..len])
            .await;
    }
}

/// The upstream socket for `source`, created (evicting the idle-longest at the limit)
/// if needed; `None` when it cannot be bound or the net is shutting down.
async fn upstream_for<'a>(
    shared: &Arc<Shared>,
    proxy_socket: &Arc<UdpSocket>,
    upstreams: &'a mut HashMap<SocketAddr, Upstream>,
    source: SocketAddr,
    upstream: SocketAddr,
) -> Option<&'a Upstream> {
    if !upstreams.contains_key(&source) {
        if upstreams.len() >= UPSTREAMS_PER_PROXY_MAX {
            let idle_longest = upstreams
                .iter()
                .min_by_key(|(_, up)| up.last_used.load(Ordering::Relaxed))
                .map(|(address, _)| *address);
            if let Some(evicted) = idle_longest.and_then(|address| upstreams.remove(&address)) {
                evicted.replies.abort();
                shared.counters.bump(Counter::UpstreamsEvicted);
            }
        }
        let socket = match UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await {
            Ok(socket) => Arc::new(socket),
            Err(error) => {
                warn!(%source, %upstream, %error, "cannot bind an upstream socket; datagram dropped");
                return None;
            }
        };
        let last_used = Arc::new(AtomicU64::new(shared.next_tick()));
        let replies = shared.spawn(run_upstream_replies(
            Arc::clone(shared),
            Arc::clone(&socket),
            Arc::clone(proxy_socket),
            Arc::clone(&last_used),
            upstream,
            source,
        ))?;
        upstreams.insert(
            source,
            Upstream {
                socket,
                last_used,
                replies,
            },
        );
    }
    upstreams.get(&source)
}

/// Receive what B (`upstream`) sends to upstream socket `U(S,B)` and send it to `source`
/// from the proxy socket.
async fn run_upstream_replies(
    shared: Arc<Shared>,
    socket: Arc<UdpSocket>,
    proxy_socket: Arc<UdpSocket>,
    last_used: Arc<AtomicU64>,
    upstream: SocketAddr,
    source: SocketAddr,
) {
    let mut buffer = vec![0u8; DATAGRAM_BYTES_MAX];
    loop {
        let (len, from) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) if is_transient(&error) => continue,
            Err(error) => {
                warn!(%upstream, %source, %error, "upstream socket failed; replies to this source stop");
                return;
            }
        };
        if from != upstream {
            debug!(%from, %upstream, "stray datagram on an upstream socket ignored");
            continue;
        }
        last_used.store(shared.next_tick(), Ordering::Relaxed);
        shared
            .route(upstream, source, &proxy_socket, &buffer[..len])
            .await;
    }
}

/// Errors a UDP receive can report for an earlier datagram (ICMP), or a signal.
fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Lock ignoring poison: every critical section leaves its data consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
