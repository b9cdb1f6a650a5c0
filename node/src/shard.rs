//! Shards: the durable state of workspaces and conversations.
//!
//! * [`state_machine`]: the deterministic, sans-I/O core: a [`state_machine::ShardCommand`]
//!   plus what it reads in, writes and an outcome out.
//! * [`parts_delta`]: deltas of a running assistant message (checkpoints cost O(n)).
//! * [`store`]: sled underneath: one tree per shard, group-committed flushes (no sled
//!   batches: [`crate::raft::storage`] makes an apply atomic with a redo record).
//!
//! Actors never write sled: they propose commands through [`store::Store::propose`],
//! which applies them locally in single-node mode. Raft replication replaces that one
//! function later without touching the actors.

pub mod parts_delta;
pub mod state_machine;
pub mod store;
