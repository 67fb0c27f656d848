//! cart-shell as a real process on a real broker, driven over HTTP: what it accepts, what it
//! refuses and how, and how it rides out a broker outage.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use ordering_core::order::{Order, StatusUpdate};
use ordering_kafka::testing::{Storage, TestBroker, unique_topic};
use ordering_kafka::{AvroCodec, read_topic};
use serde_json::json;
use shell_http::testing::{ShellProcess, get, send_json};

const WAIT: Duration = Duration::from_secs(60);

struct Cart {
    shell: ShellProcess,
    orders: String,
    updates: String,
}

fn start(broker: &TestBroker) -> Cart {
    let (orders, updates) = (unique_topic("orders"), unique_topic("updates"));
    let shell = ShellProcess::start(
        Path::new(env!("CARGO_BIN_EXE_cart-shell")),
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
            ("KAFKA_TOPIC", orders.clone()),
            ("KAFKA_STATUS_UPDATE_TOPIC", updates.clone()),
            ("KAFKA_DELIVERY_TIMEOUT_MS", "3000".into()),
        ],
    );
    Cart {
        shell,
        orders,
        updates,
    }
}

async fn read<M: Send + 'static>(broker: &TestBroker, topic: &str) -> Vec<ordering_core::Record<M>>
where
    AvroCodec: ordering_kafka::Codec<M>,
{
    read_topic::<M, _>(&broker.bootstrap(), topic, AvroCodec::new().unwrap(), WAIT)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_order_is_on_the_topic_before_201() {
    let broker = TestBroker::start();
    let cart = start(&broker);
    let reply = send_json(
        "POST",
        &cart.shell.url("/api/create-order"),
        &json!({"orderId": "  ORD-TEST-001 ", "numItems": 3}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.json["success"], true);
    let data = &reply.json["data"];
    assert_eq!(data["orderId"], "ORD-TEST-001", "trimmed");
    assert_eq!(data["status"], "pending");
    assert_eq!(data["items"].as_array().unwrap().len(), 3);

    // Acknowledged by the broker before the answer: it is there now.
    let records = read::<Order>(&broker, &cart.orders).await;
    assert_eq!(records.len(), 1);
    let published = records[0].event.as_ref().unwrap();
    assert_eq!(serde_json::to_value(published).unwrap(), *data);
    assert_eq!(records[0].meta.key.as_deref(), Some(&b"ORD-TEST-001"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_update_gets_202_with_the_specs_body() {
    let broker = TestBroker::start();
    let cart = start(&broker);
    let reply = send_json(
        "PUT",
        &cart.shell.url("/api/update-order"),
        &json!({"orderId": "ORD-123", "status": "shipped"}),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    assert_eq!(
        reply.json,
        json!({
            "success": true,
            "message": "Status update event published for order 'ORD-123'. Processing asynchronously.",
            "data": {
                "orderId": "ORD-123",
                "status": "shipped",
                "message": "Status update event published. Processing asynchronously.",
                "eventType": "STATUS_UPDATE"
            }
        })
    );
    let records = read::<StatusUpdate>(&broker, &cart.updates).await;
    let update = records[0].event.as_ref().unwrap();
    assert_eq!(
        (update.order_id.as_str(), update.status.as_str()),
        ("ORD-123", "shipped")
    );
    assert!(update.update_timestamp.ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_gives_503_in_bounded_time_and_the_shell_recovers() {
    let mut broker = TestBroker::start_with(Storage::Sqlite);
    let cart = start(&broker);
    let update = cart.shell.url("/api/update-order");
    let body = json!({"orderId": "ORD-1", "status": "shipped"});
    assert_eq!(send_json("PUT", &update, &body).await.status, 202);

    broker.stop();
    let reply = send_json("PUT", &update, &body).await; // `call` fails the test after 30 s
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert_eq!(reply.json["error"], "Broker unavailable");
    let health = get(&cart.shell.url("/health")).await;
    assert_eq!(health.status, 503);
    assert_eq!(health.json["broker"], "unavailable");

    broker.restart();
    let deadline = Instant::now() + WAIT;
    loop {
        let reply = send_json("PUT", &update, &body).await;
        if reply.status == 202 {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {}", reply.text);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(get(&cart.shell.url("/health")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_shell_cleanly() {
    let broker = TestBroker::start();
    let mut cart = start(&broker);
    let reply = send_json(
        "POST",
        &cart.shell.url("/api/create-order"),
        &json!({"orderId": "ORD-1", "numItems": 1}),
    )
    .await;
    assert_eq!(reply.status, 201);
    let status = cart.shell.terminate();
    assert!(status.success(), "exit {status}:\n{}", cart.shell.log());
    assert!(cart.shell.log().contains("cart-shell stopped"));
}

#[test]
fn a_bad_setting_stops_the_shell_at_start_up_naming_the_variable() {
    for (name, value) in [("KAFKA_TOPIC_PARTITIONS", "abc"), ("API_PORT", "99999")] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_cart-shell"))
            .env(name, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("invalid {name}=\"{value}\"")),
            "{stderr}"
        );
    }
}

/// cart-shell with no broker behind it: enough for HTTP-level behaviour.
fn cart_alone(extra: &[(&str, String)]) -> ShellProcess {
    let mut env = vec![("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9".to_owned())];
    env.extend(extra.iter().cloned());
    ShellProcess::start(Path::new(env!("CARGO_BIN_EXE_cart-shell")), &env)
}

/// Reads from `stream` until the end of the HTTP head (or the connection closes).
fn read_head(stream: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[test]
fn a_client_that_sends_headers_and_then_nothing_gets_408() {
    use std::io::Write;
    let cart = cart_alone(&[]);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", cart.port())).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
        .write_all(
            b"PUT /api/update-order HTTP/1.1\r\nHost: cart\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"orderId\"",
        )
        .unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 408"), "{head:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_the_limit_wait_and_never_take_the_shell_down() {
    use std::io::Read;
    let mut cart = cart_alone(&[("HTTP_MAX_CONNECTIONS", "8".into())]);
    // Twelve connections that never send a thing: eight are served, four wait.
    let idle: Vec<std::net::TcpStream> = (0..12)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", cart.port())).unwrap())
        .collect();
    // A real request waits for a slot (an idle connection is closed 10 s after it opened,
    // not kept forever) and is answered.
    let health = get(&cart.url("/health")).await;
    assert_eq!(health.status, 503, "{}", health.text); // no broker: answered all the same
    assert_eq!(cart.exited(), None);
    // It was answered only once served idle connections had been closed: the limit held it
    // back (without one it would be answered at once, every idle connection still open).
    let closed_before = idle
        .iter()
        .filter(|stream| {
            let mut byte = [0u8; 1];
            stream.set_nonblocking(true).is_ok()
                && matches!((&mut &**stream).read(&mut byte), Ok(0))
        })
        .count();
    assert!(closed_before >= 1, "the request did not wait for a slot");
    for stream in &idle {
        stream.set_nonblocking(false).unwrap();
    }
    // The idle connections the shell took were closed by it.
    let closed = tokio::task::spawn_blocking(move || {
        idle.into_iter()
            .filter_map(|mut stream| {
                stream.set_read_timeout(Some(WAIT)).ok()?;
                let mut byte = [0u8; 1];
                matches!(stream.read(&mut byte), Ok(0)).then_some(())
            })
            .count()
    })
    .await
    .unwrap();
    assert!(closed >= 8, "only {closed} idle connections were closed");
}
