//! Unit tests of turn usage records in the state machine.

use super::super::usage::user_usage;
use super::*;
use crate::agent_process::TokenCounts;

fn record(mem: &mut Mem, turn: u64, session: &str, total_micros: Option<u64>) {
    mem.run(&ShardCommand::RecordUsage {
        conversation: conv(),
        owner: UserId::parse("alice").unwrap(),
        turn: TurnId(turn),
        workspace: WorkspaceId::new(ShardId(3), 7),
        agent: "demo".into(),
        at_ms: turn,
        tokens: Some(TokenCounts {
            input: 10,
            output: 20,
            ..TokenCounts::default()
        }),
        session: Some(session.to_owned()),
        session_cost: total_micros.map(|t| (t, "USD".to_owned())),
        credentials: vec!["API_KEY".into()],
    })
    .unwrap();
}

fn costs(mem: &Mem) -> Vec<Option<u64>> {
    user_usage(mem, &UserId::parse("alice").unwrap())
        .ok()
        .unwrap()
        .iter()
        .map(|u| u.cost.as_ref().map(|(micros, _)| *micros))
        .collect()
}

#[test]
fn a_turn_costs_what_its_session_total_grew_by() {
    let mut mem = Mem::default();
    record(&mut mem, 1, "s1", Some(10_000));
    record(&mut mem, 2, "s1", Some(25_000));
    // Recorded once: a retry of turn 2 changes nothing.
    record(&mut mem, 2, "s1", Some(99_000));
    // A new session counts from zero; a total that went down counts nothing.
    record(&mut mem, 3, "s2", Some(4_000));
    record(&mut mem, 4, "s2", Some(1_000));
    // No cost reported: tokens only.
    record(&mut mem, 5, "s2", None);
    assert_eq!(
        costs(&mem),
        [Some(10_000), Some(15_000), Some(4_000), Some(0), None]
    );
}
