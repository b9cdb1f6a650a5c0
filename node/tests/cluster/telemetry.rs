//! OpenTelemetry across nodes: a real OTLP gRPC receiver in the test gets the spans of a
//! forwarded request from both nodes, in one trace; a message's whole path (request,
//! proposal, apply, turn, agent calls, broadcasts) in one trace; and the nodes' metrics.

use super::common::within;
use super::harness::*;
use futures::StreamExt;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::resource::v1::Resource;
use shoal_client::Client;
use shoal_protocol::ConversationId;
use shoal_protocol::transcript::Event;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One received span: the node that exported it, its trace id, span id and parent's
/// span id (hex), name and attributes (values as text).
#[derive(Debug, Clone)]
struct Received {
    node: String,
    trace: String,
    id: String,
    parent: String,
    name: String,
    attributes: BTreeMap<String, String>,
}

#[derive(Default, Clone)]
struct Receiver {
    spans: Arc<Mutex<Vec<Received>>>,
    metrics: Arc<Mutex<Vec<(String, String)>>>,
}

fn text_of(value: &Value) -> String {
    match value {
        Value::StringValue(s) => s.clone(),
        Value::IntValue(i) => i.to_string(),
        Value::BoolValue(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

fn node_of(resource: Option<&Resource>) -> String {
    resource
        .into_iter()
        .flat_map(|r| r.attributes.iter())
        .find(|kv| kv.key == "shoal.node.id")
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(text_of)
        .unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let node = node_of(resource_spans.resource.as_ref());
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    let attributes = span
                        .attributes
                        .iter()
                        .filter_map(|kv| {
                            let value = kv.value.as_ref()?.value.as_ref()?;
                            Some((kv.key.clone(), text_of(value)))
                        })
                        .collect();
                    spans.push(Received {
                        node: node.clone(),
                        trace: hex(&span.trace_id),
                        id: hex(&span.span_id),
                        parent: hex(&span.parent_span_id),
                        name: span.name,
                        attributes,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut metrics = self.metrics.lock().unwrap();
        for resource_metrics in request.into_inner().resource_metrics {
            let node = node_of(resource_metrics.resource.as_ref());
            for scope in resource_metrics.scope_metrics {
                for metric in scope.metrics {
                    metrics.push((node.clone(), metric.name));
                }
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

/// Every span received in trace `trace_id`.
fn spans_of(receiver: &Receiver, trace_id: &str) -> Vec<Received> {
    let spans = receiver.spans.lock().unwrap();
    spans
        .iter()
        .filter(|s| s.trace == trace_id)
        .cloned()
        .collect()
}

fn attribute<'a>(span: &'a Received, key: &str) -> Option<&'a str> {
    span.attributes.get(key).map(String::as_str)
}

/// Sends a message in a new trace and waits for its turn's `Done`: the trace id, or
/// `None` when the turn was cut short (an error frame, such as its shard moving).
async fn traced_turn(client: &Client, conversation: ConversationId) -> Option<String> {
    let trace = shoal_client::new_trace();
    let trace_id = shoal_client::trace_id(&trace).unwrap().to_owned();
    let mut turn = client
        .with_trace(Some(trace))
        .send(conversation, "hello")
        .await
        .ok()?;
    let done = tokio::time::timeout(WAIT, async {
        while let Some(frame) = turn.next().await {
            match frame {
                Ok(frame) if matches!(frame.event, Event::Done { .. }) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    })
    .await
    .expect("the turn ended in time");
    done.then_some(trace_id)
}

/// `node:name` of every span received in trace `trace_id`.
fn names_of(receiver: &Receiver, trace_id: &str) -> Vec<String> {
    receiver
        .spans
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.trace == trace_id)
        .map(|s| format!("{}:{}", s.node, s.name))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_holds_a_forwarded_requests_spans_from_two_nodes() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let receiver = Receiver::default();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .add_service(MetricsServiceServer::new(receiver.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let cluster = TestCluster::start_with(3, move |config| {
        config.telemetry.otlp_endpoint = Some(endpoint.clone());
    })
    .await;
    // Gossip's membership changes are counted: each node saw the two others join.
    let metrics = cluster.admin(0).await.metrics().await.unwrap();
    let joins: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("shoal_gossip_events_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no shoal_gossip_events_total:\n{metrics}"));
    assert!(joins >= 2.0, "{metrics}");
    let client = Client::connect(&cluster.profile).await.unwrap();
    let conv = client.create_conversation(None, None).await.unwrap();
    // Dial a node that does not lead the conversation's shard: the request is forwarded,
    // over a peer connection this request opens (whose driver must not keep the
    // request's span, and so its trace, open).
    // A balancing move can still give the shard to the dialled node (then nothing is
    // forwarded): the dialled node's `request` span arrives, and a `forward` span beside
    // it says the request went on to the leader; else try again with a new trace. OTLP
    // export is best effort (a batch that fails is dropped), so a trace whose spans do
    // not arrive within 30 s is tried again too, at most 3 times in all.
    let mut attempts = 0;
    let (trace_id, via_name, leader) = loop {
        attempts += 1;
        assert!(
            attempts <= 3,
            "no forwarded request's spans arrived from the dialled node in 3 tries"
        );
        let leader = cluster.leader_of(conv.id.shard.0, None).await;
        let other = (0..cluster.procs.len())
            .find(|i| cluster.procs[*i].node.name != leader)
            .unwrap();
        let via_name = cluster.procs[other].node.name.clone();
        let via = Client::connect(&cluster.profile_for(other)).await.unwrap();
        let trace = shoal_client::new_trace();
        let trace_id = shoal_client::trace_id(&trace).unwrap().to_owned();
        via.with_trace(Some(trace))
            .get_conversation(conv.id)
            .await
            .unwrap();
        let forwarded = within(Duration::from_secs(30), || async {
            let names = names_of(&receiver, &trace_id);
            names
                .contains(&format!("{via_name}:request"))
                .then(|| names.contains(&format!("{via_name}:forward")))
        })
        .await;
        if forwarded == Some(true) {
            break (trace_id, via_name, leader);
        }
    };
    let names = eventually("the leader's span joins the trace", || async {
        let names = names_of(&receiver, &trace_id);
        names
            .iter()
            .any(|n| n.ends_with(":forwarded_request"))
            .then_some(names)
    })
    .await;
    for expected in [
        format!("{via_name}:request"),
        format!("{via_name}:forward"),
        format!("{leader}:forwarded_request"),
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }

    // A message's whole path is one trace: the request (and its forward, if the
    // dialled node does not lead the shard), the user message's proposal and the
    // leader's apply of it, the turn, the agent's session/prompt, the broadcasts.
    // A turn cut short by a move (the cluster balances its shards; a loaded machine
    // loses leases) or whose spans do not arrive within 30 s is tried again in a new
    // trace, at most 3 times in all.
    let mut attempts = 0;
    let spans = loop {
        attempts += 1;
        assert!(
            attempts <= 3,
            "no turn's spans arrived in one trace in 3 tries"
        );
        let Some(trace_id) = traced_turn(&client, conv.id).await else {
            continue;
        };
        let arrived = within(Duration::from_secs(30), || async {
            let spans = spans_of(&receiver, &trace_id);
            let has = |name: &str| spans.iter().any(|s| s.name == name);
            let prompted = spans.iter().any(|s| {
                s.name == "agent.call" && attribute(s, "method") == Some("session/prompt")
            });
            let done = spans
                .iter()
                .any(|s| s.name == "turn" && attribute(s, "status") == Some("complete"));
            let all = has("request") && has("propose") && has("apply") && has("broadcast");
            (all && prompted && done).then_some(spans)
        })
        .await;
        if let Some(spans) = arrived {
            break spans;
        }
    };
    let parent_of = |child: &Received| {
        spans
            .iter()
            .find(|s| s.id == child.parent)
            .map(|s| s.name.clone())
    };
    let turn = spans.iter().find(|s| s.name == "turn").unwrap();
    let requested = parent_of(turn);
    assert!(
        matches!(requested.as_deref(), Some("request" | "forwarded_request")),
        "the turn's parent is {requested:?}: {spans:?}"
    );
    let prompt = spans
        .iter()
        .find(|s| s.name == "agent.call" && attribute(s, "method") == Some("session/prompt"))
        .unwrap();
    assert_eq!(parent_of(prompt).as_deref(), Some("turn"), "{spans:?}");
    assert_eq!(
        turn.attributes.get("conversation"),
        Some(&conv.id.to_string()),
        "{turn:?}"
    );
    // The turn runs where the conversation is hosted, and the entries its proposals
    // made are applied there (the leader) inside the trace.
    let applied = spans
        .iter()
        .find(|s| s.name == "apply" && s.node == turn.node)
        .unwrap_or_else(|| panic!("no apply on {} in {spans:?}", turn.node));
    assert!(applied.attributes.contains_key("index"), "{applied:?}");
    assert_eq!(parent_of(applied).as_deref(), Some("propose"), "{spans:?}");
    for s in &spans {
        for key in s.attributes.keys() {
            assert!(
                !["text", "prompt", "content", "params"].contains(&key.as_str()),
                "{} carries {key}: {s:?}",
                s.name
            );
        }
    }

    // Metrics arrive too (exported every 10 s).
    eventually("metrics arrive", || async {
        let metrics = receiver.metrics.lock().unwrap().clone();
        // A gauge and a counter.
        let has = |metric: &str| metrics.iter().any(|(_, name)| name == metric);
        (has("shoal_followers") && has("shoal_checkpoints")).then_some(())
    })
    .await;
    server.abort();
}
