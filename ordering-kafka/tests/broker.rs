//! The transport against a real Kafka-protocol broker (Nisshi, started per test on a free
//! port). Never skipped: without the broker these tests fail and say how to install it.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ordering_core::order::{
    MemoryStore, Order, OrderEvent, OrderEventHandler, OrderId, OrderItem, Status, StatusUpdate,
};
use ordering_core::testing::{Running, spawn};
use ordering_core::{
    DeadLetter, Dispatcher, DispatcherConfig, FailureClass, Handler, Polled, RecordMeta,
    RetryPolicy, Sink, Source,
};
use ordering_kafka::order::AvroCodec;
use ordering_kafka::testing::{TestBroker, committed_offset, unique_topic};
use ordering_kafka::{
    Codec, Cursor, KafkaProducer, KafkaSource, PageBounds, ProducerConfig, SourceConfig,
    TopicSettings, ensure_topics, read_page, read_topic,
};
use tokio::time::{sleep, timeout};

const WAIT: Duration = Duration::from_secs(60);

fn order(id: &str) -> Order {
    Order {
        order_id: OrderId::parse(id).unwrap(),
        customer_id: "CUST-0042".into(),
        order_date: "2026-01-30T12:00:00.000Z".into(),
        items: vec![OrderItem {
            item_id: "ITEM-LAMP-007".into(),
            quantity: 2,
            price: 24.5,
        }],
        total_amount: 49.0,
        currency: "USD".into(),
        status: Status::parse("pending").unwrap(),
        status_reason: None,
    }
}

fn update(id: &str, status: &str) -> StatusUpdate {
    StatusUpdate {
        order_id: id.into(),
        status: status.into(),
        update_timestamp: "2026-01-30T12:00:00Z".into(),
        event_type: "STATUS_UPDATE".into(),
        reason: None,
    }
}

async fn topics(broker: &TestBroker, names: &[&str], partitions: i32) {
    ensure_topics(
        &broker.bootstrap(),
        names,
        &TopicSettings::new(partitions),
        Duration::from_secs(20),
    )
    .await
    .expect("creating topics");
}

/// A fresh broker with a topic of `partitions` partitions and a dead-letter topic, and a
/// producer for it.
async fn with_topic_and_dlq(
    prefix: &str,
    partitions: i32,
) -> (TestBroker, String, String, KafkaProducer) {
    let broker = TestBroker::start();
    let (topic, dlq) = (unique_topic(prefix), unique_topic("dlq"));
    topics(&broker, &[&topic, &dlq], partitions).await;
    let producer = producer(&broker);
    (broker, topic, dlq, producer)
}

fn producer(broker: &TestBroker) -> KafkaProducer {
    KafkaProducer::new(&ProducerConfig::new(broker.bootstrap())).unwrap()
}

fn source(broker: &TestBroker, group: &str, topics: &[&str]) -> KafkaSource<OrderEvent, AvroCodec> {
    let mut config = SourceConfig::new(broker.bootstrap(), group, topics.iter().copied());
    config.commit_interval = Duration::from_millis(200);
    // Notice rebalances quickly: the tests add and remove members.
    config.overrides = vec![
        ("heartbeat.interval.ms".into(), "300".into()),
        ("session.timeout.ms".into(), "6000".into()),
    ];
    KafkaSource::new(&config, AvroCodec::new().unwrap()).unwrap()
}

/// Polls `done` every 20 ms until it holds; fails the test after a minute.
async fn until(what: &str, done: impl Fn() -> bool) {
    timeout(WAIT, async {
        while !done() {
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// The next record from `source`, skipping revocations.
async fn next_record(
    source: &mut KafkaSource<OrderEvent, AvroCodec>,
) -> ordering_core::Record<OrderEvent> {
    loop {
        match timeout(WAIT, source.next())
            .await
            .expect("a record in time")
            .unwrap()
        {
            Some(Polled::Record(record)) => return record,
            Some(_) => continue, // a revocation
            None => panic!("a Kafka source never ends"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_type_round_trips_through_the_broker() {
    let broker = TestBroker::start();
    let (orders, updates) = (unique_topic("orders"), unique_topic("updates"));
    topics(&broker, &[&orders, &updates], 1).await;
    let producer = producer(&broker);
    let codec = AvroCodec::new().unwrap();
    producer
        .sink(&orders, codec)
        .publish(&order("ORD-1"))
        .await
        .unwrap();
    producer
        .sink(&updates, codec)
        .publish(&update("ORD-1", "shipped"))
        .await
        .unwrap();

    let mut source = source(&broker, "round-trip", &[&orders, &updates]);
    let mut seen = HashMap::new();
    while seen.len() < 2 {
        let record = next_record(&mut source).await;
        assert_eq!(
            record.meta.key.as_deref(),
            Some(&b"ORD-1"[..]),
            "keyed by order id"
        );
        assert!(record.meta.timestamp.is_some());
        seen.insert(record.meta.tp.topic.to_string(), record.event.unwrap());
    }
    assert_eq!(seen[&orders], OrderEvent::Created(order("ORD-1")));
    assert_eq!(
        seen[&updates],
        OrderEvent::StatusUpdated(update("ORD-1", "shipped"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_of_the_group_continues_after_the_last_commit() {
    let broker = TestBroker::start();
    let topic = unique_topic("resume");
    topics(&broker, &[&topic], 1).await;
    let sink = producer(&broker).sink(&topic, AvroCodec::new().unwrap());
    for n in 0..10 {
        sink.publish(&order(&format!("ORD-{n}"))).await.unwrap();
    }

    let mut first = source(&broker, "resume-group", &[&topic]);
    let mut last = None;
    for _ in 0..5 {
        let record = next_record(&mut first).await;
        first.ack(&record.meta.tp, record.meta.offset + 1);
        last = Some(record.meta.offset);
    }
    // Read (but not acknowledged): must be seen again by the next member.
    let unacked = next_record(&mut first).await;
    assert_eq!(unacked.meta.offset, 5);
    first.commit().await.unwrap();
    drop(first);
    assert_eq!(
        committed_offset(broker.bootstrap(), "resume-group", &topic, 0),
        Some(5)
    );

    let mut second = source(&broker, "resume-group", &[&topic]);
    let offsets: Vec<i64> = {
        let mut offsets = Vec::new();
        for _ in 0..5 {
            offsets.push(next_record(&mut second).await.meta.offset);
        }
        offsets
    };
    assert_eq!(last, Some(4));
    assert_eq!(
        offsets,
        vec![5, 6, 7, 8, 9],
        "nothing lost, only the uncommitted seen again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_order_is_dead_lettered_with_its_origin_and_only_then_committed() {
    let (broker, updates, dlq, producer) = with_topic_and_dlq("updates", 1).await;
    let codec = AvroCodec::new().unwrap();
    let sent = update("DOES-NOT-EXIST", "shipped");
    let raw = ordering_kafka::Codec::encode(&codec, &sent).unwrap();
    producer.sink(&updates, codec).publish(&sent).await.unwrap();

    let group = "dead-letter-group";
    let source = source(&broker, group, &[&updates]);
    let config = DispatcherConfig {
        retry: RetryPolicy::new(3, Duration::from_millis(300), 2.0, Duration::from_secs(2))
            .unwrap(),
        ..DispatcherConfig::default()
    };
    let dispatcher = Dispatcher::new(
        source,
        OrderEventHandler::new(Arc::new(MemoryStore::new())),
        producer.sink(&dlq, codec),
        config,
    );
    let stats = dispatcher.stats();
    let running = spawn(|stop| dispatcher.run(stop));

    // While retrying (0.3 + 0.6 + 1.2 s), nothing is committed.
    until("a first retry", || stats.snapshot().retries > 0).await;
    assert_eq!(
        committed_offset(broker.bootstrap(), group, &updates, 0),
        None
    );

    let letters = timeout(WAIT, async {
        loop {
            let letters = read_topic::<DeadLetter, _>(&broker.bootstrap(), &dlq, codec, WAIT)
                .await
                .unwrap();
            if !letters.is_empty() {
                return letters;
            }
            sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(letters.len(), 1);
    let record = &letters[0];
    assert_eq!(
        record.meta.key.as_deref(),
        Some(&b"DOES-NOT-EXIST"[..]),
        "the key is kept"
    );
    let header = |name: &str| {
        record
            .meta
            .headers
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| h.value.clone())
    };
    assert_eq!(
        header("dlq.error.type").as_deref(),
        Some(&b"OrderNotFound"[..])
    );
    let letter = record.event.as_ref().unwrap();
    assert_eq!(letter.original_topic, updates);
    assert_eq!(letter.original_partition, 0);
    assert_eq!(letter.original_offset, 0);
    assert_eq!(letter.key_str().as_deref(), Some("DOES-NOT-EXIST"));
    assert_eq!(letter.original_value, raw, "the payload byte for byte");
    assert_eq!(letter.error_message, "Order DOES-NOT-EXIST not found");
    assert_eq!(letter.error_class, FailureClass::Retryable);
    assert_eq!((letter.retry_count, letter.failed_attempts), (3, 4));
    assert_eq!(letter.consumer_group, group);
    assert!(letter.original_timestamp.is_some());

    running.stop().await;
    assert_eq!(
        committed_offset(broker.bootstrap(), group, &updates, 0),
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_payload_is_dead_lettered_at_once_as_poison() {
    let (broker, updates, dlq, producer) = with_topic_and_dlq("updates", 1).await;
    // Neither framing (`00` would open the registry's, a record of an unknown schema id).
    let garbage = b"\x07not avro at all\xff".to_vec();
    producer
        .send(&updates, Some(b"ORD-X"), &garbage, &[])
        .await
        .unwrap();

    let codec = AvroCodec::new().unwrap();
    let dispatcher = Dispatcher::new(
        source(&broker, "poison-group", &[&updates]),
        OrderEventHandler::new(Arc::new(MemoryStore::new())),
        producer.sink(&dlq, codec),
        DispatcherConfig::default(), // 1 s backoff: a retry would show in the count below
    );
    let stats = dispatcher.stats();
    let running = spawn(|stop| dispatcher.run(stop));
    until("a dead letter", || stats.snapshot().dead_lettered > 0).await;
    running.stop().await;

    assert_eq!(stats.snapshot().retries, 0);
    let letters = read_topic::<DeadLetter, _>(&broker.bootstrap(), &dlq, codec, WAIT)
        .await
        .unwrap();
    let letter = letters[0].event.as_ref().unwrap();
    assert_eq!(letter.error_class, FailureClass::Poison);
    assert_eq!(letter.error_type, "DecodeError");
    assert_eq!(letter.original_value, garbage);
    assert_eq!(letter.original_message, None);
    assert_eq!((letter.retry_count, letter.failed_attempts), (0, 0));
    assert_eq!(
        committed_offset(broker.bootstrap(), "poison-group", &updates, 0),
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_broker_gives_the_sink_a_retryable_error_in_bounded_time() {
    let mut broker = TestBroker::start();
    let topic = unique_topic("orders");
    topics(&broker, &[&topic], 1).await;
    let mut config = ProducerConfig::new(broker.bootstrap());
    config.delivery_timeout = Duration::from_secs(2);
    let sink = KafkaProducer::new(&config)
        .unwrap()
        .sink(&topic, AvroCodec::new().unwrap());
    sink.publish(&order("ORD-1")).await.unwrap();

    broker.stop();
    let outcome = timeout(WAIT, sink.publish(&order("ORD-2"))).await;
    let error = outcome.expect("the publish must not hang").unwrap_err();
    assert!(error.is_retryable(), "{error}");
}

/// Records every record it sees, by origin.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<(String, i32, i64)>>>);

#[async_trait]
impl Handler<OrderEvent> for Recorder {
    type Error = ordering_core::order::OrderError;
    async fn handle(&self, _event: &OrderEvent, meta: &RecordMeta) -> Result<(), Self::Error> {
        self.0
            .lock()
            .unwrap()
            .push((meta.tp.topic.to_string(), meta.tp.partition, meta.offset));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_of_a_group_split_the_partitions_and_see_every_record_once() {
    let (broker, topic, dlq, producer) = with_topic_and_dlq("split", 4).await;
    let codec = AvroCodec::new().unwrap();

    let mut runs = Vec::new();
    let mut members = Vec::new();
    for _ in 0..2 {
        let source = source(&broker, "split-group", &[&topic]);
        let status = source.status();
        let recorder = Recorder::default();
        let dispatcher = Dispatcher::new(
            source,
            recorder.clone(),
            producer.sink(&dlq, codec),
            DispatcherConfig::default(),
        );
        runs.push(spawn(|stop| dispatcher.run(stop)));
        members.push((status, recorder));
    }
    // Wait until the group settled: each member holds two of the four partitions.
    timeout(WAIT, async {
        loop {
            let held: Vec<_> = members.iter().map(|(s, _)| s.assigned()).collect();
            if held.iter().all(|h| h.len() == 2) {
                let all: HashSet<_> = held.iter().flatten().collect();
                if all.len() == 4 {
                    break;
                }
            }
            sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the group to settle");

    let sink = producer.sink(&topic, codec);
    for n in 0..200 {
        sink.publish(&order(&format!("ORD-{n}"))).await.unwrap();
    }
    timeout(WAIT, async {
        while members
            .iter()
            .map(|(_, r)| r.0.lock().unwrap().len())
            .sum::<usize>()
            < 200
        {
            sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("every record handled");
    sleep(Duration::from_millis(300)).await; // a duplicate would show up by now

    let seen: Vec<Vec<_>> = members
        .iter()
        .map(|(_, r)| r.0.lock().unwrap().clone())
        .collect();
    assert!(seen.iter().all(|s| !s.is_empty()), "both members got work");
    let all: Vec<_> = seen.concat();
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 200, "no record twice");
    assert_eq!(distinct.len(), 200);
    for (status, recorder) in &members {
        let mine: HashSet<i32> = status.assigned().iter().map(|tp| tp.partition).collect();
        assert!(
            recorder
                .0
                .lock()
                .unwrap()
                .iter()
                .all(|(_, p, _)| mine.contains(p))
        );
    }
    for running in runs {
        running.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_once_and_a_missing_topic_reads_empty() {
    let broker = TestBroker::start();
    let topic = unique_topic("created");
    topics(&broker, &[&topic], 3).await;
    topics(&broker, &[&topic], 3).await; // already there: fine
    let sink = producer(&broker).sink(&topic, AvroCodec::new().unwrap());
    let mut partitions = HashSet::new();
    for n in 0..30 {
        let order = order(&format!("ORD-{n}"));
        sink.publish(&order).await.unwrap();
    }
    let records =
        read_topic::<OrderEvent, _>(&broker.bootstrap(), &topic, AvroCodec::new().unwrap(), WAIT)
            .await
            .unwrap();
    assert_eq!(records.len(), 30);
    for record in &records {
        partitions.insert(record.meta.tp.partition);
        assert!(matches!(record.event, Ok(OrderEvent::Created(_))));
    }
    assert!(partitions.len() > 1, "keys spread over the partitions");
    let missing = read_topic::<OrderEvent, _>(
        &broker.bootstrap(),
        "no-such-topic",
        AvroCodec::new().unwrap(),
        WAIT,
    )
    .await
    .unwrap();
    assert!(missing.is_empty());
}

/// Records every record it sees, taking `delay` over each.
#[derive(Clone)]
struct SlowRecorder {
    seen: Arc<Mutex<Vec<(i32, i64)>>>,
    delay: Duration,
}

impl SlowRecorder {
    fn seen(&self) -> Vec<(i32, i64)> {
        self.seen.lock().unwrap().clone()
    }
}

#[async_trait]
impl Handler<OrderEvent> for SlowRecorder {
    type Error = ordering_core::order::OrderError;
    async fn handle(&self, _event: &OrderEvent, meta: &RecordMeta) -> Result<(), Self::Error> {
        sleep(self.delay).await;
        self.seen
            .lock()
            .unwrap()
            .push((meta.tp.partition, meta.offset));
        Ok(())
    }
}

struct Member {
    recorder: SlowRecorder,
    status: ordering_kafka::SourceStatus,
    running: Running,
}

impl Member {
    fn start(
        broker: &TestBroker,
        group: &str,
        topic: &str,
        dlq: &str,
        delay: Duration,
        config: DispatcherConfig,
    ) -> Self {
        let recorder = SlowRecorder {
            seen: Arc::default(),
            delay,
        };
        let source = source(broker, group, &[topic]);
        let status = source.status();
        let dispatcher = Dispatcher::new(
            source,
            recorder.clone(),
            producer(broker).sink(dlq, AvroCodec::new().unwrap()),
            config,
        );
        Self {
            recorder,
            status,
            running: spawn(|stop| dispatcher.run(stop)),
        }
    }

    async fn stop(self) {
        self.running.stop().await;
    }
}

async fn publish_orders(producer: &KafkaProducer, topic: &str, range: std::ops::Range<usize>) {
    let sink = producer.sink(topic, AvroCodec::new().unwrap());
    for n in range {
        sink.publish(&order(&format!("ORD-{n}"))).await.unwrap();
    }
}

/// Every partition's committed offset reached its end: nothing left behind.
async fn wait_until_all_committed(
    broker: &TestBroker,
    group: &str,
    topic: &str,
    ends: &HashMap<i32, i64>,
) {
    timeout(WAIT, async {
        loop {
            let done = ends.iter().all(|(&p, &end)| {
                committed_offset(broker.bootstrap(), group, topic, p) == Some(end)
            });
            if done {
                return;
            }
            sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("every partition committed to its end");
}

fn end_offsets(records: &[ordering_core::Record<OrderEvent>]) -> HashMap<i32, i64> {
    let mut ends = HashMap::new();
    for r in records {
        let end = ends.entry(r.meta.tp.partition).or_insert(0);
        *end = (*end).max(r.meta.offset + 1);
    }
    ends
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_mid_stream_loses_nothing() {
    let (broker, topic, dlq, producer) = with_topic_and_dlq("rebalance", 4).await;
    let group = "rebalance-group";
    publish_orders(&producer, &topic, 0..400).await;

    // Slow enough that the first member is still busy when the second one joins.
    let delay = Duration::from_millis(50);
    let first = Member::start(
        &broker,
        group,
        &topic,
        &dlq,
        delay,
        DispatcherConfig::default(),
    );
    until("the first member at work", || {
        first.recorder.seen().len() >= 20
    })
    .await;
    let second = Member::start(
        &broker,
        group,
        &topic,
        &dlq,
        delay,
        DispatcherConfig::default(),
    );
    until("the second member to get partitions", || {
        !second.status.assigned().is_empty()
    })
    .await;
    assert!(
        first.recorder.seen().len() < 400,
        "the rebalance came mid-stream"
    );
    publish_orders(&producer, &topic, 400..600).await;

    let all =
        read_topic::<OrderEvent, _>(&broker.bootstrap(), &topic, AvroCodec::new().unwrap(), WAIT)
            .await
            .unwrap();
    assert_eq!(all.len(), 600);
    wait_until_all_committed(&broker, group, &topic, &end_offsets(&all)).await;

    let mut seen: HashSet<(i32, i64)> = first.recorder.seen().into_iter().collect();
    seen.extend(second.recorder.seen());
    let expected: HashSet<_> = all
        .iter()
        .map(|r| (r.meta.tp.partition, r.meta.offset))
        .collect();
    assert_eq!(seen, expected, "every record handled at least once");
    assert!(
        !second.recorder.seen().is_empty(),
        "the second member took over partitions"
    );
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_full_partitions_neither_loses_nor_repeats_records() {
    let (broker, topic, dlq, producer) = with_topic_and_dlq("paused", 2).await;
    let group = "pause-group";
    publish_orders(&producer, &topic, 0..400).await;

    // A bound of 4: the partitions are paused and resumed many times over.
    let config = DispatcherConfig {
        max_in_flight_per_partition: std::num::NonZeroUsize::new(4).unwrap(),
        lanes: ordering_core::LaneMode::Key,
        ..DispatcherConfig::default()
    };
    let member = Member::start(
        &broker,
        group,
        &topic,
        &dlq,
        Duration::from_millis(1),
        config,
    );
    let all =
        read_topic::<OrderEvent, _>(&broker.bootstrap(), &topic, AvroCodec::new().unwrap(), WAIT)
            .await
            .unwrap();
    wait_until_all_committed(&broker, group, &topic, &end_offsets(&all)).await;

    let seen = member.recorder.seen();
    let distinct: HashSet<_> = seen.iter().copied().collect();
    assert_eq!(seen.len(), 400, "no record twice");
    assert_eq!(distinct.len(), 400, "no record missing");
    member.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_partition_waits_in_order_while_the_others_flow() {
    // More records on a partition than the source parks: past that, librdkafka itself is
    // paused, and fetches again from the right place when resumed.
    let (broker, topic, _dlq, producer) = with_topic_and_dlq("parked", 2).await;
    // Each parked record counts at least 256 bytes: 4 times the bound's worth of records.
    let records = 4 * ordering_kafka::PARKED_BYTES_PER_PARTITION / 256;
    let codec = AvroCodec::new().unwrap();
    let payloads: Vec<(String, Vec<u8>)> = (0..records)
        .map(|n| {
            let id = format!("ORD-{n}");
            let payload = Codec::<Order>::encode(&codec, &order(&id)).unwrap();
            (id, payload)
        })
        .collect();
    let published = futures::future::join_all(
        payloads
            .iter()
            .map(|(key, payload)| producer.send(&topic, Some(key.as_bytes()), payload, &[])),
    )
    .await;
    let mut per_partition: HashMap<i32, i64> = HashMap::new();
    for delivered in published {
        let delivered = delivered.unwrap();
        let end = per_partition.entry(delivered.partition).or_default();
        *end = (*end).max(delivered.offset + 1);
    }

    let mut source = source(&broker, "parked-group", &[&topic]);
    let first = next_record(&mut source).await;
    let paused = first.meta.tp.clone();
    source.pause(&paused);
    let other = per_partition
        .keys()
        .copied()
        .find(|p| *p != paused.partition);
    let other_end = other.map_or(0, |p| per_partition[&p]);

    // While paused: only the other partition's records, every one of them.
    let mut next_other = 0;
    while next_other < other_end {
        let record = next_record(&mut source).await;
        assert_ne!(
            record.meta.tp, paused,
            "a paused partition's record came out"
        );
        assert_eq!(record.meta.offset, next_other);
        next_other += 1;
    }
    let quiet = timeout(Duration::from_secs(2), next_record(&mut source)).await;
    assert!(quiet.is_err(), "nothing more while paused: {quiet:?}");

    // Resumed: the rest of the paused partition, from where it stopped, in order, once.
    source.resume(&paused);
    let mut expected = first.meta.offset + 1;
    while expected < per_partition[&paused.partition] {
        let record = next_record(&mut source).await;
        assert_eq!((&record.meta.tp, record.meta.offset), (&paused, expected));
        expected += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_paused_at_revocation_is_consumed_again_after_reassignment() {
    let (broker, topic, _dlq, producer) = with_topic_and_dlq("paused", 1).await;
    let codec = AvroCodec::new().unwrap();
    let sink = producer.sink(&topic, codec);
    sink.publish(&order("ORD-0")).await.unwrap();

    // A holds the partition and pauses it, as the dispatcher does at its in-flight bound.
    let mut a = source(&broker, "paused-group", &[&topic]);
    let a_status = a.status();
    let first = next_record(&mut a).await;
    a.pause(&first.meta.tp);

    // B joins (every partition is revoked and assigned again), then leaves: A gets the
    // partition back, and must fetch it although it was paused when it was taken away.
    let mut b = source(&broker, "paused-group", &[&topic]);
    let b_status = b.status();
    let b_polls = tokio::spawn(async move {
        loop {
            let _ = b.next().await;
        }
    });
    let mut revoked = false;
    let got_back = timeout(WAIT, async {
        loop {
            // Dropping a pending `next()` is fine: it is cancel-safe.
            match timeout(Duration::from_millis(200), a.next()).await {
                Ok(Ok(Some(Polled::Revoked(_)))) => revoked = true,
                Ok(Ok(Some(Polled::Record(record)))) => {
                    assert!(revoked, "A is paused and was not revoked: {record:?}");
                    // The one partition went back to A in this very rebalance: A fetches it
                    // again (from the last commit), paused before or not.
                    return Some(record);
                }
                _ => {}
            }
            let settled = !(a_status.assigned().is_empty() && b_status.assigned().is_empty());
            if revoked && settled {
                return None;
            }
        }
    })
    .await
    .expect("the group to rebalance when B joins");
    b_polls.abort();
    let _ = b_polls.await; // dropping B leaves the group

    let again = match got_back {
        Some(record) => record,
        None => {
            // B got the partition; once B has left, A gets it back and must fetch it.
            sink.publish(&order("ORD-1")).await.unwrap();
            next_record(&mut a).await
        }
    };
    assert_eq!(again.meta.tp, first.meta.tp);
    assert!(!a_status.assigned().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_with_their_settings_and_existing_ones_checked() {
    let broker = TestBroker::start();
    let topic = unique_topic("settings");
    let wait = Duration::from_secs(20);
    let asked = TopicSettings {
        partitions: 2,
        replication_factor: Some(1),
        min_insync_replicas: Some(1),
    };
    let created = ensure_topics(&broker.bootstrap(), &[&topic], &asked, wait)
        .await
        .unwrap();
    assert_eq!(created, vec![], "a new topic has what was asked");
    let again = ensure_topics(&broker.bootstrap(), &[&topic], &asked, wait)
        .await
        .unwrap();
    assert_eq!(
        again,
        vec![],
        "an existing topic with those settings passes the check"
    );

    // A setting the existing topic does not have is reported, not changed.
    let stricter = TopicSettings {
        replication_factor: Some(3),
        min_insync_replicas: Some(2),
        ..asked
    };
    let drifts = ensure_topics(&broker.bootstrap(), &[&topic], &stricter, wait)
        .await
        .unwrap();
    let settings: Vec<_> = drifts.iter().map(|d| (d.setting, d.wanted)).collect();
    assert_eq!(
        settings,
        vec![("replication.factor", 3), ("min.insync.replicas", 2)]
    );
    assert!(drifts.iter().all(|d| d.topic == topic));
    assert!(
        drifts[0].to_string().contains("replication.factor"),
        "{}",
        drifts[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_in_librdkafkas_fatal_state_says_so_and_publishes_nothing() {
    let (broker, topic, _dlq, producer) = with_topic_and_dlq("fatal", 1).await;
    producer.send(&topic, None, b"before", &[]).await.unwrap();
    assert_eq!(producer.fatal_error(), None);

    producer.inject_fatal_error("a sequence gap the broker cannot repair");
    let error = timeout(WAIT, producer.fatal())
        .await
        .expect("the fatal state seen");
    assert!(error.contains("a sequence gap"), "{error}");
    let refused = producer
        .send(&topic, None, b"after", &[])
        .await
        .unwrap_err();
    assert!(!refused.is_retryable(), "retrying cannot help: {refused}");
    drop(broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_reads_no_more_than_its_bound_and_its_cursor_goes_on_from_there() {
    let (broker, topic, _dlq, producer) = with_topic_and_dlq("pages", 2).await;
    publish_orders(&producer, &topic, 0..300).await;
    let bootstrap = broker.bootstrap();
    let read = |from: Cursor, keep: usize, scan: usize| {
        read_page::<OrderEvent, _, _>(
            &bootstrap,
            &topic,
            AvroCodec::new().unwrap(),
            from,
            PageBounds {
                keep,
                scan,
                timeout: WAIT,
            },
            |record| record.meta.offset % 2 == 0,
        )
    };
    // A filter that keeps half: 50 scanned records at most, whatever the topic holds.
    let first = read(Cursor::default(), 1000, 50).await.unwrap();
    assert_eq!(
        (first.scanned, first.records.len(), first.total),
        (50, 25, 300)
    );
    let next = first.next.expect("more to read");
    // The cursor survives its text form, and the next page starts where this one stopped.
    let next: Cursor = next.to_string().parse().unwrap();
    let second = read(next, 1000, 50).await.unwrap();
    let last_of_first = first
        .records
        .last()
        .map(|r| (r.meta.tp.partition, r.meta.offset));
    let first_of_second = second
        .records
        .first()
        .map(|r| (r.meta.tp.partition, r.meta.offset));
    assert!(
        first_of_second > last_of_first,
        "{last_of_first:?} then {first_of_second:?}"
    );

    // Read to the end: every record once, then no cursor.
    let mut from = Cursor::default();
    let mut seen = 0;
    loop {
        let page = read(from, 1000, 70).await.unwrap();
        seen += page.scanned;
        match page.next {
            Some(next) => from = next,
            None => break,
        }
    }
    assert_eq!(seen, 300);
    assert!("0:x".parse::<Cursor>().is_err());
    assert!("-1:4".parse::<Cursor>().is_err());
}
