//! The node's actors (ractor) and their supervision tree.
//!
//! ```text
//! Gateway (root; owns the QUIC accept loop)
//!  └─ ShardHost                      one per node; activates conversations on demand
//!      └─ ConversationActor (1 per active conversation)   broadcast ─▶ followers
//!          └─ AgentSessionActor (1 per conversation with a live agent) ─stdio─▶ ACP agent
//! ```
//!
//! * [`shard_host`]: registry of active conversation actors, activation and eviction.
//! * [`conversation`]: turns, streaming, checkpoints, followers, passivation.
//! * [`follow`]: sans-I/O follower bookkeeping: sequence numbers, replay buffer, sinks.
//! * [`agent_session`]: owns one ACP agent process and orders its updates per turn.
//!
//! Every supervisor overrides `handle_supervisor_evt` (ractor's default would stop the
//! supervisor when any child stops) and says what it does when a child dies.

pub mod agent_session;
pub mod conversation;
pub mod follow;
pub mod shard_host;
