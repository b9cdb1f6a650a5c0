//! SWIM membership: who is in the cluster, whether they are alive, and what they say
//! about themselves.
//!
//! Gossip is [foca](https://docs.rs/foca) (SWIM + suspicion + infection-style
//! dissemination). Packets travel as QUIC datagrams between nodes; this module only sees
//! "send these bytes to that address" ([`GossipTransport`]) and "these bytes arrived from
//! that address" ([`Membership::deliver`]).
//!
//! # Layout
//! * `membership/types.rs`: what the module speaks in: [`NodeMeta`], [`Liveness`],
//!   [`Member`], [`MembersView`], [`GossipTimings`], [`MembershipError`], the
//!   [`GossipTransport`] seam, [`Transmit`] and the SWIM identity [`SwimId`].
//! * `membership/codec.rs`: foca plumbing: the codec that bounds the member table, the
//!   metadata broadcasts and the tables both share with the core.
//! * [`MembershipCore`] (`membership/core.rs`): the sans-I/O core. Packets, timer ticks
//!   and metadata changes go in together with `now_ms`; packets to send ([`Transmit`])
//!   and a new [`MembersView`] come out. No tokio, sockets or clocks inside.
//! * [`Membership`] (this file, with the limits): the tokio driver. One task owns the
//!   core, feeds it from a bounded inbound queue, fires its timers and publishes the view
//!   on a `watch` channel:
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
//! The unit tests are in `membership/tests.rs`.
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

mod codec;
mod core;
mod types;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, oneshot, watch};

// `self::`: a bare `core::` would be ambiguous with the `core` crate.
pub use self::core::MembershipCore;
pub use types::{
    GossipTimings, GossipTransport, Liveness, Member, MembersView, MembershipError, NodeMeta,
    SwimId, Transmit,
};

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
/// Format tag of [`MetaWire`](codec::MetaWire); bump it when the metadata encoding changes.
const META_FORMAT_V1: u8 = 1;

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
                let bump = crate::context::wall_clock_ms().max(1);
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep going with it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn random_seed(fallback: u64) -> u64 {
    use rand010::TryRng;
    rand010::rngs::SysRng.try_next_u64().unwrap_or(fallback)
}

#[cfg(test)]
mod tests;
