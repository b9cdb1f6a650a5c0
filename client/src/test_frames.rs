//! Event frames for the unit tests.

use shoal_protocol::transcript::{Event, EventFrame, Snapshot};
use shoal_protocol::{ConversationId, Seq, ShardId};

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
                conversation: ConversationId::new(ShardId(0), 1),
                messages: vec![],
                omitted_messages: 0,
                in_flight: None,
            },
        },
    }
}
