//! Arbitrary bytes never panic the decoders; they yield "need more" or an error.

use proptest::prelude::*;
use shoal_protocol::FrameDecoder;
use shoal_protocol::admin::AdminRequest;
use shoal_protocol::client::{ClientRequest, RequestEnvelope, ServerFrame};
use shoal_protocol::frame::decode_payload;
use shoal_protocol::handshake::Hello;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_payload::<Hello>(&bytes);
        let _ = decode_payload::<RequestEnvelope<ClientRequest>>(&bytes);
        let _ = decode_payload::<RequestEnvelope<AdminRequest>>(&bytes);
        let _ = decode_payload::<ServerFrame>(&bytes);
    }

    #[test]
    fn arbitrary_streams_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
        let mut dec = FrameDecoder::new(256);
        let mut shared = FrameDecoder::new(256);
        for chunk in chunks {
            dec.push(&chunk);
            shared.push_bytes(chunk.into());
            while let Ok(Some(_)) = dec.next_frame::<RequestEnvelope<ClientRequest>>() {}
            while let Ok(Some(_)) = shared.next_frame::<RequestEnvelope<ClientRequest>>() {}
        }
    }

    #[test]
    fn huge_length_claims_inside_payload_are_refused(len in 1u64..u64::MAX) {
        // A string claiming `len` bytes followed by nothing: must error, not allocate `len`.
        let mut bytes = vec![0u8]; // RequestEnvelope.trace = None
        bytes.push(3); // ClientRequest::SendMessage
        bytes.extend(std::iter::repeat_n(0u8, 2)); // conversation shard (varint 0)
        bytes.push(251);
        bytes.extend_from_slice(&(len as u16).to_le_bytes());
        let _ = decode_payload::<RequestEnvelope<ClientRequest>>(&bytes);
    }
}
