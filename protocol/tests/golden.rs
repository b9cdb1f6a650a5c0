//! Pins the wire encoding of existing variants: reordering an enum breaks these.

use shoal_protocol::client::{ClientRequest, RequestEnvelope};
use shoal_protocol::frame::{BincodeCodec, Codec};
use shoal_protocol::{ErrorCode, Seq};

#[test]
fn variant_indices_are_stable() {
    let codec = BincodeCodec;
    assert_eq!(codec.encode(&ErrorCode::Unauthorized).unwrap(), vec![0]);
    assert_eq!(codec.encode(&ErrorCode::Unavailable).unwrap(), vec![11]);
    let follow = RequestEnvelope {
        trace: None,
        body: ClientRequest::Follow {
            conversation: "c-1-00000000000000000000000000000002".parse().unwrap(),
            since: Some(Seq(3)),
        },
    };
    // trace None, variant 5, shard 1, uid 2 (u128 varint), Some, 3.
    assert_eq!(codec.encode(&follow).unwrap(), vec![0, 5, 1, 2, 1, 3]);
}
