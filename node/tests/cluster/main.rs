//! A real 3-node cluster on loopback: three `shoal-node start` processes with cluster
//! certificates, Raft per shard, gossip over QUIC datagrams. Faults are real: kill -9,
//! SIGSTOP (a leader cut off from its peers), a deleted store.
//!
//! * `admin`: actors listed cluster-wide, turns cancelled and actors evicted anywhere;
//! * `harness`: the cluster and the waits the tests share;
//! * `faults`: kill -9, partitions, pauses, stalled disks, lost stores, oversized turns;
//! * `moves`: leadership moves, drain, SIGTERM;
//! * `operate`: `shoal-node up` and `config check`;
//! * `pins`: an operator moves a shard's replica and leadership by hand;
//! * `queue`: queued messages survive a failover;
//! * `quiet`: idle shards stop heartbeating, keep their lease and still fail over;
//! * `sharing`: grants and forks that cross to another node's shard;
//! * `telemetry`: one trace across two nodes in a real OTLP receiver;
//! * `workspace`: the workspace and the agent's memory follow a failover.

mod admin;
#[path = "../common/mod.rs"]
mod common;
mod faults;
mod harness;
mod moves;
mod operate;
mod pins;
mod queue;
mod quiet;
mod sharing;
mod telemetry;
mod workspace;
