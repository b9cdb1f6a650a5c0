//! The admin API client (`shoal-admin/1`), authenticated with the profile's admin token.

use crate::connection::{Link, REQUEST_TIMEOUT_MS, Target, open_request, quic_config};
use crate::{ClientError, Profile};
use shoal_protocol::admin::{
    ActorInfo, AdminReply, AdminRequest, AgentInfo, ClusterActorInfo, ClusterEvent, DrainProgress,
    Fault, FollowerInfo, MemberInfo, NodeStatus, ShardInfo, ShardPin, ShardPinChange,
    ShardPlacement,
};
use shoal_protocol::{ALPN_ADMIN, ConversationId, UserId, WireError};
use std::time::Duration;

/// How long an agent request (`agents`, `agents probe`, `agents enable`) may take: it
/// may probe agents, each bounded by the node's `conversation.agent_probe_timeout_ms`
/// (at most 600 s) plus its shutdown grace.
pub const AGENTS_REQUEST_TIMEOUT_MS: u64 = 660_000;

/// A connection to one node's admin API (the profile's `address`; the other `addresses`
/// are not used). Reconnects lazily when the connection closed.
pub struct AdminClient {
    link: Link,
    node_id: String,
}

impl AdminClient {
    /// Connects to the profile's node with its `admin_token`
    /// ([`ClientError::MissingAdminToken`] when the profile has none).
    pub async fn connect(profile: &Profile) -> Result<AdminClient, ClientError> {
        let token = profile
            .admin_token
            .clone()
            .ok_or(ClientError::MissingAdminToken)?;
        // Only `address`, not the profile's other `addresses`: admin answers describe the
        // node that serves them, so a silent switch to another node would mislead.
        let target = Target::new(
            &profile.address,
            &[],
            profile.server_name.clone(),
            quic_config(&profile.address, &profile.ca_cert, ALPN_ADMIN)?,
            token,
        );
        let (link, welcome) = Link::connect(target).await?;
        Ok(AdminClient {
            link,
            node_id: welcome.node_id,
        })
    }

    /// The id of the node that accepted the first handshake.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The node's status and counters.
    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        match self.call(AdminRequest::Status, true).await? {
            AdminReply::Status(status) => Ok(status),
            other => Err(unexpected("Status", &other)),
        }
    }

    /// The node's metrics as OpenMetrics text (what its `GET /metrics` serves).
    pub async fn metrics(&self) -> Result<String, ClientError> {
        match self.call(AdminRequest::Metrics, true).await? {
            AdminReply::Metrics(text) => Ok(text),
            other => Err(unexpected("Metrics", &other)),
        }
    }

    /// The actors running on the node.
    pub async fn actors(&self) -> Result<Vec<ActorInfo>, ClientError> {
        match self.call(AdminRequest::ListActors, true).await? {
            AdminReply::Actors(actors) => Ok(actors),
            other => Err(unexpected("Actors", &other)),
        }
    }

    /// The followers attached on the node, optionally of one conversation only.
    pub async fn followers(
        &self,
        conversation: Option<ConversationId>,
    ) -> Result<Vec<FollowerInfo>, ClientError> {
        match self
            .call(AdminRequest::ListFollowers { conversation }, true)
            .await?
        {
            AdminReply::Followers(followers) => Ok(followers),
            other => Err(unexpected("Followers", &other)),
        }
    }

    /// Every live member's actors, the members that did not answer (with why), and
    /// whether a member listed only its first
    /// [`shoal_protocol::admin::ACTORS_PER_MEMBER_MAX`].
    pub async fn cluster_actors(
        &self,
    ) -> Result<(Vec<ClusterActorInfo>, Vec<String>, bool), ClientError> {
        match self.call(AdminRequest::ClusterActors, true).await? {
            AdminReply::ClusterActors {
                actors,
                unreachable,
                truncated,
            } => Ok((actors, unreachable, truncated)),
            other => Err(unexpected("ClusterActors", &other)),
        }
    }

    /// Recent cluster events from every member, merged by time, oldest first: the newest
    /// `limit` recorded after `after_ms`; and the members that did not answer.
    pub async fn events(
        &self,
        after_ms: Option<u64>,
        limit: u32,
    ) -> Result<(Vec<ClusterEvent>, Vec<String>), ClientError> {
        match self
            .call(AdminRequest::Events { after_ms, limit }, true)
            .await?
        {
            AdminReply::Events {
                events,
                unreachable,
            } => Ok((events, unreachable)),
            other => Err(unexpected("Events", &other)),
        }
    }

    /// Cancels a conversation's running turn wherever it is hosted; `true` when one was
    /// running.
    pub async fn cancel_turn(&self, conversation: ConversationId) -> Result<bool, ClientError> {
        match self
            .call(AdminRequest::CancelTurn { conversation }, true)
            .await?
        {
            AdminReply::TurnCancelled { was_running } => Ok(was_running),
            other => Err(unexpected("TurnCancelled", &other)),
        }
    }

    /// Passivates a conversation's actors now, wherever they are hosted; `true` when they
    /// were active.
    pub async fn evict(&self, conversation: ConversationId) -> Result<bool, ClientError> {
        match self
            .call(AdminRequest::EvictActor { conversation }, true)
            .await?
        {
            AdminReply::Evicted { was_active } => Ok(was_active),
            other => Err(unexpected("Evicted", &other)),
        }
    }

    /// Mints a user token valid for `ttl_secs` seconds.
    pub async fn issue_token(&self, user: UserId, ttl_secs: u64) -> Result<String, ClientError> {
        // Not retried: a lost answer would otherwise mint two tokens.
        match self
            .call(AdminRequest::IssueToken { user, ttl_secs }, false)
            .await?
        {
            AdminReply::Token(token) => Ok(token),
            other => Err(unexpected("Token", &other)),
        }
    }

    /// The cluster members as the node's gossip sees them.
    pub async fn members(&self) -> Result<Vec<MemberInfo>, ClientError> {
        match self.call(AdminRequest::Members, true).await? {
            AdminReply::Members(members) => Ok(members),
            other => Err(unexpected("Members", &other)),
        }
    }

    /// Every shard with its leader, replicas, learners, term and applied index, as the node
    /// sees them.
    pub async fn shards(&self) -> Result<Vec<ShardInfo>, ClientError> {
        match self.call(AdminRequest::Shards, true).await? {
            AdminReply::Shards(shards) => Ok(shards),
            other => Err(unexpected("Shards", &other)),
        }
    }

    /// Starts draining `node`: its shard leaderships move to other nodes over the next
    /// seconds and it leaves placement. Returns once the node accepted the drain, not when
    /// the leaderships have moved (watch [`AdminClient::members`] for that).
    pub async fn drain(&self, node: &str) -> Result<(), ClientError> {
        // Retried: draining a node that is already draining changes nothing.
        let request = AdminRequest::Drain {
            node: node.to_owned(),
        };
        match self.call(request, true).await? {
            AdminReply::Draining { node: draining } if draining == node => Ok(()),
            AdminReply::Draining { node: draining } => Err(ClientError::Protocol(format!(
                "asked to drain `{node}`, the node answered that it drains `{draining}`"
            ))),
            other => Err(unexpected("Draining", &other)),
        }
    }

    /// Puts a drained `node` back into placement (kept across restarts). Returns once the
    /// node accepted it; leaderships come back over the next reconciler rounds.
    pub async fn undrain(&self, node: &str) -> Result<(), ClientError> {
        // Retried: undraining twice changes nothing.
        let request = AdminRequest::Undrain {
            node: node.to_owned(),
        };
        match self.call(request, true).await? {
            AdminReply::Undrained { node: undrained } if undrained == node => Ok(()),
            AdminReply::Undrained { node: undrained } => Err(ClientError::Protocol(format!(
                "asked to undrain `{node}`, the node answered that it undrained `{undrained}`"
            ))),
            other => Err(unexpected("Undrained", &other)),
        }
    }

    /// How far `node`'s drain has come: leaderships and replicas left, as the shards'
    /// leaders see them.
    pub async fn drain_progress(&self, node: &str) -> Result<DrainProgress, ClientError> {
        let request = AdminRequest::DrainProgress {
            node: node.to_owned(),
        };
        match self.call(request, true).await? {
            AdminReply::DrainProgress(progress) => Ok(progress),
            other => Err(unexpected("DrainProgress", &other)),
        }
    }

    /// Changes `shard`'s operator pin (answered by the shard's leader, wherever it is);
    /// returns the pin now stored (`None`: cleared). The shard moves over the next
    /// reconciler rounds: follow it with [`Self::shard_placement`].
    pub async fn pin_shard(
        &self,
        shard: u16,
        change: ShardPinChange,
    ) -> Result<Option<ShardPin>, ClientError> {
        match self
            .call(AdminRequest::PinShard { shard, change }, true)
            .await?
        {
            AdminReply::ShardPinned { pin, .. } => Ok(pin),
            other => Err(unexpected("ShardPinned", &other)),
        }
    }

    /// `shard`'s placement from its leader's own view.
    pub async fn shard_placement(&self, shard: u16) -> Result<ShardPlacement, ClientError> {
        match self
            .call(AdminRequest::ShardPlacement { shard }, true)
            .await?
        {
            AdminReply::ShardPlacement(placement) => Ok(placement),
            other => Err(unexpected("ShardPlacement", &other)),
        }
    }

    /// Reads (`filter: None`) or replaces a node's log filter (`node: None`: the profile's
    /// node); returns the node and the filter in effect. A bad filter is refused by the
    /// node and changes nothing.
    pub async fn log_filter(
        &self,
        node: Option<&str>,
        filter: Option<&str>,
    ) -> Result<(String, String), ClientError> {
        let request = AdminRequest::LogFilter {
            node: node.map(str::to_owned),
            filter: filter.map(str::to_owned),
        };
        match self.call(request, true).await? {
            AdminReply::LogFilter { node, filter } => Ok((node, filter)),
            other => Err(unexpected("LogFilter", &other)),
        }
    }

    /// Injects `fault` into the node (chaos tests; the node must run with
    /// `SHOAL_FAULT_INJECTION=1`). Not retried.
    pub async fn inject_fault(&self, fault: Fault) -> Result<(), ClientError> {
        match self
            .call(AdminRequest::InjectFault { fault }, false)
            .await?
        {
            AdminReply::FaultInjected => Ok(()),
            other => Err(unexpected("FaultInjected", &other)),
        }
    }

    /// The agents the node can run, probed again where the last probe is stale; returns
    /// the answering node's id and the agents by id.
    pub async fn agents(&self) -> Result<(String, Vec<AgentInfo>), ClientError> {
        self.agents_call(AdminRequest::Agents).await
    }

    /// Probes `agent` now (every enabled agent when `None`); returns what was probed.
    pub async fn probe_agents(
        &self,
        agent: Option<String>,
    ) -> Result<(String, Vec<AgentInfo>), ClientError> {
        self.agents_call(AdminRequest::ProbeAgents { agent }).await
    }

    /// Enables or disables `agent` on the node (kept across restarts, no restart needed).
    pub async fn set_agent_enabled(
        &self,
        agent: &str,
        enabled: bool,
    ) -> Result<(String, Vec<AgentInfo>), ClientError> {
        let request = AdminRequest::SetAgentEnabled {
            agent: agent.to_owned(),
            enabled,
        };
        self.agents_call(request).await
    }

    /// Retried: every agent request can be repeated safely.
    async fn agents_call(
        &self,
        request: AdminRequest,
    ) -> Result<(String, Vec<AgentInfo>), ClientError> {
        match self
            .call_within(request, true, AGENTS_REQUEST_TIMEOUT_MS)
            .await?
        {
            AdminReply::Agents { node, agents } => Ok((node, agents)),
            other => Err(unexpected("Agents", &other)),
        }
    }

    /// Closes the connection, giving the node a moment to hear about it.
    pub async fn close(&self) {
        self.link.close().await;
    }

    /// Sends one request; retries once on a new connection when `retry` and the
    /// connection broke.
    async fn call(&self, request: AdminRequest, retry: bool) -> Result<AdminReply, ClientError> {
        self.call_within(request, retry, REQUEST_TIMEOUT_MS).await
    }

    /// [`Self::call`], each attempt bounded by `timeout_ms`.
    async fn call_within(
        &self,
        request: AdminRequest,
        retry: bool,
        timeout_ms: u64,
    ) -> Result<AdminReply, ClientError> {
        let mut retries_left = u32::from(retry);
        loop {
            match self.call_once(request.clone(), timeout_ms).await {
                Err(ClientError::ConnectionLost(reason)) if retries_left > 0 => {
                    retries_left -= 1;
                    tracing::debug!(%reason, "admin request lost its connection; retrying");
                }
                other => return other,
            }
        }
    }

    async fn call_once(
        &self,
        request: AdminRequest,
        timeout_ms: u64,
    ) -> Result<AdminReply, ClientError> {
        let connection = self.link.connection().await?;
        let exchange = async {
            let mut reader = open_request(&connection, request, None).await?;
            match reader.next::<Result<AdminReply, WireError>>().await? {
                Some(Ok(reply)) => Ok(reply),
                Some(Err(err)) => Err(ClientError::Server(err)),
                None => Err(ClientError::ConnectionLost(
                    "the node ended the admin stream without an answer".to_owned(),
                )),
            }
        };
        tokio::time::timeout(Duration::from_millis(timeout_ms), exchange)
            .await
            .unwrap_or(Err(ClientError::Timeout {
                what: "the admin request",
                after_ms: timeout_ms,
            }))
    }
}

fn unexpected(expected: &str, got: &AdminReply) -> ClientError {
    let got = match got {
        AdminReply::Status(_) => "Status",
        AdminReply::Actors(_) => "Actors",
        AdminReply::Followers(_) => "Followers",
        AdminReply::Evicted { .. } => "Evicted",
        AdminReply::Token(_) => "Token",
        AdminReply::Members(_) => "Members",
        AdminReply::Shards(_) => "Shards",
        AdminReply::Draining { .. } => "Draining",
        AdminReply::FaultInjected => "FaultInjected",
        AdminReply::Metrics(_) => "Metrics",
        AdminReply::Agents { .. } => "Agents",
        AdminReply::Undrained { .. } => "Undrained",
        AdminReply::DrainProgress(_) => "DrainProgress",
        AdminReply::LogFilter { .. } => "LogFilter",
        AdminReply::ClusterActors { .. } => "ClusterActors",
        AdminReply::TurnCancelled { .. } => "TurnCancelled",
        AdminReply::Events { .. } => "Events",
        AdminReply::ShardPinned { .. } => "ShardPinned",
        AdminReply::ShardPlacement(_) => "ShardPlacement",
    };
    ClientError::Protocol(format!("expected a `{expected}` admin reply, got `{got}`"))
}
