//! Metrics out of a real node: the Prometheus endpoint parses and has the node's
//! metrics (moved by a turn and a follower), `shoalctl metrics` gives the same text, and
//! the endpoint refuses what it does not serve.

mod common;

use common::*;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP exchange on `addr`: the status line and the body.
async fn http(addr: std::net::SocketAddr, request: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut response))
        .await
        .expect("answered in time")
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

/// The value of the first sample named `name` (any labels).
fn value(scrape: &prometheus_parse::Scrape, name: &str) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name)
        .unwrap_or_else(|| panic!("no sample {name}"));
    match sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        prometheus_parse::Value::Histogram(ref buckets) => buckets.last().map_or(0.0, |b| b.count),
        ref other => panic!("{name}: unexpected {other:?}"),
    }
}

#[tokio::test]
async fn the_prometheus_endpoint_serves_the_nodes_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = dev_config(dir.path());
    config.telemetry.prometheus_listen = Some("127.0.0.1:0".parse().unwrap());
    let node = TestNode::start_with(config).await;
    let addr = node.node.as_ref().unwrap().metrics_addr().expect("serving");
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let mut follow = client.follow(conv.id, None);
    tokio::time::timeout(WAIT, follow.next()).await.unwrap();
    collect_turn(client.send(conv.id, "hello").await.unwrap()).await;
    follow_until_done(&mut follow, 1).await;

    let (status, body) = http(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the text parses");
    assert_eq!(value(&scrape, "shoal_followers"), 1.0);
    assert_eq!(value(&scrape, "shoal_conversations_active"), 1.0);
    assert!(value(&scrape, "shoal_shards_led") >= 1.0);
    // The client's requests and the node's answers crossed its socket.
    assert!(value(&scrape, "shoal_bytes_in_total") > 0.0, "{body}");
    assert!(value(&scrape, "shoal_bytes_out_total") > 0.0, "{body}");
    for histogram in [
        "shoal_turn_seconds",
        "shoal_raft_commit_seconds",
        "shoal_raft_batch_commands",
        "shoal_fanout_seconds",
    ] {
        assert!(
            value(&scrape, histogram) >= 1.0,
            "{histogram} recorded nothing:\n{body}"
        );
    }

    // One turn: one start, and its first update timed once, however many followed.
    for histogram in [
        "shoal_turn_start_seconds",
        "shoal_agent_first_update_seconds",
    ] {
        assert_eq!(value(&scrape, histogram), 1.0, "{histogram}:\n{body}");
    }

    // The admin API gives the same metrics.
    let text = node.admin().await.metrics().await.unwrap();
    assert!(text.contains("shoal_turn_seconds_bucket"), "{text}");

    // Anything else is refused, and the endpoint keeps serving.
    let (status, _) = http(addr, "GET / HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _) = http(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    let (status, _) = http(addr, &huge).await;
    assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");
    let (status, _) = http(addr, "GET /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
}
