//! The state of `shoalctl top`, without I/O: the last snapshot, the view, the scroll offset
//! and the events pane (the cluster's own events, from every member's event ring, plus
//! this console's refresh errors). Time comes in as `now_ms` (ms since the Unix epoch);
//! keys come in as crossterm key events.

use crate::render::{cell, safe_line};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use shoal_protocol::admin::{ClusterActorInfo, ClusterEvent, MemberInfo, NodeStatus, ShardInfo};
use std::collections::{BTreeSet, VecDeque};

/// Event lines kept for the events pane; older ones are dropped.
pub(crate) const EVENTS_MAX: usize = 200;
/// Rows moved by PgUp / PgDn.
pub(crate) const PAGE_ROWS: usize = 10;
/// Each refresh asks for the cluster's events from this long before the newest one shown,
/// so that one a node recorded a little earlier by its clock is not missed; those already
/// shown are skipped.
pub(crate) const EVENTS_OVERLAP_MS: u64 = 5_000;
/// Longest event detail shown, in characters.
const EVENT_CHARS_MAX: usize = 200;
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
    /// The actors of every member that answered.
    pub(crate) actors: Vec<ClusterActorInfo>,
    /// The members whose actors are missing (`n3: down in gossip`).
    pub(crate) actors_missing: Vec<String>,
    /// The cluster's events since the cursor the refresh was asked with
    /// ([`App::events_after_ms`]), oldest first.
    pub(crate) events: Vec<ClusterEvent>,
}

/// The screen being shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    /// Members and the answering node's counters.
    Nodes,
    /// The shard map and the shard table.
    Shards,
    /// The cluster's actors.
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
    /// The newest cluster event shown (ms since the Unix epoch, its node's clock).
    newest_event_ms: Option<u64>,
    /// Cluster events shown within [`EVENTS_OVERLAP_MS`] of the newest: (time, node, seq).
    shown: BTreeSet<(u64, String, u64)>,
    /// The oldest event of the first answer: older ones were left out by its limit, so
    /// a later answer's overlap does not show them out of order.
    floor_ms: Option<u64>,
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
            newest_event_ms: None,
            shown: BTreeSet::new(),
            floor_ms: None,
        }
    }

    /// What the next refresh asks the cluster's events from (`None`: the newest ones).
    pub(crate) fn events_after_ms(&self) -> Option<u64> {
        self.newest_event_ms
            .map(|newest| newest.saturating_sub(EVENTS_OVERLAP_MS))
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

    /// Takes a new snapshot: shows the cluster events not shown yet, clears any error.
    pub(crate) fn on_snapshot(&mut self, mut snapshot: Snapshot, now_ms: u64) {
        snapshot.members.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        snapshot.shards.sort_by_key(|shard| shard.shard);
        snapshot
            .actors
            .sort_by(|a, b| (&a.node, &a.kind, &a.key).cmp(&(&b.node, &b.kind, &b.key)));
        if let Some(error) = self.error.take() {
            self.push_event(now_ms, format!("refresh works again (it failed: {error})"));
        }
        if self.snapshot.is_none() {
            self.push_event(
                now_ms,
                format!(
                    "connected to {}: {} members, {} shards",
                    cell(&snapshot.status.node_id),
                    snapshot.members.len(),
                    snapshot.shards.len()
                ),
            );
        }
        let events = std::mem::take(&mut snapshot.events);
        if self.floor_ms.is_none() {
            self.floor_ms = events.first().map(|e| e.at_ms);
        }
        let floor_ms = self.floor_ms.unwrap_or(0);
        for event in events.into_iter().filter(|e| e.at_ms >= floor_ms) {
            if !self
                .shown
                .insert((event.at_ms, event.node.clone(), event.seq))
            {
                continue;
            }
            self.newest_event_ms = Some(self.newest_event_ms.unwrap_or(0).max(event.at_ms));
            self.push_event(
                event.at_ms,
                format!(
                    "{} {}: {}",
                    cell(&event.node),
                    cell(&event.kind),
                    safe_line(&event.detail, EVENT_CHARS_MAX)
                ),
            );
        }
        if let Some(from) = self.events_after_ms() {
            self.shown.retain(|(at, _, _)| *at >= from);
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
            quiet: false,
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
                ClusterActorInfo {
                    node: "n1".into(),
                    kind: "conversation".into(),
                    key: "c-1-00000000000000000000000000000002".into(),
                    state: "turn".into(),
                    followers: 2,
                    mailbox: None,
                },
                ClusterActorInfo {
                    node: "n1".into(),
                    kind: "agent_session".into(),
                    key: "c-1-00000000000000000000000000000002".into(),
                    state: "live".into(),
                    followers: 0,
                    mailbox: None,
                },
            ],
            actors_missing: Vec::new(),
            events: Vec::new(),
        }
    }

    pub(crate) fn event(
        at_ms: u64,
        node: &str,
        seq: u64,
        kind: &str,
        detail: &str,
    ) -> ClusterEvent {
        ClusterEvent {
            at_ms,
            node: node.into(),
            seq,
            kind: kind.into(),
            detail: detail.into(),
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
    fn cluster_events_are_shown_once_with_their_own_time() {
        let mut app = App::new("n1", 1000);
        assert_eq!(
            app.events_after_ms(),
            None,
            "the first refresh asks for the newest"
        );
        let mut first = snapshot();
        first.events = vec![
            event(NOON_MS - 2000, "n2", 4, "down", "n3 is down"),
            event(NOON_MS - 1000, "n1", 9, "leader", "n1 leads shards 2 5 8"),
        ];
        app.on_snapshot(first, NOON_MS);
        assert_eq!(
            app.events,
            [
                "12:00:00  connected to n1: 3 members, 12 shards",
                "11:59:58  n2 down: n3 is down",
                "11:59:59  n1 leader: n1 leads shards 2 5 8",
            ]
        );
        assert_eq!(
            app.events_after_ms(),
            Some(NOON_MS - 1000 - EVENTS_OVERLAP_MS)
        );

        // The overlap returns the last one again, with a new one: only the new one shows.
        let mut next = snapshot();
        next.events = vec![
            event(NOON_MS - 1000, "n1", 9, "leader", "n1 leads shards 2 5 8"),
            event(
                NOON_MS + 500,
                "n2",
                5,
                "drain",
                "n2 drains:\nit leaves placement",
            ),
        ];
        // An event older than the first answer's oldest (left out by its limit) stays out.
        next.events.insert(
            0,
            event(NOON_MS - 2500, "n3", 1, "join", "n9 joined (alive)"),
        );
        app.on_snapshot(next, NOON_MS + 1000);
        assert_eq!(app.events.len(), 4, "{:?}", app.events);
        assert_eq!(
            app.events[3],
            "12:00:00  n2 drain: n2 drains: it leaves placement"
        );
    }

    #[test]
    fn the_events_pane_is_bounded() {
        let mut app = App::new("n1", 1000);
        let mut next = snapshot();
        next.events = (0..EVENTS_MAX as u64 + 5)
            .map(|i| event(NOON_MS + i, "n1", i, "join", "n9 joined (alive)"))
            .collect();
        app.on_snapshot(next, NOON_MS);
        assert_eq!(app.events.len(), EVENTS_MAX);
        assert!(app.events[0].contains("n9 joined"), "{:?}", app.events[0]);
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
                .sort_by(|a, b| (&a.node, &a.kind, &a.key).cmp(&(&b.node, &b.kind, &b.key)));
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
