//! Operator endpoints behind `OPERATOR_TOKEN`, on the real processes: each without a token,
//! with a wrong one and with the right one; the token in no log, body or metric; without a
//! token configured, redrive refused and dead letters listed without their contents; the
//! public endpoints as open as before.

mod common;

use common::{OPERATOR_TOKEN, System, eventually, operator_get};
use ordering_http::testing::{Reply, call_with, get};
use ordering_kafka::testing::{Storage, TestBroker};
use serde_json::json;

/// Both operator endpoints, called with `authorization` (or none).
async fn operator_calls(system: &System, authorization: Option<&str>) -> [Reply; 2] {
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| ("authorization", a))
        .into_iter()
        .collect();
    let body = json!({"dryRun": true}).to_string();
    [
        call_with(
            "GET",
            &system.order.url("/api/dlq/messages"),
            None,
            &headers,
        )
        .await,
        call_with(
            "POST",
            &system.order.url("/api/dlq/redrive"),
            Some(body.as_bytes()),
            &headers,
        )
        .await,
    ]
}

async fn one_dead_letter(system: &System) {
    assert_eq!(system.update("ORD-SECRET", "shipped").await.status, 202);
    eventually("a dead letter", || async {
        let reply = operator_get(&system.order.url("/api/dlq/info")).await;
        (reply.json["consumerStats"]["deadLettered"].as_u64() >= Some(1)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_endpoints_need_the_token_and_nothing_else_does() {
    let system = System::start_with(
        TestBroker::start_with(Storage::Memory),
        &[
            ("ORDER_STORE_URL", "memory://".into()),
            ("DLQ_MAX_RETRIES", "0".into()),
            // Everything the shells log, so that the search below means something.
            ("RUST_LOG", "debug,rdkafka=info".into()),
        ],
    );
    system.wait_until_consuming().await;
    one_dead_letter(&system).await;
    let mut seen = Vec::new();

    for authorization in [None, Some("Bearer wrong-token-0123456789".to_owned())] {
        for reply in operator_calls(&system, authorization.as_deref()).await {
            assert_eq!(reply.status, 401, "{authorization:?}: {}", reply.text);
            assert_eq!(reply.json["success"], false);
            assert_eq!(reply.json["error"], "Unauthorized");
            let challenge = reply.headers["www-authenticate"].to_str().unwrap();
            assert!(challenge.starts_with("Bearer"), "{challenge}");
            seen.push(reply.text);
        }
    }
    let bearer = format!("Bearer {OPERATOR_TOKEN}");
    let [messages, redrive] = operator_calls(&system, Some(&bearer)).await;
    assert_eq!(messages.status, 200, "{}", messages.text);
    assert_eq!(messages.json["redacted"], false);
    let letter = &messages.json["messages"][0];
    assert!(letter["originalValue"].is_string(), "{letter}");
    assert!(letter["originalMessage"].is_string(), "{letter}");
    assert_eq!(redrive.status, 200, "{}", redrive.text);
    assert_eq!(
        redrive.json["redrive"]["wouldRepublish"], 1,
        "{}",
        redrive.text
    );
    seen.extend([messages.text, redrive.text]);

    // /health shows the store's address to the operator only.
    let bearer = format!("Bearer {OPERATOR_TOKEN}");
    let health = call_with(
        "GET",
        &system.order.url("/health"),
        None,
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(health.json["store"]["url"], "memory://", "{}", health.text);
    let health = get(&system.order.url("/health")).await;
    assert!(health.json["store"].get("url").is_none(), "{}", health.text);

    // The public endpoints ask for nothing.
    for path in [
        "/api/order-details?orderId=ORD-SECRET",
        "/api/dlq/info",
        "/api/stats",
        "/health",
        "/metrics",
    ] {
        let reply = get(&system.order.url(path)).await;
        assert!(
            reply.status == 200 || (path.contains("order-details") && reply.status == 404),
            "{path}: {} {}",
            reply.status,
            reply.text
        );
        seen.push(reply.text);
    }
    let topic = &system.topics[2];
    let ids = get(&system
        .order
        .url(&format!("/api/getAllOrderIdsFromTopic?topicName={topic}")))
    .await;
    assert_eq!(ids.status, 200, "{}", ids.text);

    // The token shows nowhere: not in a body, a metric or a log line.
    seen.push(get(&system.cart.url("/metrics")).await.text);
    seen.push(system.order.log());
    seen.push(system.cart.log());
    assert!(
        system.order.log().contains("DEBUG"),
        "debug logs were captured"
    );
    for text in &seen {
        assert!(!text.contains(OPERATOR_TOKEN), "the token leaked:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_redrive_is_refused_and_letters_come_without_contents() {
    let system = System::start_with(
        TestBroker::start_with(Storage::Memory),
        &[
            ("ORDER_STORE_URL", "memory://".into()),
            ("DLQ_MAX_RETRIES", "0".into()),
            ("OPERATOR_TOKEN", String::new()),
        ],
    );
    system.wait_until_consuming().await;
    one_dead_letter(&system).await;

    let [messages, redrive] = operator_calls(&system, None).await;
    assert_eq!(messages.status, 200, "{}", messages.text);
    assert_eq!(messages.json["redacted"], true);
    let letter = &messages.json["messages"][0];
    assert_eq!(letter["originalKey"], "ORD-SECRET", "{letter}");
    assert_eq!(letter["errorType"], "OrderNotFound");
    for contents in [
        "originalValue",
        "originalMessage",
        "errorMessage",
        "originalHeaders",
        "originalKeyBytes",
    ] {
        assert!(letter.get(contents).is_none(), "{contents} in {letter}");
    }
    // The store is named by its kind and state, never its address.
    let health = get(&system.order.url("/health")).await;
    assert_eq!(health.json["store"]["kind"], "memory", "{}", health.text);
    assert!(health.json["store"].get("url").is_none(), "{}", health.text);
    assert_eq!(redrive.status, 403, "{}", redrive.text);
    let details = redrive.json["details"].as_str().unwrap_or_default();
    assert!(details.contains("OPERATOR_TOKEN"), "{details}");
    // A token sent anyway changes nothing.
    let bearer = format!("Bearer {OPERATOR_TOKEN}");
    let [_, redrive] = operator_calls(&system, Some(&bearer)).await;
    assert_eq!(redrive.status, 403);
}

#[test]
fn a_bad_token_setting_stops_order_shell_without_showing_the_token() {
    for (name, value) in [
        ("OPERATOR_TOKEN", "short-secret"),
        ("OPERATOR_TOKEN_FILE", "/no/such/token/file"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_order-shell"))
            .env("ORDER_STORE_URL", "memory://")
            .env(name, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(name), "{stderr}");
        if name == "OPERATOR_TOKEN" {
            assert!(!stderr.contains(value), "the token leaked: {stderr}");
        }
    }
}
