//! Unit tests of the shard's operator pin.

use super::*;
use crate::shard::state_machine::pins as sm_pins;
use shoal_protocol::admin::{PINNED_REPLICAS_MAX, ShardPin};

fn pin(leader: Option<&str>, replicas: &[&str]) -> ShardPin {
    ShardPin {
        leader: leader.map(Into::into),
        replicas: replicas.iter().map(|r| (*r).to_owned()).collect(),
    }
}

fn set(mem: &mut Mem, pin: Option<ShardPin>) -> Result<Outcome, Rejection> {
    mem.run(&ShardCommand::SetShardPin { pin })
}

#[test]
fn a_pin_is_stored_replaced_and_cleared() {
    let mut mem = Mem::default();
    assert_eq!(sm_pins::load(&mem).unwrap(), None);
    set(&mut mem, Some(pin(Some("n2"), &["n2", "n3"]))).unwrap();
    assert_eq!(
        sm_pins::load(&mem).unwrap(),
        Some(pin(Some("n2"), &["n2", "n3"]))
    );
    set(&mut mem, Some(pin(None, &["n1"]))).unwrap();
    assert_eq!(sm_pins::load(&mem).unwrap(), Some(pin(None, &["n1"])));
    // An empty pin is no pin.
    set(&mut mem, Some(ShardPin::default())).unwrap();
    assert_eq!(sm_pins::load(&mem).unwrap(), None);
    set(&mut mem, Some(pin(Some("n1"), &[]))).unwrap();
    set(&mut mem, None).unwrap();
    assert_eq!(sm_pins::load(&mem).unwrap(), None);
}

#[test]
fn a_malformed_pin_is_rejected_and_changes_nothing() {
    let mut mem = Mem::default();
    let kept = pin(Some("n1"), &["n1"]);
    set(&mut mem, Some(kept.clone())).unwrap();
    let long = "n".repeat(sm_pins::PIN_NODE_BYTES_MAX + 1);
    let many: Vec<String> = (0..=PINNED_REPLICAS_MAX).map(|i| format!("n{i}")).collect();
    let bad = [
        pin(Some(""), &[]),
        pin(None, &[long.as_str()]),
        pin(None, &["n2", "n2"]),
        ShardPin {
            leader: None,
            replicas: many,
        },
    ];
    for bad in bad {
        let cmd = ShardCommand::SetShardPin {
            pin: Some(bad.clone()),
        };
        assert!(
            matches!(cmd.validate(), Err(Rejection::Invalid(_))),
            "{bad:?}"
        );
        assert!(
            matches!(set(&mut mem, Some(bad.clone())), Err(Rejection::Invalid(_))),
            "{bad:?}"
        );
        assert_eq!(sm_pins::load(&mem).unwrap(), Some(kept.clone()));
    }
}
