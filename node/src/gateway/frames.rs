//! Frames on QUIC streams: bounded reads, writes, and what can go wrong.

use serde::Serialize;
use serde::de::DeserializeOwned;
use shoal_protocol::frame::{FrameError, encode_frame};
use shoal_protocol::{ErrorCode, FrameDecoder, WireError};

/// Most bytes taken from a stream per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameIoError {
    /// The peer sent something invalid; close the connection after telling it.
    #[error("{0}")]
    Invalid(WireError),
    /// The stream or connection failed (peer gone, reset).
    #[error("stream failed: {0}")]
    Stream(String),
}

impl From<FrameError> for FrameIoError {
    fn from(e: FrameError) -> Self {
        let code = match &e {
            FrameError::TooLarge { .. } => ErrorCode::TooLarge,
            FrameError::Codec(_) => ErrorCode::Malformed,
        };
        FrameIoError::Invalid(WireError::new(code, e.to_string()))
    }
}

/// Reads exactly one frame of at most `max_bytes` from a stream the peer finishes after
/// it. `Ok(None)` when the stream ends before any byte.
pub async fn read_frame<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    max_bytes: usize,
) -> Result<Option<T>, FrameIoError> {
    FrameStream::new(recv, max_bytes).next().await
}

/// Frames of at most `max_bytes` each, read one after another from a stream (bytes read
/// past one frame are kept for the next).
pub struct FrameStream<'a> {
    recv: &'a mut quinn::RecvStream,
    decoder: FrameDecoder,
}

impl<'a> FrameStream<'a> {
    /// Frames of `recv`, each at most `max_bytes`.
    pub fn new(recv: &'a mut quinn::RecvStream, max_bytes: usize) -> Self {
        FrameStream {
            recv,
            decoder: FrameDecoder::new(max_bytes),
        }
    }

    /// The next frame; `Ok(None)` when the stream ends between frames.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameIoError> {
        loop {
            if let Some(frame) = self.decoder.next_frame::<T>()? {
                return Ok(Some(frame));
            }
            // Chunks as quinn holds them: no zeroed buffer per frame (every Raft
            // heartbeat is a frame each way).
            match self
                .recv
                .read_chunk(READ_CHUNK_BYTES, true)
                .await
                .map_err(|e| FrameIoError::Stream(e.to_string()))?
            {
                Some(chunk) => self.decoder.push_bytes(chunk.bytes),
                None if self.decoder.buffered_bytes() == 0 => return Ok(None),
                None => {
                    return Err(FrameIoError::Invalid(WireError::new(
                        ErrorCode::Malformed,
                        format!(
                            "stream ended inside a frame ({} bytes buffered)",
                            self.decoder.buffered_bytes()
                        ),
                    )));
                }
            }
        }
    }
}

/// Writes one frame.
pub async fn write_frame<T: Serialize>(
    send: &mut quinn::SendStream,
    value: &T,
) -> Result<(), FrameIoError> {
    let bytes = encode_frame(value)
        .map_err(|e| FrameIoError::Stream(format!("cannot encode a frame: {e}")))?;
    send.write_all(&bytes)
        .await
        .map_err(|e| FrameIoError::Stream(e.to_string()))
}

/// How long to wait for the peer to acknowledge a final error frame before closing.
pub const FINAL_FRAME_ACK_TIMEOUT_MS: u64 = 2_000;

/// Writes a last frame, finishes the stream and waits (bounded) until the peer has
/// acknowledged it, so a connection close that follows cannot overtake it.
pub async fn write_final_frame<T: Serialize>(send: &mut quinn::SendStream, value: &T) {
    if write_frame(send, value).await.is_ok() && send.finish().is_ok() {
        let acked = send.stopped();
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(FINAL_FRAME_ACK_TIMEOUT_MS),
            acked,
        )
        .await;
    }
}
