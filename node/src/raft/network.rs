//! Raft RPCs of one shard group over the peer ALPN.

use super::{PeerNode, TypeConfig};
use crate::peer::{PEER_FRAME_BYTES_MAX, PeerClient, PeerError, PeerRequest, RaftReply, RaftRpc};
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
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
        let Some(addr) = self.addr else {
            let e = std::io::Error::other(format!("bad peer address `{}`", self.node.addr));
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        };
        let request = PeerRequest::Raft {
            shard: self.shard,
            target: self.target,
            rpc,
        };
        self.peers
            .call(addr, &request, option.hard_ttl())
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

/// Encoded size of a value (upper bound check before sending).
fn encoded_len<T: serde::Serialize>(value: &T) -> usize {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map(|v| v.len())
        .unwrap_or(usize::MAX)
}

impl RaftNetwork<TypeConfig> for ShardNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RpcErr> {
        // Leave room for the envelope: an oversized batch is split by openraft.
        if rpc.entries.len() > 1 && encoded_len(&rpc) > PEER_FRAME_BYTES_MAX - 1024 {
            let hint = (rpc.entries.len() / 2).max(1) as u64;
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(hint),
            ));
        }
        match self.call(RaftRpc::AppendEntries(rpc), &option).await? {
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
