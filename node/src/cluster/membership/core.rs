//! The sans-I/O core: foca plus metadata, announces and the members view, with time
//! (`now_ms`) passed into every call.

use std::collections::btree_map::Entry as MapEntry;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::num::NonZeroU8;
use std::sync::{Arc, Mutex};

use foca::{AccumulatingRuntime, Config, Foca, OwnedNotification, Timer};
use rand010::SeedableRng;
use rand010::rngs::SmallRng;

use super::codec::{BoundedCodec, GossipTables, MetaHandler, MetaWire, SharedTables};
use super::{
    ANNOUNCE_BACKOFF_INITIAL_MS, ANNOUNCE_BACKOFF_MAX_MS, ANNOUNCE_DOWN_TARGETS_MAX, GossipTimings,
    LEAVE_GOSSIP_ROUNDS, Liveness, META_FORMAT_V1, META_REFRESH_MS, Member, MembersView,
    MembershipError, NodeMeta, SwimId, Transmit, duration_ms, lock,
};

type Swim = Foca<SwimId, BoundedCodec, SmallRng, MetaHandler>;

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
    pub(super) swim: Swim,
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
