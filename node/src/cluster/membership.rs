//! SWIM membership: who is in the cluster, whether they are alive, and what they say
//! about themselves.
//!
//! Gossip is [foca](https://docs.rs/foca) (SWIM + suspicion + infection-style
//! dissemination). Packets travel as QUIC datagrams between nodes; this module only sees
//! "send these bytes to that address" ([`GossipTransport`]) and "these bytes arrived from
//! that address" ([`Membership::deliver`]).
//!
//! # Layout
//! * [`MembershipCore`]: the sans-I/O core. Packets, timer ticks and metadata changes go
//!   in together with `now_ms`; packets to send ([`Transmit`]) and a new [`MembersView`]
//!   come out. No tokio, sockets or clocks inside.
//! * [`Membership`]: the tokio driver. One task owns the core, feeds it from a bounded
//!   inbound queue, fires its timers and publishes the view on a `watch` channel:
//!
//! ```text
//!  node transport --deliver()--> [inbound mpsc, 1024] --+
//!  update_meta() ---- Notify ----------------------------+--> driver task --> MembershipCore
//!  leave() ---------- control mpsc ---------------------+        |   ^            |
//!                                                                |   '-- timers --'
//!                       GossipTransport::send() <-- Transmit ----+
//!                       watch::Sender<MembersView> <-- view -----'
//! ```
//!
//! # How foca is wired
//! * **Identity** ([`SwimId`]): `{raft_id, addr, bump}`. `addr` is foca's `Identity::Addr`
//!   (one member per address). `bump` starts at the wall-clock milliseconds when the
//!   driver starts and `renew()` adds one, so a restarted node (same raft id and address)
//!   wins the address conflict against its previous life (`win_addr_conflict`: higher
//!   `bump`), and a node declared Down rejoins by itself. `bump` is a `u64`, not a
//!   `u16`: a random or wrapping 16-bit value would lose that conflict half the time.
//!   Should the clock have gone backwards, the first packet naming a higher `bump` for
//!   our address (e.g. a ping to our previous life) makes the core outbid it.
//! * **Metadata** ([`NodeMeta`]) is not part of the identity: it is disseminated as a foca
//!   custom broadcast, versioned by `(bump, seq)` per address so newer metadata
//!   invalidates older. A node re-broadcasts its own metadata when it changes (also
//!   pushed at once to a few members), when it sees a new or restarted member (pushed
//!   directly to that member, by restricting `should_add_broadcast_data` to it for one
//!   `Foca::broadcast`), after a rejoin, and every [`META_REFRESH_MS`] (repairs losses).
//! * **Seeds** are plain addresses. The core announces to a placeholder identity
//!   `{raft_id: 0, addr: seed, bump: 0}`: foca accepts an `Announce` whose destination
//!   has the receiver's *address*, and the seed answers with a `Feed` from its real
//!   identity. Announces repeat with backoff (1 s doubling up to 5 s) for as long as no
//!   other member is known, including after every member went Down.
//! * **Bounds**: at most [`MEMBERS_MAX`] addresses are tracked (the codec refuses packets
//!   introducing more), the inbound queue holds [`INBOUND_QUEUE_PACKETS_MAX`] packets
//!   (more are dropped and counted), metadata is at most [`META_BYTES_MAX`] encoded.

use std::collections::btree_map::Entry as MapEntry;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use foca::{
    AccumulatingRuntime, BroadcastHandler, Codec, Config, Foca, Header, Identity, Invalidates,
    OwnedNotification, PostcardCodec, State, Timer,
};
use rand010::SeedableRng;
use rand010::rngs::SmallRng;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot, watch};

/// Most cluster addresses tracked (alive, suspect or down). Packets that would add more
/// are refused as malformed.
pub const MEMBERS_MAX: usize = 1024;
/// Capacity of the inbound packet queue; packets arriving while it is full are dropped
/// and counted in [`Membership::dropped_packets`].
pub const INBOUND_QUEUE_PACKETS_MAX: usize = 1024;
/// First delay between announces to the seeds while no other member is known.
pub const ANNOUNCE_BACKOFF_INITIAL_MS: u64 = 1_000;
/// Longest delay between announces to the seeds (the backoff doubles up to this).
pub const ANNOUNCE_BACKOFF_MAX_MS: u64 = 5_000;
/// Most known-down members announced to (besides the seeds) while no member is alive.
pub const ANNOUNCE_DOWN_TARGETS_MAX: usize = 8;
/// How long a Down member stays known (and visible as Down in the view) before foca
/// forgets it (foca's `remove_down_after`). At least 60 s by requirement.
pub const DOWN_RETAIN_MS: u64 = 10 * 60 * 1_000;
/// Period of the re-broadcast of this node's metadata (repairs lost broadcasts) and of
/// the bookkeeping sweep of metadata for addresses foca does not know.
pub const META_REFRESH_MS: u64 = 10_000;
/// Largest encoded metadata broadcast accepted or sent.
pub const META_BYTES_MAX: usize = 512;
/// Upper bound of [`Membership::leave`].
pub const LEAVE_TIMEOUT_MS: u64 = 2_000;
/// Smallest accepted `packet_bytes_max` (a header plus one metadata broadcast must fit).
pub const PACKET_BYTES_MIN: usize = 1_024;
/// Largest accepted `packet_bytes_max` (a UDP payload).
pub const PACKET_BYTES_LIMIT: usize = 65_507;
/// Shortest accepted probe period.
pub const PROBE_PERIOD_MS_MIN: u64 = 10;
/// Longest accepted probe period.
pub const PROBE_PERIOD_MS_MAX: u64 = 60_000;
/// Capacity of the control queue (leave requests).
const CONTROL_QUEUE_MAX: usize = 4;
/// Extra gossip rounds sent on leave, so more members hear it directly.
const LEAVE_GOSSIP_ROUNDS: usize = 2;
/// Format tag of [`MetaWire`]; bump it when the metadata encoding changes.
const META_FORMAT_V1: u8 = 1;

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
    /// Checks the timings; the error names the field and the fix. [`Membership::spawn`]
    /// clamps invalid values instead of failing, so call this when loading config.
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
    fn to_foca_config(&self) -> Config {
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

    fn packet_bytes_clamped(&self) -> usize {
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
    /// A packet could not be decoded (or would exceed [`MEMBERS_MAX`]). Dropped; updates
    /// decoded before a bad trailing metadata broadcast may have been applied.
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
    /// This node's metadata encodes larger than [`META_BYTES_MAX`]. The previous
    /// metadata stays in effect.
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

// ---------------------------------------------------------------------------------------
// foca plumbing: identity, codec, metadata broadcasts
// ---------------------------------------------------------------------------------------

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
    fn seed_placeholder(addr: SocketAddr) -> SwimId {
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

/// State shared by the core with the codec and the broadcast handler that foca owns
/// (foca offers no accessor to them). Only the driver task touches it.
#[derive(Debug)]
struct GossipTables {
    own_addr: SocketAddr,
    /// The core's clock at the current foca call.
    now_ms: u64,
    /// Latest metadata per address (others only).
    metas: BTreeMap<SocketAddr, MetaEntry>,
    /// Set when `metas` changed; cleared by the core.
    metas_changed: bool,
    /// Addresses foca may track (a superset, resynchronised by the core). Bounds foca's
    /// member table to [`MEMBERS_MAX`].
    known_addrs: BTreeSet<SocketAddr>,
    /// While set, custom broadcasts ride only on messages to this address (a directed
    /// push through `Foca::broadcast`).
    broadcast_target: Option<SocketAddr>,
    /// Highest `bump` seen in packets for an identity with our address (0: none). Above
    /// our own, it is a previous life the cluster still tracks (our clock went back).
    own_bump_seen: u64,
}

#[derive(Debug, Clone)]
struct MetaEntry {
    bump: u64,
    seq: u64,
    meta: NodeMeta,
    received_ms: u64,
}

type SharedTables = Arc<Mutex<GossipTables>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep going with it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, thiserror::Error)]
enum GossipCodecError {
    #[error("{0}")]
    Postcard(#[from] postcard::Error),
    #[error("member table full ({MEMBERS_MAX} addresses); refusing new member {0}")]
    MembersFull(SocketAddr),
}

/// foca's postcard codec, refusing packets that would grow the member table past
/// [`MEMBERS_MAX`].
struct BoundedCodec {
    tables: SharedTables,
}

impl BoundedCodec {
    fn note_own(&self, id: &SwimId) {
        let mut tables = lock(&self.tables);
        if id.addr == tables.own_addr && id.bump > tables.own_bump_seen {
            tables.own_bump_seen = id.bump;
        }
    }

    fn admit(&self, addr: SocketAddr) -> Result<(), GossipCodecError> {
        let mut tables = lock(&self.tables);
        if addr == tables.own_addr || tables.known_addrs.contains(&addr) {
            return Ok(());
        }
        if tables.known_addrs.len() >= MEMBERS_MAX {
            return Err(GossipCodecError::MembersFull(addr));
        }
        tables.known_addrs.insert(addr);
        Ok(())
    }
}

impl Codec<SwimId> for BoundedCodec {
    type Error = GossipCodecError;

    fn encode_header(
        &mut self,
        header: &Header<SwimId>,
        buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        Ok(PostcardCodec.encode_header(header, buf)?)
    }

    fn decode_header(&mut self, buf: impl Buf) -> Result<Header<SwimId>, Self::Error> {
        let header: Header<SwimId> = PostcardCodec.decode_header(buf)?;
        self.note_own(&header.src);
        self.note_own(&header.dst);
        self.admit(header.src.addr)?;
        Ok(header)
    }

    fn encode_member(
        &mut self,
        member: &foca::Member<SwimId>,
        buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        Ok(PostcardCodec.encode_member(member, buf)?)
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<foca::Member<SwimId>, Self::Error> {
        let member: foca::Member<SwimId> = PostcardCodec.decode_member(buf)?;
        self.note_own(member.id());
        self.admit(member.id().addr)?;
        Ok(member)
    }
}

/// The metadata broadcast on the wire (postcard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct MetaWire {
    format: u8,
    bump: u64,
    seq: u64,
    meta: NodeMeta,
}

impl MetaWire {
    fn encode(&self) -> Result<Vec<u8>, MembershipError> {
        let bytes = postcard::to_allocvec(self).map_err(|_| MembershipError::MetaTooLarge {
            len_bytes: usize::MAX,
            max_bytes: META_BYTES_MAX,
        })?;
        if bytes.len() > META_BYTES_MAX {
            return Err(MembershipError::MetaTooLarge {
                len_bytes: bytes.len(),
                max_bytes: META_BYTES_MAX,
            });
        }
        Ok(bytes)
    }

    fn decode(data: &[u8]) -> Result<MetaWire, MetaBroadcastError> {
        if data.len() > META_BYTES_MAX {
            return Err(MetaBroadcastError::TooLarge(data.len()));
        }
        let (wire, rest): (MetaWire, &[u8]) = postcard::take_from_bytes(data)?;
        if !rest.is_empty() {
            return Err(MetaBroadcastError::TrailingBytes(rest.len()));
        }
        if wire.format != META_FORMAT_V1 {
            return Err(MetaBroadcastError::UnknownFormat(wire.format));
        }
        Ok(wire)
    }
}

#[derive(Debug, thiserror::Error)]
enum MetaBroadcastError {
    #[error("metadata broadcast of {0} bytes exceeds {META_BYTES_MAX}")]
    TooLarge(usize),
    #[error("metadata broadcast undecodable: {0}")]
    Decode(#[from] postcard::Error),
    #[error("metadata broadcast has {0} trailing bytes")]
    TrailingBytes(usize),
    #[error("metadata broadcast has unknown format {0}")]
    UnknownFormat(u8),
}

/// Dissemination key of a metadata broadcast: newer `(bump, seq)` for the same address
/// replaces older ones still queued.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MetaKey {
    addr: SocketAddr,
    bump: u64,
    seq: u64,
}

impl Invalidates for MetaKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.addr == other.addr && (self.bump, self.seq) >= (other.bump, other.seq)
    }
}

struct MetaHandler {
    tables: SharedTables,
}

impl BroadcastHandler<SwimId> for MetaHandler {
    type Key = MetaKey;
    type Error = MetaBroadcastError;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&SwimId>,
    ) -> Result<Option<MetaKey>, MetaBroadcastError> {
        let wire = MetaWire::decode(data)?;
        let key = MetaKey {
            addr: wire.meta.addr,
            bump: wire.bump,
            seq: wire.seq,
        };
        if sender.is_none() {
            // Our own metadata, queued by the core: always (re)disseminate.
            return Ok(Some(key));
        }
        let mut tables = lock(&self.tables);
        if key.addr == tables.own_addr {
            // News about ourselves (e.g. a previous life): we are the authority.
            return Ok(None);
        }
        let now_ms = tables.now_ms;
        let full = tables.metas.len() >= MEMBERS_MAX;
        let newer = match tables.metas.get(&key.addr) {
            Some(known) => (wire.bump, wire.seq) > (known.bump, known.seq),
            None => !full,
        };
        if !newer {
            return Ok(None);
        }
        tables.metas.insert(
            key.addr,
            MetaEntry {
                bump: wire.bump,
                seq: wire.seq,
                meta: wire.meta,
                received_ms: now_ms,
            },
        );
        tables.metas_changed = true;
        Ok(Some(key))
    }

    fn should_add_broadcast_data(&self, member: &SwimId) -> bool {
        lock(&self.tables)
            .broadcast_target
            .is_none_or(|target| target == member.addr)
    }
}

type Swim = Foca<SwimId, BoundedCodec, SmallRng, MetaHandler>;

// ---------------------------------------------------------------------------------------
// The sans-I/O core
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum TimerKind {
    Swim(Timer<SwimId>),
    /// Announce to the seeds; stale generations are ignored.
    Announce(u64),
    MetaRefresh,
}

#[derive(Debug, Clone, Copy)]
struct Tracked {
    liveness: Liveness,
    since_ms: u64,
}

/// The membership state machine: foca plus metadata, announces and the view. Time is
/// `now_ms` (milliseconds since the driver started), passed into every call.
///
/// After each call, drain [`MembershipCore::poll_transmit`] and
/// [`MembershipCore::poll_view`], and call [`MembershipCore::handle_timers`] at
/// [`MembershipCore::next_timer_ms`].
pub struct MembershipCore {
    swim: Swim,
    runtime: AccumulatingRuntime<SwimId>,
    tables: SharedTables,
    config: Config,
    me: NodeMeta,
    meta_seq: u64,
    seeds: Vec<SocketAddr>,
    packet_bytes_max: usize,
    /// Pending timers by `(due_ms, sequence)`. Foca schedules O(members) timers and we
    /// keep at most one announce and one refresh timer, so this stays bounded.
    timers: BTreeMap<(u64, u64), TimerKind>,
    timer_seq: u64,
    announce_generation: u64,
    announce_backoff_ms: u64,
    liveness: BTreeMap<SocketAddr, Tracked>,
    view: MembersView,
    view_dirty: bool,
    view_pending: bool,
    transmits: VecDeque<Transmit>,
    leaving: bool,
}

impl MembershipCore {
    /// A core for node `me` joining through `seeds`. `bump` is the identity generation
    /// (use wall-clock ms so a restart supersedes the previous life); `rng_seed` seeds
    /// foca's member selection. Call [`MembershipCore::start`] next.
    pub fn new(
        me: NodeMeta,
        seeds: Vec<SocketAddr>,
        timings: &GossipTimings,
        bump: u64,
        rng_seed: u64,
    ) -> MembershipCore {
        let identity = SwimId {
            raft_id: me.raft_id,
            addr: me.addr,
            bump,
        };
        let tables = Arc::new(Mutex::new(GossipTables {
            own_addr: me.addr,
            now_ms: 0,
            metas: BTreeMap::new(),
            metas_changed: false,
            known_addrs: BTreeSet::new(),
            broadcast_target: None,
            own_bump_seen: 0,
        }));
        let config = timings.to_foca_config();
        let swim = Foca::with_custom_broadcast(
            identity,
            config.clone(),
            SmallRng::seed_from_u64(rng_seed),
            BoundedCodec {
                tables: Arc::clone(&tables),
            },
            MetaHandler {
                tables: Arc::clone(&tables),
            },
        );
        let mut seeds: Vec<SocketAddr> =
            seeds.into_iter().filter(|seed| *seed != me.addr).collect();
        seeds.sort_unstable();
        seeds.dedup();
        let mut core = MembershipCore {
            swim,
            runtime: AccumulatingRuntime::new(),
            tables,
            config,
            me,
            meta_seq: 0,
            seeds,
            packet_bytes_max: timings.packet_bytes_clamped(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            announce_generation: 0,
            announce_backoff_ms: ANNOUNCE_BACKOFF_INITIAL_MS,
            liveness: BTreeMap::new(),
            view: MembersView::default(),
            view_dirty: true,
            view_pending: false,
            transmits: VecDeque::new(),
            leaving: false,
        };
        core.refresh_view();
        core.view_pending = false;
        core
    }

    /// Queues this node's metadata and starts announcing to the seeds at once.
    pub fn start(&mut self, now_ms: u64) {
        self.set_now(now_ms);
        self.queue_own_meta();
        self.arm_announce(now_ms, 0);
        self.schedule(
            now_ms.saturating_add(META_REFRESH_MS),
            TimerKind::MetaRefresh,
        );
    }

    /// Handles one packet that arrived from `from`.
    pub fn handle_packet(
        &mut self,
        now_ms: u64,
        from: SocketAddr,
        packet: &[u8],
    ) -> Result<(), MembershipError> {
        if self.leaving {
            return Ok(());
        }
        if packet.len() > self.packet_bytes_max {
            return Err(MembershipError::PacketTooLarge {
                from,
                len_bytes: packet.len(),
                max_bytes: self.packet_bytes_max,
            });
        }
        if packet.is_empty() {
            return Err(MembershipError::MalformedPacket {
                from,
                reason: "empty packet".to_owned(),
            });
        }
        self.set_now(now_ms);
        let result = self.swim.handle_data(packet, &mut self.runtime);
        self.after_swim(now_ms);
        self.outbid_previous_life(now_ms);
        result.map_err(|error| classify(from, &error, self.packet_bytes_max, packet.len()))
    }

    /// When the earliest pending timer is due, if any.
    pub fn next_timer_ms(&self) -> Option<u64> {
        self.timers.keys().next().map(|(due_ms, _)| *due_ms)
    }

    /// Fires every timer due at `now_ms`.
    pub fn handle_timers(&mut self, now_ms: u64) {
        let mut swim_timers = Vec::new();
        let mut own_timers = Vec::new();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            match entry.remove() {
                TimerKind::Swim(timer) => swim_timers.push(timer),
                other => own_timers.push(other),
            }
        }
        if self.leaving {
            return;
        }
        // foca orders its timers so that late, batched delivery is handled correctly.
        swim_timers.sort();
        self.set_now(now_ms);
        for timer in swim_timers {
            if let Err(error) = self.swim.handle_timer(timer, &mut self.runtime) {
                tracing::debug!(%error, "gossip timer failed");
            }
            self.after_swim(now_ms);
        }
        for timer in own_timers {
            match timer {
                TimerKind::Announce(generation) => self.on_announce_timer(now_ms, generation),
                TimerKind::MetaRefresh => self.on_meta_refresh(now_ms),
                TimerKind::Swim(_) => {}
            }
        }
    }

    /// Replaces this node's metadata (`name`, `raft_id` and `addr` are fixed and kept)
    /// and disseminates it.
    pub fn update_meta(&mut self, now_ms: u64, mut meta: NodeMeta) -> Result<(), MembershipError> {
        if meta.name != self.me.name || meta.raft_id != self.me.raft_id || meta.addr != self.me.addr
        {
            tracing::warn!(
                node = %self.me.name,
                "name, raft_id and addr cannot change while gossiping; keeping the originals"
            );
            meta.name.clone_from(&self.me.name);
            meta.raft_id = self.me.raft_id;
            meta.addr = self.me.addr;
        }
        if meta == self.me || self.leaving {
            return Ok(());
        }
        let seq = self.meta_seq.saturating_add(1);
        MetaWire {
            format: META_FORMAT_V1,
            bump: self.swim.identity().bump,
            seq,
            meta: meta.clone(),
        }
        .encode()?;
        self.me = meta;
        self.meta_seq = seq;
        self.set_now(now_ms);
        self.queue_own_meta();
        self.push_broadcasts(None);
        self.after_swim(now_ms);
        self.view_dirty = true;
        self.refresh_view();
        Ok(())
    }

    /// Leaves gracefully: declares this identity Down to a few members (they spread it),
    /// then ignores all further input.
    pub fn leave(&mut self, now_ms: u64) {
        if self.leaving {
            return;
        }
        self.leaving = true;
        self.set_now(now_ms);
        // Every message sent from here on should carry our Down update.
        let mut config = self.config.clone();
        config.max_transmissions = NonZeroU8::MAX;
        if let Err(error) = self.swim.set_config(config) {
            tracing::debug!(%error, "could not raise transmissions for leave");
        }
        if let Err(error) = self.swim.leave_cluster(&mut self.runtime) {
            tracing::debug!(%error, "leave_cluster failed");
        }
        for _ in 0..LEAVE_GOSSIP_ROUNDS {
            if let Err(error) = self.swim.gossip(&mut self.runtime) {
                tracing::debug!(%error, "leave gossip failed");
            }
        }
        self.timers.clear();
        self.after_swim(now_ms);
    }

    /// The next packet to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The view, if it changed since the last call.
    pub fn poll_view(&mut self) -> Option<MembersView> {
        if std::mem::take(&mut self.view_pending) {
            Some(self.view.clone())
        } else {
            None
        }
    }

    /// The current view.
    pub fn view(&self) -> &MembersView {
        &self.view
    }

    /// This node's current metadata.
    pub fn meta(&self) -> &NodeMeta {
        &self.me
    }

    fn set_now(&mut self, now_ms: u64) {
        lock(&self.tables).now_ms = now_ms;
    }

    fn schedule(&mut self, due_ms: u64, kind: TimerKind) {
        self.timer_seq = self.timer_seq.wrapping_add(1);
        self.timers.insert((due_ms, self.timer_seq), kind);
    }

    /// Drains foca's runtime: packets out, timers in, notifications handled.
    fn after_swim(&mut self, now_ms: u64) {
        while self.runtime.backlog() > 0 {
            while let Some((to, packet)) = self.runtime.to_send() {
                self.transmits.push_back(Transmit {
                    to: to.addr,
                    packet,
                });
            }
            while let Some((after, timer)) = self.runtime.to_schedule() {
                let after_ms = duration_ms(after);
                self.schedule(now_ms.saturating_add(after_ms), TimerKind::Swim(timer));
            }
            while let Some(notification) = self.runtime.to_notify() {
                self.on_notification(now_ms, notification);
            }
        }
        self.sync_liveness(now_ms);
    }

    fn on_notification(&mut self, now_ms: u64, notification: OwnedNotification<SwimId>) {
        let node = &self.me.name;
        // The catch-all covers Idle/Defunct while leaving and the variants foca's
        // `unstable-notifications` feature adds.
        match notification {
            OwnedNotification::MemberUp(id) => {
                tracing::debug!(%node, member = %id.addr, "member up");
                // Newcomers learn our metadata only from fresh broadcasts: queue it and
                // push it to the newcomer directly rather than to random members.
                self.queue_own_meta();
                self.push_broadcasts(Some(id.addr));
            }
            OwnedNotification::MemberDown(id) => {
                tracing::debug!(%node, member = %id.addr, "member down");
            }
            OwnedNotification::Rename(old, new) => {
                tracing::debug!(%node, member = %new.addr, old_bump = old.bump, new_bump = new.bump, "member restarted");
                self.queue_own_meta();
                self.push_broadcasts(Some(new.addr));
            }
            OwnedNotification::Active => tracing::debug!(%node, "joined the cluster"),
            OwnedNotification::Idle if !self.leaving => {
                tracing::debug!(%node, "no live member left; announcing to seeds");
                self.arm_announce(now_ms, 0);
            }
            OwnedNotification::Defunct if !self.leaving => {
                tracing::warn!(%node, "declared down and could not rejoin");
            }
            OwnedNotification::Rejoin(id) => {
                tracing::info!(%node, bump = id.bump, "declared down by the cluster; rejoined with a new identity");
                self.queue_own_meta();
                self.push_broadcasts(None);
            }
            _ => {}
        }
    }

    fn queue_own_meta(&mut self) {
        let wire = MetaWire {
            format: META_FORMAT_V1,
            bump: self.swim.identity().bump,
            seq: self.meta_seq,
            meta: self.me.clone(),
        };
        match wire.encode() {
            Ok(bytes) => {
                if let Err(error) = self.swim.add_broadcast(&bytes) {
                    tracing::error!(node = %self.me.name, %error, "cannot queue own metadata");
                }
            }
            Err(error) => {
                tracing::error!(node = %self.me.name, %error, "cannot disseminate own metadata");
            }
        }
    }

    /// If the cluster still tracks a previous life of ours with a higher `bump` (our
    /// wall clock went backwards across a restart), that identity would win every
    /// address conflict; switch to one that outbids it.
    fn outbid_previous_life(&mut self, now_ms: u64) {
        let seen = lock(&self.tables).own_bump_seen;
        let current = self.swim.identity().clone();
        if seen <= current.bump || self.leaving {
            return;
        }
        let renewed = SwimId {
            bump: seen.saturating_add(1),
            ..current
        };
        tracing::info!(node = %self.me.name, seen, bump = renewed.bump, "cluster knows a newer identity of ours (clock went back?); outbidding it");
        if let Err(error) = self.swim.change_identity(renewed, &mut self.runtime) {
            tracing::debug!(%error, "identity change failed");
        }
        self.queue_own_meta();
        self.after_swim(now_ms);
        if self.swim.num_members() == 0 {
            self.arm_announce(now_ms, 0);
        }
    }

    /// Sends the queued custom broadcasts now: to `target` only, or (None) to a few
    /// random members. Complements piggybacking, which reaches random members only.
    fn push_broadcasts(&mut self, target: Option<SocketAddr>) {
        lock(&self.tables).broadcast_target = target;
        let result = self.swim.broadcast(&mut self.runtime);
        lock(&self.tables).broadcast_target = None;
        if let Err(error) = result {
            tracing::debug!(node = %self.me.name, %error, "pushing broadcasts failed");
        }
    }

    fn arm_announce(&mut self, now_ms: u64, delay_ms: u64) {
        self.announce_generation = self.announce_generation.wrapping_add(1);
        self.announce_backoff_ms = ANNOUNCE_BACKOFF_INITIAL_MS;
        self.schedule(
            now_ms.saturating_add(delay_ms),
            TimerKind::Announce(self.announce_generation),
        );
    }

    fn on_announce_timer(&mut self, now_ms: u64, generation: u64) {
        if generation != self.announce_generation || self.swim.num_members() > 0 {
            return;
        }
        let down: Vec<SwimId> = self
            .swim
            .iter_membership_state()
            .map(|member| member.id())
            .filter(|id| id.addr != self.me.addr && !self.seeds.contains(&id.addr))
            .take(ANNOUNCE_DOWN_TARGETS_MAX)
            .cloned()
            .collect();
        let targets = self
            .seeds
            .iter()
            .copied()
            .map(SwimId::seed_placeholder)
            .chain(down);
        for target in targets.collect::<Vec<_>>() {
            if let Err(error) = self.swim.announce(target, &mut self.runtime) {
                tracing::debug!(%error, "announce failed");
            }
        }
        self.after_swim(now_ms);
        let delay_ms = self.announce_backoff_ms;
        self.announce_backoff_ms = delay_ms.saturating_mul(2).min(ANNOUNCE_BACKOFF_MAX_MS);
        self.schedule(
            now_ms.saturating_add(delay_ms),
            TimerKind::Announce(generation),
        );
    }

    fn on_meta_refresh(&mut self, now_ms: u64) {
        self.schedule(
            now_ms.saturating_add(META_REFRESH_MS),
            TimerKind::MetaRefresh,
        );
        self.queue_own_meta();
        let in_swim: BTreeSet<SocketAddr> = self
            .swim
            .iter_membership_state()
            .map(|member| member.id().addr)
            .collect();
        let mut tables = lock(&self.tables);
        let before = tables.metas.len();
        tables.metas.retain(|addr, entry| {
            in_swim.contains(addr) || now_ms.saturating_sub(entry.received_ms) < META_REFRESH_MS
        });
        if tables.metas.len() != before {
            tables.metas_changed = true;
        }
        tables.known_addrs = in_swim;
        drop(tables);
        self.sync_liveness(now_ms);
    }

    /// Mirrors foca's member states into `liveness` and refreshes the view.
    fn sync_liveness(&mut self, now_ms: u64) {
        let own_addr = self.me.addr;
        let mut present = 0_usize;
        for member in self.swim.iter_membership_state() {
            let addr = member.id().addr;
            if addr == own_addr {
                // A previous life of ours, which foca keeps as Down.
                continue;
            }
            present += 1;
            let liveness = Liveness::from(member.state());
            match self.liveness.entry(addr) {
                MapEntry::Vacant(vacant) => {
                    vacant.insert(Tracked {
                        liveness,
                        since_ms: now_ms,
                    });
                    self.view_dirty = true;
                }
                MapEntry::Occupied(mut occupied) => {
                    if occupied.get().liveness != liveness {
                        occupied.insert(Tracked {
                            liveness,
                            since_ms: now_ms,
                        });
                        self.view_dirty = true;
                    }
                }
            }
        }
        let mut tables = lock(&self.tables);
        if self.liveness.len() > present {
            // foca forgot some Down members (`remove_down_after`).
            let in_swim: BTreeSet<SocketAddr> = self
                .swim
                .iter_membership_state()
                .map(|member| member.id().addr)
                .collect();
            self.liveness.retain(|addr, _| {
                let keep = in_swim.contains(addr);
                if !keep {
                    tables.metas.remove(addr);
                    tables.known_addrs.remove(addr);
                }
                keep
            });
            self.view_dirty = true;
        }
        if std::mem::take(&mut tables.metas_changed) {
            self.view_dirty = true;
        }
        drop(tables);
        self.refresh_view();
    }

    fn refresh_view(&mut self) {
        if !std::mem::take(&mut self.view_dirty) {
            return;
        }
        let tables = lock(&self.tables);
        let mut members = Vec::with_capacity(self.liveness.len().saturating_add(1));
        members.push(Member {
            meta: self.me.clone(),
            liveness: Liveness::Alive,
            since_ms: 0,
        });
        for (addr, tracked) in &self.liveness {
            if let Some(entry) = tables.metas.get(addr) {
                members.push(Member {
                    meta: entry.meta.clone(),
                    liveness: tracked.liveness,
                    since_ms: tracked.since_ms,
                });
            }
        }
        drop(tables);
        members.sort_by(|a, b| {
            a.meta
                .name
                .cmp(&b.meta.name)
                .then_with(|| a.meta.addr.cmp(&b.meta.addr))
        });
        let view = MembersView { members };
        if view != self.view {
            self.view = view;
            self.view_pending = true;
        }
    }
}

fn classify(
    from: SocketAddr,
    error: &foca::Error,
    max_bytes: usize,
    len_bytes: usize,
) -> MembershipError {
    match error {
        foca::Error::DataTooBig => MembershipError::PacketTooLarge {
            from,
            len_bytes,
            max_bytes,
        },
        foca::Error::Decode(_) | foca::Error::MalformedPacket | foca::Error::CustomBroadcast(_) => {
            MembershipError::MalformedPacket {
                from,
                reason: error.to_string(),
            }
        }
        other => MembershipError::PacketIgnored {
            from,
            reason: other.to_string(),
        },
    }
}

// ---------------------------------------------------------------------------------------
// The tokio driver
// ---------------------------------------------------------------------------------------

/// State shared between the handles and the driver task.
struct Shared {
    name: String,
    /// The metadata `update_meta` edits; the driver picks it up on `meta_changed`.
    meta: Mutex<NodeMeta>,
    meta_changed: Notify,
    malformed_packets: AtomicU64,
    dropped_packets: AtomicU64,
}

enum Control {
    Leave(oneshot::Sender<()>),
}

struct Inner {
    inbound: mpsc::Sender<(SocketAddr, Bytes)>,
    control: mpsc::Sender<Control>,
    view: watch::Receiver<MembersView>,
    shared: Arc<Shared>,
    packet_bytes_max: usize,
}

/// Handle to the membership driver; cheap to clone. The driver stops after
/// [`Membership::leave`] or when every handle is dropped; watchers then see
/// `changed()` fail.
#[derive(Clone)]
pub struct Membership {
    inner: Arc<Inner>,
}

/// A fixed identity bump and RNG seed for [`Membership::spawn_seeded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GossipSeed {
    /// The identity's incarnation bump (normally the wall clock in ms: a restarted node
    /// must pick a higher one than before).
    pub bump: u64,
    /// Seed of foca's RNG.
    pub rng_seed: u64,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Membership")
            .field("node", &self.inner.shared.name)
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// Starts the driver task (tokio). `seeds` are addresses to announce to until some member answers (retry
    /// with backoff, bounded: every 1 s up to 5 s between tries, forever while no other member is known).
    ///
    /// Invalid `timings` are clamped into range with a warning (see
    /// [`GossipTimings::validate`]).
    ///
    /// # Panics
    /// Outside a tokio runtime (like `tokio::spawn`).
    pub fn spawn(
        me: NodeMeta,
        seeds: Vec<SocketAddr>,
        timings: GossipTimings,
        transport: Arc<dyn GossipTransport>,
    ) -> Membership {
        Self::spawn_seeded(me, seeds, timings, transport, None)
    }

    /// [`Self::spawn`] with the identity bump and the RNG seed given (simulation: see
    /// [`crate::seam`]); `None` takes them from the wall clock and the OS.
    pub fn spawn_seeded(
        me: NodeMeta,
        seeds: Vec<SocketAddr>,
        timings: GossipTimings,
        transport: Arc<dyn GossipTransport>,
        seeded: Option<GossipSeed>,
    ) -> Membership {
        if let Err(error) = timings.validate() {
            tracing::warn!(node = %me.name, %error, "using the nearest valid value");
        }
        let (bump, rng_seed) = match seeded {
            Some(seed) => (seed.bump, seed.rng_seed),
            None => {
                let bump = wall_clock_ms();
                (bump, random_seed(bump ^ me.raft_id))
            }
        };
        let core = MembershipCore::new(me.clone(), seeds, &timings, bump, rng_seed);
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE_PACKETS_MAX);
        let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE_MAX);
        let (view_tx, view_rx) = watch::channel(core.view().clone());
        let shared = Arc::new(Shared {
            name: me.name.clone(),
            meta: Mutex::new(me),
            meta_changed: Notify::new(),
            malformed_packets: AtomicU64::new(0),
            dropped_packets: AtomicU64::new(0),
        });
        tokio::spawn(drive(
            core,
            inbound_rx,
            control_rx,
            Arc::clone(&shared),
            transport,
            view_tx,
        ));
        Membership {
            inner: Arc::new(Inner {
                inbound: inbound_tx,
                control: control_tx,
                view: view_rx,
                shared,
                packet_bytes_max: timings.packet_bytes_clamped(),
            }),
        }
    }

    /// A packet arrived (from the node transport). Malformed/oversized packets are dropped with a debug log and a counter; never panic.
    ///
    /// Packets arriving while the inbound queue is full are dropped and counted in
    /// [`Membership::dropped_packets`].
    pub fn deliver(&self, from: SocketAddr, packet: Bytes) {
        let shared = &self.inner.shared;
        if packet.is_empty() || packet.len() > self.inner.packet_bytes_max {
            shared.malformed_packets.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                node = %shared.name,
                %from,
                len_bytes = packet.len(),
                max_bytes = self.inner.packet_bytes_max,
                "dropping empty or oversized gossip packet"
            );
            return;
        }
        match self.inner.inbound.try_send((from, packet)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                shared.dropped_packets.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(node = %shared.name, %from, "gossip inbound queue full; packet dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::trace!(node = %shared.name, %from, "membership stopped; packet dropped");
            }
        }
    }

    /// Live view (updated on every change, incl. metadata changes of others).
    pub fn watch(&self) -> watch::Receiver<MembersView> {
        self.inner.view.clone()
    }

    /// Change this node's metadata (e.g. `leaders`, `draining`); disseminated to others.
    ///
    /// `name`, `raft_id` and `addr` are fixed: changes to them are reverted with a
    /// warning. Metadata encoding over [`META_BYTES_MAX`] is refused with an error log.
    pub fn update_meta(&self, f: impl FnOnce(&mut NodeMeta)) {
        let shared = &self.inner.shared;
        f(&mut lock(&shared.meta));
        shared.meta_changed.notify_one();
    }

    /// Graceful leave: announce departure (others mark us Down promptly, not after suspicion), then stop the task. Bounded (≤ 2 s).
    pub async fn leave(&self) {
        let (reply_tx, reply_rx) = oneshot::channel();
        let request = async {
            if self
                .inner
                .control
                .send(Control::Leave(reply_tx))
                .await
                .is_ok()
            {
                // Err: the driver stopped without answering; nothing left to wait for.
                let _stopped = reply_rx.await;
            }
        };
        if tokio::time::timeout(Duration::from_millis(LEAVE_TIMEOUT_MS), request)
            .await
            .is_err()
        {
            tracing::warn!(node = %self.inner.shared.name, "leave did not finish within {LEAVE_TIMEOUT_MS} ms");
        }
    }

    /// Packets dropped as malformed, for status output.
    pub fn malformed_packets(&self) -> u64 {
        self.inner.shared.malformed_packets.load(Ordering::Relaxed)
    }

    /// Packets dropped because the inbound queue was full, for status output.
    pub fn dropped_packets(&self) -> u64 {
        self.inner.shared.dropped_packets.load(Ordering::Relaxed)
    }
}

async fn drive(
    mut core: MembershipCore,
    mut inbound: mpsc::Receiver<(SocketAddr, Bytes)>,
    mut control: mpsc::Receiver<Control>,
    shared: Arc<Shared>,
    transport: Arc<dyn GossipTransport>,
    view: watch::Sender<MembersView>,
) {
    let started = tokio::time::Instant::now();
    let now_ms = || duration_ms(started.elapsed());
    core.start(now_ms());
    flush(&mut core, transport.as_ref(), &view);
    loop {
        let next_timer = core
            .next_timer_ms()
            .map(|due_ms| started + Duration::from_millis(due_ms));
        let timer = async {
            match next_timer {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            request = control.recv() => {
                let Some(Control::Leave(reply)) = request else { break };
                core.leave(now_ms());
                flush(&mut core, transport.as_ref(), &view);
                tracing::info!(node = %shared.name, "left the cluster");
                // Err: the caller gave up waiting; nothing to do.
                let _ = reply.send(());
                break;
            }
            () = shared.meta_changed.notified() => {
                let meta = lock(&shared.meta).clone();
                if let Err(error) = core.update_meta(now_ms(), meta) {
                    tracing::error!(node = %shared.name, %error, "metadata update refused");
                }
            }
            // Before packets, so a busy inbound queue cannot starve probes.
            () = timer => core.handle_timers(now_ms()),
            packet = inbound.recv() => {
                let Some((from, packet)) = packet else { break };
                if let Err(error) = core.handle_packet(now_ms(), from, &packet) {
                    if error.is_malformed() {
                        shared.malformed_packets.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::debug!(node = %shared.name, %error, "gossip packet dropped");
                }
            }
        }
        flush(&mut core, transport.as_ref(), &view);
    }
}

fn flush(
    core: &mut MembershipCore,
    transport: &dyn GossipTransport,
    view: &watch::Sender<MembersView>,
) {
    while let Some(transmit) = core.poll_transmit() {
        transport.send(transmit.to, transmit.packet);
    }
    if let Some(new_view) = core.poll_view() {
        view.send_replace(new_view);
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|since| u64::try_from(since.as_millis()).ok())
        .unwrap_or(1)
}

fn random_seed(fallback: u64) -> u64 {
    use rand010::TryRng;
    rand010::rngs::SysRng.try_next_u64().unwrap_or(fallback)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;

    use super::*;

    const WAIT_LIMIT: Duration = Duration::from_secs(10);

    fn init_tracing() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }

    fn timings(probe_ms: u64, suspect_ms: u64) -> GossipTimings {
        GossipTimings {
            cluster_size_hint: 3,
            probe_period: Some(Duration::from_millis(probe_ms)),
            suspect_to_down: Some(Duration::from_millis(suspect_ms)),
            packet_bytes_max: 1200,
        }
    }

    fn addr(index: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 7000 + index))
    }

    fn meta(index: u16) -> NodeMeta {
        NodeMeta {
            name: format!("n{index}"),
            raft_id: u64::from(index),
            addr: addr(index),
            version: "0.1.0".to_owned(),
            leaders: 0,
            initialized: index == 1,
            draining: false,
        }
    }

    /// An in-memory network routing packets between drivers through `deliver`.
    #[derive(Default)]
    struct Net {
        nodes: Mutex<HashMap<SocketAddr, Membership>>,
    }

    /// One node's link; `up == false` drops everything it sends (a dead process).
    struct Link {
        net: Arc<Net>,
        from: SocketAddr,
        up: Arc<AtomicBool>,
    }

    impl GossipTransport for Link {
        fn send(&self, to: SocketAddr, packet: Bytes) {
            if !self.up.load(Ordering::SeqCst) {
                return;
            }
            let target = lock(&self.net.nodes).get(&to).cloned();
            if let Some(target) = target {
                target.deliver(self.from, packet);
            }
        }
    }

    struct Node {
        membership: Membership,
        up: Arc<AtomicBool>,
    }

    impl Net {
        fn spawn(
            self: &Arc<Self>,
            meta: NodeMeta,
            seeds: Vec<SocketAddr>,
            timings: GossipTimings,
        ) -> Node {
            let up = Arc::new(AtomicBool::new(true));
            let link = Link {
                net: Arc::clone(self),
                from: meta.addr,
                up: Arc::clone(&up),
            };
            let node_addr = meta.addr;
            let membership = Membership::spawn(meta, seeds, timings, Arc::new(link));
            lock(&self.nodes).insert(node_addr, membership.clone());
            Node { membership, up }
        }

        /// Crash: the node's packets are dropped both ways and its driver is stopped.
        fn kill(&self, node: Node) {
            node.up.store(false, Ordering::SeqCst);
            let node_addr = lock(&self.nodes)
                .iter()
                .find(|(_, m)| Arc::ptr_eq(&m.inner, &node.membership.inner))
                .map(|(a, _)| *a);
            if let Some(node_addr) = node_addr {
                lock(&self.nodes).remove(&node_addr);
            }
        }
    }

    /// Waits until `pred` holds for the view, failing with `what` after `limit`.
    async fn wait_view(
        membership: &Membership,
        what: &str,
        limit: Duration,
        pred: impl Fn(&MembersView) -> bool,
    ) -> MembersView {
        let mut rx = membership.watch();
        let waited = tokio::time::timeout(limit, async {
            loop {
                {
                    let view = rx.borrow_and_update();
                    if pred(&view) {
                        return view.clone();
                    }
                }
                if rx.changed().await.is_err() {
                    panic!("driver of {membership:?} stopped while waiting for {what}");
                }
            }
        })
        .await;
        match waited {
            Ok(view) => view,
            Err(_) => panic!(
                "timed out after {limit:?} waiting for {what} on {membership:?}; last view: {:#?}",
                *rx.borrow()
            ),
        }
    }

    fn liveness_of(view: &MembersView, name: &str) -> Option<Liveness> {
        view.get(name).map(|member| member.liveness)
    }

    fn all_alive(view: &MembersView, names: &[&str]) -> bool {
        view.members.len() == names.len()
            && names
                .iter()
                .all(|name| liveness_of(view, name) == Some(Liveness::Alive))
    }

    async fn converge(net: &Arc<Net>, timings: &GossipTimings) -> Vec<Node> {
        let nodes = vec![
            net.spawn(meta(1), vec![], timings.clone()),
            net.spawn(meta(2), vec![addr(1)], timings.clone()),
            net.spawn(meta(3), vec![addr(1)], timings.clone()),
        ];
        for node in &nodes {
            let view = wait_view(&node.membership, "3 alive members", WAIT_LIMIT, |v| {
                all_alive(v, &["n1", "n2", "n3"])
            })
            .await;
            for (member, index) in view.members.iter().zip(1..) {
                assert_eq!(member.meta, meta(index), "metadata of n{index}");
            }
        }
        nodes
    }

    /// Worst-case failure detection: each survivor probes round-robin, so the dead node
    /// is probed within `others` periods, suspected one period later, declared Down
    /// after `suspect_to_down`, and the news spreads within a gossip period (200 ms).
    fn expected_detection(timings: &GossipTimings, others: u32) -> Duration {
        let probe = timings.probe_period.unwrap_or(Duration::from_secs(1));
        let suspect = timings.suspect_to_down.unwrap_or(Duration::from_secs(4));
        probe * (others + 1) + suspect + Duration::from_millis(200)
    }

    #[tokio::test]
    async fn three_nodes_converge_through_one_seed_address() {
        init_tracing();
        let net = Arc::new(Net::default());
        let nodes = converge(&net, &timings(100, 500)).await;
        for node in &nodes {
            assert_eq!(node.membership.malformed_packets(), 0);
        }
    }

    #[tokio::test]
    async fn metadata_updates_reach_the_others() {
        init_tracing();
        let net = Arc::new(Net::default());
        let nodes = converge(&net, &timings(100, 500)).await;
        nodes[1].membership.update_meta(|m| m.leaders = 5);
        for node in &nodes {
            wait_view(&node.membership, "n2 leading 5 shards", WAIT_LIMIT, |v| {
                v.get("n2").map(|m| m.meta.leaders) == Some(5)
            })
            .await;
        }
        // Changing the fixed fields is reverted, the rest applies.
        nodes[0].membership.update_meta(|m| {
            m.name = "renamed".to_owned();
            m.draining = true;
        });
        for node in &nodes {
            let view = wait_view(&node.membership, "n1 draining", WAIT_LIMIT, |v| {
                v.get("n1").is_some_and(|m| m.meta.draining)
            })
            .await;
            assert!(view.get("renamed").is_none());
        }
    }

    #[tokio::test]
    async fn crashed_node_goes_down_and_comes_back_alive() {
        init_tracing();
        let net = Arc::new(Net::default());
        let timings = timings(100, 500);
        let mut nodes = converge(&net, &timings).await;
        let n3 = nodes.remove(2);
        let started = Instant::now();
        net.kill(n3);
        let expected = expected_detection(&timings, 2);
        for node in &nodes {
            wait_view(&node.membership, "n3 down", expected * 10, |v| {
                liveness_of(v, "n3") == Some(Liveness::Down)
            })
            .await;
        }
        println!(
            "crash detected by both survivors after {:?} (expected at most ~{expected:?})",
            started.elapsed()
        );

        let restarted = net.spawn(meta(3), vec![addr(1)], timings.clone());
        for node in nodes.iter().chain([&restarted]) {
            wait_view(&node.membership, "restarted n3 alive", WAIT_LIMIT, |v| {
                all_alive(v, &["n1", "n2", "n3"])
            })
            .await;
        }
    }

    #[tokio::test]
    async fn graceful_leave_is_seen_before_suspicion_could_fire() {
        init_tracing();
        let net = Arc::new(Net::default());
        // A long suspicion: Down can only come this fast from the leave announcement.
        let timings = timings(100, 4_000);
        let nodes = converge(&net, &timings).await;
        let started = Instant::now();
        tokio::time::timeout(
            Duration::from_millis(LEAVE_TIMEOUT_MS + 500),
            nodes[2].membership.leave(),
        )
        .await
        .expect("leave() exceeded its bound");
        for node in &nodes[..2] {
            wait_view(
                &node.membership,
                "n3 down after leave",
                Duration::from_secs(2),
                |v| liveness_of(v, "n3") == Some(Liveness::Down),
            )
            .await;
        }
        let elapsed = started.elapsed();
        println!("graceful leave seen as Down after {elapsed:?} (suspicion timeout 4 s)");
        assert!(elapsed < Duration::from_secs(2), "leave took {elapsed:?}");
        // The leaver's driver has stopped: its watchers see the channel close.
        let mut rx = nodes[2].membership.watch();
        tokio::time::timeout(Duration::from_secs(2), async {
            while rx.changed().await.is_ok() {}
        })
        .await
        .expect("driver still running after leave");
    }

    #[tokio::test]
    async fn garbage_and_oversized_packets_are_dropped_and_counted() {
        init_tracing();
        let net = Arc::new(Net::default());
        let timings = timings(100, 500);
        let n1 = net.spawn(meta(1), vec![], timings.clone());
        let from = addr(9);
        // A valid Announce header followed by bytes an Announce may not carry.
        let mut announce_with_junk = Vec::new();
        PostcardCodec
            .encode_header(
                &Header {
                    src: SwimId {
                        raft_id: 9,
                        addr: from,
                        bump: 1,
                    },
                    src_incarnation: 0,
                    dst: SwimId::seed_placeholder(addr(1)),
                    message: foca::Message::Announce,
                },
                &mut announce_with_junk,
            )
            .expect("encode header");
        announce_with_junk.extend_from_slice(&[1, 2, 3]);
        let garbage: Vec<Vec<u8>> = vec![
            vec![0xFF; 64],
            b"definitely not swim".to_vec(),
            vec![0],
            announce_with_junk,
        ];
        for packet in &garbage {
            n1.membership.deliver(from, Bytes::copy_from_slice(packet));
        }
        n1.membership.deliver(from, Bytes::new());
        n1.membership
            .deliver(from, Bytes::from(vec![0_u8; timings.packet_bytes_max + 1]));
        // Empty and oversized packets are counted on delivery.
        assert_eq!(n1.membership.malformed_packets(), 2);

        // The inbound queue is processed in order, so once n1 has seen n2 join, every
        // garbage packet before it has been handled.
        let n2 = net.spawn(meta(2), vec![addr(1)], timings.clone());
        for node in [&n1, &n2] {
            wait_view(&node.membership, "2 alive members", WAIT_LIMIT, |v| {
                all_alive(v, &["n1", "n2"])
            })
            .await;
        }
        assert_eq!(n1.membership.malformed_packets(), 2 + garbage.len() as u64);
        assert_eq!(n2.membership.malformed_packets(), 0);
    }

    #[tokio::test]
    async fn full_inbound_queue_drops_and_counts() {
        init_tracing();
        let net = Arc::new(Net::default());
        let n1 = net.spawn(meta(1), vec![], timings(100, 500));
        // The current-thread runtime cannot run the driver until we yield, so the queue
        // fills up exactly.
        for _ in 0..INBOUND_QUEUE_PACKETS_MAX + 10 {
            n1.membership.deliver(addr(9), Bytes::from_static(b"junk"));
        }
        assert_eq!(n1.membership.dropped_packets(), 10);
    }

    // --- sans-I/O core, explicit time ------------------------------------------------

    /// Runs cores with explicit time, delivering every transmit instantly, in 10 ms steps.
    fn run_cores(cores: &mut [MembershipCore], until_ms: u64, now_ms: &mut u64) {
        while *now_ms < until_ms {
            *now_ms += 10;
            for index in 0..cores.len() {
                cores[index].handle_timers(*now_ms);
                while let Some(transmit) = cores[index].poll_transmit() {
                    if let Some(target) = cores.iter().position(|c| c.meta().addr == transmit.to) {
                        let from = cores[index].meta().addr;
                        let _ = cores[target].handle_packet(*now_ms, from, &transmit.packet);
                    }
                }
            }
        }
    }

    #[test]
    fn cores_join_through_a_seed_address_with_explicit_time() {
        let timings = timings(100, 500);
        let mut cores = vec![
            MembershipCore::new(meta(1), vec![], &timings, 10, 1),
            MembershipCore::new(meta(2), vec![addr(1)], &timings, 20, 2),
        ];
        let mut now_ms = 0;
        for core in &mut cores {
            core.start(now_ms);
        }
        run_cores(&mut cores, 2_000, &mut now_ms);
        for core in &mut cores {
            let view = core.poll_view().expect("view changed");
            assert!(all_alive(&view, &["n1", "n2"]), "{view:#?}");
        }
    }

    #[test]
    fn restart_with_a_clock_gone_back_outbids_its_previous_life() {
        let timings = timings(100, 500);
        let mut cores = vec![
            MembershipCore::new(meta(1), vec![], &timings, 1_000, 1),
            MembershipCore::new(meta(2), vec![addr(1)], &timings, 5_000, 2),
        ];
        let mut now_ms = 0;
        for core in &mut cores {
            core.start(now_ms);
        }
        run_cores(&mut cores, 1_000, &mut now_ms);
        assert!(
            all_alive(cores[0].view(), &["n1", "n2"]),
            "{:#?}",
            cores[0].view()
        );
        // n2 restarts with a smaller generation than the one n1 knows.
        cores[1] = MembershipCore::new(meta(2), vec![addr(1)], &timings, 10, 3);
        cores[1].start(now_ms);
        run_cores(&mut cores, now_ms + 3_000, &mut now_ms);
        assert!(
            cores[1].swim.identity().bump > 5_000,
            "outbid the previous life"
        );
        for core in &cores {
            assert!(all_alive(core.view(), &["n1", "n2"]), "{:#?}", core.view());
        }
    }

    #[test]
    fn announces_back_off_from_one_to_five_seconds() {
        let mut core =
            MembershipCore::new(meta(2), vec![addr(1), addr(2)], &timings(100, 500), 1, 1);
        core.start(0);
        let mut announce_ms = Vec::new();
        let mut now_ms = 0;
        loop {
            while let Some(transmit) = core.poll_transmit() {
                assert_eq!(transmit.to, addr(1), "never announces to itself");
                announce_ms.push(now_ms);
            }
            match core.next_timer_ms() {
                Some(due_ms) if due_ms <= 20_000 => {
                    now_ms = due_ms;
                    core.handle_timers(now_ms);
                }
                _ => break,
            }
        }
        assert_eq!(announce_ms, vec![0, 1_000, 3_000, 7_000, 12_000, 17_000]);
    }

    #[test]
    fn restarted_identity_wins_and_renew_supersedes() {
        let old = SwimId {
            raft_id: 3,
            addr: addr(3),
            bump: 100,
        };
        let restarted = SwimId {
            bump: 5_000,
            ..old.clone()
        };
        assert!(restarted.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&restarted));
        let renewed = old.renew().expect("renewable");
        assert!(renewed.win_addr_conflict(&old));
        assert_eq!(
            SwimId {
                bump: u64::MAX,
                ..old
            }
            .renew(),
            None
        );
    }

    #[test]
    fn newer_metadata_invalidates_older_and_stale_is_ignored() {
        let tables = Arc::new(Mutex::new(GossipTables {
            own_addr: addr(1),
            now_ms: 0,
            metas: BTreeMap::new(),
            metas_changed: false,
            known_addrs: BTreeSet::new(),
            broadcast_target: None,
            own_bump_seen: 0,
        }));
        let mut handler = MetaHandler {
            tables: Arc::clone(&tables),
        };
        let sender = SwimId {
            raft_id: 2,
            addr: addr(2),
            bump: 7,
        };
        let encode = |bump, seq, leaders| {
            let mut meta = meta(2);
            meta.leaders = leaders;
            MetaWire {
                format: META_FORMAT_V1,
                bump,
                seq,
                meta,
            }
            .encode()
            .expect("encode")
        };
        let first = handler
            .receive_item(&encode(7, 1, 1), Some(&sender))
            .expect("decodes");
        let first = first.expect("new metadata is disseminated");
        let stale = handler
            .receive_item(&encode(7, 0, 9), Some(&sender))
            .expect("decodes");
        assert_eq!(stale, None);
        let newer = handler
            .receive_item(&encode(8, 0, 2), Some(&sender))
            .expect("decodes");
        let newer = newer.expect("newer generation wins");
        assert!(newer.invalidates(&first));
        assert!(!first.invalidates(&newer));
        assert_eq!(
            lock(&tables).metas.get(&addr(2)).map(|e| e.meta.leaders),
            Some(2)
        );
        // Gossip about ourselves is ignored; junk is an error, not a panic.
        let mut own = meta(1);
        own.leaders = 3;
        let own = MetaWire {
            format: META_FORMAT_V1,
            bump: 99,
            seq: 0,
            meta: own,
        }
        .encode()
        .expect("encode");
        assert_eq!(
            handler.receive_item(&own, Some(&sender)).expect("decodes"),
            None
        );
        assert!(
            handler
                .receive_item(b"\xff\xff\xff", Some(&sender))
                .is_err()
        );
        assert!(handler.receive_item(&[2, 0, 0], Some(&sender)).is_err());
    }

    #[test]
    fn codec_refuses_members_beyond_the_bound() {
        let tables = Arc::new(Mutex::new(GossipTables {
            own_addr: addr(1),
            now_ms: 0,
            metas: BTreeMap::new(),
            metas_changed: false,
            known_addrs: (0..MEMBERS_MAX)
                .map(|i| SocketAddr::from(([10, 0, (i / 256) as u8, (i % 256) as u8], 1)))
                .collect(),
            broadcast_target: None,
            own_bump_seen: 0,
        }));
        let mut codec = BoundedCodec { tables };
        let mut buf = Vec::new();
        let known = SwimId {
            raft_id: 1,
            addr: SocketAddr::from(([10, 0, 0, 5], 1)),
            bump: 1,
        };
        let unknown = SwimId {
            raft_id: 2,
            addr: addr(2),
            bump: 1,
        };
        codec
            .encode_member(&foca::Member::alive(known), &mut buf)
            .expect("encode");
        codec
            .encode_member(&foca::Member::alive(unknown), &mut buf)
            .expect("encode");
        let mut data = &buf[..];
        assert!(
            codec.decode_member(&mut data).is_ok(),
            "known member accepted"
        );
        assert!(
            matches!(
                codec.decode_member(&mut data),
                Err(GossipCodecError::MembersFull(_))
            ),
            "new member refused when full"
        );
    }

    #[test]
    fn timings_are_validated_with_the_field_name() {
        assert!(timings(100, 500).validate().is_ok());
        let bad = [
            GossipTimings {
                cluster_size_hint: 0,
                ..timings(100, 500)
            },
            GossipTimings {
                probe_period: Some(Duration::from_millis(1)),
                ..timings(100, 500)
            },
            GossipTimings {
                suspect_to_down: Some(Duration::ZERO),
                ..timings(100, 500)
            },
            GossipTimings {
                packet_bytes_max: 10,
                ..timings(100, 500)
            },
        ];
        let fields: Vec<&str> = bad
            .iter()
            .map(|t| match t.validate() {
                Err(MembershipError::InvalidTimings { field, .. }) => field,
                other => panic!("expected InvalidTimings, got {other:?}"),
            })
            .collect();
        assert_eq!(
            fields,
            [
                "cluster_size_hint",
                "probe_period",
                "suspect_to_down",
                "packet_bytes_max"
            ]
        );
        // Clamped rather than panicking when spawned anyway.
        let config = bad[1].to_foca_config();
        assert_eq!(
            config.probe_period,
            Duration::from_millis(PROBE_PERIOD_MS_MIN)
        );
        assert!(config.probe_rtt < config.probe_period);
        assert_eq!(
            config.remove_down_after,
            Some(Duration::from_millis(DOWN_RETAIN_MS))
        );
        let huge = GossipTimings {
            probe_period: Some(Duration::MAX),
            suspect_to_down: None,
            ..timings(100, 500)
        };
        assert!(huge.validate().is_err());
        assert_eq!(
            huge.to_foca_config().probe_period,
            Duration::from_millis(PROBE_PERIOD_MS_MAX)
        );
        // Default suspicion follows the probe period (LAN preset: 4 s at 1 s, 3 nodes).
        let scaled = GossipTimings {
            suspect_to_down: None,
            ..timings(100, 500)
        };
        assert_eq!(
            scaled.to_foca_config().suspect_to_down_after,
            Duration::from_millis(400)
        );
        assert_eq!(
            timings(100, 500).to_foca_config().max_packet_size.get(),
            1200
        );
    }
}
