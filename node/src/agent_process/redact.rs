//! What an agent printed, made fit for its conversation's owner: the end of its stderr
//! (or an error's text) bounded, with the values of the secrets it was given and
//! anything that looks like a credential replaced by [`REDACTED`].
//!
//! Plain functions (no I/O). Redaction is best effort against accidents (an agent
//! echoing its API key in a stack trace), not against an agent set on leaking: such an
//! agent can write the key into the transcript anyway.

/// What a redacted value is replaced with.
pub(crate) const REDACTED: &str = "[redacted]";
/// The most of the agent's stderr an owner is shown, in bytes (the newest bytes).
pub(crate) const STDERR_EXCERPT_BYTES_MAX: usize = 2 * 1024;
/// Secret values shorter than this are not searched for: replacing every `1` or `true`
/// would garble the text and hide nothing.
pub(crate) const SECRET_VALUE_CHARS_MIN: usize = 6;
/// A word this long made of letters and digits (both) is taken for a token.
const TOKEN_CHARS_MIN: usize = 32;
/// A word starting with one of these and at least [`PREFIXED_TOKEN_CHARS_MIN`] long is
/// taken for a token (OpenAI/Anthropic, GitHub, Slack, GitLab, AWS, Google keys, JWTs).
const TOKEN_PREFIXES: [&str; 12] = [
    "sk-",
    "sk_",
    "ghp_",
    "gho_",
    "ghs_",
    "ghu_",
    "github_pat_",
    "xox",
    "glpat-",
    "AKIA",
    "AIza",
    "eyJ",
];
/// See [`TOKEN_PREFIXES`].
const PREFIXED_TOKEN_CHARS_MIN: usize = 16;
/// In `NAME=value` or `name: value`, a name containing one of these (any case) has its
/// value redacted.
const SECRET_NAME_PARTS: [&str; 7] = [
    "token", "secret", "password", "passwd", "api_key", "apikey", "auth",
];

/// The secret values of an agent's environment worth redacting: those at least
/// [`SECRET_VALUE_CHARS_MIN`] long, longest first (so a secret containing another is
/// replaced whole).
pub(crate) fn secret_values<'a>(values: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut secrets: Vec<String> = values
        .into_iter()
        .filter(|value| value.chars().count() >= SECRET_VALUE_CHARS_MIN)
        .cloned()
        .collect();
    secrets.sort_by_key(|value| std::cmp::Reverse(value.len()));
    secrets.dedup();
    secrets
}

/// `text` with `secrets` and credential-like words replaced by [`REDACTED`].
pub(crate) fn redact(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_owned();
    for secret in secrets {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), REDACTED);
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    // The previous word named a secret (`password:`, `Authorization:`): this one is it.
    let mut value_next = false;
    let flush = |word: &mut String, out: &mut String, value_next: &mut bool| {
        if word.is_empty() {
            return;
        }
        let is_scheme = ["bearer", "basic", "token"].contains(&word.to_ascii_lowercase().as_str());
        if *value_next && !is_scheme {
            out.push_str(REDACTED);
            *value_next = false;
        } else {
            out.push_str(&redact_word(word));
            *value_next = *value_next || names_secret(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if is_separator(c) {
            flush(&mut word, &mut out, &mut value_next);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out, &mut value_next);
    out
}

/// The end of an agent's stderr for its owner: redacted, then cut to the newest
/// [`STDERR_EXCERPT_BYTES_MAX`] bytes at a character boundary (`…` marks the cut).
/// Redacting first means a cut never leaves part of a secret unrecognised.
pub(crate) fn stderr_excerpt(stderr: &str, secrets: &[String]) -> String {
    let redacted = redact(stderr.trim(), secrets);
    if redacted.len() <= STDERR_EXCERPT_BYTES_MAX {
        return redacted;
    }
    let mut cut = redacted.len() - STDERR_EXCERPT_BYTES_MAX;
    while !redacted.is_char_boundary(cut) {
        cut += 1;
    }
    format!("…{}", &redacted[cut..])
}

fn is_separator(c: char) -> bool {
    // Not `[` and `]`: they are part of [`REDACTED`].
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '`' | ',' | ';' | '(' | ')' | '{' | '}' | '<' | '>'
        )
}

/// Splits a word into pieces at these; a piece can be a name or a value.
const PIECE_DELIMITERS: [char; 6] = ['=', ':', '&', '?', '/', '@'];

/// One word (no separators) with a credential in it redacted: a token-like word goes
/// whole; otherwise, in its pieces (`a=b`, `k:v`, URL parts), a token-like piece and
/// the value after a name that says secret (`API_KEY=…`).
fn redact_word(word: &str) -> String {
    if looks_like_token(word) {
        return REDACTED.to_owned();
    }
    let mut out = String::with_capacity(word.len());
    let mut secret_name = false;
    for piece in word.split_inclusive(PIECE_DELIMITERS) {
        let (value, delimiter) = match piece.char_indices().last() {
            Some((at, c)) if PIECE_DELIMITERS.contains(&c) => (&piece[..at], &piece[at..]),
            _ => (piece, ""),
        };
        if !value.is_empty() && value != REDACTED && (secret_name || looks_like_token(value)) {
            out.push_str(REDACTED);
        } else {
            out.push_str(value);
        }
        out.push_str(delimiter);
        secret_name = matches!(delimiter, "=" | ":") && is_secret_name(value);
    }
    out
}

/// Whether a word ends by naming a secret whose value follows as the next word
/// (`password:`, `token=`).
fn names_secret(word: &str) -> bool {
    let Some(name) = word.strip_suffix([':', '=']) else {
        return false;
    };
    let name = name.rsplit(PIECE_DELIMITERS).next().unwrap_or(name);
    is_secret_name(name)
}

fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_NAME_PARTS.iter().any(|part| lower.contains(part))
}

fn looks_like_token(word: &str) -> bool {
    let chars = word.chars().count();
    if chars >= PREFIXED_TOKEN_CHARS_MIN && TOKEN_PREFIXES.iter().any(|p| word.starts_with(p)) {
        return true;
    }
    chars >= TOKEN_CHARS_MIN
        && word.chars().any(|c| c.is_ascii_digit())
        && word.chars().any(|c| c.is_ascii_alphabetic())
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '/' | '='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_of_the_environment_are_redacted_longest_first() {
        let env = [
            "hunter2-very-secret".to_owned(),
            "hunter2".to_owned(),
            "1".to_owned(),
        ];
        let secrets = secret_values(&env);
        assert_eq!(secrets, ["hunter2-very-secret", "hunter2"]);
        assert_eq!(
            redact("key hunter2-very-secret and hunter2, port 1", &secrets),
            "key [redacted] and [redacted], port 1"
        );
    }

    #[test]
    fn credential_like_words_are_redacted() {
        let cases = [
            (
                "auth failed for sk-ant-api03-abcdefghijklmnop",
                "auth failed for [redacted]",
            ),
            ("ANTHROPIC_API_KEY=abc123", "ANTHROPIC_API_KEY=[redacted]"),
            ("password: hunter2 ok", "password: [redacted] ok"),
            ("API_KEY=[redacted]", "API_KEY=[redacted]"),
            ("password:hunter2 ok", "password:[redacted] ok"),
            (
                "Authorization: Bearer 0123456789abcdef0123456789abcdef0",
                "Authorization: Bearer [redacted]",
            ),
            ("token=\"ghp_0123456789abcdefghij\"", "token=\"[redacted]\""),
            (
                "url https://x.test/?k=AIzaSyA0123456789abcdefgh",
                "url https://x.test/?k=[redacted]",
            ),
            // Ordinary output stays.
            (
                "error: connection refused (os error 111)",
                "error: connection refused (os error 111)",
            ),
            (
                "at /usr/lib/node_modules/agent/index.js:42:7",
                "at /usr/lib/node_modules/agent/index.js:42:7",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(redact(input, &[]), expected, "for {input:?}");
        }
    }

    #[test]
    fn the_excerpt_is_bounded_and_keeps_the_newest_bytes() {
        let stderr = format!("{}end", "é".repeat(STDERR_EXCERPT_BYTES_MAX));
        let excerpt = stderr_excerpt(&stderr, &[]);
        assert!(excerpt.len() <= STDERR_EXCERPT_BYTES_MAX + '…'.len_utf8());
        assert!(
            excerpt.starts_with('…') && excerpt.ends_with("éend"),
            "{excerpt}"
        );
        assert_eq!(stderr_excerpt("  short\n", &[]), "short");
    }
}
