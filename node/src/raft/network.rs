//! Raft RPCs of one shard group over the peer ALPN.

use super::heartbeats::{Heartbeat, Heartbeats};
use super::{PeerNode, TypeConfig};
use crate::peer::{PeerClient, PeerError, PeerLane, PeerRequest, RaftReply, RaftRpc};
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use shoal_protocol::frame::{FrameError, encode_frame};
use std::net::SocketAddr;
use std::sync::Arc;

type RpcErr<E = openraft::error::Infallible> = RPCError<u64, PeerNode, RaftError<u64, E>>;

/// Makes one [`ShardNetwork`] per target node.
#[derive(Clone)]
pub struct ShardNetworkFactory {
    /// The shard.
    pub shard: u16,
    /// The peer pool.
    pub peers: Arc<PeerClient>,
    /// Where empty append-entries (heartbeats) wait for others to the same node.
    pub heartbeats: Arc<Heartbeats>,
}

impl RaftNetworkFactory<TypeConfig> for ShardNetworkFactory {
    type Network = ShardNetwork;

    async fn new_client(&mut self, target: u64, node: &PeerNode) -> Self::Network {
        ShardNetwork {
            shard: self.shard,
            target,
            node: node.clone(),
            addr: node.addr.parse().ok(),
            peers: self.peers.clone(),
            heartbeats: self.heartbeats.clone(),
        }
    }
}

/// Raft RPCs to one node for one shard.
pub struct ShardNetwork {
    shard: u16,
    target: u64,
    node: PeerNode,
    addr: Option<SocketAddr>,
    peers: Arc<PeerClient>,
    heartbeats: Arc<Heartbeats>,
}

fn unreachable<E: std::error::Error>(e: PeerError) -> RPCError<u64, PeerNode, E> {
    match e {
        PeerError::Unreachable { .. } | PeerError::Timeout { .. } => {
            RPCError::Unreachable(Unreachable::new(&e))
        }
        PeerError::Call { .. } => RPCError::Network(NetworkError::new(&e)),
    }
}

impl ShardNetwork {
    async fn call<E: std::error::Error>(
        &self,
        rpc: RaftRpc,
        option: &RPCOption,
    ) -> Result<RaftReply, RPCError<u64, PeerNode, E>> {
        let frame = self.frame(rpc).map_err(|e| {
            let e = std::io::Error::other(format!("cannot encode a Raft RPC: {e}"));
            RPCError::Network(NetworkError::new(&e))
        })?;
        self.send(&frame, option).await
    }

    /// `rpc` as one encoded peer frame.
    fn frame(&self, rpc: RaftRpc) -> Result<bytes::Bytes, FrameError> {
        encode_frame(&PeerRequest::Raft {
            shard: self.shard,
            target: self.target,
            rpc,
        })
    }

    async fn send<E: std::error::Error>(
        &self,
        frame: &[u8],
        option: &RPCOption,
    ) -> Result<RaftReply, RPCError<u64, PeerNode, E>> {
        let Some(addr) = self.addr else {
            let e = std::io::Error::other(format!("bad peer address `{}`", self.node.addr));
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        };
        self.peers
            .call_frame(PeerLane::Raft, addr, frame, option.hard_ttl())
            .await
            .map_err(unreachable)
    }

    /// An empty append-entries, sent with the other shards' heartbeats to this node.
    async fn heartbeat<E: std::error::Error>(
        &self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: &RPCOption,
    ) -> Result<RaftReply, RPCError<u64, PeerNode, E>> {
        let Some(addr) = self.addr else {
            let e = std::io::Error::other(format!("bad peer address `{}`", self.node.addr));
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        };
        let beat = Heartbeat {
            shard: self.shard,
            target: self.target,
            rpc,
        };
        self.heartbeats
            .send(addr, beat, option.hard_ttl())
            .await
            .map_err(unreachable)
    }

    fn unexpected<E: std::error::Error>(&self, reply: RaftReply) -> RPCError<u64, PeerNode, E> {
        let e = std::io::Error::other(format!(
            "node {} answered a shard {} RPC with {reply:?}",
            self.node, self.shard
        ));
        RPCError::Network(NetworkError::new(&e))
    }

    fn remote<E: std::error::Error>(&self, e: E) -> RPCError<u64, PeerNode, E> {
        RPCError::RemoteError(RemoteError::new_with_node(
            self.target,
            self.node.clone(),
            e,
        ))
    }
}

impl RaftNetwork<TypeConfig> for ShardNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RpcErr> {
        if rpc.entries.is_empty() {
            return match self.heartbeat(rpc, &option).await? {
                RaftReply::AppendEntries(Ok(resp)) => Ok(resp),
                RaftReply::AppendEntries(Err(e)) => Err(self.remote(e)),
                other => Err(self.unexpected(other)),
            };
        }
        // Encoded once, here: a batch too large for one frame is split by openraft (one
        // entry always fits: entries are bounded when proposed, `ENTRY_BYTES_MAX`).
        let entries = rpc.entries.len();
        let frame = match self.frame(RaftRpc::AppendEntries(rpc)) {
            Ok(frame) => frame,
            Err(FrameError::TooLarge { .. }) if entries > 1 => {
                let hint = (entries / 2).max(1) as u64;
                return Err(RPCError::PayloadTooLarge(
                    PayloadTooLarge::new_entries_hint(hint),
                ));
            }
            Err(e) => {
                let e = std::io::Error::other(format!("cannot encode append-entries: {e}"));
                return Err(RPCError::Network(NetworkError::new(&e)));
            }
        };
        match self.send(&frame, &option).await? {
            RaftReply::AppendEntries(Ok(resp)) => Ok(resp),
            RaftReply::AppendEntries(Err(e)) => Err(self.remote(e)),
            other => Err(self.unexpected(other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RpcErr<InstallSnapshotError>> {
        match self.call(RaftRpc::InstallSnapshot(rpc), &option).await? {
            RaftReply::InstallSnapshot(Ok(resp)) => Ok(resp),
            RaftReply::InstallSnapshot(Err(e)) => Err(self.remote(e)),
            other => Err(self.unexpected(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RpcErr> {
        match self.call(RaftRpc::Vote(rpc), &option).await? {
            RaftReply::Vote(Ok(resp)) => Ok(resp),
            RaftReply::Vote(Err(e)) => Err(self.remote(e)),
            other => Err(self.unexpected(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::PEER_FRAME_BYTES_MAX;
    use crate::peer::testing::{client_peers, dev_tls};
    use crate::raft::ShardBatch;
    use crate::shard::state_machine::ShardCommand;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
    use shoal_protocol::{ConversationId, ShardId, UserId};

    /// A network to a node that does not exist (no address): anything that reaches the
    /// wire fails as unreachable.
    fn nowhere(dir: &std::path::Path) -> ShardNetwork {
        let peers = client_peers(&dev_tls(dir));
        ShardNetwork {
            shard: 0,
            target: 2,
            node: PeerNode {
                name: "n2".into(),
                addr: "nowhere".into(),
            },
            addr: None,
            heartbeats: Heartbeats::new(peers.clone(), std::time::Duration::from_millis(5)),
            peers,
        }
    }

    /// An entry of about `bytes` bytes.
    fn entry(index: u64, bytes: usize) -> Entry<TypeConfig> {
        let text = "x".repeat(bytes);
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(ShardBatch {
                commands: vec![ShardCommand::RenameConversation {
                    conversation: ConversationId::new(ShardId(0), 1),
                    owner: UserId::parse("alice").unwrap(),
                    title: Some(text),
                }],
                traces: Default::default(),
                replies: Default::default(),
            }),
        }
    }

    /// Entries that fit a frame one by one but not together: the request is encoded
    /// once, found too large and handed back to openraft to split, before any byte is
    /// sent (the unreachable node is never tried).
    #[tokio::test]
    async fn an_append_too_large_for_one_frame_is_split_before_sending() {
        let dir = tempfile::tempdir().unwrap();
        let mut net = nowhere(dir.path());
        let rpc = |entries| AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(1, 1),
            prev_log_id: None,
            leader_commit: None,
            entries,
        };
        let option = RPCOption::new(std::time::Duration::from_secs(1));
        let third = PEER_FRAME_BYTES_MAX / 3 + 1024;
        let big = (1..=4).map(|i| entry(i, third)).collect();
        match net.append_entries(rpc(big), option.clone()).await {
            Err(RPCError::PayloadTooLarge(p)) => assert_eq!(p.entries_hint(), 2),
            other => panic!("expected PayloadTooLarge, got {other:?}"),
        }
        // Two of them fit: sent (and fail only because the node does not exist).
        let fits = (1..=2).map(|i| entry(i, third)).collect();
        match net.append_entries(rpc(fits), option).await {
            Err(RPCError::Unreachable(_)) => {}
            other => panic!("expected Unreachable, got {other:?}"),
        }
    }
}
