//! Unit tests: drivers on an in-memory network, and the sans-I/O core with explicit time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use foca::{BroadcastHandler, Codec, Header, Identity, Invalidates, PostcardCodec};

use super::codec::{BoundedCodec, GossipCodecError, GossipTables, MetaHandler, MetaWire};
use super::*;

const WAIT_LIMIT: Duration = Duration::from_secs(10);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn timings(probe_ms: u64, suspect_ms: u64) -> GossipTimings {
    GossipTimings {
        cluster_size_hint: 3,
        probe_period: Some(Duration::from_millis(probe_ms)),
        suspect_to_down: Some(Duration::from_millis(suspect_ms)),
        packet_bytes_max: 1200,
    }
}

fn addr(index: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + index))
}

fn meta(index: u16) -> NodeMeta {
    NodeMeta {
        name: format!("n{index}"),
        raft_id: u64::from(index),
        addr: addr(index),
        version: "0.1.0".to_owned(),
        leaders: 0,
        led: Vec::new(),
        initialized: index == 1,
        draining: false,
    }
}

/// An in-memory network routing packets between drivers through `deliver`.
#[derive(Default)]
struct Net {
    nodes: Mutex<HashMap<SocketAddr, Membership>>,
}

/// One node's link; `up == false` drops everything it sends (a dead process).
struct Link {
    net: Arc<Net>,
    from: SocketAddr,
    up: Arc<AtomicBool>,
}

impl GossipTransport for Link {
    fn send(&self, to: SocketAddr, packet: Bytes) {
        if !self.up.load(Ordering::SeqCst) {
            return;
        }
        let target = lock(&self.net.nodes).get(&to).cloned();
        if let Some(target) = target {
            target.deliver(self.from, packet);
        }
    }
}

struct Node {
    membership: Membership,
    up: Arc<AtomicBool>,
}

impl Net {
    fn spawn(
        self: &Arc<Self>,
        meta: NodeMeta,
        seeds: Vec<SocketAddr>,
        timings: GossipTimings,
    ) -> Node {
        let up = Arc::new(AtomicBool::new(true));
        let link = Link {
            net: Arc::clone(self),
            from: meta.addr,
            up: Arc::clone(&up),
        };
        let node_addr = meta.addr;
        let membership = Membership::spawn(meta, seeds, timings, Arc::new(link));
        lock(&self.nodes).insert(node_addr, membership.clone());
        Node { membership, up }
    }

    /// Crash: the node's packets are dropped both ways and its driver is stopped.
    fn kill(&self, node: Node) {
        node.up.store(false, Ordering::SeqCst);
        let node_addr = lock(&self.nodes)
            .iter()
            .find(|(_, m)| Arc::ptr_eq(&m.inner, &node.membership.inner))
            .map(|(a, _)| *a);
        if let Some(node_addr) = node_addr {
            lock(&self.nodes).remove(&node_addr);
        }
    }
}

/// Waits until `pred` holds for the view, failing with `what` after `limit`.
async fn wait_view(
    membership: &Membership,
    what: &str,
    limit: Duration,
    pred: impl Fn(&MembersView) -> bool,
) -> MembersView {
    let mut rx = membership.watch();
    let waited = tokio::time::timeout(limit, async {
        loop {
            {
                let view = rx.borrow_and_update();
                if pred(&view) {
                    return view.clone();
                }
            }
            if rx.changed().await.is_err() {
                panic!("driver of {membership:?} stopped while waiting for {what}");
            }
        }
    })
    .await;
    match waited {
        Ok(view) => view,
        Err(_) => panic!(
            "timed out after {limit:?} waiting for {what} on {membership:?}; last view: {:#?}",
            *rx.borrow()
        ),
    }
}

fn liveness_of(view: &MembersView, name: &str) -> Option<Liveness> {
    view.get(name).map(|member| member.liveness)
}

fn all_alive(view: &MembersView, names: &[&str]) -> bool {
    view.members.len() == names.len()
        && names
            .iter()
            .all(|name| liveness_of(view, name) == Some(Liveness::Alive))
}

async fn converge(net: &Arc<Net>, timings: &GossipTimings) -> Vec<Node> {
    let nodes = vec![
        net.spawn(meta(1), vec![], timings.clone()),
        net.spawn(meta(2), vec![addr(1)], timings.clone()),
        net.spawn(meta(3), vec![addr(1)], timings.clone()),
    ];
    for node in &nodes {
        let view = wait_view(&node.membership, "3 alive members", WAIT_LIMIT, |v| {
            all_alive(v, &["n1", "n2", "n3"])
        })
        .await;
        for (member, index) in view.members.iter().zip(1..) {
            assert_eq!(member.meta, meta(index), "metadata of n{index}");
        }
    }
    nodes
}

/// Worst-case failure detection: each survivor probes round-robin, so the dead node
/// is probed within `others` periods, suspected one period later, declared Down
/// after `suspect_to_down`, and the news spreads within a gossip period (200 ms).
fn expected_detection(timings: &GossipTimings, others: u32) -> Duration {
    let probe = timings.probe_period.unwrap_or(Duration::from_secs(1));
    let suspect = timings.suspect_to_down.unwrap_or(Duration::from_secs(4));
    probe * (others + 1) + suspect + Duration::from_millis(200)
}

#[tokio::test]
async fn three_nodes_converge_through_one_seed_address() {
    init_tracing();
    let net = Arc::new(Net::default());
    let nodes = converge(&net, &timings(100, 500)).await;
    for node in &nodes {
        assert_eq!(node.membership.malformed_packets(), 0);
    }
}

#[tokio::test]
async fn metadata_updates_reach_the_others() {
    init_tracing();
    let net = Arc::new(Net::default());
    let nodes = converge(&net, &timings(100, 500)).await;
    nodes[1].membership.update_meta(|m| m.leaders = 5);
    for node in &nodes {
        wait_view(&node.membership, "n2 leading 5 shards", WAIT_LIMIT, |v| {
            v.get("n2").map(|m| m.meta.leaders) == Some(5)
        })
        .await;
    }
    // Changing the fixed fields is reverted, the rest applies.
    nodes[0].membership.update_meta(|m| {
        m.name = "renamed".to_owned();
        m.draining = true;
    });
    for node in &nodes {
        let view = wait_view(&node.membership, "n1 draining", WAIT_LIMIT, |v| {
            v.get("n1").is_some_and(|m| m.meta.draining)
        })
        .await;
        assert!(view.get("renamed").is_none());
    }
}

#[tokio::test]
async fn crashed_node_goes_down_and_comes_back_alive() {
    init_tracing();
    let net = Arc::new(Net::default());
    let timings = timings(100, 500);
    let mut nodes = converge(&net, &timings).await;
    let n3 = nodes.remove(2);
    let started = Instant::now();
    net.kill(n3);
    let expected = expected_detection(&timings, 2);
    for node in &nodes {
        wait_view(&node.membership, "n3 down", expected * 10, |v| {
            liveness_of(v, "n3") == Some(Liveness::Down)
        })
        .await;
    }
    println!(
        "crash detected by both survivors after {:?} (expected at most ~{expected:?})",
        started.elapsed()
    );

    let restarted = net.spawn(meta(3), vec![addr(1)], timings.clone());
    for node in nodes.iter().chain([&restarted]) {
        wait_view(&node.membership, "restarted n3 alive", WAIT_LIMIT, |v| {
            all_alive(v, &["n1", "n2", "n3"])
        })
        .await;
    }
}

#[tokio::test]
async fn graceful_leave_is_seen_before_suspicion_could_fire() {
    init_tracing();
    let net = Arc::new(Net::default());
    // A long suspicion: Down can only come this fast from the leave announcement.
    let timings = timings(100, 4_000);
    let nodes = converge(&net, &timings).await;
    let started = Instant::now();
    tokio::time::timeout(
        Duration::from_millis(LEAVE_TIMEOUT_MS + 500),
        nodes[2].membership.leave(),
    )
    .await
    .expect("leave() exceeded its bound");
    for node in &nodes[..2] {
        wait_view(
            &node.membership,
            "n3 down after leave",
            Duration::from_secs(2),
            |v| liveness_of(v, "n3") == Some(Liveness::Down),
        )
        .await;
    }
    let elapsed = started.elapsed();
    println!("graceful leave seen as Down after {elapsed:?} (suspicion timeout 4 s)");
    assert!(elapsed < Duration::from_secs(2), "leave took {elapsed:?}");
    // The leaver's driver has stopped: its watchers see the channel close.
    let mut rx = nodes[2].membership.watch();
    tokio::time::timeout(Duration::from_secs(2), async {
        while rx.changed().await.is_ok() {}
    })
    .await
    .expect("driver still running after leave");
}

#[tokio::test]
async fn garbage_and_oversized_packets_are_dropped_and_counted() {
    init_tracing();
    let net = Arc::new(Net::default());
    let timings = timings(100, 500);
    let n1 = net.spawn(meta(1), vec![], timings.clone());
    let from = addr(9);
    // A valid Announce header followed by bytes an Announce may not carry.
    let mut announce_with_junk = Vec::new();
    PostcardCodec
        .encode_header(
            &Header {
                src: SwimId {
                    raft_id: 9,
                    addr: from,
                    bump: 1,
                },
                src_incarnation: 0,
                dst: SwimId::seed_placeholder(addr(1)),
                message: foca::Message::Announce,
            },
            &mut announce_with_junk,
        )
        .expect("encode header");
    announce_with_junk.extend_from_slice(&[1, 2, 3]);
    let garbage: Vec<Vec<u8>> = vec![
        vec![0xFF; 64],
        b"definitely not swim".to_vec(),
        vec![0],
        announce_with_junk,
    ];
    for packet in &garbage {
        n1.membership.deliver(from, Bytes::copy_from_slice(packet));
    }
    n1.membership.deliver(from, Bytes::new());
    n1.membership
        .deliver(from, Bytes::from(vec![0_u8; timings.packet_bytes_max + 1]));
    // Empty and oversized packets are counted on delivery.
    assert_eq!(n1.membership.malformed_packets(), 2);

    // The inbound queue is processed in order, so once n1 has seen n2 join, every
    // garbage packet before it has been handled.
    let n2 = net.spawn(meta(2), vec![addr(1)], timings.clone());
    for node in [&n1, &n2] {
        wait_view(&node.membership, "2 alive members", WAIT_LIMIT, |v| {
            all_alive(v, &["n1", "n2"])
        })
        .await;
    }
    assert_eq!(n1.membership.malformed_packets(), 2 + garbage.len() as u64);
    assert_eq!(n2.membership.malformed_packets(), 0);
}

#[tokio::test]
async fn full_inbound_queue_drops_and_counts() {
    init_tracing();
    let net = Arc::new(Net::default());
    let n1 = net.spawn(meta(1), vec![], timings(100, 500));
    // The current-thread runtime cannot run the driver until we yield, so the queue
    // fills up exactly.
    for _ in 0..INBOUND_QUEUE_PACKETS_MAX + 10 {
        n1.membership.deliver(addr(9), Bytes::from_static(b"junk"));
    }
    assert_eq!(n1.membership.dropped_packets(), 10);
}

// --- sans-I/O core, explicit time ------------------------------------------------

/// Runs cores with explicit time, delivering every transmit instantly, in 10 ms steps.
fn run_cores(cores: &mut [MembershipCore], until_ms: u64, now_ms: &mut u64) {
    while *now_ms < until_ms {
        *now_ms += 10;
        for index in 0..cores.len() {
            cores[index].handle_timers(*now_ms);
            while let Some(transmit) = cores[index].poll_transmit() {
                if let Some(target) = cores.iter().position(|c| c.meta().addr == transmit.to) {
                    let from = cores[index].meta().addr;
                    let _ = cores[target].handle_packet(*now_ms, from, &transmit.packet);
                }
            }
        }
    }
}

#[test]
fn cores_join_through_a_seed_address_with_explicit_time() {
    let timings = timings(100, 500);
    let mut cores = vec![
        MembershipCore::new(meta(1), vec![], &timings, 10, 1),
        MembershipCore::new(meta(2), vec![addr(1)], &timings, 20, 2),
    ];
    let mut now_ms = 0;
    for core in &mut cores {
        core.start(now_ms);
    }
    run_cores(&mut cores, 2_000, &mut now_ms);
    for core in &mut cores {
        let view = core.poll_view().expect("view changed");
        assert!(all_alive(&view, &["n1", "n2"]), "{view:#?}");
    }
}

#[test]
fn restart_with_a_clock_gone_back_outbids_its_previous_life() {
    let timings = timings(100, 500);
    let mut cores = vec![
        MembershipCore::new(meta(1), vec![], &timings, 1_000, 1),
        MembershipCore::new(meta(2), vec![addr(1)], &timings, 5_000, 2),
    ];
    let mut now_ms = 0;
    for core in &mut cores {
        core.start(now_ms);
    }
    run_cores(&mut cores, 1_000, &mut now_ms);
    assert!(
        all_alive(cores[0].view(), &["n1", "n2"]),
        "{:#?}",
        cores[0].view()
    );
    // n2 restarts with a smaller generation than the one n1 knows.
    cores[1] = MembershipCore::new(meta(2), vec![addr(1)], &timings, 10, 3);
    cores[1].start(now_ms);
    run_cores(&mut cores, now_ms + 3_000, &mut now_ms);
    assert!(
        cores[1].swim.identity().bump > 5_000,
        "outbid the previous life"
    );
    for core in &cores {
        assert!(all_alive(core.view(), &["n1", "n2"]), "{:#?}", core.view());
    }
}

#[test]
fn announces_back_off_from_one_to_five_seconds() {
    let mut core = MembershipCore::new(meta(2), vec![addr(1), addr(2)], &timings(100, 500), 1, 1);
    core.start(0);
    let mut announce_ms = Vec::new();
    let mut now_ms = 0;
    loop {
        while let Some(transmit) = core.poll_transmit() {
            assert_eq!(transmit.to, addr(1), "never announces to itself");
            announce_ms.push(now_ms);
        }
        match core.next_timer_ms() {
            Some(due_ms) if due_ms <= 20_000 => {
                now_ms = due_ms;
                core.handle_timers(now_ms);
            }
            _ => break,
        }
    }
    assert_eq!(announce_ms, vec![0, 1_000, 3_000, 7_000, 12_000, 17_000]);
}

#[test]
fn restarted_identity_wins_and_renew_supersedes() {
    let old = SwimId {
        raft_id: 3,
        addr: addr(3),
        bump: 100,
    };
    let restarted = SwimId {
        bump: 5_000,
        ..old.clone()
    };
    assert!(restarted.win_addr_conflict(&old));
    assert!(!old.win_addr_conflict(&restarted));
    let renewed = old.renew().expect("renewable");
    assert!(renewed.win_addr_conflict(&old));
    assert_eq!(
        SwimId {
            bump: u64::MAX,
            ..old
        }
        .renew(),
        None
    );
}

#[test]
fn newer_metadata_invalidates_older_and_stale_is_ignored() {
    let tables = Arc::new(Mutex::new(GossipTables {
        own_addr: addr(1),
        now_ms: 0,
        metas: BTreeMap::new(),
        metas_changed: false,
        known_addrs: BTreeSet::new(),
        broadcast_target: None,
        own_bump_seen: 0,
    }));
    let mut handler = MetaHandler {
        tables: Arc::clone(&tables),
    };
    let sender = SwimId {
        raft_id: 2,
        addr: addr(2),
        bump: 7,
    };
    let encode = |bump, seq, leaders| {
        let mut meta = meta(2);
        meta.leaders = leaders;
        MetaWire {
            format: META_FORMAT_V1,
            bump,
            seq,
            meta,
        }
        .encode()
        .expect("encode")
    };
    let first = handler
        .receive_item(&encode(7, 1, 1), Some(&sender))
        .expect("decodes");
    let first = first.expect("new metadata is disseminated");
    let stale = handler
        .receive_item(&encode(7, 0, 9), Some(&sender))
        .expect("decodes");
    assert_eq!(stale, None);
    let newer = handler
        .receive_item(&encode(8, 0, 2), Some(&sender))
        .expect("decodes");
    let newer = newer.expect("newer generation wins");
    assert!(newer.invalidates(&first));
    assert!(!first.invalidates(&newer));
    assert_eq!(
        lock(&tables).metas.get(&addr(2)).map(|e| e.meta.leaders),
        Some(2)
    );
    // Gossip about ourselves is ignored; junk is an error, not a panic.
    let mut own = meta(1);
    own.leaders = 3;
    let own = MetaWire {
        format: META_FORMAT_V1,
        bump: 99,
        seq: 0,
        meta: own,
    }
    .encode()
    .expect("encode");
    assert_eq!(
        handler.receive_item(&own, Some(&sender)).expect("decodes"),
        None
    );
    assert!(
        handler
            .receive_item(b"\xff\xff\xff", Some(&sender))
            .is_err()
    );
    assert!(handler.receive_item(&[2, 0, 0], Some(&sender)).is_err());
}

#[test]
fn codec_refuses_members_beyond_the_bound() {
    let tables = Arc::new(Mutex::new(GossipTables {
        own_addr: addr(1),
        now_ms: 0,
        metas: BTreeMap::new(),
        metas_changed: false,
        known_addrs: (0..MEMBERS_MAX)
            .map(|i| SocketAddr::from(([10, 0, (i / 256) as u8, (i % 256) as u8], 1)))
            .collect(),
        broadcast_target: None,
        own_bump_seen: 0,
    }));
    let mut codec = BoundedCodec { tables };
    let mut buf = Vec::new();
    let known = SwimId {
        raft_id: 1,
        addr: SocketAddr::from(([10, 0, 0, 5], 1)),
        bump: 1,
    };
    let unknown = SwimId {
        raft_id: 2,
        addr: addr(2),
        bump: 1,
    };
    codec
        .encode_member(&foca::Member::alive(known), &mut buf)
        .expect("encode");
    codec
        .encode_member(&foca::Member::alive(unknown), &mut buf)
        .expect("encode");
    let mut data = &buf[..];
    assert!(
        codec.decode_member(&mut data).is_ok(),
        "known member accepted"
    );
    assert!(
        matches!(
            codec.decode_member(&mut data),
            Err(GossipCodecError::MembersFull(_))
        ),
        "new member refused when full"
    );
}

#[test]
fn timings_are_validated_with_the_field_name() {
    assert!(timings(100, 500).validate().is_ok());
    let bad = [
        GossipTimings {
            cluster_size_hint: 0,
            ..timings(100, 500)
        },
        GossipTimings {
            probe_period: Some(Duration::from_millis(1)),
            ..timings(100, 500)
        },
        GossipTimings {
            suspect_to_down: Some(Duration::ZERO),
            ..timings(100, 500)
        },
        GossipTimings {
            packet_bytes_max: 10,
            ..timings(100, 500)
        },
    ];
    let fields: Vec<&str> = bad
        .iter()
        .map(|t| match t.validate() {
            Err(MembershipError::InvalidTimings { field, .. }) => field,
            other => panic!("expected InvalidTimings, got {other:?}"),
        })
        .collect();
    assert_eq!(
        fields,
        [
            "cluster_size_hint",
            "probe_period",
            "suspect_to_down",
            "packet_bytes_max"
        ]
    );
    // Clamped rather than panicking when spawned anyway.
    let config = bad[1].to_foca_config();
    assert_eq!(
        config.probe_period,
        Duration::from_millis(PROBE_PERIOD_MS_MIN)
    );
    assert!(config.probe_rtt < config.probe_period);
    assert_eq!(
        config.remove_down_after,
        Some(Duration::from_millis(DOWN_RETAIN_MS))
    );
    let huge = GossipTimings {
        probe_period: Some(Duration::MAX),
        suspect_to_down: None,
        ..timings(100, 500)
    };
    assert!(huge.validate().is_err());
    assert_eq!(
        huge.to_foca_config().probe_period,
        Duration::from_millis(PROBE_PERIOD_MS_MAX)
    );
    // Default suspicion follows the probe period (LAN preset: 4 s at 1 s, 3 nodes).
    let scaled = GossipTimings {
        suspect_to_down: None,
        ..timings(100, 500)
    };
    assert_eq!(
        scaled.to_foca_config().suspect_to_down_after,
        Duration::from_millis(400)
    );
    assert_eq!(
        timings(100, 500).to_foca_config().max_packet_size.get(),
        1200
    );
}

#[test]
fn effective_timings_are_the_presets_unless_overridden() {
    let section = |preset, probe_ms: Option<u64>| shoal_cluster_config::GossipSection {
        preset,
        probe_period_ms: probe_ms.and_then(std::num::NonZeroU64::new),
        ..Default::default()
    };
    use shoal_cluster_config::GossipPreset::{LanMedium, LanSmall};
    let small = GossipTimings::from_config(&section(LanSmall, None));
    assert_eq!(
        small.effective_probe_and_suspicion(),
        (Duration::from_secs(1), Duration::from_secs(4)),
        "up to 8 nodes: 4 periods of suspicion"
    );
    let (_, medium) =
        GossipTimings::from_config(&section(LanMedium, None)).effective_probe_and_suspicion();
    assert_eq!(medium.as_millis(), 6_020, "4 x log10(32) periods");
    assert_eq!(
        GossipTimings::from_config(&section(LanSmall, Some(500))).effective_probe_and_suspicion(),
        (Duration::from_millis(500), Duration::from_secs(2)),
        "the suspicion scales with the period"
    );
}
