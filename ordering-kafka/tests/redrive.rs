//! `Redriver` against a real broker: what goes back (byte for byte, with its key and the
//! redrive headers), what is skipped and why, and that a letter goes back once.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use ordering_core::order::OrderEvent;
use ordering_core::{DeadLetter, FailureClass, MemoryLedger, Sink};
use ordering_kafka::order::AvroCodec;
use ordering_kafka::testing::{TestBroker, unique_topic};
use ordering_kafka::{
    DeadLetterCodec, KafkaProducer, ProducerConfig, Redrive, Redriver, TopicSettings,
    ensure_topics, read_topic,
};

fn letter(topic: &str, key: &str, value: &[u8]) -> DeadLetter {
    DeadLetter {
        original_topic: topic.into(),
        original_partition: 0,
        original_offset: 7,
        original_incarnation: 1,
        original_key: Some(key.as_bytes().to_vec()),
        original_headers: Vec::new(),
        original_timestamp: None,
        original_value: value.to_vec(),
        original_message: None,
        error_type: "DecodeError".into(),
        error_class: FailureClass::Poison,
        error_message: "not an event".into(),
        retry_count: 0,
        failed_attempts: 0,
        first_failure_timestamp: "2026-11-25T10:00:00.000Z".into(),
        last_failure_timestamp: "2026-11-25T10:00:00.000Z".into(),
        consumer_group: "g".into(),
        redrive_count: 0,
        reduced_from: None,
    }
}

/// A broker with a target topic and a DLQ of one partition each, and a producer to it.
async fn setup() -> (TestBroker, String, String, KafkaProducer) {
    let broker = TestBroker::start();
    let (target, dlq) = (unique_topic("events"), unique_topic("dlq"));
    ensure_topics(
        &broker.bootstrap(),
        &[&target, &dlq],
        &TopicSettings::new(1),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    let producer = KafkaProducer::new(&ProducerConfig::new(broker.bootstrap())).unwrap();
    (broker, target, dlq, producer)
}

/// A redriver of `dlq` back to `target` through `producer`, three redrives at most.
fn redriver(
    producer: KafkaProducer,
    broker: &TestBroker,
    dlq: &str,
    target: &str,
    ledger: Arc<MemoryLedger>,
) -> Redriver {
    Redriver::builder(producer, DeadLetterCodec::new().unwrap(), ledger)
        .read_from(broker.bootstrap())
        .dead_letters(dlq)
        .topics([target])
        .max_redrives(3)
        .build()
        .unwrap()
}

fn header(record: &ordering_core::Record<OrderEvent>, name: &str) -> Option<String> {
    let header = record.meta.headers.iter().find(|h| h.name == name)?;
    Some(String::from_utf8_lossy(header.value.as_deref()?).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn letters_go_back_byte_for_byte_once_and_the_rest_is_skipped_with_a_reason() {
    let (broker, target, dlq, producer) = setup().await;
    let letters = producer.sink(&dlq, AvroCodec::new().unwrap());

    let replayable = letter(&target, "K-1", &[1, 2, 3, 255]);
    let reduced = letter(&target, "K-2", &[9; 10_000]).reduced(16);
    let foreign = letter("someone-elses-topic", "K-3", b"x");
    let mut looping = letter(&target, "K-4", b"y");
    looping.redrive_count = 3;
    for l in [&replayable, &reduced, &foreign, &looping] {
        letters.publish(l).await.unwrap();
    }

    let redriver = redriver(
        producer.clone(),
        &broker,
        &dlq,
        &target,
        Arc::new(MemoryLedger::default()),
    );
    let dry = redriver
        .run(&Redrive {
            dry_run: true,
            ..Redrive::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (dry.matched, dry.would_republish, dry.republished),
        (4, 1, 0)
    );

    let report = redriver.run(&Redrive::default()).await.unwrap();
    assert_eq!(report.matched, 4, "{report:?}");
    assert_eq!(report.republished, 1, "{report:?}");
    let skipped = report.skipped_by_reason;
    assert_eq!(
        (skipped.reduced, skipped.foreign_topic, skipped.max_redrives),
        (1, 1, 1),
        "{report:?}"
    );
    assert_eq!(report.stopped, None);

    let records = read_topic::<OrderEvent, _>(
        &broker.bootstrap(),
        &target,
        AvroCodec::new().unwrap(),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(records.len(), 1, "only the replayable letter went back");
    let record = &records[0];
    assert_eq!(record.payload, [1, 2, 3, 255], "byte for byte");
    assert_eq!(record.meta.key.as_deref(), Some(&b"K-1"[..]));
    assert_eq!(header(record, "redrive-count").as_deref(), Some("1"));
    assert_eq!(
        header(record, "redrive-dlq-topic").as_deref(),
        Some(dlq.as_str())
    );
    assert_eq!(
        header(record, "redrive-dlq-partition").as_deref(),
        Some("0")
    );
    assert_eq!(header(record, "redrive-dlq-offset").as_deref(), Some("0"));

    // Once: a second run skips it; forced and again, the looping one and it go back.
    let second = redriver.run(&Redrive::default()).await.unwrap();
    assert_eq!(second.republished, 0);
    assert_eq!(second.skipped_by_reason.already_redriven, 1);
    let forced = redriver
        .run(&Redrive {
            again: true,
            force: true,
            ..Redrive::default()
        })
        .await
        .unwrap();
    assert_eq!(forced.republished, 2, "{forced:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_goes_back_once_with_its_key_and_headers_and_an_unknown_outcome_is_not_resent() {
    let (broker, target, dlq, producer) = setup().await;
    let letters = producer.sink(&dlq, AvroCodec::new().unwrap());

    // One record dead-lettered twice (a crash before its commit), with a key that is not
    // text and a header of its own; and a second record.
    let mut twice = letter(&target, "", b"once");
    twice.original_key = Some(vec![0xff, 0x00, 0x7f]);
    twice.original_headers = vec![ordering_core::Header {
        name: "traceparent".into(),
        value: Some(vec![0xde, 0xad]),
    }];
    let mut other = letter(&target, "K-9", b"other");
    other.original_offset = 8;
    for l in [&twice, &twice, &other] {
        letters.publish(l).await.unwrap();
    }
    let ledger = Arc::new(MemoryLedger::default());

    // A producer whose broker never answers: the republish times out, and may have been
    // written for all it knows.
    let mut lost = ProducerConfig::new(format!("127.0.0.1:{}", free_port()));
    lost.delivery_timeout = Duration::from_secs(1);
    let cut_off = redriver(
        KafkaProducer::new(&lost).unwrap(),
        &broker,
        &dlq,
        &target,
        ledger.clone(),
    );
    let unknown = cut_off
        .run(&Redrive {
            filter: ordering_core::LetterFilter {
                key: Some("K-9".into()),
                ..Default::default()
            },
            ..Redrive::default()
        })
        .await
        .unwrap();
    assert_eq!((unknown.unknown, unknown.failed), (1, 0), "{unknown:?}");
    assert!(unknown.stopped.is_some());

    let redriver = redriver(producer.clone(), &broker, &dlq, &target, ledger.clone());
    let report = redriver.run(&Redrive::default()).await.unwrap();
    assert_eq!(report.matched, 3, "{report:?}");
    assert_eq!(report.republished, 1, "{report:?}");
    assert_eq!(report.skipped_by_reason.same_record, 1, "{report:?}");
    assert_eq!(
        report.skipped_by_reason.already_redriven, 1,
        "the unknown one is not sent blindly: {report:?}"
    );

    let records = read_topic::<OrderEvent, _>(
        &broker.bootstrap(),
        &target,
        AvroCodec::new().unwrap(),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(records.len(), 1, "the record went back once");
    let record = &records[0];
    assert_eq!(record.payload, b"once");
    assert_eq!(record.meta.key.as_deref(), Some(&[0xff, 0x00, 0x7f][..]));
    assert_eq!(record.meta.headers[0], twice.original_headers[0]);
    assert_eq!(
        record.meta.origin(),
        Some(ordering_core::Position::new(target.as_str(), 0, 7))
    );

    // The operator decides: `again` sends the one whose outcome was unknown.
    let again = redriver
        .run(&Redrive {
            again: true,
            filter: ordering_core::LetterFilter {
                key: Some("K-9".into()),
                ..Default::default()
            },
            ..Redrive::default()
        })
        .await
        .unwrap();
    assert_eq!(again.republished, 1, "{again:?}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
