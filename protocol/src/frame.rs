//! Length-prefixed frames and the codec behind them.
//!
//! A frame is a big-endian `u32` payload length followed by the payload. The payload is
//! encoded by a [`Codec`]; today that is bincode 2 ([`BincodeCodec`]), kept behind the
//! trait because bincode carries an "unmaintained" advisory and may be replaced.
//!
//! [`FrameDecoder`] is sans-I/O: feed it bytes, ask it for frames. It distinguishes
//! "need more bytes" (`Ok(None)`) from "invalid" (`Err`) and never panics on peer bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The largest frame payload any Shoal endpoint accepts or sends, in bytes.
pub const FRAME_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Bytes of the length prefix.
pub const FRAME_HEADER_BYTES: usize = 4;

/// Why a payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The value could not be encoded (a type the codec does not support).
    #[error("encode failed: {0}")]
    Encode(String),
    /// The bytes are not a valid encoding of the expected type. Nothing was consumed.
    #[error("malformed payload: {0}")]
    Decode(String),
    /// The bytes decode but leave trailing garbage.
    #[error("malformed payload: {trailing} trailing bytes after the value")]
    Trailing {
        /// How many bytes were left over.
        trailing: usize,
    },
}

/// Why a frame stream is invalid. The connection should be closed after any of these.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than [`FRAME_BYTES_MAX`] bytes.
    #[error("frame of {len_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    TooLarge {
        /// Announced payload length.
        len_bytes: usize,
        /// The limit in force.
        max_bytes: usize,
    },
    /// The payload could not be decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Turns values into payload bytes and back. Decoding is bounded by [`FRAME_BYTES_MAX`].
pub trait Codec {
    /// Encodes `value` into a payload.
    fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, CodecError>;
    /// Decodes a whole payload into a `T`; trailing bytes are an error.
    fn decode<T: DeserializeOwned>(&self, payload: &[u8]) -> Result<T, CodecError>;
}

/// The bincode 2 codec (standard config: little endian, varint integers, size-limited).
#[derive(Debug, Clone, Copy, Default)]
pub struct BincodeCodec;

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<FRAME_BYTES_MAX>()
}

impl Codec for BincodeCodec {
    fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        bincode::serde::encode_to_vec(value, bincode_config())
            .map_err(|e| CodecError::Encode(e.to_string()))
    }

    fn decode<T: DeserializeOwned>(&self, payload: &[u8]) -> Result<T, CodecError> {
        let (value, used) = bincode::serde::decode_from_slice(payload, bincode_config())
            .map_err(|e| CodecError::Decode(e.to_string()))?;
        if used != payload.len() {
            return Err(CodecError::Trailing {
                trailing: payload.len() - used,
            });
        }
        Ok(value)
    }
}

/// Encodes `value` as one complete frame (header + payload).
pub fn encode_frame<T: Serialize>(value: &T) -> Result<Bytes, FrameError> {
    let payload = BincodeCodec.encode(value)?;
    if payload.len() > FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge {
            len_bytes: payload.len(),
            max_bytes: FRAME_BYTES_MAX,
        });
    }
    let mut out = BytesMut::with_capacity(FRAME_HEADER_BYTES + payload.len());
    // The cast cannot truncate: payload.len() <= FRAME_BYTES_MAX < u32::MAX.
    out.put_u32(payload.len() as u32);
    out.put_slice(&payload);
    Ok(out.freeze())
}

/// Decodes one complete frame's payload (without header) into a `T`.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    Ok(BincodeCodec.decode(payload)?)
}

/// Incremental frame splitter: push bytes in, take payloads out.
///
/// Chunks given as [`Bytes`] ([`FrameDecoder::push_bytes`]) are not copied while they
/// hold whole frames: payloads are slices of them. Only a frame split across chunks is
/// assembled in a buffer of its own.
#[derive(Debug)]
pub struct FrameDecoder {
    /// A received chunk not copied yet; when non-empty, `buf` is empty.
    chunk: Bytes,
    /// Bytes assembled across chunks.
    buf: BytesMut,
    max_bytes: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(FRAME_BYTES_MAX)
    }
}

impl FrameDecoder {
    /// A decoder that rejects payloads above `max_bytes` (capped at [`FRAME_BYTES_MAX`]).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            chunk: Bytes::new(),
            buf: BytesMut::new(),
            max_bytes: max_bytes.min(FRAME_BYTES_MAX),
        }
    }

    /// Appends received bytes (copied).
    pub fn push(&mut self, bytes: &[u8]) {
        self.assemble();
        self.buf.extend_from_slice(bytes);
    }

    /// Appends a received chunk, without copying it while it holds whole frames.
    pub fn push_bytes(&mut self, bytes: Bytes) {
        if self.chunk.is_empty() && self.buf.is_empty() {
            self.chunk = bytes;
        } else {
            self.push(&bytes);
        }
    }

    /// Moves the uncopied chunk into the assembly buffer.
    fn assemble(&mut self) {
        if !self.chunk.is_empty() {
            self.buf.extend_from_slice(&self.chunk);
            self.chunk = Bytes::new();
        }
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn buffered_bytes(&self) -> usize {
        self.chunk.len() + self.buf.len()
    }

    /// The next complete payload: `Ok(None)` when more bytes are needed, `Err` when the
    /// stream is invalid (the caller should close it).
    pub fn next_payload(&mut self) -> Result<Option<Bytes>, FrameError> {
        if !self.chunk.is_empty() {
            match self.complete_frame_len(&self.chunk)? {
                Some(len_bytes) => {
                    self.chunk.advance(FRAME_HEADER_BYTES);
                    return Ok(Some(self.chunk.split_to(len_bytes)));
                }
                // A frame continues in the next chunk: assemble it.
                None => self.assemble(),
            }
        }
        match self.complete_frame_len(&self.buf)? {
            Some(len_bytes) => {
                self.buf.advance(FRAME_HEADER_BYTES);
                Ok(Some(self.buf.split_to(len_bytes).freeze()))
            }
            None => Ok(None),
        }
    }

    /// The payload length of the frame at the start of `bytes` if all of it is there.
    fn complete_frame_len(&self, bytes: &[u8]) -> Result<Option<usize>, FrameError> {
        if bytes.len() < FRAME_HEADER_BYTES {
            return Ok(None);
        }
        let len_bytes = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if len_bytes > self.max_bytes {
            return Err(FrameError::TooLarge {
                len_bytes,
                max_bytes: self.max_bytes,
            });
        }
        Ok((bytes.len() >= FRAME_HEADER_BYTES + len_bytes).then_some(len_bytes))
    }

    /// The next complete frame decoded as `T` (see [`FrameDecoder::next_payload`]).
    pub fn next_frame<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        match self.next_payload()? {
            None => Ok(None),
            Some(payload) => decode_payload(&payload).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_partial_input() {
        let frame = encode_frame(&("hello".to_owned(), 7u64)).unwrap();
        let mut dec = FrameDecoder::default();
        dec.push(&frame[..3]);
        assert!(dec.next_frame::<(String, u64)>().unwrap().is_none());
        dec.push(&frame[3..]);
        assert_eq!(
            dec.next_frame::<(String, u64)>().unwrap(),
            Some(("hello".to_owned(), 7))
        );
        assert_eq!(dec.buffered_bytes(), 0);
    }

    #[test]
    fn whole_frames_in_a_chunk_are_sliced_and_split_frames_assembled() {
        let mut stream = BytesMut::new();
        for n in 0..5u64 {
            stream.extend_from_slice(&encode_frame(&("frame".to_owned(), n)).unwrap());
        }
        let stream = stream.freeze();
        let one = stream.len() / 5;
        // Every way of cutting the stream into two chunks yields the same five frames.
        for cut in 0..=stream.len() {
            let mut dec = FrameDecoder::default();
            let mut got = Vec::new();
            for chunk in [stream.slice(..cut), stream.slice(cut..)] {
                dec.push_bytes(chunk);
                while let Some((_, n)) = dec.next_frame::<(String, u64)>().unwrap() {
                    got.push(n);
                }
            }
            assert_eq!(got, vec![0, 1, 2, 3, 4], "cut at {cut}");
            assert_eq!(dec.buffered_bytes(), 0);
        }
        // A chunk of whole frames is not copied: the payload points into it.
        let mut dec = FrameDecoder::default();
        dec.push_bytes(stream.clone());
        let payload = dec.next_payload().unwrap().unwrap();
        assert_eq!(payload.as_ptr(), stream[FRAME_HEADER_BYTES..].as_ptr());
        assert_eq!(dec.buffered_bytes(), stream.len() - one);
    }

    #[test]
    fn oversized_length_prefix_is_rejected_before_buffering() {
        let mut dec = FrameDecoder::new(1024);
        dec.push(&(2048u32).to_be_bytes());
        assert!(matches!(
            dec.next_payload(),
            Err(FrameError::TooLarge {
                len_bytes: 2048,
                ..
            })
        ));
    }

    #[test]
    fn trailing_bytes_are_malformed() {
        let mut payload = BincodeCodec.encode(&5u32).unwrap();
        payload.push(0);
        assert!(matches!(
            BincodeCodec.decode::<u32>(&payload),
            Err(CodecError::Trailing { trailing: 1 })
        ));
    }
}
