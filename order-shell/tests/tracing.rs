//! Traces end to end: both shells export over OTLP (HTTP/protobuf) to a receiver in this test
//! (a plain HTTP server decoding what arrives with `opentelemetry-proto`), and one trace
//! follows an update from the client's `PUT` through cart-shell's publish to order-shell's
//! processing; an unknown order's retries and dead letter stay in its trace; a redrive starts
//! a new trace linked to it.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use common::{System, eventually, operator_get, operator_post};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use ordering_http::testing::{Reply, call_with};
use ordering_kafka::testing::{Storage, TestBroker};
use prost::Message;
use serde_json::json;

/// One span as the receiver got it.
#[derive(Debug, Clone)]
struct Collected {
    service: String,
    name: String,
    /// OTLP's span kind: 2 server, 4 producer, 5 consumer.
    kind: i32,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: HashMap<String, String>,
    /// (trace id, span id) of each link.
    links: Vec<(String, String)>,
}

const SERVER: i32 = 2;
const PRODUCER: i32 = 4;
const CONSUMER: i32 = 5;

type Spans = Arc<Mutex<Vec<Collected>>>;

/// An OTLP/HTTP receiver on a free port: its base URL (for `OTEL_EXPORTER_OTLP_ENDPOINT`)
/// and what it has received.
async fn receiver() -> (String, Spans) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let spans: Spans = Arc::default();
    let kept = spans.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let kept = kept.clone();
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let kept = kept.clone();
                async move {
                    let traces = request.uri().path() == "/v1/traces";
                    let body = request.into_body().collect().await?.to_bytes();
                    if traces {
                        // What does not decode is kept as such: the test fails on it.
                        let spans = match ExportTraceServiceRequest::decode(body) {
                            Ok(export) => collect(export),
                            Err(error) => vec![undecodable(error)],
                        };
                        kept.lock().unwrap().extend(spans);
                    }
                    Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::new())))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (url, spans)
}

fn undecodable(error: prost::DecodeError) -> Collected {
    Collected {
        service: String::new(),
        name: format!("UNDECODABLE: {error}"),
        kind: 0,
        trace_id: String::new(),
        span_id: String::new(),
        parent: String::new(),
        attributes: HashMap::new(),
        links: Vec::new(),
    }
}

fn collect(export: ExportTraceServiceRequest) -> Vec<Collected> {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let text = |value: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>| match value
        .as_ref()
        .and_then(|v| v.value.as_ref())
    {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(n)) => n.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    };
    let mut spans = Vec::new();
    for resource in export.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .map(|a| text(&a.value))
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                spans.push(Collected {
                    service: service.clone(),
                    name: span.name,
                    kind: span.kind,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                    attributes: span
                        .attributes
                        .iter()
                        .map(|a| (a.key.clone(), text(&a.value)))
                        .collect(),
                    links: span
                        .links
                        .iter()
                        .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                        .collect(),
                });
            }
        }
    }
    spans
}

/// Waits until a span matching `check` has arrived, and gives it.
async fn span(spans: &Spans, what: &str, check: impl Fn(&Collected) -> bool) -> Collected {
    eventually(what, || async {
        spans.lock().unwrap().iter().find(|s| check(s)).cloned()
    })
    .await
}

async fn put_traced(system: &System, id: &str, status: &str, traceparent: &str) -> Reply {
    let body = json!({"orderId": id, "status": status}).to_string();
    call_with(
        "PUT",
        &system.cart.url("/api/update-order"),
        Some(body.as_bytes()),
        // A public caller's baggage stays at the edge: never copied into records.
        &[
            ("traceparent", traceparent),
            ("baggage", "caller.secret=leaked"),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_follows_an_update_from_the_put_to_the_store_and_a_redrive_links_back() {
    let (endpoint, spans) = receiver().await;
    let system = System::start_with(
        TestBroker::start_with(Storage::Memory),
        &[
            ("ORDER_STORE_URL", "memory://".into()),
            ("DLQ_MAX_RETRIES", "1".into()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_TRACES_SAMPLER", "always_on".into()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ],
    );
    system.wait_until_consuming().await;
    let [_, updates, dlq] = system.topics.clone();

    // An update of an order that exists, in the client's trace.
    assert_eq!(system.create("TR-1", 1).await.status, 201);
    eventually("TR-1 stored", || async {
        (system.order_details("TR-1").await.status == 200).then_some(())
    })
    .await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller = "00f067aa0ba902b7";
    let reply = put_traced(
        &system,
        "TR-1",
        "shipped",
        &format!("00-{trace}-{caller}-01"),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let answered = reply.headers["traceparent"].to_str().unwrap().to_owned();
    assert!(answered.starts_with(&format!("00-{trace}-")), "{answered}");

    let server = span(&spans, "cart-shell's request span", |s| {
        s.service == "cart-shell" && s.kind == SERVER && s.trace_id == trace
    })
    .await;
    assert_eq!(server.parent, caller, "the caller's span is its parent");
    assert_eq!(server.attributes["http.route"], "/api/update-order");
    let send = span(&spans, "cart-shell's send span", |s| {
        s.service == "cart-shell" && s.kind == PRODUCER && s.trace_id == trace
    })
    .await;
    assert_eq!(send.attributes["messaging.destination.name"], updates);
    assert_eq!(send.parent, server.span_id, "the publish is the request's");
    let process = span(&spans, "order-shell's process span", |s| {
        s.service == "order-shell" && s.kind == CONSUMER && s.trace_id == trace
    })
    .await;
    assert_eq!(process.parent, send.span_id, "a child of the send");
    assert!(
        process
            .links
            .contains(&(trace.to_owned(), send.span_id.clone())),
        "and linked to it: {process:?}"
    );
    for (key, value) in [
        ("messaging.system", "kafka"),
        ("messaging.operation.type", "process"),
        ("messaging.destination.name", updates.as_str()),
        ("messaging.consumer.group.name", system.group.as_str()),
        ("messaging.kafka.message.key", "TR-1"),
    ] {
        assert_eq!(
            process.attributes.get(key).map(String::as_str),
            Some(value),
            "{key}"
        );
    }
    assert!(process.attributes.contains_key("messaging.kafka.offset"));

    // An unknown order: its retry and its dead letter stay in its trace, and the letter
    // keeps the record's trace headers.
    let lost = "0af7651916cd43dd8448eb211c80319c";
    let reply = put_traced(
        &system,
        "TR-404",
        "shipped",
        &format!("00-{lost}-b7ad6b7169203331-01"),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let in_lost = |name: &'static str| {
        move |s: &Collected| s.service == "order-shell" && s.trace_id == lost && s.name == name
    };
    span(&spans, "a retry span", in_lost("retry")).await;
    span(&spans, "the dead letter span", in_lost("dead letter")).await;
    let dead_letter_send = span(&spans, "the dead letter's send", |s| {
        s.service == "order-shell" && s.kind == PRODUCER && s.trace_id == lost
    })
    .await;
    assert_eq!(
        dead_letter_send.attributes["messaging.destination.name"],
        dlq
    );
    let letters = operator_get(&system.order.url("/api/dlq/messages?orderId=TR-404")).await;
    let headers = letters.json["messages"][0]["originalHeaders"].to_string();
    let kept = letters.json["messages"][0]["originalHeaders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "traceparent")
        .and_then(|h| h["value"].as_str())
        .map(|v| BASE64.decode(v).unwrap())
        .unwrap_or_else(|| panic!("the letter keeps the trace headers: {headers}"));
    assert!(String::from_utf8(kept).unwrap().contains(lost));
    assert!(
        !headers.contains("baggage"),
        "the caller's baggage is not propagated: {headers}"
    );

    // The order arrives; a redrive sends the letter back in a new trace linked to the lost
    // one, and order-shell's processing of the copy is in the redrive's trace.
    assert_eq!(system.create("TR-404", 1).await.status, 201);
    eventually("TR-404 stored", || async {
        (system.order_details("TR-404").await.status == 200).then_some(())
    })
    .await;
    let url = system.order.url("/api/dlq/redrive");
    let redriven = operator_post(&url, &json!({"orderId": "TR-404"})).await;
    assert_eq!(
        redriven.json["redrive"]["republished"], 1,
        "{}",
        redriven.text
    );
    let redrive = span(&spans, "the redrive span", |s| {
        s.service == "order-shell" && s.name.starts_with("redrive ")
    })
    .await;
    assert_ne!(redrive.trace_id, lost, "a new trace");
    assert_eq!(redrive.parent, "", "a root: {redrive:?}");
    assert!(
        redrive.links.iter().any(|(t, _)| t == lost),
        "linked to the lost one: {redrive:?}"
    );
    span(
        &spans,
        "the copy's processing, in the redrive's trace",
        |s| s.service == "order-shell" && s.kind == CONSUMER && s.trace_id == redrive.trace_id,
    )
    .await;
    let spans = spans.lock().unwrap();
    let undecodable: Vec<&Collected> = spans
        .iter()
        .filter(|s| s.name.starts_with("UNDECODABLE"))
        .collect();
    assert!(undecodable.is_empty(), "{undecodable:?}");
}
