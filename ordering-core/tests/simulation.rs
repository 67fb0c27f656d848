//! A seeded, deterministic simulation of the dispatcher, checked against a reference model.
//!
//! proptest generates histories: records arriving on several partitions and keys, each with a
//! script of handler outcomes (ok, retryable, permanent, unavailable, panicking, each maybe
//! slow);
//! dead-letter sinks that go down, hang or refuse a letter as too large; revocations and
//! assignments at any moment; and an end that either drains or shuts down. Each history runs
//! on a current-thread runtime on tokio's paused clock, so it is deterministic and takes
//! milliseconds whatever its virtual minutes. The source, handler and sink below are the
//! simulated world: they check the model at every step and note each violation:
//! - an acknowledgement (what gets committed) never passes a record that is neither applied
//!   nor dead-lettered in the current assignment, never goes backwards, never comes for a
//!   partition no longer held;
//! - per key, records are applied in offset order, a record only after every earlier record
//!   of its key finished;
//! - no handler call, handler write or dead letter for a partition after its revocation
//!   returned (the dispatcher polled the source again);
//! - a record's fate is the policy's: dead-lettered only when its script has a permanent
//!   failure or more retryable ones than the budget before an ok, so `Unavailable` never
//!   dead-letters and never spends the budget, and a panic is a failure that spends it; never
//!   more handler calls than the script needs;
//! - at most `max_in_flight` records of a partition received and not committable;
//! - a drained history ends with every record of every held partition finished and
//!   committed (a paused partition that is never resumed stalls it, and fails).
//!
//! `SIM_CASES` (default 256) and `SIM_SEED` (default fixed) choose the run; a failure prints
//! its seed and the smallest history proptest shrank it to. A long run, for a nightly job:
//! `SIM_CASES=100000 SIM_SEED=$RANDOM cargo test --release -p ordering-core --test simulation`.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use ordering_core::testing::{Seeded, spawn};
use ordering_core::{
    Classify, DeadLetter, Dispatcher, DispatcherConfig, ErrorClass, Handler, LaneMode, Polled,
    Record, RecordMeta, RetryPolicy, Sink, SinkError, Source, SourceError, TopicPartition,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde::Serialize;
use tokio::sync::Notify;

const PARTITIONS: usize = 3;
const KEYS: usize = 3;
const MAX_IN_FLIGHT: usize = 4;
/// Records received and not committed: past the held bound when finished records wait behind
/// a running one.
const MAX_UNCOMMITTED: usize = 8;
const MAX_RETRIES: u32 = 2;
/// What a scripted panic says (the test's panic hook keeps these quiet).
const SCRIPTED_PANIC: &str = "scripted panic";
/// How long a drained history may run, in virtual time, before it counts as stalled.
const DRAIN_BOUND: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
enum Attempt {
    Ok,
    Retryable,
    Permanent,
    Unavailable,
    /// The handler panics: a failure like a retryable one, never the consumer's end.
    Panic,
}

/// One record: its key and what each handler call on it does (then ok), with a delay each.
#[derive(Debug, Clone, Serialize)]
struct Spec {
    key: usize,
    attempts: Vec<(Attempt, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SinkMode {
    Up,
    Down,
    /// Each publish waits 20 virtual seconds first.
    Hanging,
    /// Refuses letters that still carry their whole record (as a broker refuses one too big).
    TooLarge,
}

#[derive(Debug, Clone)]
enum Step {
    Append(usize, Spec),
    Advance(u64),
    Revoke(usize),
    Assign(usize),
    Sink(SinkMode),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Drain,
    Shutdown,
}

#[derive(Debug, Clone)]
struct History {
    steps: Vec<Step>,
    end: End,
    key_lanes: bool,
}

/// What the policy makes of a script: dead-lettered or applied, after how many calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Applied(usize),
    DeadLettered(usize),
}

fn fate(attempts: &[(Attempt, u64)]) -> Fate {
    let mut budget_spent = 0;
    for (i, (attempt, _)) in attempts.iter().enumerate() {
        match attempt {
            Attempt::Ok => return Fate::Applied(i + 1),
            Attempt::Permanent => return Fate::DeadLettered(i + 1),
            Attempt::Retryable | Attempt::Panic => {
                budget_spent += 1;
                if budget_spent > MAX_RETRIES {
                    return Fate::DeadLettered(i + 1);
                }
            }
            Attempt::Unavailable => {}
        }
    }
    Fate::Applied(attempts.len() + 1)
}

/// The event handed to the handler: the record's spec and where it came from.
#[derive(Debug, Clone, Serialize)]
struct Ev {
    partition: usize,
    offset: i64,
    generation: u32,
    spec: Spec,
}

/// The simulated world: the partitions' logs, who holds what, and everything observed.
struct World {
    logs: Vec<Vec<Spec>>,
    /// Per partition: the next offset to deliver, the assignment generation (a new one at
    /// every assignment), whether held and paused, the last acknowledgement, what is
    /// committed, and where the current generation started.
    next: Vec<i64>,
    generation: Vec<u32>,
    held: Vec<bool>,
    paused: Vec<bool>,
    acked: Vec<i64>,
    committed: Vec<i64>,
    start: Vec<i64>,
    /// Revocations to hand to the dispatcher; handed over and not yet returned; returned.
    to_revoke: Vec<usize>,
    revoking: Vec<(usize, u32)>,
    revoked: HashSet<(usize, u32)>,
    /// Handler calls per record and generation; records finished (applied or dead-lettered)
    /// per generation, and how.
    calls: HashMap<(usize, i64, u32), usize>,
    finished: HashMap<(usize, i64, u32), Fate>,
    ended: bool,
    sink: SinkMode,
    violations: Vec<String>,
}

impl World {
    fn new() -> Self {
        Self {
            logs: vec![Vec::new(); PARTITIONS],
            next: vec![0; PARTITIONS],
            generation: vec![1; PARTITIONS],
            held: vec![true; PARTITIONS],
            paused: vec![false; PARTITIONS],
            acked: vec![0; PARTITIONS],
            committed: vec![0; PARTITIONS],
            start: vec![0; PARTITIONS],
            to_revoke: Vec::new(),
            revoking: Vec::new(),
            revoked: HashSet::new(),
            calls: HashMap::new(),
            finished: HashMap::new(),
            ended: false,
            sink: SinkMode::Up,
            violations: Vec::new(),
        }
    }

    fn violation(&mut self, what: String) {
        self.violations.push(what);
    }

    fn spec(&self, partition: usize, offset: i64) -> &Spec {
        &self.logs[partition][offset as usize]
    }

    /// Books a finished record, checking that every earlier record of its key in this
    /// generation finished first.
    fn finish(&mut self, ev: &Ev, how: Fate) {
        let (p, g) = (ev.partition, ev.generation);
        for earlier in self.start[p]..ev.offset {
            if self.spec(p, earlier).key == ev.spec.key
                && !self.finished.contains_key(&(p, earlier, g))
            {
                self.violation(format!(
                    "partition {p} generation {g}: offset {} ({how:?}) finished before offset {earlier} of the same key",
                    ev.offset
                ));
            }
        }
        let expected = fate(&ev.spec.attempts);
        let same_kind = matches!(
            (how, expected),
            (Fate::Applied(_), Fate::Applied(_)) | (Fate::DeadLettered(_), Fate::DeadLettered(_))
        );
        if !same_kind {
            self.violation(format!(
                "partition {p} offset {}: {how:?}, but the policy makes it {expected:?} (script {:?})",
                ev.offset, ev.spec.attempts
            ));
        }
        if self.finished.insert((p, ev.offset, g), how).is_some() {
            self.violation(format!(
                "partition {p} offset {} finished twice in generation {g}",
                ev.offset
            ));
        }
    }

    /// Whether a partition's work of generation `g` may still run.
    fn check_live(&mut self, what: &str, p: usize, offset: i64, g: u32) {
        if self.revoked.contains(&(p, g)) {
            self.violation(format!(
                "{what} for partition {p} offset {offset} after its revocation (generation {g}) returned"
            ));
        }
    }
}

type Shared = Arc<(Mutex<World>, Notify)>;

fn lock(world: &Shared) -> MutexGuard<'_, World> {
    world.0.lock().unwrap_or_else(|e| e.into_inner())
}

fn tp(p: usize) -> TopicPartition {
    TopicPartition::new("sim", p as i32)
}

fn partition_of(tp: &TopicPartition) -> usize {
    tp.partition as usize
}

struct SimSource {
    world: Shared,
    turn: usize,
}

impl Source for SimSource {
    type Event = Ev;

    async fn next(&mut self) -> Result<Option<Polled<Ev>>, SourceError> {
        loop {
            let notified = self.world.1.notified();
            {
                let mut w = lock(&self.world);
                // Polled again: the revocations handed over before have returned.
                let returned: Vec<_> = w.revoking.drain(..).collect();
                w.revoked.extend(returned);
                if let Some(p) = w.to_revoke.pop() {
                    // As librdkafka does in its rebalance callback: commit what was
                    // acknowledged, then the partition is gone.
                    w.committed[p] = w.acked[p];
                    w.held[p] = false;
                    let g = w.generation[p];
                    w.revoking.push((p, g));
                    return Ok(Some(Polled::Revoked(vec![tp(p)])));
                }
                for i in 0..PARTITIONS {
                    let p = (self.turn + i) % PARTITIONS;
                    let offset = w.next[p];
                    if w.held[p] && !w.paused[p] && (offset as usize) < w.logs[p].len() {
                        self.turn = p + 1;
                        w.next[p] += 1;
                        let unsettled = w.next[p] - w.acked[p];
                        if unsettled > MAX_UNCOMMITTED as i64 {
                            w.violation(format!(
                                "partition {p}: {unsettled} records received and not committed, above {MAX_UNCOMMITTED}"
                            ));
                        }
                        let spec = w.spec(p, offset).clone();
                        let generation = w.generation[p];
                        let meta = RecordMeta {
                            key: Some(format!("key-{}", spec.key).into_bytes()),
                            ..RecordMeta::new(tp(p), offset)
                        };
                        // The payload names the record and its generation, so the sink can
                        // tell which assignment a letter belongs to.
                        let payload = format!("{p}:{offset}:{generation}").into_bytes();
                        let ev = Ev {
                            partition: p,
                            offset,
                            generation,
                            spec,
                        };
                        return Ok(Some(Polled::Record(Record::new(meta, payload, Ok(ev)))));
                    }
                }
                let undelivered =
                    (0..PARTITIONS).any(|p| w.held[p] && (w.next[p] as usize) < w.logs[p].len());
                if w.ended && !undelivered {
                    return Ok(None);
                }
            }
            notified.await;
        }
    }

    fn ack(&mut self, tp: &TopicPartition, next_offset: i64) {
        let p = partition_of(tp);
        let mut w = lock(&self.world);
        let g = w.generation[p];
        if !w.held[p] {
            w.violation(format!(
                "partition {p}: acknowledged {next_offset} while not held"
            ));
            return;
        }
        let before = w.acked[p];
        if next_offset < before {
            w.violation(format!(
                "partition {p}: acknowledgement went back from {before} to {next_offset}"
            ));
        }
        for offset in w.acked[p]..next_offset {
            if !w.finished.contains_key(&(p, offset, g)) {
                w.violation(format!(
                    "partition {p}: acknowledged {next_offset}, past offset {offset}, which is neither applied nor dead-lettered in generation {g}"
                ));
            }
        }
        w.acked[p] = next_offset;
    }

    fn pause(&mut self, tp: &TopicPartition) {
        lock(&self.world).paused[partition_of(tp)] = true;
    }

    fn resume(&mut self, tp: &TopicPartition) {
        lock(&self.world).paused[partition_of(tp)] = false;
        self.world.1.notify_one();
    }

    async fn commit(&mut self) -> Result<(), SourceError> {
        let mut w = lock(&self.world);
        for p in 0..PARTITIONS {
            if w.held[p] {
                w.committed[p] = w.acked[p];
            }
        }
        Ok(())
    }

    fn consumer_group(&self) -> &str {
        "simulation"
    }
}

#[derive(Debug, thiserror::Error)]
#[error("scripted {0:?}")]
struct Scripted(Attempt);

impl Classify for Scripted {
    fn class(&self) -> ErrorClass {
        match self.0 {
            Attempt::Unavailable => ErrorClass::Unavailable,
            Attempt::Permanent => ErrorClass::Permanent,
            Attempt::Retryable | Attempt::Ok | Attempt::Panic => ErrorClass::Retryable,
        }
    }
    fn kind(&self) -> &'static str {
        "Scripted"
    }
}

struct SimHandler {
    world: Shared,
}

#[async_trait]
impl Handler<Ev> for SimHandler {
    type Error = Scripted;

    async fn handle(&self, ev: &Ev, _meta: &RecordMeta) -> Result<(), Scripted> {
        let (p, offset, g) = (ev.partition, ev.offset, ev.generation);
        let (attempt, delay) = {
            let mut w = lock(&self.world);
            w.check_live("a handler call", p, offset, g);
            let calls = w.calls.entry((p, offset, g)).or_default();
            *calls += 1;
            let call = *calls;
            let needed = match fate(&ev.spec.attempts) {
                Fate::Applied(n) | Fate::DeadLettered(n) => n,
            };
            if call > needed {
                w.violation(format!(
                    "partition {p} offset {offset}: handler call {call}, the policy allows {needed} (script {:?})",
                    ev.spec.attempts
                ));
            }
            ev.spec
                .attempts
                .get(call - 1)
                .copied()
                .unwrap_or((Attempt::Ok, 0))
        };
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let mut w = lock(&self.world);
        w.check_live("a handler's write", p, offset, g);
        if attempt == Attempt::Panic {
            drop(w);
            panic!("{SCRIPTED_PANIC}");
        }
        match attempt {
            Attempt::Ok => {
                let calls = w.calls[&(p, offset, g)];
                w.finish(ev, Fate::Applied(calls));
                Ok(())
            }
            failed => Err(Scripted(failed)),
        }
    }
}

struct SimSink {
    world: Shared,
}

#[async_trait]
impl Sink<DeadLetter> for SimSink {
    async fn publish(&self, letter: &DeadLetter) -> Result<(), SinkError> {
        loop {
            let mode = lock(&self.world).sink;
            match mode {
                SinkMode::Hanging => tokio::time::sleep(Duration::from_secs(20)).await,
                SinkMode::Down => return Err(SinkError::unavailable("the sink is down")),
                SinkMode::TooLarge if letter.reduced_from.is_none() => {
                    return Err(SinkError::too_large("over the broker's limit"));
                }
                SinkMode::Up | SinkMode::TooLarge => break,
            }
        }
        let mut w = lock(&self.world);
        let (p, offset, g) = where_from(letter);
        w.check_live("a dead letter", p, offset, g);
        let Some(spec) = w
            .logs
            .get(p)
            .and_then(|log| log.get(offset as usize))
            .cloned()
        else {
            w.violation(format!("a dead letter for no record: {p}:{offset}"));
            return Ok(());
        };
        let ev = Ev {
            partition: p,
            offset,
            generation: g,
            spec,
        };
        let calls = w.calls.get(&(p, offset, g)).copied().unwrap_or(0);
        let last = ev.spec.attempts.get(calls.wrapping_sub(1)).map(|a| a.0);
        let kind = if last == Some(Attempt::Panic) {
            "HandlerPanicked"
        } else {
            "Scripted"
        };
        if letter.error_type != kind {
            w.violation(format!(
                "partition {p} offset {offset}: a letter of type {}, its last failure was {last:?}",
                letter.error_type
            ));
        }
        w.finish(&ev, Fate::DeadLettered(calls));
        Ok(())
    }

    async fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Partition, offset and generation of a letter: from its topic partition and offset, and
/// (for the generation) from the payload, or what is left of it in a reduced letter.
fn where_from(letter: &DeadLetter) -> (usize, i64, u32) {
    let text = String::from_utf8_lossy(&letter.original_value);
    let generation = text
        .rsplit(':')
        .next()
        .and_then(|g| g.parse().ok())
        .unwrap_or(0);
    (
        letter.original_partition as usize,
        letter.original_offset,
        generation,
    )
}

/// Runs one history; the violations it found, if any.
async fn simulate(history: &History) -> Vec<String> {
    let world: Shared = Arc::new((Mutex::new(World::new()), Notify::new()));
    let config = DispatcherConfig {
        retry: RetryPolicy::new(
            MAX_RETRIES,
            Duration::from_secs(1),
            2.0,
            Duration::from_secs(8),
        )
        .unwrap(),
        lanes: if history.key_lanes {
            LaneMode::Key
        } else {
            LaneMode::Partition
        },
        max_in_flight_per_partition: NonZeroUsize::new(MAX_IN_FLIGHT).unwrap(),
        max_uncommitted_per_partition: NonZeroUsize::new(MAX_UNCOMMITTED),
        shutdown_grace: Duration::from_secs(5),
        handler_latency: false,
        ..DispatcherConfig::default()
    };
    let dispatcher = Dispatcher::new(
        SimSource {
            world: world.clone(),
            turn: 0,
        },
        SimHandler {
            world: world.clone(),
        },
        SimSink {
            world: world.clone(),
        },
        config,
    );
    let mut running = Some(spawn(|stop| dispatcher.run(stop)));
    for step in &history.steps {
        {
            let mut w = lock(&world);
            match step {
                Step::Append(p, spec) => w.logs[*p].push(spec.clone()),
                Step::Advance(_) => {}
                Step::Revoke(p) => {
                    if w.held[*p] && !w.to_revoke.contains(p) {
                        w.to_revoke.push(*p);
                    }
                }
                Step::Assign(p) => {
                    if !w.held[*p] {
                        let p = *p;
                        w.generation[p] += 1;
                        w.held[p] = true;
                        w.paused[p] = false;
                        w.next[p] = w.committed[p];
                        w.acked[p] = w.committed[p];
                        w.start[p] = w.committed[p];
                    }
                }
                Step::Sink(mode) => w.sink = *mode,
            }
        }
        world.1.notify_one();
        let pause = match step {
            Step::Advance(ms) => *ms,
            _ => 1,
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    match history.end {
        End::Shutdown => {
            if let Some(running) = running.take() {
                running.stop().await;
            }
        }
        End::Drain => {
            {
                let mut w = lock(&world);
                w.ended = true;
                w.sink = SinkMode::Up;
            }
            world.1.notify_one();
            let drained = tokio::time::timeout(DRAIN_BOUND, async {
                // The source is exhausted once all is delivered; `run` returns once all it
                // gave is finished.
                while !drained(&world) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
            .await;
            if drained.is_err() {
                let w = lock(&world);
                let stuck: Vec<String> = (0..PARTITIONS)
                    .filter(|&p| w.held[p] && w.acked[p] < w.logs[p].len() as i64)
                    .map(|p| {
                        format!(
                            "partition {p} (acked {}, delivered {}, of {}, paused {})",
                            w.acked[p],
                            w.next[p],
                            w.logs[p].len(),
                            w.paused[p]
                        )
                    })
                    .collect();
                drop(w);
                lock(&world).violation(format!(
                    "not drained within {DRAIN_BOUND:?} of virtual time: {}",
                    stuck.join(", ")
                ));
            }
            if let Some(running) = running.take() {
                running.stop().await;
            }
        }
    }
    let w = lock(&world);
    w.violations.clone()
}

/// Every held partition's records all finished in its current generation and acknowledged.
fn drained(world: &Shared) -> bool {
    let w = lock(world);
    (0..PARTITIONS).all(|p| !w.held[p] || w.acked[p] == w.logs[p].len() as i64)
}

fn attempt() -> impl Strategy<Value = (Attempt, u64)> {
    (
        prop_oneof![
            4 => Just(Attempt::Ok),
            2 => Just(Attempt::Retryable),
            1 => Just(Attempt::Permanent),
            2 => Just(Attempt::Unavailable),
            1 => Just(Attempt::Panic),
        ],
        prop_oneof![3 => Just(0u64), 1 => 1..3000u64],
    )
}

fn step() -> impl Strategy<Value = Step> {
    let spec = (0..KEYS, proptest::collection::vec(attempt(), 0..5))
        .prop_map(|(key, attempts)| Spec { key, attempts });
    prop_oneof![
        8 => (0..PARTITIONS, spec).prop_map(|(p, s)| Step::Append(p, s)),
        3 => (0..6000u64).prop_map(Step::Advance),
        1 => (0..PARTITIONS).prop_map(Step::Revoke),
        1 => (0..PARTITIONS).prop_map(Step::Assign),
        1 => prop_oneof![
            Just(SinkMode::Up),
            Just(SinkMode::Down),
            Just(SinkMode::Hanging),
            Just(SinkMode::TooLarge),
        ]
        .prop_map(Step::Sink),
    ]
}

fn history() -> impl Strategy<Value = History> {
    (
        proptest::collection::vec(step(), 1..60),
        prop_oneof![3 => Just(End::Drain), 1 => Just(End::Shutdown)],
        any::<bool>(),
    )
        .prop_map(|(steps, end, key_lanes)| History {
            steps,
            end,
            key_lanes,
        })
}

#[test]
fn the_dispatcher_keeps_its_guarantees_in_every_generated_history() {
    // Scripted panics are expected by the hundred: print only the others.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<String>().map(String::as_str) != Some(SCRIPTED_PANIC) {
            default_hook(info);
        }
    }));
    let Seeded {
        mut runner,
        seed,
        cases,
    } = Seeded::new("SIM", 256);
    // Which generated case failed first (before shrinking), to tell how soon a bug shows.
    let run = std::sync::atomic::AtomicU64::new(0);
    let first_failure = std::sync::atomic::AtomicU64::new(0);
    let result = runner.run(&history(), |history| {
        let case = run.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        // A panic out of the dispatcher (its task, or `stop`) is a violation like the others.
        let violations = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(simulate(&history))
        }))
        .unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            vec![format!("panicked: {message}")]
        });
        if violations.is_empty() {
            Ok(())
        } else {
            let _ = first_failure.compare_exchange(
                0,
                case,
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            );
            Err(TestCaseError::fail(violations.join("\n")))
        }
    });
    if let Err(failure) = result {
        let first = first_failure.load(std::sync::atomic::Ordering::Relaxed);
        panic!(
            "SIM_SEED={seed}: case {first} of {cases} failed; shrunk: {failure}\n\
             replay: SIM_SEED={seed} SIM_CASES={cases} cargo test -p ordering-core --test simulation"
        );
    }
    eprintln!("{cases} histories, seed {seed}: every guarantee held");
}
