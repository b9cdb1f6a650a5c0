//! `AgentProcess` against a real ACP agent process: the demo agent, run as
//! `shoal-node demo-agent` (its scripted prompts are documented in
//! `demo-agent/README.md`).
//!
//! `SHOAL_TEST_ACP_AGENT=/path/to/program` runs the same tests against another
//! agent program that implements the same scripted prompts.
//!
//! Every test bounds its duration with [`TEST_TIMEOUT_MS`]; agent processes are
//! shut down at the end, and killed (process group SIGKILL) by `AgentProcess`'s
//! drop if a test fails midway.

use shoal_node::agent_process::{
    AgentCommand, AgentError, AgentProcess, AgentUpdate, PromptOutcome, STDIN_CLOSE_GRACE_MS,
    StartOptions, TERM_GRACE_MS, ToolStatusRaw,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The most any one test may take.
const TEST_TIMEOUT_MS: u64 = 60_000;
/// `StartOptions::start_timeout` for the demo agent.
const START_TIMEOUT_MS: u64 = 20_000;
/// The most a single awaited event (an update, a prompt answer) may take.
const EVENT_TIMEOUT_MS: u64 = 15_000;
/// Capacity of the updates channel in the tests.
const UPDATES_CAPACITY: usize = 4_096;

/// Runs a test body under [`TEST_TIMEOUT_MS`].
async fn bounded<T>(body: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_millis(TEST_TIMEOUT_MS), body).await {
        Ok(value) => value,
        Err(_) => panic!("test did not finish within {TEST_TIMEOUT_MS} ms"),
    }
}

/// Awaits `future` under [`EVENT_TIMEOUT_MS`], failing with `what`.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_millis(EVENT_TIMEOUT_MS), future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {EVENT_TIMEOUT_MS} ms waiting for {what}"),
    }
}

fn demo_agent() -> AgentCommand {
    match std::env::var_os("SHOAL_TEST_ACP_AGENT") {
        Some(program) => AgentCommand {
            program: program.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
        },
        None => AgentCommand {
            program: env!("CARGO_BIN_EXE_shoal-node").into(),
            args: vec!["demo-agent".into()],
            env: BTreeMap::new(),
        },
    }
}

/// A temporary root with `ws/` (the workspace) and `home/` (the private home).
struct Dirs {
    root: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Self {
        let root = tempfile::tempdir().expect("create a temporary directory");
        std::fs::create_dir(root.path().join("ws")).expect("create the workspace");
        Self { root }
    }

    fn cwd(&self) -> PathBuf {
        self.root.path().join("ws")
    }

    fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    fn options(&self) -> StartOptions {
        StartOptions {
            cwd: self.cwd(),
            home: self.home(),
            resume_session: None,
            start_timeout: Duration::from_millis(START_TIMEOUT_MS),
            extra_env: BTreeMap::from([("SHOAL_NODE_ID".to_owned(), "node-test-1".to_owned())]),
            confine_to: None,
            mcp_servers: Vec::new(),
        }
    }
}

async fn start(opts: StartOptions) -> (AgentProcess, mpsc::Receiver<AgentUpdate>) {
    let (updates_tx, updates_rx) = mpsc::channel(UPDATES_CAPACITY);
    let agent = AgentProcess::start(&demo_agent(), opts, updates_tx)
        .await
        .unwrap_or_else(|error| panic!("starting the demo agent failed: {error}"));
    (agent, updates_rx)
}

/// Every update queued so far.
fn drain(updates: &mut mpsc::Receiver<AgentUpdate>) -> Vec<AgentUpdate> {
    let mut drained = Vec::new();
    while let Ok(update) = updates.try_recv() {
        drained.push(update);
    }
    drained
}

/// The answer text (`Text` updates) among `updates`, concatenated.
fn text_of(updates: &[AgentUpdate]) -> String {
    updates
        .iter()
        .filter_map(|update| match update {
            AgentUpdate::Text(text) => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// Waits for the first update matching `wanted`.
async fn next_matching(
    updates: &mut mpsc::Receiver<AgentUpdate>,
    what: &str,
    wanted: impl Fn(&AgentUpdate) -> bool,
) -> AgentUpdate {
    within(what, async {
        loop {
            match updates.recv().await {
                Some(update) if wanted(&update) => return update,
                Some(_) => {}
                None => panic!("the updates channel closed while waiting for {what}"),
            }
        }
    })
    .await
}

/// Runs one prompt to its end and returns the outcome and the turn's updates.
async fn run_prompt(
    agent: &AgentProcess,
    updates: &mut mpsc::Receiver<AgentUpdate>,
    text: &str,
) -> (PromptOutcome, Vec<AgentUpdate>) {
    let outcome = within(
        &format!("the answer to prompt {text:?}"),
        agent.prompt(text.into()),
    )
    .await
    .unwrap_or_else(|error| panic!("prompt {text:?} failed: {error}"));
    (outcome, drain(updates))
}

fn process_is_gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn echo_prompt_streams_text_and_ends_the_turn() {
    bounded(async {
        let dirs = Dirs::new();
        let (agent, mut updates) = start(dirs.options()).await;
        assert!(!agent.session_id().is_empty());
        assert!(agent.pid().is_some());
        let (outcome, turn) = run_prompt(&agent, &mut updates, "hello shoal world").await;
        assert_eq!(outcome, PromptOutcome::EndTurn);
        assert_eq!(text_of(&turn), "echo: hello shoal world");
        assert!(
            turn.iter()
                .filter(|update| matches!(update, AgentUpdate::Text(_)))
                .count()
                > 1,
            "the echo streams word by word: {turn:?}"
        );
        agent.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn cancel_stops_a_slow_prompt_with_cancelled() {
    bounded(async {
        let dirs = Dirs::new();
        let (agent, mut updates) = start(dirs.options()).await;
        let prompt = agent.prompt("/slow 1000".into());
        tokio::pin!(prompt);
        tokio::select! {
            result = &mut prompt => panic!("/slow 1000 ended before any chunk: {result:?}"),
            _ = next_matching(&mut updates, "the first chunk of /slow", |u| matches!(u, AgentUpdate::Text(_))) => {}
        }
        let cancelled_at = Instant::now();
        agent.cancel().await;
        let outcome = within("the cancelled prompt's answer", &mut prompt)
            .await
            .expect("the cancelled prompt answers");
        assert_eq!(outcome, PromptOutcome::Cancelled);
        assert!(
            cancelled_at.elapsed() < Duration::from_secs(5),
            "cancel took {:?}",
            cancelled_at.elapsed()
        );
        // The session is still usable.
        let (outcome, turn) = run_prompt(&agent, &mut updates, "again").await;
        assert_eq!(outcome, PromptOutcome::EndTurn);
        assert!(text_of(&turn).ends_with("echo: again"), "{turn:?}");
        agent.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn permission_round_trip() {
    bounded(async {
        let dirs = Dirs::new();
        let (agent, mut updates) = start(dirs.options()).await;
        let prompt = agent.prompt("/permission".into());
        tokio::pin!(prompt);
        let asked = tokio::select! {
            result = &mut prompt => panic!("/permission ended without asking: {result:?}"),
            update = next_matching(&mut updates, "the permission request", |u| matches!(u, AgentUpdate::PermissionRequest { .. })) => update,
        };
        let AgentUpdate::PermissionRequest {
            request,
            title,
            options,
            kind,
            tool_call_id,
        } = asked
        else {
            unreachable!("next_matching returned a permission request");
        };
        assert_eq!(title, "Run rm -rf build");
        assert_eq!(kind.as_deref(), Some("execute"));
        assert_eq!(tool_call_id.as_deref(), Some("call-p"));
        let ids: Vec<_> = options.iter().map(|o| o.option_id.as_str()).collect();
        assert_eq!(ids, ["allow", "reject"]);
        assert!(matches!(
            agent.respond_permission(request, Some("bogus".into())),
            Err(AgentError::UnknownPermissionOption { .. })
        ));
        agent
            .respond_permission(request, Some("allow".into()))
            .expect("answering the permission request");
        let outcome = within("the answer to /permission", &mut prompt)
            .await
            .expect("the prompt answers");
        assert_eq!(outcome, PromptOutcome::EndTurn);
        assert!(text_of(&drain(&mut updates)).contains("permission granted"));
        assert!(matches!(
            agent.respond_permission(request, None),
            Err(AgentError::UnknownPermission { .. })
        ));
        agent.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn cancel_answers_a_pending_permission_request() {
    bounded(async {
        let dirs = Dirs::new();
        let (agent, mut updates) = start(dirs.options()).await;
        let prompt = agent.prompt("/permission".into());
        tokio::pin!(prompt);
        let request = tokio::select! {
            result = &mut prompt => panic!("/permission ended without asking: {result:?}"),
            update = next_matching(&mut updates, "the permission request", |u| matches!(u, AgentUpdate::PermissionRequest { .. })) => match update {
                AgentUpdate::PermissionRequest { request, .. } => request,
                _ => unreachable!("next_matching returned a permission request"),
            },
        };
        agent.cancel().await;
        let outcome = within("the answer to the cancelled /permission", &mut prompt)
            .await
            .expect("the prompt answers");
        assert_eq!(outcome, PromptOutcome::Cancelled);
        assert!(matches!(
            agent.respond_permission(request, Some("allow".into())),
            Err(AgentError::UnknownPermission { .. })
        ));
        agent.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn write_lands_inside_the_workspace() {
    bounded(async {
        let dirs = Dirs::new();
        let (agent, mut updates) = start(dirs.options()).await;
        let (outcome, turn) = run_prompt(&agent, &mut updates, "/write notes.txt hi").await;
        assert_eq!(outcome, PromptOutcome::EndTurn);
        assert!(text_of(&turn).contains("wrote notes.txt"), "{turn:?}");
        let written = std::fs::read_to_string(dirs.cwd().join("notes.txt"))
            .expect("notes.txt exists in the workspace");
        assert_eq!(written, "hi");
        agent.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn write_outside_the_workspace_is_refused() {
    bounded(async {
        let dirs = Dirs::new();
        let (agent, mut updates) = start(dirs.options()).await;
        let (_, turn) = run_prompt(&agent, &mut updates, "/write ../escape.txt hi").await;
        let text = text_of(&turn);
        assert!(text.contains("write failed"), "{turn:?}");
        assert!(text.contains("outside the workspace"), "{text}");
        assert!(!dirs.root.path().join("escape.txt").exists());

        let outside = dirs.root.path().join("abs.txt");
        let (_, turn) = run_prompt(
            &agent,
            &mut updates,
            &format!("/write {} hi", outside.display()),
        )
        .await;
        assert!(text_of(&turn).contains("write failed"), "{turn:?}");
        assert!(!outside.exists());
        agent.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn crash_mid_prompt_reports_exited_promptly() {
    bounded(async {
        let dirs = Dirs::new();
        let (agent, _updates) = start(dirs.options()).await;
        let asked_at = Instant::now();
        let result = within("the answer to /crash", agent.prompt("/crash".into())).await;
        let elapsed = asked_at.elapsed();
        match result {
            Err(AgentError::Exited { status, .. }) => {
                assert!(status.contains('3'), "exit status {status}");
            }
            other => panic!("expected Exited, got {other:?}"),
        }
        assert!(
            elapsed < Duration::from_secs(3),
            "the crash was reported after {elapsed:?}"
        );
        let status = within("exited()", agent.exited()).await;
        assert!(status.contains('3'), "{status}");
        let pid = agent.pid().expect("the agent had a pid");
        assert!(process_is_gone(pid));
        agent.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_stops_a_hung_agent() {
    bounded(async {
        let dirs = Dirs::new();
        let (agent, mut updates) = start(dirs.options()).await;
        let pid = agent.pid().expect("the agent has a pid");
        let prompt = agent.prompt("/hang".into());
        tokio::pin!(prompt);
        tokio::select! {
            result = &mut prompt => panic!("/hang answered: {result:?}"),
            _ = next_matching(&mut updates, "the text of /hang", |u| matches!(u, AgentUpdate::Text(_))) => {}
        }
        let stopping_at = Instant::now();
        within("shutdown()", agent.shutdown()).await;
        assert!(
            stopping_at.elapsed() < Duration::from_secs(6),
            "shutdown took {:?}",
            stopping_at.elapsed()
        );
        assert!(process_is_gone(pid), "process {pid} still exists");
        let result = within("the hung prompt after shutdown", &mut prompt).await;
        assert!(
            matches!(result, Err(AgentError::Exited { .. })),
            "{result:?}"
        );
        // Idempotent and immediate the second time.
        let again_at = Instant::now();
        within("a second shutdown()", agent.shutdown()).await;
        assert!(again_at.elapsed() < Duration::from_millis(500));
    })
    .await;
}

#[tokio::test]
async fn missing_program_is_a_spawn_error() {
    bounded(async {
        let dirs = Dirs::new();
        let cmd = AgentCommand {
            program: "/nonexistent/shoal-no-such-agent".into(),
            args: Vec::new(),
            env: BTreeMap::new(),
        };
        let (updates_tx, _updates_rx) = mpsc::channel(UPDATES_CAPACITY);
        let error = AgentProcess::start(&cmd, dirs.options(), updates_tx)
            .await
            .expect_err("a missing program cannot start");
        assert!(matches!(error, AgentError::Spawn { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains("/nonexistent/shoal-no-such-agent"),
            "{message}"
        );
        assert!(message.contains("[agents.<name>].command"), "{message}");
    })
    .await;
}

#[tokio::test]
async fn an_agent_that_never_answers_times_out_and_is_stopped() {
    bounded(async {
        let dirs = Dirs::new();
        let cmd = AgentCommand {
            program: "sleep".into(),
            args: vec!["30".into()],
            env: BTreeMap::new(),
        };
        let mut opts = dirs.options();
        opts.start_timeout = Duration::from_millis(300);
        let (updates_tx, _updates_rx) = mpsc::channel(UPDATES_CAPACITY);
        let started_at = Instant::now();
        let error = AgentProcess::start(&cmd, opts, updates_tx)
            .await
            .expect_err("sleep is not an ACP agent");
        assert!(
            matches!(
                error,
                AgentError::StartTimeout {
                    phase: "initialize",
                    ..
                }
            ),
            "{error:?}"
        );
        // 300 ms, then stdin close (1 s) and SIGTERM, which ends `sleep`.
        assert!(started_at.elapsed() < Duration::from_secs(5));
    })
    .await;
}

#[tokio::test]
async fn an_agent_ignoring_sigterm_is_killed() {
    bounded(async {
        let dirs = Dirs::new();
        let pid_file = dirs.root.path().join("agent.pid");
        // `exec` keeps the pid, and an ignored signal stays ignored across exec.
        let cmd = AgentCommand {
            program: "sh".into(),
            args: vec![
                "-c".into(),
                r#"trap "" TERM; echo $$ > "$0"; exec sleep 30"#.into(),
                pid_file.display().to_string(),
            ],
            env: BTreeMap::new(),
        };
        let mut opts = dirs.options();
        opts.start_timeout = Duration::from_millis(300);
        let (updates_tx, _updates_rx) = mpsc::channel(UPDATES_CAPACITY);
        let started_at = Instant::now();
        let error = AgentProcess::start(&cmd, opts, updates_tx)
            .await
            .expect_err("sleep is not an ACP agent");
        let elapsed = started_at.elapsed();
        assert!(
            matches!(error, AgentError::StartTimeout { .. }),
            "{error:?}"
        );
        let escalation = Duration::from_millis(STDIN_CLOSE_GRACE_MS + TERM_GRACE_MS);
        assert!(
            elapsed >= escalation,
            "SIGKILL came after {elapsed:?}, before the grace periods ({escalation:?})"
        );
        assert!(elapsed < escalation + Duration::from_secs(3), "{elapsed:?}");
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .expect("the agent wrote its pid")
            .trim()
            .parse()
            .expect("a pid");
        assert!(process_is_gone(pid), "process {pid} still exists");
    })
    .await;
}

#[tokio::test]
async fn loading_an_unknown_session_fails_and_stops_the_agent() {
    bounded(async {
        let dirs = Dirs::new();
        let mut opts = dirs.options();
        opts.resume_session = Some("demo-does-not-exist".into());
        let (updates_tx, _updates_rx) = mpsc::channel(UPDATES_CAPACITY);
        let error = AgentProcess::start(&demo_agent(), opts, updates_tx)
            .await
            .expect_err("the session does not exist");
        assert!(
            matches!(error, AgentError::Rpc { code: -32002, .. }),
            "{error:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn the_agent_sees_its_private_home_extra_env_and_no_other_node_variable() {
    bounded(async {
        let dirs = Dirs::new();
        let (agent, mut updates) = start(dirs.options()).await;
        let expected = [
            ("HOME", dirs.home()),
            ("XDG_CONFIG_HOME", dirs.home().join(".config")),
            ("XDG_DATA_HOME", dirs.home().join(".local/share")),
            ("XDG_CACHE_HOME", dirs.home().join(".cache")),
            ("XDG_STATE_HOME", dirs.home().join(".local/state")),
            ("SHOAL_NODE_ID", PathBuf::from("node-test-1")),
        ];
        for (name, value) in expected {
            let (_, turn) = run_prompt(&agent, &mut updates, &format!("/echo-env {name}")).await;
            assert_eq!(text_of(&turn), value.display().to_string(), "{name}");
        }
        assert!(dirs.home().join(".local/state").is_dir());
        // The node's own environment stays with the node, but for an allowlist.
        assert!(
            std::env::var_os("CARGO_MANIFEST_DIR").is_some(),
            "cargo sets it for the test process"
        );
        let (_, turn) = run_prompt(&agent, &mut updates, "/echo-env CARGO_MANIFEST_DIR").await;
        assert_eq!(text_of(&turn), "<unset>");
        let (_, turn) = run_prompt(&agent, &mut updates, "/echo-env PATH").await;
        assert_eq!(Some(text_of(&turn)), std::env::var("PATH").ok());
        agent.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn unknown_agent_requests_get_method_not_found() {
    bounded(async {
        let dirs = Dirs::new();
        let (agent, mut updates) = start(dirs.options()).await;
        let (outcome, turn) = run_prompt(&agent, &mut updates, "/unknown-method").await;
        assert_eq!(outcome, PromptOutcome::EndTurn);
        assert!(text_of(&turn).contains("-32601"), "{turn:?}");
        agent.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn tool_calls_and_non_spec_stop_reasons() {
    bounded(async {
        let dirs = Dirs::new();
        let (agent, mut updates) = start(dirs.options()).await;
        let (outcome, turn) = run_prompt(&agent, &mut updates, "/tool").await;
        assert_eq!(outcome, PromptOutcome::EndTurn);
        let calls: Vec<_> = turn
            .iter()
            .filter_map(|update| match update {
                AgentUpdate::ToolCall {
                    id,
                    status,
                    is_update,
                    input,
                    output,
                    ..
                } => Some((
                    id.as_str(),
                    *status,
                    *is_update,
                    input.clone(),
                    output.clone(),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(calls.len(), 3, "{turn:?}");
        assert_eq!(calls[0].0, "call-1");
        assert_eq!(
            (calls[0].1, calls[0].2),
            (Some(ToolStatusRaw::Pending), false)
        );
        assert_eq!(calls[0].3.as_deref(), Some(r#"{"path":"README.md"}"#));
        assert_eq!(
            (calls[2].1, calls[2].2),
            (Some(ToolStatusRaw::Completed), true)
        );
        assert_eq!(calls[2].4.as_deref(), Some("file contents"));

        let (outcome, _) = run_prompt(&agent, &mut updates, "/error").await;
        assert_eq!(outcome, PromptOutcome::Other("error".into()));
        agent.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn session_load_resumes_after_a_restart() {
    bounded(async {
        let dirs = Dirs::new();
        let (agent, mut updates) = start(dirs.options()).await;
        assert!(agent.supports_load_session());
        let session = agent.session_id().to_owned();
        let (outcome, _) = run_prompt(&agent, &mut updates, "remember this").await;
        assert_eq!(outcome, PromptOutcome::EndTurn);
        agent.shutdown().await;
        drop(agent);

        let mut opts = dirs.options();
        opts.resume_session = Some(session.clone());
        let (resumed, mut updates) = start(opts).await;
        assert_eq!(resumed.session_id(), session);
        // The history is replayed before `start` returns.
        let replay = drain(&mut updates);
        assert!(
            replay.iter().any(
                |u| matches!(u, AgentUpdate::UserText(text) if text.contains("remember this"))
            ),
            "{replay:?}"
        );
        assert!(
            text_of(&replay).contains("echo: remember this"),
            "{replay:?}"
        );
        let (outcome, turn) = run_prompt(&resumed, &mut updates, "and now").await;
        assert_eq!(outcome, PromptOutcome::EndTurn);
        assert_eq!(text_of(&turn), "echo: and now");
        resumed.shutdown().await;
    })
    .await;
}

/// An attachment of a kind the agent did not advertise is refused before anything is
/// sent (the node's backstop when its probe did not know); the process goes on.
#[tokio::test]
async fn attachments_the_agent_does_not_take_are_refused_before_the_prompt() {
    bounded(async {
        let dirs = Dirs::new();
        let mut opts = dirs.options();
        opts.extra_env
            .insert(shoal_demo_agent::TEXT_ONLY_ENV.to_owned(), "1".to_owned());
        let (agent, mut updates) = start(opts).await;
        let image = shoal_protocol::attachments::Attachment {
            name: "pic.png".into(),
            mime_type: "image/png".into(),
            data: vec![1, 2, 3],
        };
        let refused = within(
            "the refusal",
            agent.prompt_with(None, "/attachments".into(), &[image]),
        )
        .await;
        match refused {
            Err(AgentError::AttachmentRefused { capability, .. }) => {
                assert_eq!(capability, "promptCapabilities.image");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        let (outcome, turn) = run_prompt(&agent, &mut updates, "/attachments").await;
        assert_eq!(outcome, PromptOutcome::EndTurn);
        assert_eq!(text_of(&turn), "attachments: none");
        agent.shutdown().await;
    })
    .await;
}
