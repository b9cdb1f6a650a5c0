//! `shoal-chaos-tests`: the evidence that Shoal keeps its promises.
//!
//! * [`history`]: what a chaos run records (writes, replica copies, agent lives, follows).
//! * [`check`]: one checker per invariant of ARCHITECTURE.md, each explaining what it
//!   found (which operation, which node, which sequence numbers).
//! * [`real`]: level 2, real `shoal-node` processes on loopback with faults injected by
//!   [`proxy`] and signals; agents witnessed by [`witness`].
//! * [`sim`]: level 1, a deterministic simulation of real nodes and SDK clients on a
//!   simulated network (turmoil), with seeded faults.
//! * [`trace`]: the one-line-per-event trace.

pub mod check;
pub mod history;
pub mod proxy;
pub mod real;
pub mod sim;
pub mod trace;
pub mod witness;
