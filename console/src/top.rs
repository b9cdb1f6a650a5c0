//! `shoalctl top`: a live terminal UI of the cluster, as one node's admin API sees it.
//!
//! * `app`: the state without I/O (snapshot, view, scroll, the cluster's events) and its
//!   key handling.
//! * `draw`: the screen, drawn from the state.
//! * this file: the terminal (raw mode, alternate screen, restored on every exit path,
//!   panics included), a thread reading keys, the refresh timer and the admin client.

mod app;
mod draw;

pub(crate) use app::clock_time;

use anyhow::{Context, anyhow, bail};
use app::{Action, App, Snapshot};
use clap::Args;
use ratatui::crossterm::event::{self, Event, KeyEventKind};
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::crossterm::{cursor, execute};
use ratatui::{DefaultTerminal, Terminal, backend::CrosstermBackend};
use shoal_client::{AdminClient, Profile};
use std::io::{self, IsTerminal};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Refresh interval unless `--interval-ms` says otherwise.
const INTERVAL_MS_DEFAULT: u64 = 1000;
/// Shortest refresh interval: each refresh is five admin requests.
const INTERVAL_MS_MIN: u64 = 200;
/// Longest refresh interval.
const INTERVAL_MS_MAX: u64 = 60_000;
/// Longest wait for one refresh (five admin requests), so that a node that stopped
/// answering shows up in the header within seconds rather than after the client's
/// request timeout.
const REFRESH_TIMEOUT_MS: u64 = 5_000;
/// Most cluster events one refresh asks for (the pane keeps fewer).
const EVENTS_PER_REFRESH_MAX: u32 = app::EVENTS_MAX as u32;
/// Terminal events queued between the input thread and the loop.
const INPUT_EVENTS_MAX: usize = 64;
/// How often the input thread checks whether `top` is ending.
const INPUT_POLL_MS: u64 = 100;

/// `shoalctl top`.
#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    /// Milliseconds between refreshes (200 to 60000).
    #[arg(
        long,
        value_name = "MS",
        default_value_t = INTERVAL_MS_DEFAULT,
        value_parser = clap::value_parser!(u64).range(INTERVAL_MS_MIN..=INTERVAL_MS_MAX)
    )]
    pub(crate) interval_ms: u64,
}

/// Runs `top` until the user quits.
pub(crate) async fn run(profile: &Profile, args: TopArgs) -> anyhow::Result<ExitCode> {
    if !io::stdout().is_terminal() || !io::stdin().is_terminal() {
        bail!(
            "`shoalctl top` needs a terminal; in scripts use `shoalctl members`, `shards` or `admin actors` (with --json)"
        );
    }
    let admin = Arc::new(AdminClient::connect(profile).await?);
    let mut app = App::new(admin.node_id(), args.interval_ms);
    let result = match TerminalGuard::enter() {
        Ok(mut guard) => event_loop(&mut guard.terminal, &admin, &mut app, args.interval_ms).await,
        Err(err) => Err(err),
    };
    // The guard is gone: the terminal is back to normal before anything is printed.
    admin.close().await;
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Raw mode and the alternate screen while alive; restores the terminal when dropped.
struct TerminalGuard {
    terminal: DefaultTerminal,
}

impl TerminalGuard {
    fn enter() -> anyhow::Result<TerminalGuard> {
        install_panic_hook();
        enable_raw_mode().map_err(|err| terminal_error("enter raw mode", &err))?;
        let terminal = execute!(io::stdout(), EnterAlternateScreen, cursor::Hide)
            .map_err(|err| terminal_error("switch to the alternate screen", &err))
            .and_then(|()| {
                Terminal::new(CrosstermBackend::new(io::stdout()))
                    .map_err(|err| terminal_error("set up the screen", &err))
            });
        match terminal {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(err) => {
                restore_terminal();
                Err(err)
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Leaves raw mode and the alternate screen; errors are ignored (nothing better to do).
fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
}

/// A panic restores the terminal first, then prints its line through the hook before.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
    }));
}

fn terminal_error(what: &str, err: &io::Error) -> anyhow::Error {
    anyhow!("cannot {what} ({err}); run `shoalctl top` in an interactive terminal")
}

/// Draws on each refresh and each key that changed something; refreshes on each tick
/// (one refresh at a time: a slow node skips ticks rather than piling requests up).
async fn event_loop(
    terminal: &mut DefaultTerminal,
    admin: &Arc<AdminClient>,
    app: &mut App,
    interval_ms: u64,
) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let (input_tx, mut input) = mpsc::channel(INPUT_EVENTS_MAX);
    let reader = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("shoalctl-top-input".to_owned())
            .spawn(move || read_input(&input_tx, &stop))
            .context("cannot start the input thread; check the system's resource limits")?
    };
    let mut ticker = tokio::time::interval(Duration::from_millis(interval_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut refresh: Option<JoinHandle<Result<Snapshot, String>>> = None;
    // Raw mode turns Ctrl-C into a key; a kill or a closed terminal ends `top` cleanly too.
    let mut terminate = signal(SignalKind::terminate())
        .context("cannot watch for SIGTERM; check the system's resource limits")?;
    let mut hangup = signal(SignalKind::hangup())
        .context("cannot watch for SIGHUP; check the system's resource limits")?;

    let result = async {
        draw(terminal, app)?;
        loop {
            tokio::select! {
                _ = terminate.recv() => return Ok(()),
                _ = hangup.recv() => return Ok(()),
                _ = ticker.tick() => {
                    if refresh.is_none() {
                        refresh = Some(tokio::spawn(fetch(admin.clone(), app.events_after_ms())));
                    }
                }
                done = async { refresh.as_mut().expect("guarded by the select condition").await },
                    if refresh.is_some() =>
                {
                    refresh = None;
                    match done {
                        Ok(Ok(snapshot)) => app.on_snapshot(snapshot, now_ms()),
                        Ok(Err(err)) => app.on_error(&err, now_ms()),
                        // The panic hook already restored the terminal and said so.
                        Err(err) if err.is_panic() => bail!("the refresh crashed; please report this"),
                        Err(err) => app.on_error(&format!("the refresh stopped: {err}"), now_ms()),
                    }
                    draw(terminal, app)?;
                }
                event = input.recv() => match event {
                    Some(Ok(Event::Key(key))) if key.kind == KeyEventKind::Press => {
                        match app.on_key(key) {
                            Action::Quit => return Ok(()),
                            Action::Redraw => draw(terminal, app)?,
                            Action::None => {}
                        }
                    }
                    Some(Ok(Event::Resize(..))) => draw(terminal, app)?,
                    Some(Ok(_)) => {}
                    Some(Err(err)) => {
                        return Err(terminal_error("read the keyboard", &err));
                    }
                    None => bail!("the keyboard input ended; run `shoalctl top` in an interactive terminal"),
                }
            }
        }
    }
    .await;

    if let Some(refresh) = refresh {
        refresh.abort();
    }
    stop.store(true, Ordering::Relaxed);
    drop(input);
    // It notices `stop` within one poll interval.
    let _ = reader.join();
    result
}

fn draw(terminal: &mut DefaultTerminal, app: &App) -> anyhow::Result<()> {
    terminal
        .draw(|frame| app.draw(frame))
        .map_err(|err| terminal_error("draw on the terminal", &err))?;
    Ok(())
}

/// Reads terminal events on a thread of its own (crossterm's reads block) until `stop`
/// or until the loop is gone. The channel is bounded; a full one makes this thread wait.
fn read_input(events: &mpsc::Sender<io::Result<Event>>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let event = match event::poll(Duration::from_millis(INPUT_POLL_MS)) {
            Ok(false) => continue,
            Ok(true) => event::read(),
            Err(err) => Err(err),
        };
        let failed = event.is_err();
        if events.blocking_send(event).is_err() || failed {
            return;
        }
    }
}

/// One refresh: the answering node's status, members and shards, the cluster's actors,
/// and the cluster's events recorded after `events_after_ms`.
async fn fetch(admin: Arc<AdminClient>, events_after_ms: Option<u64>) -> Result<Snapshot, String> {
    let requests = async {
        tokio::try_join!(
            admin.status(),
            admin.members(),
            admin.shards(),
            admin.cluster_actors(),
            admin.events(events_after_ms, EVENTS_PER_REFRESH_MAX),
        )
    };
    let (status, members, shards, (actors, actors_missing, _), (events, _)) = tokio::time::timeout(
        Duration::from_millis(REFRESH_TIMEOUT_MS),
        requests,
    )
    .await
    .map_err(|_| {
        format!(
            "no answer within {REFRESH_TIMEOUT_MS} ms; check that the node is running and reachable"
        )
    })?
    .map_err(|err| err.to_string())?;
    Ok(Snapshot {
        status,
        members,
        shards,
        actors,
        actors_missing,
        events,
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        top: TopArgs,
    }

    #[test]
    fn the_interval_is_bounded() {
        assert_eq!(Cli::try_parse_from(["top"]).unwrap().top.interval_ms, 1000);
        for ok in ["200", "60000", "2500"] {
            let cli = Cli::try_parse_from(["top", "--interval-ms", ok]).unwrap();
            assert_eq!(cli.top.interval_ms.to_string(), ok);
        }
        for bad in ["199", "60001", "0", "-5", "soon"] {
            assert!(
                Cli::try_parse_from(["top", "--interval-ms", bad]).is_err(),
                "{bad}"
            );
        }
    }
}
