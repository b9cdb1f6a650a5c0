//! The agent's stdio as JSON-RPC lines: stdout read line by line (bounded, with a
//! quiet window for a last message whose newline never comes), stdin written one
//! flushed line per message.
//!
//! Agents get the newline-delimited JSON they expect even when they are sloppy about
//! it: a complete message left without its `\n` by a live agent is taken after
//! [`UNTERMINATED_QUIET_MS`] of silence instead of waiting for the turn's idle timeout,
//! and our requests carry numeric ids matched back even when echoed as strings
//! (`ids.rs`).

use super::ids::RequestIds;
use futures::channel::mpsc as futures_mpsc;
use futures::{Stream, StreamExt};
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// The longest line accepted from the agent's stdout, in bytes. A longer line
/// ends the connection: the agent is broken or hostile. Large enough for a
/// 16 MiB `fs/write_text_file` with escaping.
pub(crate) const AGENT_LINE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// How long stdout must stay quiet after a complete JSON message that lacks its
/// trailing newline before that message is taken anyway, in milliseconds. Long
/// enough for the newline of a message written in two pieces, short next to any
/// turn timeout.
pub(crate) const UNTERMINATED_QUIET_MS: u64 = 100;

/// The agent's stdout as a stream of lines (see [`read_line`]). Answers to our requests get back the ids the connection gave them (`ids`).
pub(crate) fn line_stream<R: AsyncBufRead + Unpin + Send + 'static>(
    reader: R,
    ids: Arc<RequestIds>,
    pid: Option<u32>,
) -> impl Stream<Item = io::Result<String>> + Send + 'static {
    futures::stream::unfold(Some(reader), move |reader| {
        let ids = Arc::clone(&ids);
        async move {
            let mut reader = reader?;
            let quiet = Duration::from_millis(UNTERMINATED_QUIET_MS);
            match read_line(&mut reader, AGENT_LINE_BYTES_MAX, quiet).await {
                Ok(Some(line)) => {
                    tracing::trace!(?pid, line = %super::wire::truncate_for_log(&line), "agent stdout");
                    Some((Ok(ids.incoming(line)), Some(reader)))
                }
                Ok(None) => None,
                Err(error) => Some((Err(error), None)),
            }
        }
    })
}

/// Copies lines from the connection to the agent's stdin until the connection
/// ends, a write fails, or `close` turns true; then drops stdin so the agent
/// sees EOF. Our requests go out numbered (`ids`).
pub(crate) async fn write_lines<W: AsyncWrite + Unpin>(
    mut stdin: W,
    mut lines: futures_mpsc::Receiver<String>,
    mut close: watch::Receiver<bool>,
    ids: Arc<RequestIds>,
    pid: Option<u32>,
) {
    loop {
        let line = tokio::select! {
            biased;
            _ = close.wait_for(|closed| *closed) => break,
            line = lines.next() => match line {
                Some(line) => ids.outgoing(line),
                None => break,
            },
        };
        let write = async {
            stdin.write_all(line.as_bytes()).await?;
            // ACP pitfall 2: without the newline the agent never sees the message.
            stdin.write_all(b"\n").await?;
            stdin.flush().await
        };
        let result = tokio::select! {
            biased;
            _ = close.wait_for(|closed| *closed) => break,
            result = write => result,
        };
        if let Err(error) = result {
            tracing::debug!(?pid, %error, "writing to the agent's stdin failed");
            break;
        }
    }
    drop(stdin);
}

/// Reads one line of at most `max_bytes`, skipping blank lines. A final line
/// without `\n` at EOF is returned (ACP pitfall 2), and so is a line without `\n`
/// that holds one complete JSON object once nothing more arrived for `quiet` (a
/// live agent that forgot the newline); `None` at EOF.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max_bytes: usize,
    quiet: Duration,
) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    loop {
        if may_be_complete(&line) {
            // Cancel-safe: a fill_buf that times out has consumed nothing.
            match tokio::time::timeout(quiet, reader.fill_buf()).await {
                Ok(ready) => {
                    ready?;
                }
                Err(_quiet) if serde_json::from_slice::<serde::de::IgnoredAny>(&line).is_ok() => {
                    tracing::debug!(
                        bytes = line.len(),
                        "the agent left a message without its trailing newline; taking it after {} ms of quiet",
                        quiet.as_millis()
                    );
                    return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
                }
                // Not a whole message yet: wait for the rest as long as it takes.
                Err(_quiet) => {}
            }
        }
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            if line.iter().all(u8::is_ascii_whitespace) {
                return Ok(None);
            }
            return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
        }
        let (chunk, found_newline) = match buffer.iter().position(|&byte| byte == b'\n') {
            Some(end) => (&buffer[..end], true),
            None => (buffer, false),
        };
        if line.len() + chunk.len() > max_bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the agent sent a line longer than {max_bytes} bytes"),
            ));
        }
        line.extend_from_slice(chunk);
        let consumed = chunk.len() + usize::from(found_newline);
        reader.consume(consumed);
        if found_newline {
            if line.iter().all(u8::is_ascii_whitespace) {
                line.clear();
                continue;
            }
            return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
        }
    }
}

/// Whether a partial line could be a whole JSON-RPC message (an object): only then
/// is it worth parsing after the quiet window, so a long message arriving slowly is
/// not parsed again at every pause.
fn may_be_complete(line: &[u8]) -> bool {
    let text = line.trim_ascii();
    text.first() == Some(&b'{') && text.last() == Some(&b'}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    const QUIET: Duration = Duration::from_millis(UNTERMINATED_QUIET_MS);

    #[tokio::test]
    async fn lines_are_bounded_blank_lines_skipped_and_a_final_line_kept() -> anyhow::Result<()> {
        let input: &[u8] = b"{\"a\":1}\n\n  \r\n{\"b\":2}\r\n{\"c\":3}";
        let mut reader = BufReader::new(input);
        assert_eq!(
            read_line(&mut reader, 64, QUIET).await?.as_deref(),
            Some("{\"a\":1}")
        );
        assert_eq!(
            read_line(&mut reader, 64, QUIET).await?.as_deref(),
            Some("{\"b\":2}\r")
        );
        assert_eq!(
            read_line(&mut reader, 64, QUIET).await?.as_deref(),
            Some("{\"c\":3}")
        );
        assert_eq!(read_line(&mut reader, 64, QUIET).await?, None);

        let long: &[u8] = b"0123456789\n";
        let mut reader = BufReader::new(long);
        let error = read_line(&mut reader, 5, QUIET).await;
        assert!(error.is_err_and(|e| e.kind() == io::ErrorKind::InvalidData));
        Ok(())
    }

    #[tokio::test]
    async fn a_complete_message_without_newline_is_taken_after_the_quiet_window()
    -> anyhow::Result<()> {
        let (mut agent, ours) = tokio::io::duplex(1024);
        let mut reader = BufReader::new(ours);
        agent.write_all(b"{\"id\":1,\"result\":{}}").await?;
        let started = tokio::time::Instant::now();
        let line = read_line(&mut reader, 1024, QUIET).await?;
        assert_eq!(line.as_deref(), Some("{\"id\":1,\"result\":{}}"));
        let waited = started.elapsed();
        assert!(
            waited >= QUIET && waited < QUIET * 50,
            "taken after {waited:?}, the window is {QUIET:?}"
        );
        // The late newline is a blank line; the next message reads normally.
        agent.write_all(b"\n{\"id\":2}\n").await?;
        let line = read_line(&mut reader, 1024, QUIET).await?;
        assert_eq!(line.as_deref(), Some("{\"id\":2}"));
        Ok(())
    }

    #[tokio::test]
    async fn a_partial_message_waits_for_the_rest() -> anyhow::Result<()> {
        let (mut agent, ours) = tokio::io::duplex(1024);
        let mut reader = BufReader::new(ours);
        // Looks like an object but is cut inside a string: not taken.
        agent.write_all(b"{\"text\":\"a}").await?;
        let read = read_line(&mut reader, 1024, QUIET);
        tokio::pin!(read);
        let waited = tokio::time::timeout(QUIET * 5, &mut read).await;
        assert!(waited.is_err(), "a partial message was taken: {waited:?}");
        agent.write_all(b"\"}\n").await?;
        assert_eq!(read.await?.as_deref(), Some("{\"text\":\"a}\"}"));
        Ok(())
    }
}
