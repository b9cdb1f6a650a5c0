//! Event frames for tests: the SDK's unit tests, and the scripted node of the integration
//! tests (`tests/support/fake_node.rs` includes this file by path).

use shoal_protocol::transcript::{Event, EventFrame, Snapshot};
use shoal_protocol::{ConversationId, Seq, ShardId};

/// The conversation the frames belong to.
pub(crate) fn conversation() -> ConversationId {
    ConversationId::new(ShardId(3), 0xabc)
}

/// A status event numbered `seq`.
pub(crate) fn status(seq: u64) -> EventFrame {
    EventFrame {
        seq: Seq(seq),
        event: Event::Status {
            text: format!("event {seq}"),
        },
    }
}

/// An empty snapshot numbered `seq`.
pub(crate) fn reset(seq: u64) -> EventFrame {
    EventFrame {
        seq: Seq(seq),
        event: Event::Reset {
            snapshot: Snapshot {
                conversation: conversation(),
                messages: vec![],
                omitted_messages: 0,
                in_flight: None,
            },
        },
    }
}
