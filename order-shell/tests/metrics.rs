//! `GET /metrics` of both shells, on the real processes: valid for the real `promtool check
//! metrics`, and its numbers move as records flow.

mod common;

use common::{System, eventually};
use ordering_http::testing::{get, metric_sum, promtool_check};
use ordering_kafka::testing::{Storage, TestBroker};
use serde_json::json;

async fn scrape(url: String) -> String {
    let reply = get(&url).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let content_type = reply
        .headers
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default());
    assert_eq!(
        content_type,
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    reply.text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_move_as_records_flow() {
    let system = System::start_with(
        TestBroker::start_with(Storage::Memory),
        &[
            ("ORDER_STORE_URL", "memory://".into()),
            ("DLQ_MAX_RETRIES", "0".into()),
        ],
    );
    system.wait_until_consuming().await;
    let order_metrics = || scrape(system.order.url("/metrics"));
    let cart_metrics = || scrape(system.cart.url("/metrics"));

    let before = order_metrics().await;
    promtool_check(&before);
    let applied = |text: &str| metric_sum(text, "ordering_records_applied_total", &[]);
    let applied_before = applied(&before);

    // One order applied, one status applied, one status dead-lettered.
    assert_eq!(system.create("ORD-M-1", 1).await.status, 201);
    eventually("the order stored", || async {
        (system.order_details("ORD-M-1").await.status == 200).then_some(())
    })
    .await;
    assert_eq!(system.update("ORD-M-1", "shipped").await.status, 202);
    assert_eq!(system.update("ORD-M-NOPE", "shipped").await.status, 202);
    let after = eventually("the counters to move", || async {
        let text = order_metrics().await;
        let moved = applied(&text) >= applied_before + 2.0
            && metric_sum(&text, "ordering_records_dead_lettered_total", &[]) >= 1.0
            && metric_sum(&text, "kafka_consumer_lag", &[]) >= 0.0
            && text.contains("kafka_consumer_lag{");
        moved.then_some(text)
    })
    .await;
    promtool_check(&after);
    let at_least = |name: &str, labels: &[&str], n: f64| {
        let value = metric_sum(&after, name, labels);
        assert!(
            value >= n,
            "{name}{labels:?} = {value}, expected at least {n}\n{after}"
        );
    };
    at_least("ordering_records_received_total", &[], 3.0);
    at_least(
        "ordering_handler_duration_seconds_count",
        &["result=\"ok\""],
        2.0,
    );
    at_least(
        "ordering_handler_duration_seconds_count",
        &["result=\"error\""],
        1.0,
    );
    at_least(
        "order_store_operation_duration_seconds_count",
        &["operation=\"create\"", "backend=\"memory\""],
        1.0,
    );
    let dlq = format!("topic=\"{}\"", system.topics[2]);
    at_least("kafka_publish_duration_seconds_count", &[&dlq], 1.0);
    at_least(
        "http_requests_total",
        &["route=\"/health\"", "status=\"200\""],
        1.0,
    );
    for gauge in [
        "ordering_records_in_flight",
        "ordering_partitions_paused",
        "ordering_records_waiting_unavailable",
    ] {
        assert!(
            after.contains(&format!("{gauge}{{")),
            "{gauge} missing:\n{after}"
        );
    }

    // Redrives are counted, and made-up paths all share one label.
    let redrive = common::operator_post(&system.order.url("/api/dlq/redrive"), &json!({})).await;
    assert_eq!(redrive.status, 200, "{}", redrive.text);
    assert_eq!(get(&system.order.url("/no/such/path")).await.status, 404);
    let later = order_metrics().await;
    promtool_check(&later);
    let republished = metric_sum(
        &later,
        "ordering_dlq_redrive_letters_total",
        &["outcome=\"republished\""],
    );
    assert!(republished >= 1.0, "{later}");
    let other = metric_sum(
        &later,
        "http_requests_total",
        &["route=\"other\"", "status=\"404\""],
    );
    assert!(other >= 1.0, "{later}");
    assert!(!later.contains("/no/such/path"));

    // cart-shell: its requests and its publishes.
    let cart = cart_metrics().await;
    promtool_check(&cart);
    let updates = metric_sum(
        &cart,
        "http_requests_total",
        &[
            "route=\"/api/update-order\"",
            "method=\"PUT\"",
            "status=\"202\"",
        ],
    );
    assert!(updates >= 2.0, "{cart}");
    let status_topic = format!("topic=\"{}\"", system.topics[1]);
    let published = metric_sum(
        &cart,
        "kafka_publish_duration_seconds_count",
        &[&status_topic],
    );
    assert!(published >= 2.0, "{cart}");
}
