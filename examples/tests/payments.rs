//! The payments example as its users run it: a process against a real broker. 1 000 payments,
//! one in ten negative; the service is stopped (SIGTERM) half-way and started again. Every
//! positive payment is booked exactly once (a clean stop commits what it booked: nothing is
//! booked again after the restart), and every negative one is dead-lettered as
//! `NegativeAmount`, permanent, with its key and bytes.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Killed, free_port};
use ordering_core::{DeadLetter, FailureClass, Sink};
use ordering_kafka::testing::{TestBroker, committed_offset, unique_topic};
use ordering_kafka::{
    Avro, DeadLetterCodec, KafkaProducer, ProducerConfig, SchemaVersions, read_topic,
};
use serde::{Deserialize, Serialize};

const PAYMENTS: usize = 1000;

/// The client's copy of the event and its schema.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename = "Payment", rename_all = "camelCase")]
struct Payment {
    payment_id: String,
    account: String,
    amount_cents: i64,
}

const PAYMENT_VERSIONS: SchemaVersions = SchemaVersions {
    name: "payment",
    record: "com.example.payments.Payment",
    published: &[
        r#"{"type": "record", "name": "Payment", "namespace": "com.example.payments",
      "fields": [{"name": "paymentId", "type": "string"}, {"name": "account", "type": "string"},
                 {"name": "amountCents", "type": "long"}]}"#,
    ],
};

/// Keyed by account: one account's payments in order.
impl ordering_kafka::Message for Payment {
    fn key(&self) -> Option<&[u8]> {
        Some(self.account.as_bytes())
    }
}

fn payment(n: usize) -> Payment {
    Payment {
        payment_id: format!("PAY-{n:04}"),
        account: format!("ACC-{}", n % 17),
        amount_cents: if n % 10 == 7 { -100 } else { 100 + n as i64 },
    }
}

fn start(env: &[(&str, String)]) -> std::process::Child {
    common::start("payments", env)
}

fn booked(ledger: &Path) -> Vec<String> {
    std::fs::read_to_string(ledger)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').next().map(str::to_owned))
        .collect()
}

async fn letters(broker: &TestBroker, dlq: &str, codec: DeadLetterCodec) -> Vec<DeadLetter> {
    read_topic(&broker.bootstrap(), dlq, codec, Duration::from_secs(10))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event.unwrap())
        .collect()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_payment_is_booked_once_or_dead_lettered_across_a_restart() {
    let broker = TestBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.txt");
    let (topic, dlq) = (unique_topic("payments"), unique_topic("payments-dlq"));
    let env = [
        ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
        ("PAYMENTS_TOPIC", topic.clone()),
        ("PAYMENTS_DLQ_TOPIC", dlq.clone()),
        ("PAYMENTS_GROUP", unique_topic("payments")),
        ("PAYMENTS_LEDGER", ledger.display().to_string()),
        ("RUST_LOG", "warn".into()),
        ("API_PORT", free_port().to_string()),
    ];
    let base = format!("http://127.0.0.1:{}", env.last().unwrap().1);
    let mut service = start(&env);

    let producer = KafkaProducer::new(&ProducerConfig::new(broker.bootstrap())).unwrap();
    let payments = producer.sink(&topic, Avro::<Payment>::new(PAYMENT_VERSIONS).unwrap());
    let (first, second) = (PAYMENTS / 2, PAYMENTS);
    for n in 0..first {
        payments.publish(&payment(n)).await.unwrap();
    }
    let positives = |upto: usize| (0..upto).filter(|n| n % 10 != 7).count();
    wait_for("the first half booked", || {
        booked(&ledger).len() >= positives(first)
    })
    .await;

    // What the service builder serves: health and metrics. Every part says how it is.
    let health = ordering_http::testing::get(&format!("{base}/health")).await;
    assert_eq!(health.status, 200, "{}", health.text);
    assert_eq!(health.json["consumer"]["isRunning"], true);
    assert_eq!(health.json["broker"], "ok", "{}", health.text);
    assert_eq!(health.json["producer"], "ok", "{}", health.text);
    assert_eq!(health.json["checks"]["ledger"], "ok", "{}", health.text);
    let metrics = ordering_http::testing::get(&format!("{base}/metrics")).await;
    assert!(
        metrics.text.contains("ordering_records_applied_total"),
        "{}",
        metrics.text
    );

    let negatives_upto = |upto: usize| (0..upto).filter(|n| n % 10 == 7).count();
    let codec = DeadLetterCodec::new().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while letters(&broker, &dlq, codec).await.len() < negatives_upto(first) {
        assert!(
            Instant::now() < deadline,
            "the first half's letters never came"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A clean stop: SIGTERM, as a service manager sends it.
    let pid = service.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = service.wait().unwrap();
    assert!(status.success(), "the service stopped with {status}");
    // Everything it handled is committed: its restart reads nothing of the first half again.
    let group = &env[3].1;
    // (However many partitions the topic got: the first publish may create it.)
    let committed: i64 = (0..16)
        .map(|p| committed_offset(broker.bootstrap(), group, &topic, p).unwrap_or(0))
        .sum();
    assert_eq!(committed, first as i64, "committed after the clean stop");
    let mut service = start(&env);
    for n in first..second {
        payments.publish(&payment(n)).await.unwrap();
    }
    wait_for("every payment booked", || {
        booked(&ledger).len() >= positives(second)
    })
    .await;

    let negatives: HashSet<String> = (0..PAYMENTS)
        .filter(|n| n % 10 == 7)
        .map(|n| payment(n).payment_id)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while letters(&broker, &dlq, codec).await.len() < negatives.len() {
        assert!(Instant::now() < deadline, "the letters never all came");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Settled: nothing more arrives; read once more.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let letters = letters(&broker, &dlq, codec).await;
    let _ = service.kill();
    let _ = service.wait();
    let offsets: HashSet<(i32, i64)> = letters
        .iter()
        .map(|l| (l.original_partition, l.original_offset))
        .collect();
    assert_eq!(
        offsets.len(),
        letters.len(),
        "a payment was dead-lettered twice"
    );

    let lines = booked(&ledger);
    let unique: HashSet<&String> = lines.iter().collect();
    assert_eq!(lines.len(), unique.len(), "a payment was booked twice");
    let expected: HashSet<String> = (0..PAYMENTS)
        .filter(|n| n % 10 != 7)
        .map(|n| payment(n).payment_id)
        .collect();
    assert_eq!(
        unique.into_iter().cloned().collect::<HashSet<_>>(),
        expected
    );

    assert_eq!(
        letters.len(),
        negatives.len(),
        "one letter per negative payment"
    );
    for letter in &letters {
        assert_eq!(letter.error_type, "NegativeAmount");
        assert_eq!(letter.error_class, FailureClass::Permanent);
        assert_eq!(letter.original_topic, topic);
        let decoded: Payment = ordering_kafka::Codec::decode(
            &Avro::<Payment>::new(PAYMENT_VERSIONS).unwrap(),
            &letter.original_value,
        )
        .unwrap();
        assert!(negatives.contains(&decoded.payment_id), "{decoded:?}");
        assert_eq!(
            letter.original_key.as_deref(),
            Some(decoded.account.as_bytes())
        );
    }
}

/// The service's own settings are in `--help`, and nothing of the service runs for it; its own
/// health check turns `/health` red while the ledger cannot be written, and green again after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn its_own_settings_and_health_check_are_the_services() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("books").join("ledger.txt");
    let help = Command::new(common::example("payments"))
        .arg("--help")
        .env("PAYMENTS_LEDGER", &ledger)
        .output()
        .unwrap();
    assert!(help.status.success(), "{help:?}");
    let text = String::from_utf8_lossy(&help.stdout);
    for name in [
        "PAYMENTS_LEDGER",
        "PAYMENTS_TOPIC",
        "KAFKA_BOOTSTRAP_SERVERS",
    ] {
        assert!(text.contains(name), "{name} missing from --help: {text}");
    }
    assert!(!dir.path().join("books").exists(), "--help ran nothing");

    let broker = TestBroker::start();
    let port = free_port();
    let env = [
        ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
        ("PAYMENTS_TOPIC", unique_topic("payments")),
        ("PAYMENTS_DLQ_TOPIC", unique_topic("payments-dlq")),
        ("PAYMENTS_GROUP", unique_topic("payments")),
        // Its directory does not exist yet: the ledger cannot be written.
        ("PAYMENTS_LEDGER", ledger.display().to_string()),
        ("RUST_LOG", "warn".into()),
        ("API_PORT", port.to_string()),
    ];
    // Killed when the test ends, however it ends.
    let _service = Killed(start(&env));
    let health_url = format!("http://127.0.0.1:{port}/health");
    let deadline = Instant::now() + Duration::from_secs(60);
    let red = loop {
        let health = ordering_http::testing::try_call_with("GET", &health_url, None, &[]).await;
        if let Some(health) = health
            .ok()
            .filter(|h| h.json["consumer"]["isRunning"] == true)
        {
            break health;
        }
        assert!(Instant::now() < deadline, "the service never started");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(red.status, 503, "{}", red.text);
    let problem = red.json["checks"]["ledger"].as_str().unwrap_or_default();
    assert!(problem.contains("cannot be written"), "{}", red.text);
    assert_eq!(
        red.json["broker"], "ok",
        "only the ledger is wrong: {}",
        red.text
    );

    std::fs::create_dir_all(dir.path().join("books")).unwrap();
    wait_for_health(&health_url, 200).await;
}

async fn wait_for_health(url: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = ordering_http::testing::get(url).await;
        if health.status == status {
            return;
        }
        assert!(Instant::now() < deadline, "{url} stayed {}", health.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
