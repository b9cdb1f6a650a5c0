//! A shard's operator pin ([`ShardPin`]): where an operator wants the shard's leadership
//! and replicas, whatever automatic placement would choose. The pin only steers the
//! shard's reconciler ([`crate::cluster::placement`]); it changes no conversation state.
//!
//! Key: `pin` → [`ShardPin`] (absent: automatic placement).

use super::{Outcome, Rejection, ShardCommand, ShardRead, Writes, read};
use shoal_protocol::admin::{PINNED_REPLICAS_MAX, ShardPin};

/// Key of the shard's pin.
pub const PIN_KEY: &[u8] = b"pin";
/// Longest node name a pin may hold, in bytes (as the admin API's node names).
pub const PIN_NODE_BYTES_MAX: usize = 64;

/// The shard's pin as stored (`None`: not pinned).
pub fn load(view: &impl ShardRead) -> Result<Option<ShardPin>, super::ReadError> {
    read(view, PIN_KEY)
}

/// Checks a pin's shape: node names of 1 to [`PIN_NODE_BYTES_MAX`] bytes, at most
/// [`PINNED_REPLICAS_MAX`] distinct replicas (the leader may be one of them).
pub fn check(pin: &ShardPin) -> Result<(), Rejection> {
    if pin.replicas.len() > PINNED_REPLICAS_MAX {
        return Err(Rejection::Invalid(format!(
            "a pin names at most {PINNED_REPLICAS_MAX} replicas, not {}",
            pin.replicas.len()
        )));
    }
    for name in pin.leader.iter().chain(&pin.replicas) {
        if name.is_empty() || name.len() > PIN_NODE_BYTES_MAX {
            return Err(Rejection::Invalid(format!(
                "a pinned node name is 1 to {PIN_NODE_BYTES_MAX} bytes"
            )));
        }
    }
    for (i, name) in pin.replicas.iter().enumerate() {
        if pin.replicas[..i].contains(name) {
            return Err(Rejection::Invalid(format!(
                "`{}` is pinned twice",
                name.escape_debug()
            )));
        }
    }
    Ok(())
}

pub(super) fn apply(cmd: &ShardCommand, writes: &mut Writes) -> Result<Outcome, super::Failure> {
    match cmd {
        ShardCommand::SetShardPin { pin } => {
            match pin {
                Some(pin) if !pin.is_empty() => {
                    check(pin)?;
                    writes.put(PIN_KEY.to_vec(), pin);
                }
                _ => writes.delete(PIN_KEY.to_vec()),
            }
            Ok(Outcome::Done)
        }
        _ => Err(super::misrouted()),
    }
}
