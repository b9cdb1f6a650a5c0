//! `shoalctl` against a scripted in-process node: output formats, permission answers and
//! exit codes, frame by frame. (`tests/cli.rs` runs the real node.)

#[path = "../../client/tests/support/fake_node.rs"]
mod fake_node;

use anyhow::{Context, Result, anyhow, bail, ensure};
use fake_node::*;
use serde_json::{Value, json};
use shoal_protocol::admin::{AdminReply, AdminRequest};
use shoal_protocol::client::{ClientReply, ClientRequest, ServerFrame};
use shoal_protocol::transcript::{Event, EventFrame, MessageStatus, PermissionOption, ToolStatus};
use shoal_protocol::{ErrorCode, MessageId, Seq, TurnId, WireError};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};

const SHOALCTL: &str = env!("CARGO_BIN_EXE_shoalctl");
/// Longest wait for one `shoalctl` run to finish.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

fn spawn(profile: &Path, args: &[&str]) -> Result<Child> {
    Ok(Command::new(SHOALCTL)
        .arg("--profile")
        .arg(profile)
        .args(args)
        .env_remove("SHOAL_PROFILE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?)
}

async fn finish(child: Child) -> Result<Output> {
    tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| anyhow!("shoalctl did not exit within {COMMAND_TIMEOUT:?}"))?
        .context("cannot wait for shoalctl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn event(seq: u64, event: Event) -> EventFrame {
    EventFrame {
        seq: Seq(seq),
        event,
    }
}

fn chunk(seq: u64, text: &str) -> EventFrame {
    event(
        seq,
        Event::TextChunk {
            message_id: MessageId(1),
            text: text.to_owned(),
        },
    )
}

fn accepted() -> ServerFrame {
    ServerFrame::Accepted {
        turn: TurnId(1),
        user_message: MessageId(0),
        duplicate: false,
    }
}

fn permission(seq: u64) -> EventFrame {
    let option = |id: &str, kind: &str| PermissionOption {
        option_id: id.to_owned(),
        name: id.to_owned(),
        kind: kind.to_owned(),
    };
    event(
        seq,
        Event::PermissionRequest {
            request: 7,
            title: "write notes.txt".to_owned(),
            options: vec![
                option("reject", "reject_once"),
                option("allow", "allow_once"),
            ],
        },
    )
}

/// Serves one `send` whose turn asks permission; returns the option the CLI chose.
async fn serve_turn_with_permission(node: &mut FakeNode) -> Result<Option<String>> {
    let mut send = node.next("SendMessage").await?;
    ensure!(
        matches!(send.client()?, ClientRequest::SendMessage { text, .. } if text == "hi"),
        "unexpected {:?}",
        send.body
    );
    send.frame(&accepted()).await?;
    send.event(chunk(1, "echo: ")).await?;
    send.event(event(
        2,
        Event::ToolCall {
            message_id: MessageId(1),
            part: shoal_protocol::transcript::Part::ToolCall {
                tool_call_id: "t1".into(),
                title: "write notes.txt".into(),
                kind: Some("edit".into()),
                status: ToolStatus::Pending,
                input: None,
                output: None,
            },
        },
    ))
    .await?;
    send.event(permission(3)).await?;

    let mut answer = node.next("RespondPermission").await?;
    let chosen = match answer.client()? {
        ClientRequest::RespondPermission {
            request: 7,
            option_id,
            ..
        } => option_id.clone(),
        other => bail!("expected RespondPermission for request 7, got {other:?}"),
    };
    answer
        .frame(&ServerFrame::Reply(ClientReply::PermissionAnswered))
        .await?;
    answer.finish();

    send.event(chunk(4, "hi")).await?;
    send.event(done(5, "echo: hi")).await?;
    send.finish();
    Ok(chosen)
}

#[tokio::test]
async fn send_streams_text_and_answers_permissions() -> Result<()> {
    let pki = pki()?;
    let mut node = FakeNode::start(&pki)?;
    let dir = tempfile::tempdir()?;
    let profile = write_profile(&dir, &pki, node.addr)?;
    let id = conversation().to_string();

    // Without --allow the request is denied.
    let child = spawn(&profile, &["conv", "send", &id, "hi"])?;
    let chosen = serve_turn_with_permission(&mut node).await?;
    let output = finish(child).await?;
    let stderr = text(&output.stderr);
    ensure!(output.status.success(), "exit {}: {stderr}", output.status);
    ensure!(chosen.is_none(), "denied expected, chose {chosen:?}");
    ensure!(
        text(&output.stdout) == "echo: hi\n",
        "{:?}",
        text(&output.stdout)
    );
    ensure!(
        stderr.contains("[tool] write notes.txt (pending)"),
        "{stderr}"
    );
    ensure!(
        stderr.contains("[permission] write notes.txt: denied (pass --allow to allow)"),
        "{stderr}"
    );

    // With --allow the first allow option is chosen.
    let child = spawn(&profile, &["conv", "send", &id, "hi", "--allow"])?;
    let chosen = serve_turn_with_permission(&mut node).await?;
    let output = finish(child).await?;
    let stderr = text(&output.stderr);
    ensure!(output.status.success(), "exit {}: {stderr}", output.status);
    ensure!(chosen.as_deref() == Some("allow"), "chose {chosen:?}");
    ensure!(
        stderr.contains("[permission] write notes.txt: allowed (allow)"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn an_interrupted_turn_exits_1_with_one_error_line() -> Result<()> {
    let pki = pki()?;
    let mut node = FakeNode::start(&pki)?;
    let dir = tempfile::tempdir()?;
    let profile = write_profile(&dir, &pki, node.addr)?;
    let id = conversation().to_string();

    let child = spawn(&profile, &["conv", "send", &id, "hi", "--json"])?;
    let mut send = node.next("SendMessage").await?;
    send.frame(&accepted()).await?;
    send.event(chunk(1, "ec")).await?;
    send.event(event(
        2,
        Event::Error {
            message: "agent crashed".into(),
        },
    ))
    .await?;
    let mut interrupted = done(3, "ec");
    if let Event::Done { message, .. } = &mut interrupted.event {
        message.status = MessageStatus::Interrupted;
    }
    send.event(interrupted).await?;
    send.finish();
    let output = finish(child).await?;
    ensure!(output.status.code() == Some(1), "exit {}", output.status);
    let stderr = text(&output.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    ensure!(
        errors
            == [
                "error: the turn ended interrupted: agent crashed; check the agent and the node's log, then send again"
            ],
        "{stderr}"
    );
    // --json: one object per event on stdout.
    let stdout = text(&output.stdout);
    let types: Vec<String> = stdout
        .lines()
        .map(|l| {
            let value: Value = serde_json::from_str(l)?;
            Ok(value["type"].as_str().unwrap_or_default().to_owned())
        })
        .collect::<Result<_>>()?;
    ensure!(types == ["text", "error", "done"], "{stdout}");
    Ok(())
}

#[tokio::test]
async fn follow_json_until_done_prints_flat_events() -> Result<()> {
    let pki = pki()?;
    let mut node = FakeNode::start(&pki)?;
    let dir = tempfile::tempdir()?;
    let profile = write_profile(&dir, &pki, node.addr)?;
    let id = conversation().to_string();

    let child = spawn(
        &profile,
        &[
            "conv",
            "follow",
            &id,
            "--json",
            "--until-done",
            "--since",
            "4",
        ],
    )?;
    let mut follow = node.next("Follow").await?;
    ensure!(
        matches!(
            follow.client()?,
            ClientRequest::Follow {
                since: Some(Seq(4)),
                ..
            }
        ),
        "unexpected {:?}",
        follow.body
    );
    follow.event(chunk(4, "dropped: already seen")).await?;
    follow.event(chunk(5, "echo: ")).await?;
    follow.event(done(6, "echo: ")).await?;
    // Never sent to a follower that already exited; must not be printed.
    let _ = follow.event(chunk(7, "after done")).await;
    let output = finish(child).await?;
    ensure!(output.status.success(), "{}", text(&output.stderr));
    let lines: Vec<Value> = text(&output.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    ensure!(lines.len() == 2, "{lines:?}");
    ensure!(
        lines[0]
            == serde_json::json!({"seq": 5, "type": "text", "message_id": 1, "text": "echo: "}),
        "{}",
        lines[0]
    );
    ensure!(lines[1]["type"] == "done" && lines[1]["seq"] == 6);
    ensure!(lines[1]["message"]["status"] == "complete");
    ensure!(lines[1]["message"]["content"] == "echo: ");
    ensure!(lines[1]["message"]["parts"][0]["type"] == "text");
    Ok(())
}

#[tokio::test]
async fn server_errors_are_one_line() -> Result<()> {
    let pki = pki()?;
    let mut node = FakeNode::start(&pki)?;
    let dir = tempfile::tempdir()?;
    let profile = write_profile(&dir, &pki, node.addr)?;
    let id = conversation().to_string();

    let child = spawn(&profile, &["conv", "show", &id])?;
    let mut get = node.next("GetConversation").await?;
    get.frame(&ServerFrame::Error(WireError::not_found(format!(
        "conversation {id} does not exist; check the id with `shoalctl conv list`"
    ))))
    .await?;
    get.finish();
    let output = finish(child).await?;
    ensure!(output.status.code() == Some(1));
    let stderr = text(&output.stderr);
    ensure!(
        stderr
            == format!(
                "error: not found: conversation {id} does not exist; check the id with `shoalctl conv list`\n"
            ),
        "{stderr:?}"
    );
    Ok(())
}

/// Runs `shoalctl ARGS…` against `node`, answers its one admin request with `reply` after
/// checking it is `expected`, and returns the output.
async fn admin_command(
    node: &mut FakeNode,
    profile: &Path,
    args: &[&str],
    expected: AdminRequest,
    reply: Result<AdminReply, WireError>,
) -> Result<Output> {
    let child = spawn(profile, args)?;
    let request = node
        .next(&format!("the request of `{}`", args.join(" ")))
        .await?;
    ensure!(
        *request.admin()? == expected,
        "`{}` sent {:?}, expected {expected:?}",
        args.join(" "),
        request.body
    );
    request.admin_reply(reply).await?;
    finish(child).await
}

/// Checks success and an empty stderr; returns stdout.
fn succeeded(output: &Output, what: &str) -> Result<String> {
    let stderr = text(&output.stderr);
    ensure!(
        output.status.success() && stderr.is_empty(),
        "`{what}` failed ({}): {stderr}",
        output.status
    );
    Ok(text(&output.stdout))
}

#[tokio::test]
async fn members_prints_a_table_or_a_json_array() -> Result<()> {
    bounded(async {
        let pki = pki()?;
        let mut node = FakeNode::start(&pki)?;
        let dir = tempfile::tempdir()?;
        let profile = write_profile(&dir, &pki, node.addr)?;
        // Out of order on the wire; printed by node id.
        let mut members = members();
        members.reverse();

        let output = admin_command(
            &mut node,
            &profile,
            &["members"],
            AdminRequest::Members,
            Ok(AdminReply::Members(members.clone())),
        )
        .await?;
        let stdout = succeeded(&output, "members")?;
        let expected = [
            "NODE  ADDR            STATE    LEADERS  VERSION",
            "n1    127.0.0.1:7001  alive         22  0.1.0",
            "n2    127.0.0.1:7002  alive         21  0.1.0    draining",
            "n3    127.0.0.1:7003  suspect       21  0.1.0",
        ];
        ensure!(stdout.lines().eq(expected), "{stdout}");

        let output = admin_command(
            &mut node,
            &profile,
            &["members", "--json"],
            AdminRequest::Members,
            Ok(AdminReply::Members(members)),
        )
        .await?;
        let stdout = succeeded(&output, "members --json")?;
        ensure!(stdout.lines().count() == 1, "one line expected: {stdout}");
        let value: Value = serde_json::from_str(&stdout)?;
        let first = json!({
            "node_id": "n1",
            "addr": "127.0.0.1:7001",
            "state": "alive",
            "version": "0.1.0",
            "leaders": 22,
            "draining": false,
        });
        ensure!(value[0] == first, "{value}");
        let ids: Vec<&str> = value
            .as_array()
            .context("not an array")?
            .iter()
            .filter_map(|m| m["node_id"].as_str())
            .collect();
        ensure!(ids == ["n1", "n2", "n3"], "{value}");
        ensure!(value[1]["draining"] == true && value[2]["state"] == "suspect");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn shards_prints_a_table_with_a_summary_or_a_json_array() -> Result<()> {
    bounded(async {
        let pki = pki()?;
        let mut node = FakeNode::start(&pki)?;
        let dir = tempfile::tempdir()?;
        let profile = write_profile(&dir, &pki, node.addr)?;
        let mut shards = shards();
        shards[63].learners = vec!["n4".to_owned()];
        shards[63].term = 3;
        let mut leaderless = shards.clone();
        leaderless[1].leader = None;
        leaderless[1].applied_index = None;

        let output = admin_command(
            &mut node,
            &profile,
            &["shards"],
            AdminRequest::Shards,
            Ok(AdminReply::Shards(shards)),
        )
        .await?;
        let stdout = succeeded(&output, "shards")?;
        let lines: Vec<&str> = stdout.lines().collect();
        ensure!(lines.len() == 66, "header, 64 rows, summary: {stdout}");
        ensure!(
            lines[0] == "SHARD  LEADER  REPLICAS      TERM  APPLIED",
            "{stdout}"
        );
        ensure!(
            lines[1] == "    0  n1      n1,n2,n3         2      100",
            "{stdout}"
        );
        ensure!(
            lines[64] == "   63  n1      n1,n2,n3,+n4     3      163",
            "{stdout}"
        );
        ensure!(
            lines[65] == "64 shards, 64 with a leader; leaders per node: n1=22 n2=21 n3=21",
            "{stdout}"
        );

        let output = admin_command(
            &mut node,
            &profile,
            &["shards", "--json"],
            AdminRequest::Shards,
            Ok(AdminReply::Shards(leaderless)),
        )
        .await?;
        let stdout = succeeded(&output, "shards --json")?;
        ensure!(stdout.lines().count() == 1, "one line expected: {stdout}");
        let value: Value = serde_json::from_str(&stdout)?;
        ensure!(
            value.as_array().map(Vec::len) == Some(64),
            "64 shards expected: {value}"
        );
        let leaderless = json!({
            "shard": 1,
            "leader": null,
            "replicas": ["n1", "n2", "n3"],
            "learners": [],
            "term": 2,
            "applied_index": null,
            "hosted_here": false,
            "quiet": false,
        });
        ensure!(value[1] == leaderless, "{}", value[1]);
        ensure!(value[63]["learners"] == json!(["n4"]), "{}", value[63]);
        ensure!(value[0]["leader"] == "n1" && value[0]["applied_index"] == 100);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn drain_says_what_happens_and_failures_are_one_line() -> Result<()> {
    bounded(async {
        let pki = pki()?;
        let mut node = FakeNode::start(&pki)?;
        let dir = tempfile::tempdir()?;
        let profile = write_profile(&dir, &pki, node.addr)?;
        let draining = || Ok(draining_n2());

        let output = admin_command(
            &mut node,
            &profile,
            &["drain", "n2", "--no-wait"],
            drain_n2(),
            draining(),
        )
        .await?;
        let stdout = succeeded(&output, "drain n2 --no-wait")?;
        ensure!(
            stdout == "draining n2: its shard leaderships and replicas move to other nodes over the next seconds\n",
            "{stdout:?}"
        );

        let output = admin_command(
            &mut node,
            &profile,
            &["drain", "n2", "--no-wait", "--json"],
            drain_n2(),
            draining(),
        )
        .await?;
        let stdout = succeeded(&output, "drain n2 --no-wait --json")?;
        ensure!(
            serde_json::from_str::<Value>(&stdout)? == json!({"draining": "n2"}),
            "{stdout}"
        );
        ensure!(stdout.lines().count() == 1, "{stdout}");

        // The node's refusal is the one error line.
        let output = admin_command(
            &mut node,
            &profile,
            &["drain", "n9"],
            AdminRequest::Drain {
                node: "n9".to_owned(),
            },
            Err(WireError::new(
                ErrorCode::NotFound,
                "node n9 is not a cluster member; list them with `shoalctl members`",
            )),
        )
        .await?;
        ensure!(output.status.code() == Some(1), "exit {}", output.status);
        ensure!(output.stdout.is_empty(), "{}", text(&output.stdout));
        let stderr = text(&output.stderr);
        ensure!(
            stderr
                == "error: not found: node n9 is not a cluster member; list them with `shoalctl members`\n",
            "{stderr:?}"
        );

        // A profile without the admin token fails before connecting.
        let text_without_admin: String = std::fs::read_to_string(&profile)?
            .lines()
            .filter(|line| !line.starts_with("admin_token"))
            .map(|line| format!("{line}\n"))
            .collect();
        std::fs::write(&profile, text_without_admin)?;
        for args in [&["members"][..], &["shards", "--json"], &["drain", "n2"]] {
            let output = finish(spawn(&profile, args)?).await?;
            ensure!(output.status.code() == Some(1), "exit {}", output.status);
            let stderr = text(&output.stderr);
            ensure!(
                stderr.lines().count() == 1
                    && stderr.starts_with("error: the profile has no admin_token"),
                "`{}`: {stderr:?}",
                args.join(" ")
            );
        }
        Ok(())
    })
    .await
}

fn drain_progress(leaderships: u32, replicas: u32, placeable: u32) -> AdminReply {
    AdminReply::DrainProgress(shoal_protocol::admin::DrainProgress {
        node: "n2".to_owned(),
        draining: true,
        leaderships,
        replicas,
        placeable_members: placeable,
        replicas_per_shard: 3,
        shards_unknown: 0,
        unreachable: Vec::new(),
    })
}

/// Answers the next admin request, which must be `expected`.
async fn answer(node: &mut FakeNode, expected: AdminRequest, reply: AdminReply) -> Result<()> {
    let request = node.next(&format!("{expected:?}")).await?;
    ensure!(*request.admin()? == expected, "{:?}", request.body);
    request.admin_reply(Ok(reply)).await
}

fn drain_n2() -> AdminRequest {
    AdminRequest::Drain {
        node: "n2".to_owned(),
    }
}

fn progress_n2() -> AdminRequest {
    AdminRequest::DrainProgress {
        node: "n2".to_owned(),
    }
}

fn draining_n2() -> AdminReply {
    AdminReply::Draining {
        node: "n2".to_owned(),
    }
}

/// `drain` follows the drain until nothing is left to move, then says what stayed; a
/// drain that does not finish in `--timeout-secs` is one error line.
#[tokio::test]
async fn drain_waits_until_the_node_is_empty() -> Result<()> {
    bounded(async {
        let pki = pki()?;
        let mut node = FakeNode::start(&pki)?;
        let dir = tempfile::tempdir()?;
        let profile = write_profile(&dir, &pki, node.addr)?;

        // Two members left for three replicas: the replicas stay once the leaderships moved.
        let child = spawn(&profile, &["drain", "n2"])?;
        answer(&mut node, drain_n2(), draining_n2()).await?;
        answer(&mut node, progress_n2(), drain_progress(5, 64, 2)).await?;
        answer(&mut node, progress_n2(), drain_progress(2, 64, 2)).await?;
        answer(&mut node, progress_n2(), drain_progress(0, 64, 2)).await?;
        let stdout = succeeded(&finish(child).await?, "drain n2")?;
        ensure!(
            stdout
                == "drained n2: it leads no shard; its 64 replicas stay, as only 2 members can hold replicas for 3 per shard (add a node to move them)\n",
            "{stdout:?}"
        );

        // With a spare member the replicas move too; --json prints the end.
        let child = spawn(&profile, &["admin", "drain", "n2", "--json"])?;
        answer(&mut node, drain_n2(), draining_n2()).await?;
        answer(&mut node, progress_n2(), drain_progress(0, 3, 3)).await?;
        answer(&mut node, progress_n2(), drain_progress(0, 0, 3)).await?;
        let stdout = succeeded(&finish(child).await?, "admin drain n2 --json")?;
        ensure!(
            serde_json::from_str::<Value>(&stdout)?
                == json!({"node": "n2", "drained": true, "leaderships": 0, "replicas": 0, "replicas_stay": false}),
            "{stdout}"
        );

        // Not empty in time: one error line, exit 1.
        let child = spawn(&profile, &["drain", "n2", "--timeout-secs", "1"])?;
        answer(&mut node, drain_n2(), draining_n2()).await?;
        let mut output = std::pin::pin!(finish(child));
        let output = loop {
            tokio::select! {
                output = &mut output => break output?,
                request = node.next("a progress request") => {
                    let request = request?;
                    ensure!(*request.admin()? == progress_n2(), "{:?}", request.body);
                    request.admin_reply(Ok(drain_progress(1, 3, 3))).await?;
                }
            }
        };
        ensure!(output.status.code() == Some(1), "exit {}", output.status);
        let stderr = text(&output.stderr);
        ensure!(
            stderr
                == "error: n2 still holds 1 leaderships, 3 replicas left after 1 s; the drain goes on — run `shoalctl drain n2` again to follow it, or see `shoalctl shards`\n",
            "{stderr:?}"
        );

        // Undrain.
        let child = spawn(&profile, &["undrain", "n2"])?;
        answer(
            &mut node,
            AdminRequest::Undrain {
                node: "n2".to_owned(),
            },
            AdminReply::Undrained {
                node: "n2".to_owned(),
            },
        )
        .await?;
        let stdout = succeeded(&finish(child).await?, "undrain n2")?;
        ensure!(
            stdout == "undrained n2: it is back in placement; shards move to it over the next seconds\n",
            "{stdout:?}"
        );
        Ok(())
    })
    .await
}

fn cluster_event(
    at_ms: u64,
    node: &str,
    seq: u64,
    detail: &str,
) -> shoal_protocol::admin::ClusterEvent {
    shoal_protocol::admin::ClusterEvent {
        at_ms,
        node: node.to_owned(),
        seq,
        kind: "down".to_owned(),
        detail: detail.to_owned(),
    }
}

/// `admin events` prints the merged events; `--follow` asks again from a little before
/// the newest it printed and prints only what is new; a member that did not answer is a
/// warning on stderr, not a failure.
#[tokio::test]
async fn events_print_once_and_follow_asks_from_the_newest() -> Result<()> {
    bounded(async {
        let pki = pki()?;
        let mut node = FakeNode::start(&pki)?;
        let dir = tempfile::tempdir()?;
        let profile = write_profile(&dir, &pki, node.addr)?;
        let first = cluster_event(3_723_004, "n1", 7, "n3 is down");
        let later = cluster_event(3_724_000, "n2", 2, "n3 is down");

        let child = spawn(&profile, &["admin", "events", "--limit", "5"])?;
        let request = node.next("events").await?;
        ensure!(
            *request.admin()? == AdminRequest::Events { after_ms: None, limit: 5 },
            "{:?}",
            request.body
        );
        request
            .admin_reply(Ok(AdminReply::Events {
                events: vec![first.clone()],
                unreachable: vec!["n3: down in gossip".to_owned()],
            }))
            .await?;
        let output = finish(child).await?;
        ensure!(output.status.success(), "exit {}", output.status);
        ensure!(
            text(&output.stdout) == "01:02:03.004  n1       down      n3 is down\n",
            "{}",
            text(&output.stdout)
        );
        ensure!(
            text(&output.stderr)
                == "warning: no answer from n3: down in gossip; its events are missing\n",
            "{}",
            text(&output.stderr)
        );

        let mut child = spawn(&profile, &["admin", "events", "--follow", "--json"])?;
        answer(
            &mut node,
            AdminRequest::Events { after_ms: None, limit: 50 },
            AdminReply::Events {
                events: vec![first.clone()],
                unreachable: Vec::new(),
            },
        )
        .await?;
        // The overlap brings `first` again: printed once.
        answer(
            &mut node,
            AdminRequest::Events {
                after_ms: Some(3_723_004 - 5_000),
                limit: 1_000,
            },
            AdminReply::Events {
                // The overlap also brings one older than the first answer's oldest,
                // which its limit left out: not printed out of order.
                events: vec![
                    cluster_event(3_722_000, "n3", 1, "n3 was suspected"),
                    first.clone(),
                    later.clone(),
                ],
                unreachable: Vec::new(),
            },
        )
        .await?;
        // The third request shows the second answer was handled.
        let third = node.next("the third events request").await?;
        ensure!(
            *third.admin()?
                == AdminRequest::Events {
                    after_ms: Some(3_724_000 - 5_000),
                    limit: 1_000
                },
            "{:?}",
            third.body
        );
        child.start_kill()?;
        let output = finish(child).await?;
        let lines: Vec<Value> = text(&output.stdout)
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        ensure!(
            lines
                == vec![
                    json!({"at_ms": 3_723_004, "node": "n1", "seq": 7, "kind": "down", "detail": "n3 is down"}),
                    json!({"at_ms": 3_724_000, "node": "n2", "seq": 2, "kind": "down", "detail": "n3 is down"}),
                ],
            "{lines:?}"
        );
        Ok(())
    })
    .await
}

/// `admin actors` lists every member's actors in a table; a member that did not answer
/// is a warning, not a failure. `admin cancel` says whether a turn was running.
#[tokio::test]
async fn actors_are_a_cluster_table_and_cancel_says_what_it_did() -> Result<()> {
    bounded(async {
        let pki = pki()?;
        let mut node = FakeNode::start(&pki)?;
        let dir = tempfile::tempdir()?;
        let profile = write_profile(&dir, &pki, node.addr)?;
        let actor = |node: &str, kind: &str, state: &str, followers| {
            shoal_protocol::admin::ClusterActorInfo {
                node: node.to_owned(),
                kind: kind.to_owned(),
                key: "c-1-00000000000000000000000000000002".to_owned(),
                state: state.to_owned(),
                followers,
                mailbox: None,
            }
        };
        let output = admin_command(
            &mut node,
            &profile,
            &["admin", "actors"],
            AdminRequest::ClusterActors,
            Ok(AdminReply::ClusterActors {
                actors: vec![
                    actor("n1", "conversation", "turn", 2),
                    actor("n2", "agent_session", "live", 0),
                ],
                unreachable: vec!["n3: down in gossip".to_owned()],
                truncated: false,
            }),
        )
        .await?;
        ensure!(output.status.success(), "exit {}", output.status);
        ensure!(
            text(&output.stdout)
                == "NODE  KIND           STATE  FOLLOWERS  KEY\n\
                    n1    conversation   turn           2  c-1-00000000000000000000000000000002\n\
                    n2    agent_session  live           0  c-1-00000000000000000000000000000002\n",
            "{}",
            text(&output.stdout)
        );
        ensure!(
            text(&output.stderr)
                == "warning: no answer from n3: down in gossip; its actors are not listed\n",
            "{}",
            text(&output.stderr)
        );

        let id = conversation();
        let output = admin_command(
            &mut node,
            &profile,
            &["admin", "cancel", &id.to_string()],
            AdminRequest::CancelTurn { conversation: id },
            Ok(AdminReply::TurnCancelled { was_running: true }),
        )
        .await?;
        let stdout = succeeded(&output, "admin cancel")?;
        ensure!(
            stdout == format!("cancelled the running turn of {id}\n"),
            "{stdout}"
        );
        Ok(())
    })
    .await
}
