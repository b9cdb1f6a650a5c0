//! The fault proxy on real loopback sockets: datagrams pass both ways, blocks, partitions
//! and isolation cut what they name, loss and delay follow their seed and bounds, and bad
//! rules are refused.

use super::*;

/// Bound on every whole test.
const TEST_MS: u64 = 20_000;
/// Bound on one awaited datagram.
const RECV_MS: u64 = 5_000;

async fn bounded(test: impl Future<Output = ()>) {
    tokio::time::timeout(Duration::from_millis(TEST_MS), test)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {TEST_MS} ms"));
}

async fn bind() -> UdpSocket {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind a loopback test socket")
}

fn addr(socket: &UdpSocket) -> SocketAddr {
    socket.local_addr().expect("test socket address")
}

async fn recv(socket: &UdpSocket, what: &str) -> (Vec<u8>, SocketAddr) {
    let mut buffer = vec![0u8; DATAGRAM_BYTES_MAX];
    let (len, from) = tokio::time::timeout(
        Duration::from_millis(RECV_MS),
        socket.recv_from(&mut buffer),
    )
    .await
    .unwrap_or_else(|_| panic!("timed out after {RECV_MS} ms waiting for {what}"))
    .expect("recv_from on a test socket");
    buffer.truncate(len);
    (buffer, from)
}

async fn wait_for_stats(net: &Net, what: &str, done: impl Fn(&NetStats) -> bool) -> NetStats {
    tokio::time::timeout(Duration::from_millis(RECV_MS), net.wait_for_stats(done))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "timed out after {RECV_MS} ms waiting for {what}: {:?}",
                net.stats()
            )
        })
}

/// An echo server as a node's real socket; returns its address.
async fn spawn_echo() -> SocketAddr {
    let socket = bind().await;
    let address = addr(&socket);
    tokio::spawn(async move {
        let mut buffer = vec![0u8; DATAGRAM_BYTES_MAX];
        while let Ok((len, from)) = socket.recv_from(&mut buffer).await {
            if socket.send_to(&buffer[..len], from).await.is_err() {
                return;
            }
        }
    });
    address
}

/// Proves nothing sent earlier through `proxy` reached `receiver`: a client marker
/// sent through the same proxy socket (so judged after everything before it, and not
/// subject to blocks) must be the next datagram `receiver` gets.
async fn barrier(proxy: SocketAddr, receiver: &UdpSocket, marker: &[u8]) {
    let client = bind().await;
    client.send_to(marker, proxy).await.expect("send marker");
    let (got, _) = recv(receiver, "the barrier marker").await;
    assert_eq!(
        got,
        marker,
        "a datagram sent before the marker got through: {:?}",
        String::from_utf8_lossy(&got)
    );
}

/// A node made of a plain socket, registered under `name`; returns it and its proxy.
async fn plain_node(net: &Net, name: &str) -> (UdpSocket, SocketAddr) {
    let socket = bind().await;
    let proxy = net.add_node(name, addr(&socket)).await.expect("add node");
    (socket, proxy)
}

#[tokio::test]
async fn forwards_both_ways() {
    bounded(async {
        let net = Net::new(1);
        let echo = spawn_echo().await;
        let pb = net.add_node("b", echo).await.expect("add b");
        let (a, pa) = plain_node(&net, "a").await;
        a.send_to(b"ping", pb).await.expect("send");
        let (got, from) = recv(&a, "the echo from b").await;
        assert_eq!((got.as_slice(), from), (&b"ping"[..], pb));

        // Traffic c opens to a passes a's proxy, and a's reply goes back through it.
        let (c, _) = plain_node(&net, "c").await;
        c.send_to(b"hello a", pa).await.expect("send");
        let (got, via) = recv(&a, "c's datagram at a").await;
        assert_eq!(got, b"hello a");
        a.send_to(b"hello c", via).await.expect("reply");
        let (got, from) = recv(&c, "a's reply at c").await;
        assert_eq!((got.as_slice(), from), (&b"hello c"[..], pa));
        assert_eq!(net.proxy_addr("a"), Some(pa));
        // Counted after the send returns, so possibly after the receiver saw it.
        let stats = wait_for_stats(&net, "4 forwarded", |stats| stats.forwarded == 4).await;
        assert_eq!(
            stats.dropped_blocked + stats.dropped_loss + stats.delayed,
            0
        );
    })
    .await;
}

#[tokio::test]
async fn empty_and_largest_datagrams_pass() {
    bounded(async {
        let net = Net::new(2);
        let pb = net.add_node("b", spawn_echo().await).await.expect("add b");
        let client = bind().await;
        client.send_to(&[], pb).await.expect("send empty");
        let (got, _) = recv(&client, "the empty echo").await;
        assert!(got.is_empty());
        let largest_ipv4_udp_payload = vec![7u8; 65_507];
        client
            .send_to(&largest_ipv4_udp_payload, pb)
            .await
            .expect("send largest");
        let (got, _) = recv(&client, "the largest echo").await;
        assert_eq!(got, largest_ipv4_udp_payload);
    })
    .await;
}

#[tokio::test]
async fn block_is_one_way_and_unblock_restores() {
    bounded(async {
        let net = Net::new(3);
        let (a, pa) = plain_node(&net, "a").await;
        let (b, pb) = plain_node(&net, "b").await;
        net.block("a", "b").expect("block");

        a.send_to(b"a->b blocked", pb).await.expect("send");
        barrier(pb, &b, b"marker 1").await;
        assert_eq!(net.stats().dropped_blocked, 1);

        b.send_to(b"b->a", pa).await.expect("send");
        let (got, via) = recv(&a, "b->a while a->b is blocked").await;
        assert_eq!(got, b"b->a");
        // The reply to a connection b opened is a->b too: judged at P(a), blocked.
        a.send_to(b"a->b reply blocked", via).await.expect("send");
        wait_for_stats(&net, "a's blocked reply to be dropped", |stats| {
            stats.dropped_blocked == 2
        })
        .await;

        net.unblock("a", "b").expect("unblock");
        a.send_to(b"a->b again", pb).await.expect("send");
        let (got, _) = recv(&b, "a->b after unblock").await;
        assert_eq!(got, b"a->b again");
    })
    .await;
}

#[tokio::test]
async fn partition_blocks_across_groups_until_heal() {
    bounded(async {
        let net = Net::new(4);
        let (n1, p1) = plain_node(&net, "n1").await;
        let (n2, p2) = plain_node(&net, "n2").await;
        let (n3, p3) = plain_node(&net, "n3").await;
        net.partition(&[&["n1"], &["n2", "n3"]]).expect("partition");

        n1.send_to(b"n1->n2", p2).await.expect("send");
        n2.send_to(b"n2->n1", p1).await.expect("send");
        barrier(p2, &n2, b"marker at n2").await;
        barrier(p1, &n1, b"marker at n1").await;
        assert_eq!(net.stats().dropped_blocked, 2);
        n2.send_to(b"n2->n3", p3).await.expect("send");
        let (got, _) = recv(&n3, "n2->n3 inside a group").await;
        assert_eq!(got, b"n2->n3");

        net.heal();
        n1.send_to(b"n1->n2 healed", p2).await.expect("send");
        let (got, _) = recv(&n2, "n1->n2 after heal").await;
        assert_eq!(got, b"n1->n2 healed");
        n2.send_to(b"n2->n1 healed", p1).await.expect("send");
        let (got, _) = recv(&n1, "n2->n1 after heal").await;
        assert_eq!(got, b"n2->n1 healed");
    })
    .await;
}

#[tokio::test]
async fn isolate_cuts_a_node_but_not_clients() {
    bounded(async {
        let net = Net::new(5);
        let pb = net.add_node("b", spawn_echo().await).await.expect("add b");
        let (a, _) = plain_node(&net, "a").await;
        let (c, pc) = plain_node(&net, "c").await;
        net.isolate("b").expect("isolate");

        let client = bind().await;
        client.send_to(b"client", pb).await.expect("send");
        let (got, _) = recv(&client, "the client's echo from an isolated node").await;
        assert_eq!(got, b"client");

        a.send_to(b"a->b", pb).await.expect("send");
        a.send_to(b"a->c", pc).await.expect("send");
        let (got, _) = recv(&c, "a->c, not involving b").await;
        assert_eq!(got, b"a->c");
        client.send_to(b"client again", pb).await.expect("send");
        let (got, _) = recv(&client, "the second client echo").await;
        assert_eq!(got, b"client again");
        // a->b was judged before "client again" on the same proxy socket.
        assert_eq!(net.stats().dropped_blocked, 1);
    })
    .await;
}

#[tokio::test]
async fn loss_100_drops_all_and_loss_0_none() {
    bounded(async {
        let net = Net::new(6);
        let (a, _) = plain_node(&net, "a").await;
        let (b, pb) = plain_node(&net, "b").await;
        net.set_loss(100).expect("loss 100");
        for index in 0..20u8 {
            a.send_to(&[index], pb).await.expect("send");
        }
        barrier(pb, &b, b"marker").await;
        assert_eq!(net.stats().dropped_loss, 20);

        net.set_loss(0).expect("loss 0");
        for index in 0..20u8 {
            a.send_to(&[index], pb).await.expect("send");
        }
        for index in 0..20u8 {
            let (got, _) = recv(&b, "a datagram with loss 0").await;
            assert_eq!(got, [index]);
        }
        assert_eq!(net.stats().dropped_loss, 20);
        assert!(matches!(
            net.set_loss(101),
            Err(ProxyError::LossOutOfRange(101))
        ));
    })
    .await;
}

/// Which of 64 numbered datagrams pass 50 % loss with `seed`.
async fn survivors(seed: u64) -> Vec<u8> {
    let net = Net::new(seed);
    let (a, _) = plain_node(&net, "a").await;
    let (b, pb) = plain_node(&net, "b").await;
    net.set_loss(50).expect("loss 50");
    for index in 0..64u8 {
        a.send_to(&[index], pb).await.expect("send");
    }
    let client = bind().await;
    client.send_to(b"end", pb).await.expect("send marker");
    let mut passed = Vec::new();
    loop {
        let (got, _) = recv(&b, "survivors or the end marker").await;
        if got == b"end" {
            break;
        }
        passed.extend(got);
    }
    net.shutdown().await;
    passed
}

#[tokio::test]
async fn loss_pattern_repeats_for_a_seed() {
    bounded(async {
        let first = survivors(42).await;
        let second = survivors(42).await;
        assert_eq!(first, second);
        assert!(!first.is_empty() && first.len() < 64, "{first:?}");
    })
    .await;
}

#[tokio::test]
async fn delay_delivers_no_earlier_than_base() {
    bounded(async {
        let net = Net::new(7);
        let (a, _) = plain_node(&net, "a").await;
        let (b, pb) = plain_node(&net, "b").await;
        net.set_delay(150, 30).expect("delay");
        let started = std::time::Instant::now();
        for index in 0..10u8 {
            a.send_to(&[index], pb).await.expect("send");
        }
        let mut got_all = Vec::new();
        for _ in 0..10 {
            let (got, _) = recv(&b, "a delayed datagram").await;
            assert!(
                started.elapsed() >= Duration::from_millis(150),
                "delivered after {:?}",
                started.elapsed()
            );
            got_all.extend(got);
        }
        got_all.sort_unstable();
        assert_eq!(got_all, (0..10).collect::<Vec<u8>>());
        assert_eq!(net.stats().delayed, 10);
        wait_for_stats(&net, "10 forwarded", |stats| stats.forwarded == 10).await;
        assert!(net.set_delay(DELAY_BASE_MS_MAX + 1, 0).is_err());
    })
    .await;
}

#[tokio::test]
async fn client_traffic_gets_loss_and_delay_only_when_switched_on() {
    bounded(async {
        let net = Net::new(8);
        let pb = net.add_node("b", spawn_echo().await).await.expect("add b");
        net.set_delay(100, 0).expect("delay");
        let client = bind().await;
        client.send_to(b"fast", pb).await.expect("send");
        recv(&client, "the undelayed client echo").await;
        assert_eq!(net.stats().delayed, 0);

        net.set_client_faults(true);
        let started = std::time::Instant::now();
        client.send_to(b"slow", pb).await.expect("send");
        let (got, _) = recv(&client, "the delayed client echo").await;
        assert_eq!(got, b"slow");
        // Request and reply each pass b's proxy.
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(net.stats().delayed, 2);
    })
    .await;
}

#[tokio::test]
async fn idle_longest_upstream_is_evicted_at_the_limit() {
    bounded(async {
        let net = Net::new(9);
        let pb = net.add_node("b", spawn_echo().await).await.expect("add b");
        let mut clients = Vec::new();
        for _ in 0..=UPSTREAMS_PER_PROXY_MAX {
            let client = bind().await;
            client.send_to(b"x", pb).await.expect("send");
            recv(&client, "an echo while filling upstreams").await;
            clients.push(client);
        }
        assert_eq!(net.stats().upstreams_evicted, 1);
        // The first client was evicted; it gets a fresh upstream socket.
        clients[0].send_to(b"again", pb).await.expect("send");
        let (got, _) = recv(&clients[0], "the evicted client's echo").await;
        assert_eq!(got, b"again");
        assert_eq!(net.stats().upstreams_evicted, 2);
    })
    .await;
}

#[tokio::test]
async fn rejects_bad_nodes_and_rules() {
    bounded(async {
        let net = Net::new(10);
        let (a, pa) = plain_node(&net, "a").await;
        let b = bind().await;
        assert!(matches!(
            net.add_node("a", addr(&b)).await,
            Err(ProxyError::DuplicateName(_))
        ));
        assert!(matches!(
            net.add_node("a2", addr(&a)).await,
            Err(ProxyError::DuplicateUpstream { .. })
        ));
        assert!(matches!(
            net.add_node("loop", pa).await,
            Err(ProxyError::ProxyLoop(_))
        ));
        let outside = SocketAddr::from(([192, 0, 2, 1], 9));
        assert!(matches!(
            net.add_node("far", outside).await,
            Err(ProxyError::NotLoopback(_))
        ));
        assert!(matches!(
            net.block("a", "nobody"),
            Err(ProxyError::UnknownNode(_))
        ));
        net.add_node("b", addr(&b)).await.expect("add b");
        assert!(matches!(
            net.partition(&[&["a"], &["a", "b"]]),
            Err(ProxyError::NodeInTwoGroups(_))
        ));
        let before = net.stats();
        assert_eq!(before, NetStats::default());
    })
    .await;
}

#[tokio::test]
async fn shutdown_closes_every_socket() {
    bounded(async {
        let net = Net::new(11);
        let pb = net.add_node("b", spawn_echo().await).await.expect("add b");
        let client = bind().await;
        client.send_to(b"x", pb).await.expect("send");
        recv(&client, "an echo before shutdown").await;
        net.shutdown().await;
        UdpSocket::bind(pb)
            .await
            .expect("the proxy port is free after shutdown");
        let other = bind().await;
        assert!(matches!(
            net.add_node("c", addr(&other)).await,
            Err(ProxyError::Shutdown)
        ));
    })
    .await;
}

#[test]
fn describe_reads_like_a_log_line() {
    let partition = Fault::Partition {
        groups: vec![vec!["n1".into()], vec!["n2".into(), "n3".into()]],
    };
    assert_eq!(partition.describe(), "partition {n1} | {n2,n3}");
    assert_eq!(
        Fault::Block {
            from: "n1".into(),
            to: "n2".into()
        }
        .to_string(),
        "block n1 -> n2"
    );
    assert_eq!(Fault::Loss { percent: 5 }.describe(), "loss 5%");
}

#[test]
fn judge_applies_blocks_to_nodes_only() {
    let mut rules = Rules::new(0);
    let a = SocketAddr::from((Ipv4Addr::LOCALHOST, 1001));
    let b = SocketAddr::from((Ipv4Addr::LOCALHOST, 1002));
    let client = SocketAddr::from((Ipv4Addr::LOCALHOST, 1003));
    let proxy = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    rules.add_node("a", a, proxy(2001)).expect("add a");
    rules.add_node("b", b, proxy(2002)).expect("add b");
    rules
        .apply(&Fault::Isolate { node: "b".into() })
        .expect("isolate");
    assert_eq!(rules.judge(a, b), Verdict::DropBlocked);
    assert_eq!(rules.judge(b, a), Verdict::DropBlocked);
    assert_eq!(rules.judge(client, b), Verdict::Forward);
    assert_eq!(rules.judge(b, client), Verdict::Forward);
    rules.apply(&Fault::Heal).expect("heal");
    rules
        .apply(&Fault::Delay {
            base_ms: 10,
            jitter_ms: 5,
        })
        .expect("delay");
    for _ in 0..100 {
        match rules.judge(a, b) {
            Verdict::Delay(delay) => {
                assert!((Duration::from_millis(10)..=Duration::from_millis(15)).contains(&delay))
            }
            other => panic!("expected a delay, got {other:?}"),
        }
    }
}
