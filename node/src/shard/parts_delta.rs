//! Deltas of a running assistant message, so a turn costs O(n) in the log.
//!
//! A checkpoint commits only what changed since the last one: the message's parts from a
//! [`PartsMark`] on. Applying a delta *truncates* the stored parts to its mark and then
//! appends its tail, so it is idempotent and order-tolerant in the one way that matters:
//! a delta built from any mark at or before what the store holds gives the proposer's
//! message exactly. The proposer therefore builds each delta from the newest mark it
//! *knows* is stored; after a failed or uncertain checkpoint it simply resends from there.
//!
//! Streaming appends text to the last part, pushes new parts, or rewrites a tool call in
//! place; the last moves the mark back to that part ([`PartsMark::at_part`]).

use serde::{Deserialize, Serialize};
use shoal_protocol::transcript::Part;

/// A position in a message's parts: byte `byte` of part `part`'s text (`byte` is 0 for a
/// tool call, or for `part == parts.len()`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct PartsMark {
    /// Index of the part.
    pub part: u32,
    /// Byte offset into that part's text.
    pub byte: u32,
}

impl PartsMark {
    /// The start of part `index`.
    pub fn at_part(index: usize) -> PartsMark {
        PartsMark {
            part: index as u32,
            byte: 0,
        }
    }

    /// The end of `parts`: inside the last part when it is text, so streamed text that
    /// extends it is sent from where the last delta stopped.
    pub fn end_of(parts: &[Part]) -> PartsMark {
        match parts.last() {
            Some(Part::Text { text } | Part::Reasoning { text }) => PartsMark {
                part: (parts.len() - 1) as u32,
                byte: text.len() as u32,
            },
            _ => PartsMark::at_part(parts.len()),
        }
    }
}

/// The parts of a message from `from` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartsDelta {
    /// Where the tail starts.
    pub from: PartsMark,
    /// The parts from `from` on. When `from.byte > 0` the first one continues the part
    /// at `from.part` (same kind, the text after `from.byte`).
    pub tail: Vec<Part>,
}

impl PartsDelta {
    /// The delta that brings a store holding `parts` up to `from` to all of `parts`.
    /// `from` must lie within `parts` (a mark the proposer took from them).
    pub fn since(parts: &[Part], from: PartsMark) -> PartsDelta {
        let index = from.part as usize;
        let mut tail = Vec::with_capacity(parts.len().saturating_sub(index));
        if let Some(first) = parts.get(index) {
            let byte = from.byte as usize;
            tail.push(match first {
                Part::Text { text } if byte > 0 => Part::Text {
                    text: text.get(byte..).unwrap_or_default().to_owned(),
                },
                Part::Reasoning { text } if byte > 0 => Part::Reasoning {
                    text: text.get(byte..).unwrap_or_default().to_owned(),
                },
                other => other.clone(),
            });
            tail.extend(parts[index + 1..].iter().cloned());
        }
        PartsDelta { from, tail }
    }

    /// Applies the delta to `parts`. `Err` (nothing changed) when `from` does not lie
    /// within `parts` or the tail does not continue the part it starts in. Depends only
    /// on its inputs, so every replica decides alike.
    pub fn apply(&self, parts: &mut Vec<Part>) -> Result<(), String> {
        let index = self.from.part as usize;
        let byte = self.from.byte as usize;
        if index > parts.len() || (index == parts.len() && byte > 0) {
            return Err(format!(
                "delta starts at part {index} byte {byte}, past the {} stored parts",
                parts.len()
            ));
        }
        let mut tail = self.tail.iter();
        if byte > 0 {
            let continued = tail.next();
            match (&mut parts[index], continued) {
                (Part::Text { text }, Some(Part::Text { text: more }))
                | (Part::Reasoning { text }, Some(Part::Reasoning { text: more })) => {
                    if !text.is_char_boundary(byte) {
                        return Err(format!(
                            "delta starts at byte {byte} of part {index}, which is not a character boundary of its {} bytes",
                            text.len()
                        ));
                    }
                    text.truncate(byte);
                    text.push_str(more);
                }
                (stored, continued) => {
                    return Err(format!(
                        "delta continues part {index} at byte {byte}, but that part is {} and the tail starts with {}",
                        kind(Some(stored)),
                        kind(continued)
                    ));
                }
            }
            parts.truncate(index + 1);
        } else {
            parts.truncate(index);
        }
        parts.extend(tail.cloned());
        Ok(())
    }
}

fn kind(part: Option<&Part>) -> &'static str {
    match part {
        Some(Part::Text { .. }) => "text",
        Some(Part::Reasoning { .. }) => "reasoning",
        Some(Part::ToolCall { .. }) => "a tool call",
        Some(Part::PermissionDecision { .. }) => "a permission decision",
        None => "nothing",
    }
}

/// A model of streaming for tests: the edits an agent's output makes to a message's
/// parts, and where they move the proposer's confirmed mark.
#[cfg(test)]
pub(crate) mod model {
    use super::PartsMark;
    use proptest::prelude::*;
    use shoal_protocol::transcript::{Part, ToolStatus};

    /// A text part.
    pub(crate) fn text(s: &str) -> Part {
        Part::Text { text: s.into() }
    }

    /// A reasoning part.
    pub(crate) fn reasoning(s: &str) -> Part {
        Part::Reasoning { text: s.into() }
    }

    /// A tool call part.
    pub(crate) fn tool(id: &str, status: ToolStatus) -> Part {
        Part::ToolCall {
            tool_call_id: id.into(),
            title: "t".into(),
            kind: None,
            status,
            input: None,
            output: None,
        }
    }

    /// One step of a turn.
    #[derive(Debug, Clone)]
    pub(crate) enum Edit {
        /// Text streamed (into the last part when it is text).
        Text(String),
        /// Reasoning streamed (likewise).
        Reasoning(String),
        /// A 20 000-byte text part.
        Big,
        /// A new tool call.
        NewTool,
        /// The n-th tool call rewritten in place.
        UpdateTool(usize),
        /// The proposer takes a checkpoint; it applies (`true`) or its fate is unknown.
        Checkpoint(bool),
    }

    /// Edits, with big parts when `big` (else more tool calls in their place).
    pub(crate) fn edit(big: bool) -> impl Strategy<Value = Edit> {
        prop_oneof![
            4 => "[a-zé]{0,6}".prop_map(Edit::Text),
            2 => "[a-z]{0,4}".prop_map(Edit::Reasoning),
            1 => Just(()).prop_map(move |()| if big { Edit::Big } else { Edit::NewTool }),
            1 => Just(Edit::NewTool),
            1 => (0usize..4).prop_map(Edit::UpdateTool),
            4 => any::<bool>().prop_map(Edit::Checkpoint),
        ]
    }

    /// Applies a streaming edit to `parts`, moving `confirmed` back to a rewritten part;
    /// `Some(applied)` for a checkpoint, which the caller takes.
    pub(crate) fn stream(
        parts: &mut Vec<Part>,
        confirmed: &mut PartsMark,
        edit: Edit,
    ) -> Option<bool> {
        match edit {
            Edit::Text(s) => match parts.last_mut() {
                Some(Part::Text { text }) => text.push_str(&s),
                _ => parts.push(text(&s)),
            },
            Edit::Reasoning(s) => match parts.last_mut() {
                Some(Part::Reasoning { text }) => text.push_str(&s),
                _ => parts.push(reasoning(&s)),
            },
            Edit::Big => parts.push(text(&"b".repeat(20_000))),
            Edit::NewTool => parts.push(tool("t", ToolStatus::Pending)),
            Edit::UpdateTool(n) => {
                let tools: Vec<usize> = parts
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| matches!(p, Part::ToolCall { .. }))
                    .map(|(i, _)| i)
                    .collect();
                if let Some(&i) = tools.get(n) {
                    parts[i] = tool("t", ToolStatus::Completed);
                    *confirmed = (*confirmed).min(PartsMark::at_part(i));
                }
            }
            Edit::Checkpoint(applied) => return Some(applied),
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::model::{edit, reasoning, stream, text, tool};
    use super::*;
    use proptest::prelude::*;
    use shoal_protocol::transcript::ToolStatus;

    #[test]
    fn a_delta_from_inside_a_text_part_carries_only_the_new_text() {
        let before = vec![reasoning("hm"), text("hello")];
        let mark = PartsMark::end_of(&before);
        assert_eq!(mark, PartsMark { part: 1, byte: 5 });
        let after = vec![
            reasoning("hm"),
            text("hello world"),
            tool("a", ToolStatus::Pending),
        ];
        let delta = PartsDelta::since(&after, mark);
        assert_eq!(
            delta.tail,
            vec![text(" world"), tool("a", ToolStatus::Pending)]
        );
        let mut stored = before.clone();
        delta.apply(&mut stored).unwrap();
        assert_eq!(stored, after);
        // Applying it again changes nothing: the store truncates to the mark first.
        delta.apply(&mut stored).unwrap();
        assert_eq!(stored, after);
    }

    #[test]
    fn a_store_ahead_of_the_mark_is_brought_to_the_proposers_parts() {
        // An uncertain checkpoint did apply: the store holds more than the proposer knew.
        let mut stored = vec![text("abcdef"), tool("a", ToolStatus::Pending)];
        let proposer = vec![text("abcdef"), tool("a", ToolStatus::Completed), text("x")];
        PartsDelta::since(&proposer, PartsMark { part: 0, byte: 3 })
            .apply(&mut stored)
            .unwrap();
        assert_eq!(stored, proposer);
    }

    #[test]
    fn bad_marks_are_refused_and_change_nothing() {
        let before = vec![text("héllo"), tool("a", ToolStatus::Pending)];
        let delta = |part, byte, tail| PartsDelta {
            from: PartsMark { part, byte },
            tail,
        };
        let cases = [
            delta(3, 0, vec![]),
            delta(2, 1, vec![text("x")]),
            // Inside the two bytes of `é`.
            delta(0, 2, vec![text("x")]),
            delta(0, 1, vec![reasoning("x")]),
            delta(1, 1, vec![text("x")]),
            delta(0, 1, vec![]),
        ];
        for delta in cases {
            let mut stored = before.clone();
            assert!(delta.apply(&mut stored).is_err(), "{delta:?}");
            assert_eq!(stored, before, "{delta:?}");
        }
    }

    proptest! {
        /// However streaming goes and whichever checkpoints are lost, a final delta from
        /// the newest confirmed mark reproduces the proposer's parts in the store.
        #[test]
        fn deltas_from_the_confirmed_mark_reproduce_the_message(edits in proptest::collection::vec(edit(false), 0..40)) {
            let mut parts: Vec<Part> = Vec::new();
            let mut stored: Vec<Part> = Vec::new();
            let mut confirmed = PartsMark::default();
            for edit in edits {
                let Some(applied) = stream(&mut parts, &mut confirmed, edit) else {
                    continue;
                };
                let delta = PartsDelta::since(&parts, confirmed);
                if applied {
                    delta.apply(&mut stored).unwrap();
                    prop_assert_eq!(&stored, &parts);
                    confirmed = PartsMark::end_of(&parts);
                } else {
                    // Lost or applied: the proposer cannot tell.
                    let mut maybe = stored.clone();
                    delta.apply(&mut maybe).unwrap();
                    if confirmed.part % 2 == 0 { stored = maybe; }
                }
            }
            PartsDelta::since(&parts, confirmed).apply(&mut stored).unwrap();
            prop_assert_eq!(stored, parts);
        }
    }
}
