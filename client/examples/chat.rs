//! Create a conversation, send one message and print the streamed answer.
//!
//! ```text
//! cargo run -p shoal-client --example chat -- .shoal-dev/profile.toml "hello world"
//! ```

use anyhow::{Context, bail};
use futures::StreamExt;
use shoal_client::{Client, Profile};
use shoal_protocol::transcript::{Event, MessageStatus};
use std::io::Write;
use std::path::PathBuf;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let profile_path: PathBuf = args
        .next()
        .context(
            "usage: chat PROFILE [MESSAGE]; PROFILE is the profile.toml `shoal-node dev` writes",
        )?
        .into();
    let text = args.next().unwrap_or_else(|| "hello world".to_owned());

    let profile = Profile::load(&profile_path)?;
    let client = Client::connect(&profile).await?;
    eprintln!(
        "connected to node {} as {}",
        client.node_id(),
        client.user()
    );

    let conversation = client
        .create_conversation(Some("chat example".to_owned()), None)
        .await?;
    eprintln!("conversation {}", conversation.id);

    let mut turn = client.send(conversation.id, text).await?;
    let mut stdout = std::io::stdout();
    let mut status = None;
    while let Some(frame) = turn.next().await {
        match frame?.event {
            Event::TextChunk { text, .. } => {
                write!(stdout, "{text}")?;
                stdout.flush()?;
            }
            Event::Error { message } => eprintln!("\n[error] {message}"),
            Event::Done { message, .. } => status = Some(message.status),
            _ => {}
        }
    }
    writeln!(stdout)?;
    client.close().await;
    match status {
        Some(MessageStatus::Complete) => Ok(()),
        Some(other) => bail!("the turn ended {other:?}"),
        None => bail!("the turn ended without a done event"),
    }
}
