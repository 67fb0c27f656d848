//! In-memory [`Source`] and [`Sink`] for tests, examples and benchmarks (feature `testing`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::sync::mpsc;

use crate::record::{Record, TopicPartition};
use crate::sink::{Sink, SinkError};
use crate::source::{Polled, Source, SourceError};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a [`MemorySource`] was told, shared with its [`MemorySourceHandle`].
#[derive(Debug, Default)]
struct Offsets {
    acked: FxHashMap<TopicPartition, i64>,
    committed: FxHashMap<TopicPartition, i64>,
    paused: FxHashSet<TopicPartition>,
    pauses: usize,
}

/// A source fed from memory: either a fixed list of records (exhausted at its end) or a
/// live feed through a [`MemorySourceHandle`] (exhausted when the handle is dropped).
pub struct MemorySource<E> {
    queue: VecDeque<Polled<E>>,
    feed: Option<mpsc::UnboundedReceiver<Polled<E>>>,
    paused: FxHashSet<TopicPartition>,
    held: FxHashMap<TopicPartition, VecDeque<Record<E>>>,
    resumed: VecDeque<Record<E>>,
    offsets: Arc<Mutex<Offsets>>,
    group: String,
}

impl<E> std::fmt::Debug for MemorySource<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySource").finish_non_exhaustive()
    }
}

/// Feeds a live [`MemorySource`] and reads what it was told.
#[derive(Clone)]
pub struct MemorySourceHandle<E> {
    feed: mpsc::UnboundedSender<Polled<E>>,
    offsets: Arc<Mutex<Offsets>>,
}

impl<E> std::fmt::Debug for MemorySourceHandle<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySourceHandle").finish_non_exhaustive()
    }
}

impl<E> MemorySource<E> {
    /// A source that yields `records`, then is exhausted.
    pub fn from_records(records: impl IntoIterator<Item = Record<E>>) -> Self {
        Self::with_queue(records.into_iter().map(Polled::Record).collect(), None)
    }

    /// A source fed by the returned handle; it waits for more until the handle is dropped.
    pub fn live() -> (Self, MemorySourceHandle<E>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let source = Self::with_queue(VecDeque::new(), Some(rx));
        let handle = MemorySourceHandle {
            feed: tx,
            offsets: source.offsets.clone(),
        };
        (source, handle)
    }

    fn with_queue(
        queue: VecDeque<Polled<E>>,
        feed: Option<mpsc::UnboundedReceiver<Polled<E>>>,
    ) -> Self {
        Self {
            queue,
            feed,
            paused: FxHashSet::default(),
            held: FxHashMap::default(),
            resumed: VecDeque::new(),
            offsets: Arc::default(),
            group: "memory".into(),
        }
    }

    /// Names the consumer group reported in dead letters (default `memory`).
    pub fn with_group(mut self, group: &str) -> Self {
        self.group = group.to_owned();
        self
    }

    /// A handle that reads what this source was told (acknowledgements, commits, pauses).
    /// Records sent through a handle of a source made with `from_records` are never read.
    pub fn observer(&self) -> MemorySourceHandle<E> {
        let (feed, _) = mpsc::unbounded_channel();
        MemorySourceHandle {
            feed,
            offsets: self.offsets.clone(),
        }
    }
}

impl<E> MemorySourceHandle<E> {
    /// Delivers a record to the source. False if the source is gone.
    pub fn send(&self, record: Record<E>) -> bool {
        self.feed.send(Polled::Record(record)).is_ok()
    }

    /// Tells the source's consumer that it lost these partitions.
    pub fn revoke(&self, tps: Vec<TopicPartition>) -> bool {
        self.feed.send(Polled::Revoked(tps)).is_ok()
    }

    /// The last acknowledged position of `tp` (the next offset to consume).
    pub fn acked(&self, tp: &TopicPartition) -> Option<i64> {
        lock(&self.offsets).acked.get(tp).copied()
    }

    /// The position of `tp` at the last commit.
    pub fn committed(&self, tp: &TopicPartition) -> Option<i64> {
        lock(&self.offsets).committed.get(tp).copied()
    }

    /// Whether `tp` is paused now.
    pub fn is_paused(&self, tp: &TopicPartition) -> bool {
        lock(&self.offsets).paused.contains(tp)
    }

    /// How many times any partition was paused.
    pub fn pauses(&self) -> usize {
        lock(&self.offsets).pauses
    }
}

impl<E: Send + Sync + 'static> Source for MemorySource<E> {
    type Event = E;

    async fn next(&mut self) -> Result<Option<Polled<E>>, SourceError> {
        loop {
            if let Some(record) = self.resumed.pop_front() {
                return Ok(Some(Polled::Record(record)));
            }
            let polled = match self.queue.pop_front() {
                Some(polled) => polled,
                None => match self.feed.as_mut() {
                    Some(feed) => match feed.recv().await {
                        Some(polled) => polled,
                        None if self.held.is_empty() => return Ok(None),
                        // Records of paused partitions are still to come: not exhausted
                        // until they are resumed (as a consumer's paused partitions).
                        None => std::future::pending().await,
                    },
                    None if self.held.is_empty() => return Ok(None),
                    None => std::future::pending().await,
                },
            };
            match polled {
                Polled::Record(record)
                    if !self.paused.is_empty() && self.paused.contains(&record.meta.tp) =>
                {
                    let tp = record.meta.tp.clone();
                    self.held.entry(tp).or_default().push_back(record);
                }
                other => return Ok(Some(other)),
            }
        }
    }

    fn ack(&mut self, tp: &TopicPartition, next_offset: i64) {
        let mut offsets = lock(&self.offsets);
        match offsets.acked.get_mut(tp) {
            Some(acked) => *acked = next_offset,
            None => {
                offsets.acked.insert(tp.clone(), next_offset);
            }
        }
    }

    fn pause(&mut self, tp: &TopicPartition) {
        self.paused.insert(tp.clone());
        let mut offsets = lock(&self.offsets);
        offsets.paused.insert(tp.clone());
        offsets.pauses += 1;
    }

    fn resume(&mut self, tp: &TopicPartition) {
        self.paused.remove(tp);
        lock(&self.offsets).paused.remove(tp);
        if let Some(held) = self.held.remove(tp) {
            self.resumed.extend(held);
        }
    }

    async fn commit(&mut self) -> Result<(), SourceError> {
        let mut offsets = lock(&self.offsets);
        offsets.committed = offsets.acked.clone();
        Ok(())
    }

    fn consumer_group(&self) -> &str {
        &self.group
    }
}

/// Which messages a [`MemorySink`] refuses, and how.
type Refuse<M> = (Arc<dyn Fn(&M) -> bool + Send + Sync>, Refusal);

#[derive(Debug, Clone, Copy)]
enum Refusal {
    TooLarge,
    Rejected,
}

/// A sink that keeps what it is given, and can be told to fail.
pub struct MemorySink<M> {
    messages: Arc<Mutex<Vec<M>>>,
    failing: Arc<AtomicBool>,
    refuse: Arc<Mutex<Option<Refuse<M>>>>,
    attempts: Arc<AtomicUsize>,
}

impl<M> std::fmt::Debug for MemorySink<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySink")
            .field("messages", &lock(&self.messages).len())
            .field("attempts", &self.attempts.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl<M> Clone for MemorySink<M> {
    fn clone(&self) -> Self {
        Self {
            messages: self.messages.clone(),
            failing: self.failing.clone(),
            refuse: self.refuse.clone(),
            attempts: self.attempts.clone(),
        }
    }
}

impl<M> Default for MemorySink<M> {
    fn default() -> Self {
        Self {
            messages: Arc::default(),
            failing: Arc::default(),
            refuse: Arc::default(),
            attempts: Arc::default(),
        }
    }
}

impl<M: Clone> MemorySink<M> {
    /// An empty sink that takes every message.
    pub fn new() -> Self {
        Self::default()
    }

    /// While failing, every publish returns [`SinkError::Unavailable`] and keeps nothing.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Messages for which `refuse` is true get [`SinkError::TooLarge`], as a broker refuses a
    /// message that is too large.
    pub fn refuse_when(&self, refuse: impl Fn(&M) -> bool + Send + Sync + 'static) {
        *lock(&self.refuse) = Some((Arc::new(refuse), Refusal::TooLarge));
    }

    /// Messages for which `reject` is true get [`SinkError::Rejected`], as a broker refuses a
    /// message its policy or an authorisation rules out.
    pub fn reject_when(&self, reject: impl Fn(&M) -> bool + Send + Sync + 'static) {
        *lock(&self.refuse) = Some((Arc::new(reject), Refusal::Rejected));
    }

    /// Refuses nothing any more (the operator fixed the policy).
    pub fn accept_all(&self) {
        *lock(&self.refuse) = None;
    }

    /// What was published, in order.
    pub fn messages(&self) -> Vec<M> {
        lock(&self.messages).clone()
    }

    /// How many messages were published.
    pub fn len(&self) -> usize {
        lock(&self.messages).len()
    }

    /// Whether nothing was published.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls to `publish`, failed ones included.
    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl<M: Clone + Send + Sync> Sink<M> for MemorySink<M> {
    async fn publish(&self, message: &M) -> Result<(), SinkError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(SinkError::unavailable("memory sink set to fail"));
        }
        let refuse = lock(&self.refuse).clone();
        match refuse {
            Some((refuse, Refusal::TooLarge)) if refuse(message) => {
                return Err(SinkError::too_large("memory sink: message too large"));
            }
            Some((refuse, Refusal::Rejected)) if refuse(message) => {
                return Err(SinkError::rejected("memory sink refuses this message"));
            }
            _ => {}
        }
        lock(&self.messages).push(message.clone());
        Ok(())
    }

    async fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A dispatcher running in a task of its own until stopped (see [`spawn`]).
pub struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    run: tokio::task::JoinHandle<Result<(), crate::DispatchError>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").finish_non_exhaustive()
    }
}

/// A shutdown signal as [`spawn`] hands it to the dispatcher.
pub type StopSignal = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Spawns `run` — typically `|stop| dispatcher.run(stop)` — with a shutdown signal that
/// [`Running::stop`] fires.
pub fn spawn<F>(run: impl FnOnce(StopSignal) -> F) -> Running
where
    F: std::future::Future<Output = Result<(), crate::DispatchError>> + Send + 'static,
{
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(run(Box::pin(async move {
        let _ = stopped.await;
    })));
    Running { stop, run }
}

impl Running {
    /// Signals shutdown and waits for the dispatcher to finish.
    ///
    /// # Panics
    /// If the dispatcher's task panicked or it stopped with an error: this is a test helper.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        match self.run.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => panic!("the dispatcher stopped with an error: {error}"),
            Err(error) => panic!("the dispatcher task failed: {error}"),
        }
    }
}

/// A proptest runner for a generated test, the same on every run unless asked otherwise:
/// `{PREFIX}_CASES` cases (default `cases`) from the seed `{PREFIX}_SEED` (default a fixed
/// one), and no failure files. Say the seed and the case count when a case fails, so that
/// the run can be replayed (`SIM_SEED=… cargo test …`).
#[derive(Debug)]
pub struct Seeded {
    /// The runner, seeded and set to run `cases` cases.
    pub runner: proptest::test_runner::TestRunner,
    /// The seed it runs from, to report with a failure.
    pub seed: u64,
    /// The cases it runs, to report with a failure.
    pub cases: u32,
}

impl Seeded {
    /// A runner for `cases` cases from the fixed seed, unless `{prefix}_CASES` or
    /// `{prefix}_SEED` say otherwise.
    pub fn new(prefix: &str, cases: u32) -> Self {
        let number = |name: String| std::env::var(name).ok()?.parse::<u64>().ok();
        let cases = number(format!("{prefix}_CASES"))
            .map_or(cases, |n| u32::try_from(n).unwrap_or(u32::MAX));
        let seed = number(format!("{prefix}_SEED")).unwrap_or(20_261_130);
        use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
        let config = Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        };
        let mut seed_bytes = [0u8; 32];
        seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
        Self {
            runner: TestRunner::new_with_rng(
                config,
                TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
            ),
            seed,
            cases,
        }
    }
}
