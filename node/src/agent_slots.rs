//! The node's agent-process slots: `limits.agent_processes_max`, kept atomically.
//!
//! An agent session takes a slot *before* it starts a process and holds it (a
//! [`SlotGuard`]) until the process is gone, so concurrent cold starts can never exceed
//! the cap. When every slot is taken, the least recently used *idle* warm agent is asked
//! to stop ([`Evictor::stop_idle`]) and the start waits for its slot; only when every
//! agent is busy in a turn is the start refused.
//!
//! Busy/idle is decided under one lock with the eviction: an agent that begins a turn
//! ([`SlotGuard::begin_turn`]) cancels an eviction aimed at it, and an agent asked to stop
//! confirms it is still idle ([`SlotGuard::confirm_stop`]) before it stops.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;
// tokio's clock: the same as std in production, the simulated one under a simulator.
use tokio::time::Instant;

/// Asks the holder of a slot to stop its idle agent process.
pub trait Evictor: Send + Sync + std::fmt::Debug {
    /// Stop the process if it is still idle (see [`SlotGuard::confirm_stop`]).
    fn stop_idle(&self);
}

#[derive(Debug)]
struct Entry {
    /// For messages only.
    owner: String,
    busy: bool,
    last_used: Instant,
    /// Asked to stop and not yet confirmed or cancelled.
    evicting: bool,
    evictor: Arc<dyn Evictor>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: BTreeMap<u64, Entry>,
    next_id: u64,
}

/// The node's slots. See the module doc.
#[derive(Debug)]
pub struct AgentSlots {
    max: usize,
    inner: Mutex<Inner>,
    /// Woken whenever a slot frees or an eviction is cancelled.
    changed: Notify,
}

/// Why a slot could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// Every slot holds an agent in a turn.
    #[error(
        "this node runs {max} agent processes, all in a turn (limits.agent_processes_max = {max}); retry when one finishes"
    )]
    AllBusy {
        /// The cap.
        max: usize,
    },
    /// An idle agent was asked to stop but its slot did not free in time.
    #[error(
        "no agent slot freed within {waited_ms} ms (limits.agent_processes_max = {max}); retry"
    )]
    Timeout {
        /// The cap.
        max: usize,
        /// How long the start waited.
        waited_ms: u64,
    },
}

/// A held slot; dropping it frees the slot.
#[derive(Debug)]
pub struct SlotGuard {
    slots: Arc<AgentSlots>,
    id: u64,
}

fn lock(mutex: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // Every update below is a single map operation: a panic cannot leave it half done.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl AgentSlots {
    /// `max` slots.
    pub fn new(max: usize) -> Arc<AgentSlots> {
        Arc::new(AgentSlots {
            max,
            inner: Mutex::new(Inner::default()),
            changed: Notify::new(),
        })
    }

    /// Slots held now.
    #[cfg(test)]
    fn held(&self) -> usize {
        lock(&self.inner).entries.len()
    }

    /// Takes a slot for `owner`, which starts busy (it is about to run a turn). At the
    /// cap, asks the least recently used idle holder to stop and waits for a slot until
    /// `deadline`.
    pub async fn acquire(
        self: &Arc<Self>,
        owner: &str,
        evictor: Arc<dyn Evictor>,
        deadline: Instant,
    ) -> Result<SlotGuard, SlotError> {
        let started = Instant::now();
        loop {
            // Registered before the check, so a release between the check and the wait
            // is not missed.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(guard) = self.try_acquire(owner, &evictor)? {
                return Ok(guard);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(SlotError::Timeout {
                    max: self.max,
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
        }
    }

    /// A slot now, or `None` after asking an idle holder to stop (or while one stops).
    fn try_acquire(
        self: &Arc<Self>,
        owner: &str,
        evictor: &Arc<dyn Evictor>,
    ) -> Result<Option<SlotGuard>, SlotError> {
        let mut inner = lock(&self.inner);
        if inner.entries.len() < self.max {
            let id = inner.next_id;
            inner.next_id += 1;
            inner.entries.insert(
                id,
                Entry {
                    owner: owner.to_owned(),
                    busy: true,
                    last_used: Instant::now(),
                    evicting: false,
                    evictor: evictor.clone(),
                },
            );
            return Ok(Some(SlotGuard {
                slots: self.clone(),
                id,
            }));
        }
        if inner.entries.values().any(|e| e.evicting) {
            // One stops already; its slot will do.
            return Ok(None);
        }
        let victim = inner
            .entries
            .values_mut()
            .filter(|e| !e.busy)
            .min_by_key(|e| e.last_used);
        match victim {
            Some(victim) => {
                victim.evicting = true;
                tracing::info!(agent = %victim.owner, for_agent = %owner, "agent cap reached: stopping the least recently used idle agent");
                victim.evictor.stop_idle();
                Ok(None)
            }
            None => Err(SlotError::AllBusy { max: self.max }),
        }
    }
}

impl SlotGuard {
    /// The holder starts a turn: it is busy, and an eviction aimed at it is cancelled.
    pub fn begin_turn(&self) {
        let mut inner = lock(&self.slots.inner);
        if let Some(entry) = inner.entries.get_mut(&self.id) {
            entry.busy = true;
            entry.last_used = Instant::now();
            if std::mem::take(&mut entry.evicting) {
                drop(inner);
                // The waiting start picks another victim.
                self.slots.changed.notify_waiters();
            }
        }
    }

    /// The holder's turn ended: it is idle and may be evicted.
    pub fn end_turn(&self) {
        let mut inner = lock(&self.slots.inner);
        if let Some(entry) = inner.entries.get_mut(&self.id) {
            entry.busy = false;
            entry.last_used = Instant::now();
        }
        drop(inner);
        // A start that found every agent busy may retry.
        self.slots.changed.notify_waiters();
    }

    /// Asked to stop: `true` if the holder is still idle and must now stop its process
    /// (and drop this guard); `false` if it began a turn meanwhile.
    pub fn confirm_stop(&self) -> bool {
        let inner = lock(&self.slots.inner);
        inner.entries.get(&self.id).is_some_and(|e| !e.busy)
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        lock(&self.slots.inner).entries.remove(&self.id);
        self.slots.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[derive(Debug, Default)]
    struct Asked(AtomicUsize);

    impl Evictor for Asked {
        fn stop_idle(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    /// Starts `c` acquiring a slot in the background; returns once `asked` was asked to
    /// stop for it.
    async fn start_c_until_asked(
        slots: &Arc<AgentSlots>,
        asked: &Asked,
    ) -> tokio::task::JoinHandle<Result<SlotGuard, SlotError>> {
        let waiting = {
            let slots = slots.clone();
            tokio::spawn(
                async move { slots.acquire("c", Arc::new(Asked::default()), soon()).await },
            )
        };
        tokio::time::timeout(Duration::from_secs(5), async {
            while asked.0.load(Ordering::SeqCst) == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the idle holder was asked to stop");
        waiting
    }

    #[tokio::test]
    async fn concurrent_starts_never_exceed_the_cap() {
        let slots = AgentSlots::new(1);
        let asked = Arc::new(Asked::default());
        let first = slots.acquire("a", asked.clone(), soon()).await.unwrap();
        // Busy: a second start is refused at once, not let through.
        let err = slots.acquire("b", asked.clone(), soon()).await.unwrap_err();
        assert_eq!(err, SlotError::AllBusy { max: 1 });
        assert_eq!(slots.held(), 1);
        drop(first);
        assert_eq!(slots.held(), 0);
    }

    #[tokio::test]
    async fn the_least_recently_used_idle_holder_is_asked_to_stop() {
        let slots = AgentSlots::new(2);
        let a_asked = Arc::new(Asked::default());
        let b_asked = Arc::new(Asked::default());
        let a = slots.acquire("a", a_asked.clone(), soon()).await.unwrap();
        let b = slots.acquire("b", b_asked.clone(), soon()).await.unwrap();
        a.end_turn();
        b.end_turn();
        // `a` idles longer.
        b.begin_turn();
        b.end_turn();
        let waiting = start_c_until_asked(&slots, &a_asked).await;
        assert_eq!(b_asked.0.load(Ordering::SeqCst), 0);
        assert!(a.confirm_stop());
        drop(a);
        let c = waiting.await.unwrap().unwrap();
        assert_eq!(slots.held(), 2);
        drop((b, c));
    }

    #[tokio::test]
    async fn a_holder_that_begins_a_turn_cancels_its_eviction() {
        let slots = AgentSlots::new(1);
        let a_asked = Arc::new(Asked::default());
        let a = slots.acquire("a", a_asked.clone(), soon()).await.unwrap();
        a.end_turn();
        let waiting = start_c_until_asked(&slots, &a_asked).await;
        // A prompt reaches `a` before the stop request does.
        a.begin_turn();
        assert!(!a.confirm_stop(), "a busy holder keeps its process");
        let refused = waiting.await.unwrap().unwrap_err();
        assert_eq!(refused, SlotError::AllBusy { max: 1 });
        drop(a);
    }

    #[tokio::test]
    async fn a_stop_that_never_frees_its_slot_times_out() {
        let slots = AgentSlots::new(1);
        let a = slots
            .acquire("a", Arc::new(Asked::default()), soon())
            .await
            .unwrap();
        a.end_turn();
        let deadline = Instant::now() + Duration::from_millis(200);
        let err = slots
            .acquire("c", Arc::new(Asked::default()), deadline)
            .await
            .unwrap_err();
        assert!(matches!(err, SlotError::Timeout { max: 1, .. }), "{err:?}");
        drop(a);
    }
}
