//! `Redriver` against a real broker: what goes back (byte for byte, with its key and the
//! redrive headers), what is skipped and why, and that a letter goes back once.

use std::sync::Arc;
use std::time::Duration;

use ordering_core::order::OrderEvent;
use ordering_core::{DeadLetter, FailureClass, MemoryLedger, Sink};
use ordering_kafka::testing::{TestBroker, unique_topic};
use ordering_kafka::{
    AvroCodec, KafkaProducer, ProducerConfig, Redrive, Redriver, TopicSettings, ensure_topics,
    read_topic,
};

fn letter(topic: &str, key: &str, value: &[u8]) -> DeadLetter {
    DeadLetter {
        original_topic: topic.into(),
        original_partition: 0,
        original_offset: 7,
        original_key: Some(key.into()),
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

fn header(record: &ordering_core::Record<OrderEvent>, name: &str) -> Option<String> {
    let header = record.meta.headers.iter().find(|h| h.name == name)?;
    Some(String::from_utf8_lossy(header.value.as_deref()?).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn letters_go_back_byte_for_byte_once_and_the_rest_is_skipped_with_a_reason() {
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
    let letters = producer.sink(&dlq, AvroCodec::new().unwrap());

    let replayable = letter(&target, "K-1", &[1, 2, 3, 255]);
    let reduced = letter(&target, "K-2", &[9; 10_000]).reduced(16);
    let foreign = letter("someone-elses-topic", "K-3", b"x");
    let mut looping = letter(&target, "K-4", b"y");
    looping.redrive_count = 3;
    for l in [&replayable, &reduced, &foreign, &looping] {
        letters.publish(l).await.unwrap();
    }

    let redriver = Redriver::new(
        producer.clone(),
        broker.bootstrap(),
        &dlq,
        vec![target.clone()],
        3,
        Arc::new(MemoryLedger::default()),
    )
    .unwrap();
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
