//! The Shoal node: actors, storage, transport, agents.
//!
//! # Layout
//! * [`cli`]: the `shoal-node` command line.
//! * [`node`]: starting and stopping a node ([`Node::start`], [`NodeHandle`]).
//! * [`dev`]: `shoal-node dev`: embedded defaults, dev certificates, the profile file.
//! * [`context`]: what every part shares (config, store, signer, counters, clock).
//! * [`gateway`]: the QUIC endpoint, handshake and the client/admin request handlers.
//! * [`actors`]: the supervision tree: shard host → conversation → agent session.
//! * [`shard`]: the deterministic shard state machine and the sled store under it.
//! * [`agent_process`]: one ACP agent child process and its session.
//! * [`agents`]: the agent registry: built-ins and configured agents, enabled at run
//!   time, probed; the guards on creating conversations and starting agents.
//! * [`security`]: TLS material and bearer tokens.
//! * [`telemetry`]: logs, OpenTelemetry traces and metrics, the Prometheus endpoint.
//! * [`sharing`]: who may do what to a conversation (owner, viewer and editor grants).
//! * [`cluster`]: Raft groups per shard, the leader lease, routing, membership, placement.
//! * [`raft`]: openraft storage (sled) and network (peer ALPN).
//! * [`peer`]: the peer protocol and pooled peer connections.
//! * [`agent_slots`]: the node's agent-process cap, kept atomically, LRU eviction of
//!   idle agents.
//! * [`fence`]: per-shard fences that kill agent processes when the lease is lost.
//! * [`watchdog`]: the separate process that enforces the lease on agents while the
//!   node cannot (paused).
//! * [`workspace`]: workspace sandboxes: the tree on disk, its snapshots (chunks in the
//!   blob store, manifests through Raft) and their restore on a new host.
//! * [`seam`]: simulation hooks (seeded RNG, clock, inline flush, in-process agents); off
//!   by default.

pub mod actors;
pub mod agent_process;
pub mod agent_slots;
pub mod agents;
pub mod cli;
pub mod cluster;
pub mod context;
pub mod dev;
pub mod fence;
pub mod gateway;
pub mod node;
pub mod peer;
pub mod raft;
pub mod seam;
pub mod security;
pub mod shard;
pub mod sharing;
pub mod telemetry;
pub mod watchdog;
pub mod workspace;

pub use node::{Node, NodeError, NodeHandle};
