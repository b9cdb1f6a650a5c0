//! Level 2 of the CI chaos profile: short seeded scenarios on real `shoal-node` processes
//! (loopback, fault proxies, real demo-agent children), checked by every checker; and the
//! proof that the checkers catch violations planted in a real run's history.

use shoal_chaos_tests::check::{Invariant, check_all};
use shoal_chaos_tests::history::AgentLife;
use shoal_chaos_tests::real::{FaultKind, RealOptions, RealOutcome, run};
use shoal_protocol::transcript::Event;
use std::time::Duration;

/// Bound on a whole scenario (faults, healing, convergence, checks).
const SCENARIO_TIMEOUT_MS: u64 = 240_000;

fn options(seed: u64, secs: u64, faults: &[FaultKind]) -> RealOptions {
    RealOptions {
        exe: env!("CARGO_BIN_EXE_shoal-chaos-node").into(),
        seed,
        duration: Duration::from_secs(secs),
        clients: 2,
        followers: 1,
        faults: faults.to_vec(),
        echo_trace: false,
    }
}

async fn run_clean(options: RealOptions) -> RealOutcome {
    let seed = options.seed;
    let outcome = tokio::time::timeout(Duration::from_millis(SCENARIO_TIMEOUT_MS), run(&options))
        .await
        .unwrap_or_else(|_| {
            panic!("seed {seed}: the scenario did not finish within {SCENARIO_TIMEOUT_MS} ms")
        })
        .unwrap_or_else(|e| panic!("seed {seed}: the scenario could not run: {e:#}"));
    eprintln!("seed {seed}: {:?}", outcome.stats);
    if !outcome.violations.is_empty() {
        let path = std::env::temp_dir().join(format!("shoal-chaos-seed-{seed}.trace"));
        let mut text = outcome.trace.join("\n");
        for v in &outcome.violations {
            eprintln!("{v}");
            text.push_str(&format!("\n{v}"));
        }
        let _ = std::fs::write(&path, text);
        eprintln!("seed {seed}: trace written to {}", path.display());
        panic!(
            "seed {seed}: {} violation(s); replay: cargo run --release -p shoal-chaos-tests --bin shoal-chaos -- --first-seed {seed} --seeds 1 --scenario-secs {} --clients {} --followers {} --faults {} --trace",
            outcome.violations.len(),
            options.duration.as_secs(),
            options.clients,
            options.followers,
            options
                .faults
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    let acked = outcome.stats.writes_acked;
    assert!(acked > 0, "seed {seed}: no write was acknowledged");
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_faults_keep_the_invariants() {
    let outcome = run_clean(options(
        11,
        25,
        &[
            FaultKind::Kill,
            FaultKind::Pause,
            FaultKind::Wipe,
            FaultKind::StallStorage,
            FaultKind::WipeLagging,
            FaultKind::Stop,
            FaultKind::Drain,
        ],
    ))
    .await;
    assert!(outcome.stats.faults.values().sum::<u64>() > 0);
    assert!(
        !outcome.history.viewer_writes.is_empty(),
        "the viewers tried to send with their viewer token"
    );

    // The same run's history, with violations planted, is caught by the checkers.
    let history = outcome.history;
    let mut lost = history.clone();
    let copy = lost
        .replicas
        .iter_mut()
        .find(|c| c.messages.len() > 2)
        .expect("a replica copy with messages");
    copy.messages.remove(0);
    assert!(
        check_all(&lost)
            .iter()
            .any(|v| v.invariant == Invariant::NoAckedWriteLost),
        "a message removed from one replica is caught"
    );

    let mut two_agents = history.clone();
    let first = two_agents
        .agents
        .first()
        .cloned()
        .expect("an agent was witnessed");
    two_agents.agents.push(AgentLife {
        node: "n9".into(),
        pid: first.pid + 100_000,
        start_ns: first.start_ns + 1,
        end_ns: None,
        ..first
    });
    assert!(
        check_all(&two_agents)
            .iter()
            .any(|v| v.invariant == Invariant::OneLiveAgent),
        "a second live agent for one conversation is caught"
    );

    // Remove an event between two others of the same run (no reset next to it: a reset
    // starts a new base, across which a jump is not a gap).
    let mut gap = history.clone();
    let (log, at) = gap
        .followers
        .iter_mut()
        .find_map(|f| {
            let at = (1..f.events.len().saturating_sub(1)).find(|&i| {
                f.events[i - 1..=i + 1]
                    .iter()
                    .all(|e| !matches!(e.event, Event::Reset { .. }))
            })?;
            Some((f, at))
        })
        .expect("a follower saw three events in a row without a reset");
    log.events.remove(at);
    assert!(
        check_all(&gap)
            .iter()
            .any(|v| v.invariant == Invariant::FollowerGapFree),
        "an event removed from a follower's stream is caught"
    );
}

/// Quiet shards: the clients pause until the conversation's shard is quiet (its lease
/// held by beats alone, its warm agent alive), then its leader is cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_shards_isolated_leader_keeps_the_invariants() {
    let outcome = run_clean(options(13, 12, &[FaultKind::QuietIsolate])).await;
    assert!(
        outcome
            .stats
            .faults
            .get("quiet-isolate")
            .is_some_and(|n| *n > 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_faults_keep_the_invariants() {
    let outcome = run_clean(options(
        12,
        25,
        &[
            FaultKind::Partition,
            FaultKind::OneWay,
            FaultKind::IsolateLeader,
            FaultKind::Loss,
            FaultKind::Delay,
        ],
    ))
    .await;
    assert!(outcome.stats.net.forwarded > 0);

    // A usage update leaked to a follower is caught.
    let mut leak = outcome.history;
    let log = leak.followers.first_mut().expect("a follower");
    let seq = log.events.last().map(|e| e.seq.next()).expect("an event");
    log.events.push(shoal_protocol::transcript::EventFrame {
        seq,
        event: Event::UsageUpdate {
            usage: shoal_protocol::transcript::Usage {
                used_tokens: 1,
                size_tokens: 2,
                cost: None,
                currency: None,
            },
        },
    });
    assert!(
        check_all(&leak)
            .iter()
            .any(|v| v.invariant == Invariant::OwnerOnlyHidden),
        "an owner-only event in a follower's stream is caught"
    );
}
