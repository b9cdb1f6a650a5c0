//! The module's vocabulary: node metadata, liveness and the members view, gossip timings
//! and their validation, errors, the transport seam and the SWIM identity.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use bytes::Bytes;
use foca::{Config, Identity, State};
use serde::{Deserialize, Serialize};

use super::{
    DOWN_RETAIN_MS, PACKET_BYTES_LIMIT, PACKET_BYTES_MIN, PROBE_PERIOD_MS_MAX, PROBE_PERIOD_MS_MIN,
    duration_ms,
};

/// What a node says about itself in gossip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMeta {
    /// Node id from config, e.g. "n1". Fixed for the life of the driver.
    pub name: String,
    /// Raft node id. Fixed for the life of the driver.
    pub raft_id: u64,
    /// Advertise address (peer/client/admin all on it); also the gossip address. Fixed
    /// for the life of the driver.
    pub addr: SocketAddr,
    /// Crate version.
    pub version: String,
    /// How many shards this node leads (changes over time).
    pub leaders: u32,
    /// Which shards it leads: bit `s % 8` of byte `s / 8` for shard `s` (at most 128
    /// bytes for 1 024 shards). Nodes route requests for shards they hold no replica of
    /// by it ([`crate::cluster::Cluster::learn_leaders`]).
    pub led: Vec<u8>,
    /// Has this node ever joined Raft groups (bootstrap guard).
    pub initialized: bool,
    /// The node is being drained of its shards.
    pub draining: bool,
}

/// How this node perceives a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Answering probes.
    Alive,
    /// Failed a probe; Down unless it refutes within `suspect_to_down`.
    Suspect,
    /// Declared down (failed, or left gracefully).
    Down,
}

impl From<State> for Liveness {
    fn from(state: State) -> Self {
        match state {
            State::Alive => Liveness::Alive,
            State::Suspect => Liveness::Suspect,
            State::Down => Liveness::Down,
        }
    }
}

/// One entry of the [`MembersView`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The latest metadata the member disseminated.
    pub meta: NodeMeta,
    /// Its current liveness.
    pub liveness: Liveness,
    /// Milliseconds since the driver started when it entered this liveness.
    pub since_ms: u64,
}

/// Everyone this node knows, itself included (always Alive), sorted by name (then
/// address).
///
/// A member appears only once its metadata is known: foca may know an address a little
/// before the metadata broadcast arrives, and a member without a name is of no use to
/// placement. Down members stay listed for [`DOWN_RETAIN_MS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembersView {
    /// The members, sorted by `meta.name`, then `meta.addr`.
    pub members: Vec<Member>,
}

impl MembersView {
    /// The member called `name`, if listed.
    pub fn get(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|member| member.meta.name == name)
    }

    /// The member whose current Raft id is `raft_id`, if listed.
    pub fn by_raft_id(&self, raft_id: u64) -> Option<&Member> {
        self.members
            .iter()
            .find(|member| member.meta.raft_id == raft_id)
    }
}

/// Timings (mapped from the node config's `[gossip]` section).
#[derive(Debug, Clone)]
pub struct GossipTimings {
    /// Expected number of nodes; scales retransmissions and the default suspicion time.
    pub cluster_size_hint: u32,
    /// How often a random member is probed (default 1 s; 10 ms..=60 s). The direct-probe
    /// timeout is half of it.
    pub probe_period: Option<Duration>,
    /// How long a Suspect member has to refute before being declared Down (default
    /// `4 × max(1, log10(cluster_size_hint)) × probe_period`, as foca's LAN preset).
    pub suspect_to_down: Option<Duration>,
    /// Largest gossip packet produced and accepted (a QUIC datagram: ~1200 bytes).
    pub packet_bytes_max: usize,
}

impl GossipTimings {
    /// The timings of a node's `[gossip]` config section.
    pub fn from_config(gossip: &shoal_cluster_config::GossipSection) -> Self {
        Self {
            cluster_size_hint: gossip.preset.cluster_size_hint(),
            probe_period: gossip.probe_period(),
            suspect_to_down: gossip.suspect_to_down(),
            packet_bytes_max: usize::from(gossip.packet_bytes_max.get()),
        }
    }

    /// The probe period and suspect-to-down time a node runs with (the preset's where
    /// not overridden, clamped like [`super::Membership::spawn`] does).
    pub fn effective_probe_and_suspicion(&self) -> (Duration, Duration) {
        let config = self.to_foca_config();
        (config.probe_period, config.suspect_to_down_after)
    }

    /// Checks the timings; the error names the field and the fix.
    /// [`Membership::spawn`](super::Membership::spawn) clamps invalid values instead of
    /// failing, so call this when loading config.
    pub fn validate(&self) -> Result<(), MembershipError> {
        if self.cluster_size_hint == 0 {
            return Err(MembershipError::InvalidTimings {
                field: "cluster_size_hint",
                reason: "must be at least 1 (the expected number of nodes)".to_owned(),
            });
        }
        if let Some(period) = self.probe_period
            && !(PROBE_PERIOD_MS_MIN..=PROBE_PERIOD_MS_MAX).contains(&duration_ms(period))
        {
            return Err(MembershipError::InvalidTimings {
                field: "probe_period",
                reason: format!(
                    "{period:?} is outside {PROBE_PERIOD_MS_MIN}..={PROBE_PERIOD_MS_MAX} ms"
                ),
            });
        }
        if let Some(suspect) = self.suspect_to_down
            && suspect.is_zero()
        {
            return Err(MembershipError::InvalidTimings {
                field: "suspect_to_down",
                reason: "must be positive (a few probe periods is typical)".to_owned(),
            });
        }
        if !(PACKET_BYTES_MIN..=PACKET_BYTES_LIMIT).contains(&self.packet_bytes_max) {
            return Err(MembershipError::InvalidTimings {
                field: "packet_bytes_max",
                reason: format!(
                    "{} is outside {PACKET_BYTES_MIN}..={PACKET_BYTES_LIMIT} bytes",
                    self.packet_bytes_max
                ),
            });
        }
        Ok(())
    }

    /// The foca configuration: `Config::new_lan(hint)` with our overrides, invalid values
    /// clamped into range.
    pub(super) fn to_foca_config(&self) -> Config {
        let hint = NonZeroU32::new(self.cluster_size_hint).unwrap_or(NonZeroU32::MIN);
        let mut config = Config::new_lan(hint);
        if let Some(period) = self.probe_period {
            let period_ms = duration_ms(period).clamp(PROBE_PERIOD_MS_MIN, PROBE_PERIOD_MS_MAX);
            config.probe_period = Duration::from_millis(period_ms);
            // Same ratio as the LAN preset (500 ms of 1 s); must stay below the period.
            config.probe_rtt = config.probe_period / 2;
            // The preset's suspicion is computed for a 1 s period: scale it.
            let lan_suspect_ms = duration_ms(config.suspect_to_down_after);
            config.suspect_to_down_after =
                Duration::from_millis(lan_suspect_ms.saturating_mul(period_ms) / 1_000);
        }
        if let Some(suspect) = self.suspect_to_down {
            config.suspect_to_down_after = suspect;
        }
        config.suspect_to_down_after = config.suspect_to_down_after.max(Duration::from_millis(1));
        let packet_bytes = self
            .packet_bytes_max
            .clamp(PACKET_BYTES_MIN, PACKET_BYTES_LIMIT);
        config.max_packet_size = NonZeroUsize::new(packet_bytes).unwrap_or(NonZeroUsize::MIN);
        config.remove_down_after = Some(Duration::from_millis(DOWN_RETAIN_MS));
        config
    }

    pub(super) fn packet_bytes_clamped(&self) -> usize {
        self.packet_bytes_max
            .clamp(PACKET_BYTES_MIN, PACKET_BYTES_LIMIT)
    }
}

/// Errors of the membership core. None of them stops the driver.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// A packet exceeded `packet_bytes_max`. Dropped; no state changed.
    #[error(
        "gossip packet of {len_bytes} bytes from {from} exceeds the {max_bytes}-byte limit; dropped (check packet_bytes_max on both nodes)"
    )]
    PacketTooLarge {
        /// Sender address.
        from: SocketAddr,
        /// Packet length.
        len_bytes: usize,
        /// Configured limit.
        max_bytes: usize,
    },
    /// A packet could not be decoded (or would exceed
    /// [`MEMBERS_MAX`](super::MEMBERS_MAX)). Dropped; updates decoded before a bad
    /// trailing metadata broadcast may have been applied.
    #[error("malformed gossip packet from {from}: {reason}; dropped")]
    MalformedPacket {
        /// Sender address.
        from: SocketAddr,
        /// What was wrong.
        reason: String,
    },
    /// A well-formed packet foca refused (e.g. from our own address, addressed to a
    /// previous identity). Dropped; no state changed.
    #[error("gossip packet from {from} ignored: {reason}")]
    PacketIgnored {
        /// Sender address.
        from: SocketAddr,
        /// Why foca refused it.
        reason: String,
    },
    /// A timing setting is out of range. Nothing was started.
    #[error("invalid gossip setting `{field}`: {reason}")]
    InvalidTimings {
        /// The `[gossip]` key.
        field: &'static str,
        /// What is wrong and the accepted range.
        reason: String,
    },
    /// This node's metadata encodes larger than
    /// [`META_BYTES_MAX`](super::META_BYTES_MAX). The previous metadata stays in effect.
    #[error(
        "node metadata encodes to {len_bytes} bytes, over the {max_bytes}-byte limit; keeping the previous metadata (shorten name/version)"
    )]
    MetaTooLarge {
        /// Encoded length.
        len_bytes: usize,
        /// The limit.
        max_bytes: usize,
    },
}

impl MembershipError {
    /// Whether this error counts as a malformed packet (for status output).
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            MembershipError::PacketTooLarge { .. } | MembershipError::MalformedPacket { .. }
        )
    }
}

/// Sends one gossip packet, best effort (like UDP): may drop.
pub trait GossipTransport: Send + Sync + 'static {
    /// Sends `packet` to the node listening at `to`.
    fn send(&self, to: SocketAddr, packet: Bytes);
}

/// A packet the core wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination address.
    pub to: SocketAddr,
    /// The encoded gossip packet.
    pub packet: Bytes,
}

/// A node's SWIM identity. See the module doc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwimId {
    /// Raft node id (0 only in seed placeholders).
    pub raft_id: u64,
    /// Gossip (= advertise) address; foca's unique key.
    pub addr: SocketAddr,
    /// Generation: wall-clock ms at driver start, +1 per automatic rejoin.
    pub bump: u64,
}

impl SwimId {
    /// The identity used to announce to a seed known only by address.
    pub(super) fn seed_placeholder(addr: SocketAddr) -> SwimId {
        SwimId {
            raft_id: 0,
            addr,
            bump: 0,
        }
    }
}

impl Identity for SwimId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        let bump = self.bump.checked_add(1)?;
        Some(SwimId {
            bump,
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.bump, self.raft_id) > (adversary.bump, adversary.raft_id)
    }
}
