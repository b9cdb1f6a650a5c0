//! The state of `shoalctl top`, without I/O: the last snapshot, the view, the scroll offset
//! and the events derived by diffing one snapshot against the next. Time comes in as
//! `now_ms` (ms since the Unix epoch); keys come in as crossterm key events.

use crate::render::{cell, safe_line};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use shoal_protocol::admin::{ActorInfo, MemberInfo, NodeStatus, ShardInfo};
use std::collections::{BTreeMap, VecDeque};

/// Event lines kept for the events pane; older ones are dropped.
pub(crate) const EVENTS_MAX: usize = 200;
/// Rows moved by PgUp / PgDn.
pub(crate) const PAGE_ROWS: usize = 10;
/// Shard ids listed in one leader-change event line before `(+N more)`.
const SHARDS_PER_EVENT_MAX: usize = 8;
/// Longest error text kept for the header, in characters.
const ERROR_CHARS_MAX: usize = 300;

/// What one refresh read from the answering node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// The answering node's status and counters.
    pub(crate) status: NodeStatus,
    /// The members as its gossip sees them.
    pub(crate) members: Vec<MemberInfo>,
    /// Every shard as it sees them.
    pub(crate) shards: Vec<ShardInfo>,
    /// The actors running on it.
    pub(crate) actors: Vec<ActorInfo>,
}

/// The screen being shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    /// Members and the answering node's counters.
    Nodes,
    /// The shard map and the shard table.
    Shards,
    /// The answering node's actors.
    Actors,
}

impl View {
    /// Every view, in key order (`1`, `2`, `3`).
    pub(crate) const ALL: [View; 3] = [View::Nodes, View::Shards, View::Actors];

    pub(crate) fn title(self) -> &'static str {
        match self {
            View::Nodes => "Nodes",
            View::Shards => "Shards",
            View::Actors => "Actors",
        }
    }

    fn next(self) -> View {
        match self {
            View::Nodes => View::Shards,
            View::Shards => View::Actors,
            View::Actors => View::Nodes,
        }
    }
}

/// What the I/O loop does after a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Nothing changed on screen.
    None,
    /// The screen changed: draw again.
    Redraw,
    /// Leave `top`.
    Quit,
}

/// The whole state of the UI.
#[derive(Debug)]
pub(crate) struct App {
    /// The node `top` talks to (from the handshake).
    pub(crate) node_id: String,
    /// The refresh interval, shown in the header.
    pub(crate) interval_ms: u64,
    /// The last snapshot read, kept when a refresh fails.
    pub(crate) snapshot: Option<Snapshot>,
    /// When `snapshot` was read (ms since the Unix epoch).
    pub(crate) refreshed_at_ms: Option<u64>,
    /// Why the last refresh failed, until one succeeds.
    pub(crate) error: Option<String>,
    /// The screen shown.
    pub(crate) view: View,
    /// The first table row shown in the current view.
    pub(crate) scroll: usize,
    /// Timestamped event lines, oldest first, at most [`EVENTS_MAX`].
    pub(crate) events: VecDeque<String>,
}

impl App {
    pub(crate) fn new(node_id: &str, interval_ms: u64) -> App {
        App {
            node_id: cell(node_id),
            interval_ms,
            snapshot: None,
            refreshed_at_ms: None,
            error: None,
            view: View::Nodes,
            scroll: 0,
            events: VecDeque::new(),
        }
    }

    /// Handles one key press.
    pub(crate) fn on_key(&mut self, key: KeyEvent) -> Action {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
            KeyCode::Char('c') if ctrl => Action::Quit,
            KeyCode::Char('1') => self.switch(View::Nodes),
            KeyCode::Char('2') => self.switch(View::Shards),
            KeyCode::Char('3') => self.switch(View::Actors),
            KeyCode::Tab => self.switch(self.view.next()),
            KeyCode::Up => self.scroll_to(self.scroll.saturating_sub(1)),
            KeyCode::Down => self.scroll_to(self.scroll.saturating_add(1)),
            KeyCode::PageUp => self.scroll_to(self.scroll.saturating_sub(PAGE_ROWS)),
            KeyCode::PageDown => self.scroll_to(self.scroll.saturating_add(PAGE_ROWS)),
            KeyCode::Home => self.scroll_to(0),
            KeyCode::End => self.scroll_to(usize::MAX),
            _ => Action::None,
        }
    }

    /// Takes a new snapshot: derives events from what changed, clears any error.
    pub(crate) fn on_snapshot(&mut self, mut snapshot: Snapshot, now_ms: u64) {
        snapshot.members.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        snapshot.shards.sort_by_key(|shard| shard.shard);
        snapshot
            .actors
            .sort_by(|a, b| (&a.kind, &a.key).cmp(&(&b.kind, &b.key)));
        let mut lines = Vec::new();
        if let Some(error) = self.error.take() {
            lines.push(format!("refresh works again (it failed: {error})"));
        }
        match &self.snapshot {
            None => lines.push(format!(
                "connected to {}: {} members, {} shards",
                cell(&snapshot.status.node_id),
                snapshot.members.len(),
                snapshot.shards.len()
            )),
            Some(previous) => {
                lines.extend(member_changes(&previous.members, &snapshot.members));
                lines.extend(leader_changes(&previous.shards, &snapshot.shards));
            }
        }
        for line in lines {
            self.push_event(now_ms, line);
        }
        self.snapshot = Some(snapshot);
        self.refreshed_at_ms = Some(now_ms);
        self.scroll = self.scroll.min(self.rows().saturating_sub(1));
    }

    /// Records a failed refresh: the last data stays, the header shows why.
    pub(crate) fn on_error(&mut self, error: &str, now_ms: u64) {
        let error = safe_line(error, ERROR_CHARS_MAX);
        if self.error.as_ref() != Some(&error) {
            self.push_event(now_ms, format!("refresh failed: {error}"));
        }
        self.error = Some(error);
    }

    /// Rows of the current view's table.
    pub(crate) fn rows(&self) -> usize {
        let Some(snapshot) = &self.snapshot else {
            return 0;
        };
        match self.view {
            View::Nodes => snapshot.members.len(),
            View::Shards => snapshot.shards.len(),
            View::Actors => snapshot.actors.len(),
        }
    }

    fn switch(&mut self, view: View) -> Action {
        if self.view == view {
            return Action::None;
        }
        self.view = view;
        self.scroll = 0;
        Action::Redraw
    }

    fn scroll_to(&mut self, row: usize) -> Action {
        let row = row.min(self.rows().saturating_sub(1));
        if row == self.scroll {
            return Action::None;
        }
        self.scroll = row;
        Action::Redraw
    }

    fn push_event(&mut self, now_ms: u64, line: String) {
        if self.events.len() >= EVENTS_MAX {
            self.events.pop_front();
        }
        self.events
            .push_back(format!("{}  {line}", clock_time(now_ms)));
    }
}

/// `HH:MM:SS` (UTC) of a time in ms since the Unix epoch.
pub(crate) fn clock_time(ms: u64) -> String {
    let secs = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

/// Members that joined, left, changed state or started or stopped draining.
fn member_changes(before: &[MemberInfo], after: &[MemberInfo]) -> Vec<String> {
    let before: BTreeMap<&str, &MemberInfo> =
        before.iter().map(|m| (m.node_id.as_str(), m)).collect();
    let after_map: BTreeMap<&str, &MemberInfo> =
        after.iter().map(|m| (m.node_id.as_str(), m)).collect();
    let mut lines = Vec::new();
    for (id, new) in &after_map {
        let name = cell(id);
        let Some(old) = before.get(id) else {
            lines.push(format!("{name} joined ({})", cell(&new.state)));
            continue;
        };
        if old.state != new.state {
            lines.push(format!(
                "{name} is {} (was {})",
                cell(&new.state),
                cell(&old.state)
            ));
        }
        if !old.draining && new.draining {
            lines.push(format!("{name} started draining"));
        } else if old.draining && !new.draining {
            lines.push(format!("{name} stopped draining"));
        }
    }
    for id in before.keys().filter(|id| !after_map.contains_key(*id)) {
        lines.push(format!("{} left the member list", cell(id)));
    }
    lines
}

/// Leadership moves, one line per (old leader, new leader) pair.
fn leader_changes(before: &[ShardInfo], after: &[ShardInfo]) -> Vec<String> {
    let before: BTreeMap<u16, Option<&str>> = before
        .iter()
        .map(|s| (s.shard, s.leader.as_deref()))
        .collect();
    let mut moves: BTreeMap<(Option<&str>, Option<&str>), Vec<u16>> = BTreeMap::new();
    for shard in after {
        let new = shard.leader.as_deref();
        if let Some(&old) = before.get(&shard.shard)
            && old != new
        {
            moves.entry((old, new)).or_default().push(shard.shard);
        }
    }
    let name = |leader: Option<&str>| leader.map_or_else(|| "none".to_owned(), cell);
    let mut moves: Vec<_> = moves.into_iter().collect();
    moves.sort_by_key(|(_, shards)| shards[0]);
    moves
        .into_iter()
        .map(|((old, new), shards)| {
            let noun = if shards.len() == 1 { "shard" } else { "shards" };
            let mut ids: Vec<String> = shards
                .iter()
                .take(SHARDS_PER_EVENT_MAX)
                .map(u16::to_string)
                .collect();
            if shards.len() > SHARDS_PER_EVENT_MAX {
                ids.push(format!("(+{} more)", shards.len() - SHARDS_PER_EVENT_MAX));
            }
            format!(
                "{noun} {}: leader {} -> {}",
                ids.join(" "),
                name(old),
                name(new)
            )
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ratatui::crossterm::event::KeyEventKind;

    /// 12:00:00 UTC on some day.
    pub(crate) const NOON_MS: u64 = 1_700_000_000_000 / 86_400_000 * 86_400_000 + 43_200_000;

    pub(crate) fn member(id: &str, state: &str, leaders: u32) -> MemberInfo {
        MemberInfo {
            node_id: id.into(),
            addr: format!("127.0.0.1:70{leaders:02}"),
            state: state.into(),
            version: "0.1.0".into(),
            leaders,
            draining: false,
        }
    }

    pub(crate) fn shard(id: u16, leader: Option<&str>) -> ShardInfo {
        ShardInfo {
            shard: id,
            leader: leader.map(Into::into),
            replicas: vec!["n1".into(), "n2".into(), "n3".into()],
            learners: vec![],
            term: 4,
            applied_index: Some(1200 + u64::from(id)),
            hosted_here: leader == Some("n1"),
        }
    }

    /// Three alive nodes, 12 shards led round-robin, two actors.
    pub(crate) fn snapshot() -> Snapshot {
        Snapshot {
            status: NodeStatus {
                node_id: "n1".into(),
                version: "0.1.0".into(),
                listen_addr: "127.0.0.1:7001".into(),
                uptime_secs: 3723,
                conversations_active: 3,
                agent_processes: 2,
                followers: 7,
                turns_running: 1,
                connections: 5,
                follower_resyncs: 0,
                checkpoints: 0,
                checkpoint_bytes: 0,
            },
            members: vec![
                member("n2", "alive", 4),
                member("n1", "alive", 4),
                member("n3", "alive", 4),
            ],
            shards: (0..12)
                .map(|i| shard(i, Some(["n1", "n2", "n3"][usize::from(i % 3)])))
                .collect(),
            actors: vec![
                ActorInfo {
                    kind: "conversation".into(),
                    key: "c-1-00000000000000000000000000000002".into(),
                    state: "turn".into(),
                },
                ActorInfo {
                    kind: "agent_session".into(),
                    key: "c-1-00000000000000000000000000000002".into(),
                    state: "live".into(),
                },
            ],
        }
    }

    pub(crate) fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new_with_kind(code, KeyModifiers::NONE, KeyEventKind::Press)
    }

    #[test]
    fn keys_switch_views_and_quit() {
        let mut app = App::new("n1", 1000);
        app.on_snapshot(snapshot(), NOON_MS);
        assert_eq!(app.view, View::Nodes);
        assert_eq!(app.on_key(key(KeyCode::Char('2'))), Action::Redraw);
        assert_eq!(app.view, View::Shards);
        assert_eq!(app.on_key(key(KeyCode::Char('2'))), Action::None);
        assert_eq!(app.on_key(key(KeyCode::Char('3'))), Action::Redraw);
        assert_eq!(app.view, View::Actors);
        assert_eq!(app.on_key(key(KeyCode::Tab)), Action::Redraw);
        assert_eq!(app.view, View::Nodes);
        assert_eq!(app.on_key(key(KeyCode::Tab)), Action::Redraw);
        assert_eq!(app.view, View::Shards);
        assert_eq!(app.on_key(key(KeyCode::Char('1'))), Action::Redraw);
        assert_eq!(app.view, View::Nodes);
        assert_eq!(app.on_key(key(KeyCode::Char('x'))), Action::None);
        assert_eq!(app.on_key(key(KeyCode::Char('q'))), Action::Quit);
        assert_eq!(app.on_key(key(KeyCode::Esc)), Action::Quit);
        let ctrl_c = KeyEvent::new_with_kind(
            KeyCode::Char('c'),
            KeyModifiers::CONTROL,
            KeyEventKind::Press,
        );
        assert_eq!(app.on_key(ctrl_c), Action::Quit);
        assert_eq!(app.on_key(key(KeyCode::Char('c'))), Action::None);
    }

    #[test]
    fn scrolling_stays_within_the_table_and_resets_on_a_new_view() {
        let mut app = App::new("n1", 1000);
        // Nothing to scroll before the first snapshot.
        assert_eq!(app.on_key(key(KeyCode::Down)), Action::None);
        app.on_snapshot(snapshot(), NOON_MS);
        app.on_key(key(KeyCode::Char('2')));
        assert_eq!(app.on_key(key(KeyCode::Down)), Action::Redraw);
        assert_eq!(app.scroll, 1);
        assert_eq!(app.on_key(key(KeyCode::PageDown)), Action::Redraw);
        assert_eq!(app.scroll, 11);
        assert_eq!(app.on_key(key(KeyCode::PageDown)), Action::None);
        assert_eq!(app.on_key(key(KeyCode::PageUp)), Action::Redraw);
        assert_eq!(app.scroll, 1);
        assert_eq!(app.on_key(key(KeyCode::End)), Action::Redraw);
        assert_eq!(app.scroll, 11);
        app.on_key(key(KeyCode::Char('1')));
        assert_eq!(app.scroll, 0);
        assert_eq!(app.on_key(key(KeyCode::Up)), Action::None);
    }

    #[test]
    fn snapshots_diff_into_timestamped_events() {
        let mut app = App::new("n1", 1000);
        app.on_snapshot(snapshot(), NOON_MS);
        assert_eq!(
            app.events,
            ["12:00:00  connected to n1: 3 members, 12 shards"]
        );

        // n3 dies: its shards move to n1 and n2, one has no leader yet; n2 drains.
        let mut next = snapshot();
        next.members[2].state = "down".into();
        next.members[0].draining = true;
        for shard in &mut next.shards {
            if shard.leader.as_deref() == Some("n3") {
                shard.leader = Some("n1".into());
            }
        }
        next.shards[11].leader = None;
        next.shards[0].leader = Some("n2".into());
        app.on_snapshot(next.clone(), NOON_MS + 1500);
        let events: Vec<&str> = app.events.iter().skip(1).map(String::as_str).collect();
        assert_eq!(
            events,
            [
                "12:00:01  n2 started draining",
                "12:00:01  n3 is down (was alive)",
                "12:00:01  shard 0: leader n1 -> n2",
                "12:00:01  shards 2 5 8: leader n3 -> n1",
                "12:00:01  shard 11: leader n3 -> none",
            ]
        );

        // The same data again: nothing new. Then n4 joins, n3 leaves, n2 stops draining.
        app.on_snapshot(next.clone(), NOON_MS + 2500);
        assert_eq!(app.events.len(), 6);
        next.members.remove(2);
        next.members.push(member("n4", "alive", 0));
        next.members[0].draining = false;
        app.on_snapshot(next, NOON_MS + 3000);
        let events: Vec<&str> = app.events.iter().skip(6).map(String::as_str).collect();
        assert_eq!(
            events,
            [
                "12:00:03  n2 stopped draining",
                "12:00:03  n4 joined (alive)",
                "12:00:03  n3 left the member list",
            ]
        );
    }

    #[test]
    fn many_moves_are_summarised_and_the_events_are_bounded() {
        let mut app = App::new("n1", 1000);
        let mut before = snapshot();
        before.shards = (0..64).map(|i| shard(i, Some("n1"))).collect();
        app.on_snapshot(before.clone(), NOON_MS);
        let mut after = before.clone();
        for shard in &mut after.shards {
            shard.leader = Some("n2".into());
        }
        app.on_snapshot(after.clone(), NOON_MS);
        assert_eq!(
            app.events.back().map(String::as_str),
            Some("12:00:00  shards 0 1 2 3 4 5 6 7 (+56 more): leader n1 -> n2")
        );
        for i in 0..EVENTS_MAX {
            let next = if i % 2 == 0 { &before } else { &after };
            app.on_snapshot(next.clone(), NOON_MS + 1000);
        }
        assert_eq!(app.events.len(), EVENTS_MAX);
        assert!(app.events[0].contains("leader"), "{:?}", app.events[0]);
    }

    #[test]
    fn a_failed_refresh_keeps_the_data_and_says_why_once() {
        let mut app = App::new("n1", 1000);
        app.on_snapshot(snapshot(), NOON_MS);
        app.on_error("connection lost: timed out\nretrying", NOON_MS + 1000);
        app.on_error("connection lost: timed out\nretrying", NOON_MS + 2000);
        assert_eq!(app.snapshot, {
            let mut expected = snapshot();
            expected.members.sort_by(|a, b| a.node_id.cmp(&b.node_id));
            expected
                .actors
                .sort_by(|a, b| (&a.kind, &a.key).cmp(&(&b.kind, &b.key)));
            Some(expected)
        });
        assert_eq!(
            app.error.as_deref(),
            Some("connection lost: timed out retrying")
        );
        assert_eq!(app.refreshed_at_ms, Some(NOON_MS));
        assert_eq!(app.events.len(), 2, "{:?}", app.events);
        assert_eq!(
            app.events[1],
            "12:00:01  refresh failed: connection lost: timed out retrying"
        );
        app.on_snapshot(snapshot(), NOON_MS + 3000);
        assert_eq!(app.error, None);
        assert_eq!(
            app.events[2],
            "12:00:03  refresh works again (it failed: connection lost: timed out retrying)"
        );
    }
}
