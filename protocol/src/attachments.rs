//! Attachments of a user message: images and files given to the agent as ACP prompt
//! blocks (`image`, or an embedded `resource`) next to the text, only to agents that
//! advertise them (`promptCapabilities.image`, `promptCapabilities.embeddedContext`).
//! They reach the agent once, with the message's turn; the transcript keeps a line
//! naming each (not its bytes).

use serde::{Deserialize, Serialize};

/// Most attachments of one message.
pub const ATTACHMENTS_MAX: usize = 8;
/// Largest attachment, in bytes.
pub const ATTACHMENT_BYTES_MAX: usize = 2 * 1024 * 1024;
/// Largest sum of one message's attachments, in bytes (under the 8 MiB frame bound).
pub const ATTACHMENTS_TOTAL_BYTES_MAX: usize = 6 * 1024 * 1024;
/// Longest attachment name or MIME type, in bytes.
pub const ATTACHMENT_NAME_BYTES_MAX: usize = 255;

/// The image types agents take as ACP `image` blocks; anything else is a `resource`.
pub const IMAGE_MIME_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// One attachment. `Debug` shows its name, type and size, not its bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Its file name (no directories), for the agent and the transcript.
    pub name: String,
    /// Its MIME type (`image/png`, `text/plain`, …).
    pub mime_type: String,
    /// Its content.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("name", &self.name)
            .field("mime_type", &self.mime_type)
            .field("bytes", &self.data.len())
            .finish()
    }
}

impl Attachment {
    /// Whether it goes to the agent as an image (else as an embedded resource).
    pub fn is_image(&self) -> bool {
        IMAGE_MIME_TYPES.contains(&self.mime_type.as_str())
    }

    /// `name (type, N bytes)`, for the transcript and messages.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}, {} bytes)",
            self.name,
            self.mime_type,
            self.data.len()
        )
    }
}

/// Checks a message's attachments: count, sizes, names (a plain file name) and types.
pub fn check_attachments(attachments: &[Attachment]) -> Result<(), String> {
    if attachments.len() > ATTACHMENTS_MAX {
        return Err(format!(
            "{} attachments, the limit is {ATTACHMENTS_MAX} per message",
            attachments.len()
        ));
    }
    let mut total = 0usize;
    for a in attachments {
        let name_ok = !a.name.is_empty()
            && a.name.len() <= ATTACHMENT_NAME_BYTES_MAX
            && !a.name.contains(['/', '\\'])
            && !a.name.chars().any(char::is_control)
            && a.name != "."
            && a.name != "..";
        if !name_ok {
            return Err(format!(
                "attachment name `{}` must be a file name of 1 to {ATTACHMENT_NAME_BYTES_MAX} bytes without `/`, `\\` or control characters",
                a.name.escape_debug()
            ));
        }
        let mime_ok = a.mime_type.len() <= ATTACHMENT_NAME_BYTES_MAX
            && a.mime_type.split_once('/').is_some_and(|(t, s)| {
                let token = |x: &str| {
                    !x.is_empty()
                        && x.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                };
                token(t) && token(s)
            });
        if !mime_ok {
            return Err(format!(
                "attachment `{}`: `{}` is not a MIME type such as image/png or text/plain",
                a.name,
                a.mime_type.escape_debug()
            ));
        }
        if a.data.len() > ATTACHMENT_BYTES_MAX {
            return Err(format!(
                "attachment `{}` is {} bytes, the limit is {ATTACHMENT_BYTES_MAX}",
                a.name,
                a.data.len()
            ));
        }
        total += a.data.len();
    }
    if total > ATTACHMENTS_TOTAL_BYTES_MAX {
        return Err(format!(
            "the attachments are {total} bytes together, the limit is {ATTACHMENTS_TOTAL_BYTES_MAX}"
        ));
    }
    Ok(())
}

/// A MIME type for a file name, by its extension (`application/octet-stream` when
/// unknown).
pub fn mime_for_name(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("txt" | "log") => "text/plain",
        Some("md") => "text/markdown",
        Some("rs") => "text/x-rust",
        Some("json") => "application/json",
        Some("toml") => "application/toml",
        Some("csv") => "text/csv",
        Some("html" | "htm") => "text/html",
        Some("pdf") => "application/pdf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, mime: &str, bytes: usize) -> Attachment {
        Attachment {
            name: name.into(),
            mime_type: mime.into(),
            data: vec![b'x'; bytes],
        }
    }

    #[test]
    fn attachments_are_bounded_and_named_plainly() {
        assert!(check_attachments(&[file("a.png", "image/png", 10)]).is_ok());
        assert!(file("a.png", "image/png", 1).is_image());
        assert!(!file("a.txt", "text/plain", 1).is_image());
        assert!(check_attachments(&[file("../a", "text/plain", 1)]).is_err());
        assert!(check_attachments(&[file("a", "nonsense", 1)]).is_err());
        let big = file(
            "big.bin",
            "application/octet-stream",
            ATTACHMENT_BYTES_MAX + 1,
        );
        assert!(
            check_attachments(&[big])
                .unwrap_err()
                .contains("the limit is")
        );
        let many = vec![file("a", "text/plain", 1); ATTACHMENTS_MAX + 1];
        assert!(check_attachments(&many).is_err());
        let four = vec![file("a", "text/plain", ATTACHMENT_BYTES_MAX); 4];
        assert!(check_attachments(&four).unwrap_err().contains("together"));
        assert_eq!(mime_for_name("Photo.JPG"), "image/jpeg");
        assert!(!format!("{:?}", file("a", "text/plain", 3)).contains("120"));
    }
}
