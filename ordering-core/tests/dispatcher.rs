//! Behaviour of the dispatcher on the in-memory source and sink, on tokio's paused clock:
//! every "1 s" below is virtual and exact, and the tests run in milliseconds.

mod common;

use std::num::NonZeroUsize;
use std::time::Duration;

use common::{Class, Ev, Script, poison, record, tp};
use ordering_core::testing::{MemorySink, MemorySource, MemorySourceHandle, Running, spawn};
use ordering_core::{
    DeadLetter, DecodeError, Dispatcher, DispatcherConfig, FailureClass, LaneMode, Record,
    RecordMeta, RetryPolicy, Stats,
};
use tokio::time::{Instant, sleep};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn gaps(times: &[Instant]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

/// A dispatcher over a live in-memory source, running in its own task.
struct Live {
    script: Script,
    sink: MemorySink<DeadLetter>,
    feed: MemorySourceHandle<Ev>,
    stats: Stats,
    running: Running,
}

impl Live {
    fn start(config: DispatcherConfig) -> Self {
        let script = Script::new();
        let sink = MemorySink::new();
        let (source, feed) = MemorySource::live();
        let dispatcher = Dispatcher::new(source, script.clone(), sink.clone(), config);
        let stats = dispatcher.stats();
        let running = spawn(|stop| dispatcher.run(stop));
        Self {
            script,
            sink,
            feed,
            stats,
            running,
        }
    }
}

/// Runs a dispatcher over `records` until they are all finished.
async fn run_all(
    records: Vec<ordering_core::Record<Ev>>,
    config: DispatcherConfig,
) -> (
    Script,
    MemorySink<DeadLetter>,
    ordering_core::testing::MemorySourceHandle<Ev>,
) {
    let script = Script::new();
    let sink = MemorySink::new();
    let source = MemorySource::from_records(records).with_group("test-group");
    let observer = source.observer();
    Dispatcher::new(source, script.clone(), sink.clone(), config)
        .run(std::future::pending())
        .await
        .expect("dispatcher run");
    (script, sink, observer)
}

#[tokio::test(start_paused = true)]
async fn retries_after_1_2_4_seconds_then_writes_one_dead_letter() {
    let records = vec![record(
        0,
        7,
        "ORD-1",
        Ev::failing(1, u32::MAX, Class::Retryable),
    )];
    let (script, sink, source) = run_all(records, DispatcherConfig::default()).await;

    assert_eq!(gaps(&script.times_of(1)), vec![secs(1), secs(2), secs(4)]);
    let letters = sink.messages();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.retry_count, 3);
    assert_eq!(letter.failed_attempts, 4);
    assert_eq!(letter.error_class, FailureClass::Retryable);
    assert_eq!(letter.error_type, "ScriptError");
    assert_eq!(letter.error_message, "event 1 failed (Retryable)");
    assert_eq!(letter.original_topic, "events");
    assert_eq!(letter.original_partition, 0);
    assert_eq!(letter.original_offset, 7);
    assert_eq!(letter.original_key.as_deref(), Some(&b"ORD-1"[..]));
    assert_eq!(letter.original_timestamp, Some(1_700_000_000_007));
    assert_eq!(letter.original_value, b"payload-1");
    let message: serde_json::Value =
        serde_json::from_str(letter.original_message.as_deref().unwrap()).unwrap();
    assert_eq!(message["n"], 1);
    assert_eq!(letter.consumer_group, "test-group");
    assert!(letter.first_failure_timestamp <= letter.last_failure_timestamp);
    // Committed only after the dead letter was accepted.
    assert_eq!(source.committed(&tp(0)), Some(8));
}

#[tokio::test(start_paused = true)]
async fn backoff_is_capped() {
    let config = DispatcherConfig {
        retry: RetryPolicy::new(5, secs(1), 2.0, secs(3)).unwrap(),
        ..DispatcherConfig::default()
    };
    let records = vec![record(
        0,
        0,
        "k",
        Ev::failing(1, u32::MAX, Class::Retryable),
    )];
    let (script, sink, _) = run_all(records, config).await;

    assert_eq!(
        gaps(&script.times_of(1)),
        vec![secs(1), secs(2), secs(3), secs(3), secs(3)]
    );
    assert_eq!(sink.messages()[0].retry_count, 5);
    assert_eq!(sink.messages()[0].failed_attempts, 6);
}

#[tokio::test(start_paused = true)]
async fn success_on_the_second_attempt_writes_no_dead_letter() {
    let records = vec![record(0, 0, "k", Ev::failing(1, 1, Class::Retryable))];
    let script = Script::new();
    let sink = MemorySink::new();
    let source = MemorySource::from_records(records);
    let observer = source.observer();
    let dispatcher = Dispatcher::new(
        source,
        script.clone(),
        sink.clone(),
        DispatcherConfig::default(),
    );
    let stats = dispatcher.stats();
    dispatcher.run(std::future::pending()).await.unwrap();

    assert_eq!(gaps(&script.times_of(1)), vec![secs(1)]);
    assert!(sink.is_empty());
    assert_eq!(observer.committed(&tp(0)), Some(1));
    let stats = stats.snapshot();
    assert_eq!(
        (
            stats.applied,
            stats.retries,
            stats.dead_lettered,
            stats.in_flight
        ),
        (1, 1, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn permanent_and_poison_records_are_dead_lettered_at_once_with_their_bytes() {
    let started = Instant::now();
    let invalid = Record::new(
        RecordMeta::new(tp(0), 3),
        b"{}".to_vec(),
        Err(DecodeError::invalid("InvalidReservation", "no sku")),
    );
    let records = vec![
        record(0, 0, "k", Ev::failing(1, u32::MAX, Class::Permanent)),
        poison(0, 1, &[0xC3, 0x01, 0xde, 0xad]),
        record(0, 2, "k", Ev::ok(3)),
        invalid,
    ];
    let (script, sink, source) = run_all(records, DispatcherConfig::default()).await;

    assert_eq!(started.elapsed(), Duration::ZERO, "no backoff for either");
    assert_eq!(
        script.called(),
        vec![1, 3],
        "the poison record never reaches the handler"
    );
    let letters = sink.messages();
    assert_eq!(letters.len(), 3);

    let permanent = &letters[0];
    assert_eq!(permanent.error_class, FailureClass::Permanent);
    assert_eq!((permanent.retry_count, permanent.failed_attempts), (0, 1));
    assert_eq!(permanent.original_value, b"payload-1");

    let poisoned = &letters[1];
    assert_eq!(poisoned.error_class, FailureClass::Poison);
    assert_eq!(poisoned.error_type, "DecodeError");
    assert_eq!(poisoned.error_message, "not an event");
    assert_eq!((poisoned.retry_count, poisoned.failed_attempts), (0, 0));
    assert_eq!(poisoned.original_value, vec![0xC3, 0x01, 0xde, 0xad]);
    assert_eq!(poisoned.original_message, None);
    assert_eq!(poisoned.original_offset, 1);

    // Readable, but refused by the codec: the record's fault, named by the codec.
    let invalid = &letters[2];
    assert_eq!(invalid.error_class, FailureClass::Permanent);
    assert_eq!(invalid.error_type, "InvalidReservation");
    assert_eq!((invalid.retry_count, invalid.failed_attempts), (0, 0));

    assert_eq!(source.committed(&tp(0)), Some(4));
}

#[tokio::test(start_paused = true)]
async fn a_dead_letter_the_sink_refuses_is_written_reduced_and_its_lane_goes_on() {
    let config = DispatcherConfig {
        reduced_letter_payload: 4,
        ..DispatcherConfig::default()
    };
    let Live {
        script,
        sink,
        feed,
        running,
        stats,
    } = Live::start(config);
    // As a broker with a message limit: letters carrying more than 8 payload bytes are refused.
    sink.refuse_when(|letter: &DeadLetter| letter.original_value.len() > 8);
    feed.send(poison(0, 0, &[0xC3; 100]));
    feed.send(record(0, 1, "k", Ev::ok(2)));
    sleep(secs(1)).await;

    let letters = sink.messages();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(
        letter.original_value,
        vec![0xC3; 4],
        "the payload cut to fit"
    );
    assert_eq!(
        letter.reduced_from,
        Some(100),
        "flagged, with the real size"
    );
    assert_eq!(letter.original_message, None);
    assert_eq!(
        letter.error_type, "DecodeError",
        "the failure itself is kept"
    );
    assert_eq!(sink.attempts(), 2, "refused once, then written reduced");
    assert_eq!(feed.acked(&tp(0)), Some(2), "the lane went on");
    assert_eq!(script.called(), vec![2]);
    let snapshot = stats.snapshot();
    assert_eq!(snapshot.dead_letters_reduced, 1);
    assert_eq!(snapshot.dead_letters_failing_for_ms, None);
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_dead_letter_refused_for_another_reason_than_its_size_waits_whole() {
    let Live {
        sink,
        feed,
        running,
        stats,
        ..
    } = Live::start(DispatcherConfig::default());
    // As a broker whose ACL or policy refuses the DLQ: a person fixes it, the letter waits.
    sink.reject_when(|_: &DeadLetter| true);
    let mut keyed = poison(0, 0, &[0xC3; 100]);
    keyed.meta.key = Some(vec![0xff, 0x00, 0x01]);
    keyed.meta.headers = vec![ordering_core::Header {
        name: "traceparent".into(),
        value: Some(vec![0xfe]),
    }];
    feed.send(keyed);
    sleep(secs(30)).await;
    assert!(sink.is_empty());
    assert!(sink.attempts() > 2, "tried again and again");
    assert_eq!(feed.acked(&tp(0)), None, "not committed meanwhile");
    assert_eq!(stats.snapshot().dead_letters_reduced, 0);

    sink.accept_all();
    sleep(secs(30)).await;
    let letters = sink.messages();
    assert_eq!(letters.len(), 1);
    assert!(letters[0].is_replayable(), "written whole, not reduced");
    assert_eq!(letters[0].original_value, vec![0xC3; 100]);
    assert_eq!(
        letters[0].original_key.as_deref(),
        Some(&[0xff, 0x00, 0x01][..]),
        "the key kept as bytes"
    );
    assert_eq!(letters[0].original_headers.len(), 1, "the headers kept");
    assert_eq!(feed.acked(&tp(0)), Some(1));
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_partition_whose_offsets_go_backwards_starts_over_and_skips_nothing() {
    let Live {
        script,
        feed,
        running,
        ..
    } = Live::start(DispatcherConfig::default());
    for offset in 10..13 {
        feed.send(record(0, offset, "k", Ev::ok(offset as u32)));
    }
    sleep(secs(1)).await;
    assert_eq!(feed.acked(&tp(0)), Some(13));
    // The log was truncated and rewritten from offset 11 (an unclean leader election).
    // Its first attempt fails: while it waits for its retry, nothing past it may be
    // committed, not even the old records' 13.
    feed.send(record(0, 11, "k", Ev::failing(111, 1, Class::Retryable)));
    sleep(Duration::from_millis(100)).await;
    assert_eq!(
        feed.acked(&tp(0)),
        Some(11),
        "the partition commits from the new record, not past it"
    );
    sleep(secs(2)).await;
    assert_eq!(script.called(), vec![10, 11, 12, 111, 111]);
    assert_eq!(feed.acked(&tp(0)), Some(12));
    feed.send(record(0, 12, "k", Ev::ok(112)));
    sleep(secs(1)).await;
    assert_eq!(script.called(), vec![10, 11, 12, 111, 111, 112]);
    assert_eq!(
        feed.acked(&tp(0)),
        Some(13),
        "committed over the new records only"
    );
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_dead_letter_sink_holds_the_record_until_it_recovers() {
    let Live {
        script,
        sink,
        feed,
        running,
        stats,
    } = Live::start(DispatcherConfig::default());
    sink.set_failing(true);
    assert_eq!(stats.snapshot().dead_letters_failing_for_ms, None);

    feed.send(record(
        0,
        0,
        "k",
        Ev::failing(1, u32::MAX, Class::Permanent),
    ));
    feed.send(record(0, 1, "k", Ev::ok(2)));
    sleep(secs(60)).await;
    assert!(
        sink.attempts() > 3,
        "the dead letter is tried again and again"
    );
    assert_eq!(
        feed.acked(&tp(0)),
        None,
        "nothing acknowledged while the sink is down"
    );
    assert_eq!(
        script.called(),
        vec![1],
        "the next record of the partition waits"
    );
    let failing = stats.snapshot().dead_letters_failing_for_ms;
    assert_eq!(
        failing,
        Some(60_000),
        "failing since the first try, for health checks"
    );

    sink.set_failing(false);
    sleep(secs(60)).await;
    assert_eq!(stats.snapshot().dead_letters_failing_for_ms, None);
    assert_eq!(
        sink.len(),
        1,
        "exactly one dead letter once the sink is back"
    );
    assert_eq!(feed.acked(&tp(0)), Some(2));
    assert_eq!(script.called(), vec![1, 2]);

    running.stop().await;
    assert_eq!(feed.committed(&tp(0)), Some(2));
}

#[tokio::test(start_paused = true)]
async fn out_of_order_completion_commits_only_the_contiguous_prefix() {
    let Live {
        script,
        feed,
        running,
        ..
    } = Live::start(DispatcherConfig {
        lanes: LaneMode::Key,
        ..DispatcherConfig::default()
    });

    feed.send(record(0, 0, "slow", Ev::gated(0)));
    feed.send(record(0, 1, "a", Ev::ok(1)));
    feed.send(record(0, 2, "b", Ev::ok(2)));
    feed.send(record(0, 3, "slow", Ev::ok(3)));
    sleep(Duration::from_millis(10)).await;
    assert_eq!(
        script.called(),
        vec![0, 1, 2],
        "other keys overtake; the slow key waits"
    );
    assert_eq!(
        feed.acked(&tp(0)),
        None,
        "offsets 1 and 2 are done but 0 is not"
    );

    script.open_gate();
    sleep(Duration::from_millis(10)).await;
    assert_eq!(script.called(), vec![0, 1, 2, 3]);
    assert_eq!(feed.acked(&tp(0)), Some(4));

    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_outage_is_waited_out_past_the_retry_budget_and_never_dead_lettered() {
    // Twenty unavailable answers: far past the budget of 3 retries.
    let records = vec![
        record(0, 0, "k", Ev::failing(1, 20, Class::Unavailable)),
        record(0, 1, "k", Ev::ok(2)),
    ];
    let live = Live::start(DispatcherConfig::default());
    for r in records {
        live.feed.send(r);
    }
    sleep(secs(3)).await;
    let waiting = live.stats.snapshot();
    assert_eq!(waiting.waiting_on_unavailable, 1, "{waiting:?}");
    assert_eq!(waiting.retries, 0, "an outage spends no retry budget");
    assert_eq!(live.feed.acked(&tp(0)), None, "its lane waits");

    sleep(secs(600)).await;
    assert!(live.sink.is_empty(), "{:?}", live.sink.messages());
    let times = live.script.times_of(1);
    assert_eq!(times.len(), 21);
    let mut expected = vec![secs(1), secs(2), secs(4), secs(8), secs(16)];
    expected.resize(20, secs(30)); // capped, and without limit
    assert_eq!(gaps(&times), expected);
    assert_eq!(
        live.feed.acked(&tp(0)),
        Some(2),
        "applied, then the next one"
    );
    let done = live.stats.snapshot();
    assert_eq!((done.applied, done.unavailable_waits), (2, 20));
    assert_eq!(done.waiting_on_unavailable, 0);
    live.running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_an_outage_leaves_the_record_uncommitted() {
    let records = vec![record(
        0,
        0,
        "k",
        Ev::failing(1, u32::MAX, Class::Unavailable),
    )];
    let live = Live::start(DispatcherConfig::default());
    for r in records {
        live.feed.send(r);
    }
    sleep(secs(60)).await;
    assert!(live.sink.is_empty(), "still waiting out the outage");
    live.running.stop().await;
    assert_eq!(live.feed.acked(&tp(0)), None, "left uncommitted");
}

#[tokio::test(start_paused = true)]
async fn in_key_lanes_two_failing_keys_retry_side_by_side_and_others_flow() {
    let Live {
        script,
        sink,
        feed,
        running,
        ..
    } = Live::start(DispatcherConfig {
        lanes: LaneMode::Key,
        ..DispatcherConfig::default()
    });
    let started = Instant::now();
    feed.send(record(
        0,
        0,
        "UNKNOWN-1",
        Ev::failing(1, u32::MAX, Class::Retryable),
    ));
    feed.send(record(
        0,
        1,
        "UNKNOWN-2",
        Ev::failing(2, u32::MAX, Class::Retryable),
    ));
    feed.send(record(0, 2, "KNOWN", Ev::ok(3)));
    sleep(Duration::from_millis(1)).await;
    assert_eq!(
        script.times_of(3),
        vec![started],
        "another key is not held back"
    );

    sleep(secs(7)).await;
    let letters = sink.messages();
    assert_eq!(
        letters.len(),
        2,
        "both after 1 + 2 + 4 s, not one after the other"
    );
    for n in [1, 2] {
        assert_eq!(script.times_of(n).last().copied(), Some(started + secs(7)));
    }
    assert_eq!(feed.acked(&tp(0)), Some(3));
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_record_retrying_in_partition_0_does_not_delay_partition_1() {
    let Live {
        script,
        sink,
        feed,
        running,
        ..
    } = Live::start(DispatcherConfig::default());
    let started = Instant::now();

    feed.send(record(
        0,
        0,
        "a",
        Ev::failing(100, u32::MAX, Class::Retryable),
    ));
    feed.send(record(0, 1, "a", Ev::ok(101)));
    for offset in 0..5 {
        feed.send(record(1, offset, "b", Ev::ok(offset as u32)));
    }
    sleep(Duration::from_millis(1)).await;
    assert_eq!(feed.acked(&tp(1)), Some(5), "partition 1 is done at once");
    assert_eq!(feed.acked(&tp(0)), None);
    assert!(
        !script.called().contains(&101),
        "partition 0 keeps its order"
    );
    assert!(script.times_of(4)[0] - started < Duration::from_millis(1));

    sleep(secs(8)).await;
    assert_eq!(sink.len(), 1);
    assert_eq!(feed.acked(&tp(0)), Some(2), "then partition 0 moves on");

    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_commits_finished_work_only() {
    let Live {
        script,
        sink,
        feed,
        running,
        stats,
        ..
    } = Live::start(DispatcherConfig::default());

    feed.send(record(
        0,
        0,
        "a",
        Ev::failing(1, u32::MAX, Class::Retryable),
    ));
    feed.send(record(0, 1, "a", Ev::ok(2)));
    feed.send(record(1, 0, "b", Ev::ok(3)));
    sleep(Duration::from_millis(500)).await; // record 1 now waits for its first retry

    let stopping = Instant::now();
    running.stop().await;
    assert!(
        stopping.elapsed() < secs(1),
        "a waiting retry is abandoned, not awaited"
    );
    assert_eq!(feed.committed(&tp(1)), Some(1));
    assert_eq!(
        feed.committed(&tp(0)),
        None,
        "neither the retrying nor the queued record"
    );
    assert!(sink.is_empty(), "no dead letter for an abandoned record");
    assert_eq!(script.called(), vec![1, 3]);
    let stats = stats.snapshot();
    assert!(!stats.is_running);
    assert_eq!(stats.in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_gives_running_handlers_a_grace_period_then_leaves_them_uncommitted() {
    let Live { feed, running, .. } = Live::start(DispatcherConfig {
        shutdown_grace: secs(5),
        ..DispatcherConfig::default()
    });

    feed.send(record(0, 0, "a", Ev::ok(1)));
    feed.send(record(1, 0, "b", Ev::gated(2))); // never answers
    sleep(Duration::from_millis(1)).await;

    let stopping = Instant::now();
    running.stop().await;
    assert_eq!(stopping.elapsed(), secs(5));
    assert_eq!(feed.committed(&tp(0)), Some(1));
    assert_eq!(feed.committed(&tp(1)), None);
}

#[tokio::test(start_paused = true)]
async fn a_full_partition_is_paused_and_resumed_when_half_drained() {
    let Live {
        script,
        feed,
        running,
        stats,
        ..
    } = Live::start(DispatcherConfig {
        max_in_flight_per_partition: NonZeroUsize::new(4).unwrap(),
        ..DispatcherConfig::default()
    });

    feed.send(record(0, 0, "a", Ev::gated(0)));
    for offset in 1..10 {
        feed.send(record(0, offset, "a", Ev::ok(offset as u32)));
    }
    feed.send(record(1, 0, "b", Ev::ok(100)));
    sleep(Duration::from_millis(10)).await;
    assert!(feed.is_paused(&tp(0)));
    assert_eq!(
        stats.snapshot().in_flight,
        4,
        "the rest stays in the source"
    );
    assert_eq!(
        feed.acked(&tp(1)),
        Some(1),
        "other partitions are not held back"
    );

    script.open_gate();
    sleep(Duration::from_millis(10)).await;
    assert!(!feed.is_paused(&tp(0)));
    assert_eq!(feed.acked(&tp(0)), Some(10));
    assert_eq!(stats.snapshot().in_flight, 0);

    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn finished_records_behind_a_running_one_count_against_the_uncommitted_bound_only() {
    let Live {
        script,
        feed,
        running,
        stats,
        ..
    } = Live::start(DispatcherConfig {
        lanes: ordering_core::LaneMode::Key,
        max_in_flight_per_partition: NonZeroUsize::new(4).unwrap(),
        max_uncommitted_per_partition: NonZeroUsize::new(12),
        ..DispatcherConfig::default()
    });

    // One record waits; the others, of other keys, finish at once behind it.
    feed.send(record(0, 0, "slow", Ev::gated(0)));
    for offset in 1..11 {
        let key = format!("k{offset}");
        feed.send(record(0, offset, &key, Ev::ok(offset as u32)));
    }
    sleep(Duration::from_millis(10)).await;
    assert!(
        !feed.is_paused(&tp(0)),
        "1 held, 11 uncommitted: room for more"
    );
    assert_eq!(script.finished().len(), 10);
    assert_eq!(feed.acked(&tp(0)), None, "nothing passes the running one");

    feed.send(record(0, 11, "k11", Ev::ok(11)));
    sleep(Duration::from_millis(10)).await;
    assert!(feed.is_paused(&tp(0)), "12 uncommitted: paused");
    assert_eq!(stats.snapshot().in_flight, 1);

    script.open_gate();
    sleep(Duration::from_millis(10)).await;
    assert!(!feed.is_paused(&tp(0)));
    assert_eq!(feed.acked(&tp(0)), Some(12));

    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_revoked_partition_is_neither_continued_nor_acknowledged() {
    let Live {
        script,
        feed,
        running,
        stats,
        ..
    } = Live::start(DispatcherConfig::default());

    feed.send(record(0, 0, "a", Ev::gated(0)));
    feed.send(record(0, 1, "a", Ev::ok(1)));
    sleep(Duration::from_millis(1)).await;
    feed.revoke(vec![tp(0)]);
    sleep(Duration::from_millis(1)).await;
    script.open_gate();
    sleep(Duration::from_millis(1)).await;

    assert_eq!(script.called(), vec![0], "the queued record is dropped");
    assert_eq!(
        feed.acked(&tp(0)),
        None,
        "the finished one is not ours to commit"
    );
    assert_eq!(stats.snapshot().in_flight, 0);

    // Assigned again later, the partition starts afresh from where the source resumes.
    feed.send(record(0, 0, "a", Ev::ok(10)));
    sleep(Duration::from_millis(1)).await;
    assert_eq!(feed.acked(&tp(0)), Some(1));

    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_handler_of_a_revoked_partition_never_finishes_after_the_revocation() {
    let Live {
        script,
        feed,
        running,
        stats,
        ..
    } = Live::start(DispatcherConfig::default());
    feed.send(record(0, 0, "a", Ev::gated(0)));
    feed.send(record(1, 0, "b", Ev::gated(1)));
    sleep(Duration::from_millis(1)).await;
    assert_eq!(script.called(), vec![0, 1], "both handlers are running");

    feed.revoke(vec![tp(0)]);
    sleep(Duration::from_millis(1)).await;
    script.open_gate();
    sleep(Duration::from_millis(1)).await;
    assert_eq!(
        script.finished(),
        vec![1],
        "partition 0's handler was cancelled before its write"
    );
    assert_eq!(feed.acked(&tp(1)), Some(1), "partition 1 goes on");
    assert_eq!(feed.acked(&tp(0)), None);
    assert_eq!(stats.snapshot().in_flight, 0);
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_revoked_partitions_retry_timers_are_cancelled() {
    let Live {
        script,
        sink,
        feed,
        running,
        stats,
    } = Live::start(DispatcherConfig::default());
    feed.send(record(
        0,
        0,
        "a",
        Ev::failing(7, u32::MAX, Class::Retryable),
    ));
    feed.send(record(
        0,
        1,
        "b",
        Ev::failing(8, u32::MAX, Class::Unavailable),
    ));
    sleep(Duration::from_millis(1500)).await; // one retry each has run
    let calls = script.called().len();
    feed.revoke(vec![tp(0)]);
    sleep(secs(120)).await;
    assert_eq!(
        script.called().len(),
        calls,
        "no retry after the revocation"
    );
    assert!(sink.is_empty(), "and no dead letter");
    assert_eq!(feed.acked(&tp(0)), None);
    let snapshot = stats.snapshot();
    assert_eq!(
        (snapshot.in_flight, snapshot.waiting_on_unavailable),
        (0, 0)
    );
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn every_record_of_a_long_stream_is_processed_once_and_committed() {
    // Long enough to cross the dispatcher's intake batches many times, over three partitions,
    // with some records retrying.
    let records: Vec<_> = (0..3000u32)
        .map(|n| {
            let ev = if n % 97 == 0 {
                Ev::failing(n, 1, Class::Retryable)
            } else {
                Ev::ok(n)
            };
            record((n % 3) as i32, i64::from(n / 3), "k", ev)
        })
        .collect();
    let (script, sink, source) = run_all(records, DispatcherConfig::default()).await;

    let mut called = script.called();
    called.sort_unstable();
    called.dedup();
    assert_eq!(called, (0..3000).collect::<Vec<_>>());
    assert_eq!(
        script.calls().len(),
        3000 + 31,
        "one extra call per retried record"
    );
    assert!(sink.is_empty());
    for p in 0..3 {
        assert_eq!(source.committed(&tp(p)), Some(1000));
    }
}
