//! Drawing `shoalctl top`: the header, the current view, the events pane and the footer.
//! Only reads the [`App`]; every string from the network went through `render::cell`.

use super::app::{App, View, clock_time};
use crate::render::{cell, shards_summary};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table};
use shoal_protocol::admin::ShardInfo;
use std::collections::BTreeMap;

/// Rows of the events pane, borders included.
const EVENTS_PANE_ROWS: u16 = 8;
/// Longest node name in a shard map cell, in characters.
const MAP_NAME_CHARS_MAX: usize = 8;
/// Colours given to nodes in order of their ids; more nodes reuse them.
const NODE_COLOURS: [Color; 8] = [
    Color::Cyan,
    Color::Magenta,
    Color::Yellow,
    Color::Green,
    Color::Blue,
    Color::LightRed,
    Color::LightCyan,
    Color::LightMagenta,
];

impl App {
    /// Draws the whole screen.
    pub(crate) fn draw(&self, frame: &mut Frame<'_>) {
        let [header, body, events, footer] = Layout::vertical([
            Constraint::Length(2),
            Constraint::Min(3),
            Constraint::Length(EVENTS_PANE_ROWS),
            Constraint::Length(1),
        ])
        .areas(frame.area());
        self.draw_header(frame, header);
        match self.view {
            View::Nodes => self.draw_nodes(frame, body),
            View::Shards => self.draw_shards(frame, body),
            View::Actors => self.draw_actors(frame, body),
        }
        self.draw_events(frame, events);
        self.draw_footer(frame, footer);
    }

    fn draw_header(&self, frame: &mut Frame<'_>, area: Rect) {
        let bold = Style::new().add_modifier(Modifier::BOLD);
        let mut first = vec![Span::styled(format!("shoal top · {}", self.node_id), bold)];
        if let Some(snapshot) = &self.snapshot {
            let alive = snapshot
                .members
                .iter()
                .filter(|m| m.state == "alive")
                .count();
            let led = snapshot
                .shards
                .iter()
                .filter(|s| s.leader.is_some())
                .count();
            first.push(Span::raw(format!(
                " │ nodes {alive}/{} alive │ shards {led}/{} led │ followers {} │ turns {}",
                snapshot.members.len(),
                snapshot.shards.len(),
                snapshot.status.followers,
                snapshot.status.turns_running,
            )));
        }
        let refreshed = self
            .refreshed_at_ms
            .map_or_else(|| "never".to_owned(), clock_time);
        let second = match &self.error {
            Some(error) => Line::from(Span::styled(
                format!("refresh failed: {error} (showing data from {refreshed}; retrying)"),
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            )),
            None if self.snapshot.is_none() => Line::from(Span::styled(
                "waiting for the first refresh…",
                Style::new().fg(Color::DarkGray),
            )),
            None => Line::from(Span::styled(
                format!("refreshed {refreshed} UTC, every {} ms", self.interval_ms),
                Style::new().fg(Color::DarkGray),
            )),
        };
        frame.render_widget(Paragraph::new(vec![Line::from(first), second]), area);
    }

    fn draw_nodes(&self, frame: &mut Frame<'_>, area: Rect) {
        let [status_area, table_area] =
            Layout::vertical([Constraint::Length(3), Constraint::Min(1)]).areas(area);
        let Some(snapshot) = &self.snapshot else {
            frame.render_widget(Block::bordered().title(" members "), area);
            return;
        };
        let status = &snapshot.status;
        let numbers = format!(
            "conversations {}  agents {}  followers {}  turns {}  connections {}  uptime {}",
            status.conversations_active,
            status.agent_processes,
            status.followers,
            status.turns_running,
            status.connections,
            uptime(status.uptime_secs),
        );
        let title = format!(
            " {} ({}, {}) ",
            cell(&status.node_id),
            cell(&status.version),
            cell(&status.listen_addr)
        );
        frame.render_widget(
            Paragraph::new(numbers).block(Block::bordered().title(title)),
            status_area,
        );

        let colours = node_colours(snapshot);
        let rows = snapshot.members.iter().map(|member| {
            let state = match member.state.as_str() {
                "alive" => Color::Green,
                "suspect" => Color::Yellow,
                _ => Color::Red,
            };
            vec![
                (cell(&member.node_id), node_style(&colours, &member.node_id)),
                (cell(&member.addr), Style::new()),
                (cell(&member.state), Style::new().fg(state)),
                (member.leaders.to_string(), Style::new()),
                (cell(&member.version), Style::new()),
                (
                    if member.draining { "draining" } else { "" }.to_owned(),
                    Style::new().fg(Color::Yellow),
                ),
            ]
        });
        let title = format!(" members ({}) ", snapshot.members.len());
        self.draw_table(
            frame,
            table_area,
            &title,
            &["NODE", "ADDR", "STATE", "LEADERS", "VERSION", "DRAINING"],
            rows.collect(),
        );
    }

    fn draw_shards(&self, frame: &mut Frame<'_>, area: Rect) {
        let Some(snapshot) = &self.snapshot else {
            frame.render_widget(Block::bordered().title(" shard map "), area);
            return;
        };
        let colours = node_colours(snapshot);
        let map_width = usize::from(area.width.saturating_sub(2));
        // The counts first: on a short terminal the end of the map is what gets cut.
        let mut map = vec![Line::from(shards_summary(&snapshot.shards))];
        map.extend(shard_map(&snapshot.shards, &colours, map_width));
        // The map takes at most half the body; the table gets the rest.
        let map_rows = u16::try_from(map.len())
            .unwrap_or(u16::MAX)
            .saturating_add(2)
            .min(area.height / 2);
        let [map_area, table_area] =
            Layout::vertical([Constraint::Length(map_rows), Constraint::Min(1)]).areas(area);
        frame.render_widget(
            Paragraph::new(map).block(Block::bordered().title(" shard map (by leader) ")),
            map_area,
        );

        let rows = snapshot.shards.iter().map(|shard| {
            let leader = shard.leader.as_deref().map_or_else(|| "-".to_owned(), cell);
            let mut replicas: Vec<String> = shard.replicas.iter().map(|r| cell(r)).collect();
            replicas.extend(shard.learners.iter().map(|l| format!("+{}", cell(l))));
            vec![
                (shard.shard.to_string(), Style::new()),
                (leader, leader_style(&colours, shard)),
                (replicas.join(","), Style::new()),
                (shard.term.to_string(), Style::new()),
                (
                    shard
                        .applied_index
                        .map_or_else(|| "-".to_owned(), |i| i.to_string()),
                    Style::new(),
                ),
            ]
        });
        let title = format!(" shards ({}) ", snapshot.shards.len());
        self.draw_table(
            frame,
            table_area,
            &title,
            &["SHARD", "LEADER", "REPLICAS", "TERM", "APPLIED"],
            rows.collect(),
        );
    }

    fn draw_actors(&self, frame: &mut Frame<'_>, area: Rect) {
        let Some(snapshot) = &self.snapshot else {
            frame.render_widget(Block::bordered().title(" actors "), area);
            return;
        };
        let rows = snapshot.actors.iter().map(|actor| {
            vec![
                (cell(&actor.node), Style::new()),
                (cell(&actor.kind), Style::new()),
                (cell(&actor.state), Style::new()),
                (actor.followers.to_string(), Style::new()),
                (cell(&actor.key), Style::new()),
            ]
        });
        let missing = if snapshot.actors_missing.is_empty() {
            String::new()
        } else {
            format!(
                "; no answer from {}",
                snapshot
                    .actors_missing
                    .iter()
                    .map(|m| cell(m))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let title = format!(
            " actors in the cluster ({}{missing}) ",
            snapshot.actors.len()
        );
        self.draw_table(
            frame,
            area,
            &title,
            &["NODE", "KIND", "STATE", "FOLLOWERS", "KEY"],
            rows.collect(),
        );
    }

    /// A bordered table from row `self.scroll` on, columns as wide as their widest cell.
    fn draw_table(
        &self,
        frame: &mut Frame<'_>,
        area: Rect,
        title: &str,
        header: &[&str],
        rows: Vec<Vec<(String, Style)>>,
    ) {
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in &rows {
            for (width, (text, _)) in widths.iter_mut().zip(row) {
                *width = (*width).max(text.chars().count());
            }
        }
        let constraints = widths
            .iter()
            .map(|w| Constraint::Length(u16::try_from(*w).unwrap_or(u16::MAX)));
        let total = rows.len();
        let first = self.scroll.min(total.saturating_sub(1));
        let title = if first > 0 {
            format!("{title}from row {} ", first + 1)
        } else {
            title.to_owned()
        };
        let rows = rows.into_iter().skip(first).map(|row| {
            Row::new(
                row.into_iter()
                    .map(|(text, style)| ratatui::widgets::Cell::from(text).style(style)),
            )
        });
        let table = Table::new(rows, constraints)
            .header(
                Row::new(header.iter().copied()).style(Style::new().add_modifier(Modifier::BOLD)),
            )
            .column_spacing(2)
            .block(Block::bordered().title(title));
        frame.render_widget(table, area);
    }

    fn draw_events(&self, frame: &mut Frame<'_>, area: Rect) {
        let shown = usize::from(area.height.saturating_sub(2));
        let lines: Vec<Line<'_>> = self
            .events
            .iter()
            .skip(self.events.len().saturating_sub(shown))
            .map(|line| Line::from(line.as_str()))
            .collect();
        frame.render_widget(
            Paragraph::new(lines).block(Block::bordered().title(" events ")),
            area,
        );
    }

    fn draw_footer(&self, frame: &mut Frame<'_>, area: Rect) {
        let key = Style::new().add_modifier(Modifier::BOLD);
        let mut spans = Vec::new();
        for (i, view) in View::ALL.iter().enumerate() {
            let style = if *view == self.view {
                Style::new().add_modifier(Modifier::REVERSED)
            } else {
                Style::new()
            };
            spans.push(Span::styled(format!("{}", i + 1), key));
            spans.push(Span::styled(format!(" {} ", view.title()), style));
            spans.push(Span::raw(" "));
        }
        spans.extend([
            Span::styled("Tab", key),
            Span::raw(" next view  "),
            Span::styled("↑↓ PgUp PgDn", key),
            Span::raw(" scroll  "),
            Span::styled("q", key),
            Span::raw(" quit"),
        ]);
        frame.render_widget(Paragraph::new(Line::from(spans)), area);
    }
}

/// A colour per node: members by id, then leaders that are not members.
fn node_colours(snapshot: &super::app::Snapshot) -> BTreeMap<String, Color> {
    let mut colours = BTreeMap::new();
    let names = snapshot
        .members
        .iter()
        .map(|m| m.node_id.as_str())
        .chain(snapshot.shards.iter().filter_map(|s| s.leader.as_deref()));
    for name in names {
        let next = NODE_COLOURS[colours.len() % NODE_COLOURS.len()];
        colours.entry(name.to_owned()).or_insert(next);
    }
    colours
}

fn node_style(colours: &BTreeMap<String, Color>, node: &str) -> Style {
    colours
        .get(node)
        .map_or_else(Style::new, |colour| Style::new().fg(*colour))
}

fn leader_style(colours: &BTreeMap<String, Color>, shard: &ShardInfo) -> Style {
    match &shard.leader {
        Some(leader) => node_style(colours, leader),
        None => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
    }
}

/// The shard map: `id leader` cells, coloured by leader, as many per line as fit.
fn shard_map(
    shards: &[ShardInfo],
    colours: &BTreeMap<String, Color>,
    width: usize,
) -> Vec<Line<'static>> {
    let name = |shard: &ShardInfo| {
        let leader = shard.leader.as_deref().map_or_else(|| "-".to_owned(), cell);
        leader.chars().take(MAP_NAME_CHARS_MAX).collect::<String>()
    };
    let name_width = shards
        .iter()
        .map(|s| name(s).chars().count())
        .max()
        .unwrap_or(1);
    let id_width = shards
        .iter()
        .map(|s| s.shard.to_string().len())
        .max()
        .unwrap_or(1);
    let cell_width = id_width + 1 + name_width;
    let per_line = ((width + 2) / (cell_width + 2)).max(1);
    shards
        .chunks(per_line)
        .map(|chunk| {
            let mut spans = Vec::new();
            for (i, shard) in chunk.iter().enumerate() {
                if i > 0 {
                    spans.push(Span::raw("  "));
                }
                spans.push(Span::styled(
                    format!("{:>id_width$} {:<name_width$}", shard.shard, name(shard)),
                    leader_style(colours, shard),
                ));
            }
            Line::from(spans)
        })
        .collect()
}

/// `1h 02m 03s`, `4d 05h 06m`, `42s`.
fn uptime(secs: u64) -> String {
    let (days, hours, minutes, seconds) =
        (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if days > 0 {
        format!("{days}d {hours:02}h {minutes:02}m")
    } else if hours > 0 {
        format!("{hours}h {minutes:02}m {seconds:02}s")
    } else if minutes > 0 {
        format!("{minutes}m {seconds:02}s")
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::super::app::tests::{NOON_MS, key, snapshot};
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::crossterm::event::KeyCode;

    /// The screen as text, one line per row.
    fn screen(app: &App, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
        terminal.draw(|frame| app.draw(frame)).expect("draw");
        let buffer = terminal.backend().buffer();
        let mut text = String::new();
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    fn app() -> App {
        let mut app = App::new("n1", 1000);
        app.on_snapshot(snapshot(), NOON_MS);
        app
    }

    #[test]
    fn the_nodes_view_shows_members_counters_header_and_keys() {
        let text = screen(&app(), 120, 30);
        for expected in [
            "shoal top · n1 │ nodes 3/3 alive │ shards 12/12 led │ followers 7 │ turns 1",
            "refreshed 12:00:00 UTC, every 1000 ms",
            "conversations 3  agents 2  followers 7  turns 1  connections 5  uptime 1h 02m 03s",
            "members (3)",
            "NODE  ADDR",
            "n1    127.0.0.1:7004  alive  4        0.1.0",
            "n3    127.0.0.1:7004  alive",
            "12:00:00  connected to n1: 3 members, 12 shards",
            "1 Nodes  2 Shards  3 Actors  Tab next view  ↑↓ PgUp PgDn scroll  q quit",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from\n{text}");
        }
    }

    #[test]
    fn the_shards_view_shows_the_map_the_counts_and_the_table() {
        let mut app = app();
        let mut next = snapshot();
        next.shards[5].leader = None;
        next.shards[7].learners = vec!["n4".into()];
        next.events = vec![super::super::app::tests::event(
            NOON_MS + 1500,
            "n3",
            2,
            "follower",
            "n3 no longer leads shards 5",
        )];
        app.on_snapshot(next, NOON_MS + 2000);
        app.on_key(key(KeyCode::Char('2')));
        let text = screen(&app, 80, 40);
        for expected in [
            "shard map (by leader)",
            " 0 n1   1 n2   2 n3   3 n1   4 n2   5 -    6 n1",
            "12 shards, 11 with a leader; leaders per node: n1=4 n2=4 n3=3",
            "SHARD  LEADER  REPLICAS",
            "5      -       n1,n2,n3      4     1205",
            "7      n2      n1,n2,n3,+n4",
            "12:00:01  n3 follower: n3 no longer leads shards 5",
            "shards 11/12 led",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from\n{text}");
        }
    }

    #[test]
    fn a_short_terminal_keeps_the_leader_counts_of_a_big_map() {
        let mut app = App::new("n1", 1000);
        let mut big = snapshot();
        big.shards = (0..256)
            .map(|i| {
                super::super::app::tests::shard(i, Some(["n1", "n2", "n3"][usize::from(i % 3)]))
            })
            .collect();
        app.on_snapshot(big, NOON_MS);
        app.on_key(key(KeyCode::Char('2')));
        let text = screen(&app, 80, 24);
        for expected in [
            "256 shards, 256 with a leader; leaders per node: n1=86 n2=85 n3=85",
            "  0 n1    1 n2    2 n3",
            "shards (256)",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from\n{text}");
        }
    }

    #[test]
    fn the_actors_view_lists_the_clusters_actors() {
        let mut app = App::new("n1", 1000);
        let mut next = snapshot();
        next.actors_missing = vec!["n3: down in gossip".into()];
        app.on_snapshot(next, NOON_MS);
        app.on_key(key(KeyCode::Char('3')));
        let text = screen(&app, 100, 24);
        for expected in [
            "actors in the cluster (2; no answer from n3: down in gossip)",
            "NODE  KIND           STATE  FOLLOWERS  KEY",
            "n1    agent_session  live   0          c-1-00000000000000000000000000000002",
            "n1    conversation   turn   2          c-1-00000000000000000000000000000002",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from\n{text}");
        }
    }

    #[test]
    fn scrolling_skips_rows() {
        let mut app = app();
        app.on_key(key(KeyCode::Char('2')));
        app.on_key(key(KeyCode::PageDown));
        let text = screen(&app, 80, 40);
        assert!(text.contains("shards (12) from row 11"), "{text}");
        assert!(text.contains("10     n2      n1,n2,n3"), "{text}");
        assert!(!text.contains("9      n1      n1,n2,n3"), "{text}");
    }

    #[test]
    fn a_failed_refresh_shows_the_error_over_the_last_data() {
        let mut app = app();
        app.on_error(
            "cannot reach 127.0.0.1:7001; is the node running?",
            NOON_MS + 5000,
        );
        let text = screen(&app, 120, 30);
        for expected in [
            "refresh failed: cannot reach 127.0.0.1:7001; is the node running? (showing data from 12:00:00; retrying)",
            "nodes 3/3 alive",
            "n2    127.0.0.1:7004  alive",
            "12:00:05  refresh failed: cannot reach",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from\n{text}");
        }
    }

    #[test]
    fn before_the_first_refresh_the_screen_says_so() {
        let app = App::new("n1", 1000);
        let text = screen(&app, 80, 20);
        assert!(text.contains("waiting for the first refresh"), "{text}");
        // A tiny terminal does not panic.
        screen(&app, 10, 4);
        let mut app = self::app();
        for view in ['1', '2', '3'] {
            app.on_key(key(KeyCode::Char(view)));
            screen(&app, 12, 5);
        }
    }

    #[test]
    fn uptimes_are_short() {
        assert_eq!(uptime(42), "42s");
        assert_eq!(uptime(62), "1m 02s");
        assert_eq!(uptime(3723), "1h 02m 03s");
        assert_eq!(uptime(4 * 86_400 + 5 * 3600 + 6 * 60), "4d 05h 06m");
    }
}
