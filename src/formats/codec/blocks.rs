//! Block bookkeeping shared by the stream parsers: providers that stream
//! flat deltas (Chat Completions, Gemini) are turned into the canonical
//! numbered blocks, opened and closed in order, one open at a time.

use crate::formats::canonical::{BlockKind, StreamEvent};

/// What the open block holds; tool calls are keyed by the provider's own
/// tool index so a new call opens a new block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Text,
    Thinking,
    Tool(u64),
}

#[derive(Debug, Default)]
pub struct Blocks {
    open: Option<(usize, Slot)>,
    next: usize,
    pub saw_tool_calls: bool,
}

impl Blocks {
    /// The index of the open block for `slot`, opening it (and closing
    /// the one before) when needed.
    pub fn enter(
        &mut self,
        slot: Slot,
        kind: impl FnOnce() -> BlockKind,
        out: &mut Vec<StreamEvent>,
    ) -> usize {
        if let Some((index, open)) = self.open {
            if open == slot {
                return index;
            }
        }
        self.close(out);
        let index = self.next;
        self.next += 1;
        if matches!(slot, Slot::Tool(_)) {
            self.saw_tool_calls = true;
        }
        self.open = Some((index, slot));
        out.push(StreamEvent::BlockStart { index, kind: kind() });
        index
    }

    /// The open block's index when it holds `slot`.
    pub fn current(&self, slot: Slot) -> Option<usize> {
        self.open.filter(|(_, s)| *s == slot).map(|(i, _)| i)
    }

    pub fn close(&mut self, out: &mut Vec<StreamEvent>) {
        if let Some((index, _)) = self.open.take() {
            out.push(StreamEvent::BlockStop { index });
        }
    }
}
