//! Consuming: a consumer-group member that commits only what the dispatcher finished.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::FutureExt;
use ordering_core::{Polled, Source, SourceError, TopicPartition};
use rdkafka::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rustc_hash::FxHashMap;
use tokio::time::Instant;

use crate::codec::Codec;
use crate::convert::{TopicNames, to_record};
use crate::error::{KafkaError, is_retryable};
use crate::security::{Cluster, Connectivity};

/// How to join the consumer group.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub cluster: Cluster,
    pub group_id: String,
    pub topics: Vec<String>,
    /// How often acknowledged offsets are committed. Commits are batched: a crash may
    /// deliver up to this much finished work again (at-least-once), never skip any.
    pub commit_interval: Duration,
    /// The longest the broker may hold a fetch while it has nothing new (`fetch.wait.max.ms`).
    /// Short, so a partition resumed after a pause is fetched again soon; the cost is an empty
    /// fetch per broker at most this often while idle (200/s at the default 5 ms).
    pub fetch_wait_max: Duration,
    /// Further librdkafka properties, applied last.
    pub overrides: Vec<(String, String)>,
}

impl SourceConfig {
    pub fn new(
        cluster: impl Into<Cluster>,
        group_id: impl Into<String>,
        topics: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            cluster: cluster.into(),
            group_id: group_id.into(),
            topics: topics.into_iter().map(Into::into).collect(),
            commit_interval: Duration::from_secs(1),
            fetch_wait_max: DEFAULT_FETCH_WAIT_MAX,
            overrides: Vec::new(),
        }
    }
}

/// [`SourceConfig::fetch_wait_max`] unless set: 5 ms. Some brokers (the embedded Nisshi)
/// answer a fetch only when this wait runs out, new data or not, so it is the floor of every
/// record's latency: measured at 1 000 updates/s (`benches/latency.rs`, BENCHMARKS.md), 5 ms
/// gave p50 3.4 ms / p99 9 ms with SQLite, 20 ms p50 7 ms, 100 ms p50 27 ms; 1 ms made the
/// idle polling compete for the cores (p99 65 ms). Apache Kafka and Redpanda answer as soon as
/// data arrives, and there the wait only paces idle fetches: 500 ms (librdkafka's default)
/// saves the broker requests at no cost in latency (README, "Latency").
pub const DEFAULT_FETCH_WAIT_MAX: Duration = Duration::from_millis(5);

/// librdkafka's `fetch.queue.backoff.ms` as `KafkaSource` sets it (why: `KafkaSource::new`).
pub const FETCH_QUEUE_BACKOFF_MS: &str = "20";

/// librdkafka's `socket.timeout.ms` as `KafkaSource` sets it (why: `KafkaSource::new`).
const REQUEST_TIMEOUT_MS: &str = "10000";

/// How long a final commit may wait for the broker.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often acknowledgements are handed to librdkafka (which commits them every
/// `commit_interval`): storing is cheap but not free, so it is not done per record.
const STORE_EVERY: Duration = Duration::from_millis(100);

/// Records taken between two looks at the clock while records flow: a clock read per record
/// cost more than storing acknowledgements late by 64 records (microseconds).
const CLOCK_EVERY: u32 = 64;

/// State shared with librdkafka's rebalance callbacks, which run inside `recv()`.
#[derive(Default)]
pub(crate) struct SourceContext {
    /// The consumer group, for metrics.
    group: String,
    /// Acknowledged positions not yet handed to librdkafka.
    acks: Mutex<FxHashMap<TopicPartition, i64>>,
    /// Partitions revoked since the dispatcher was last told.
    revoked: Mutex<Vec<TopicPartition>>,
    /// `revoked` is not empty: checked per record without taking the lock.
    any_revoked: AtomicBool,
    /// Partitions this member holds now.
    assigned: Mutex<Vec<TopicPartition>>,
    /// Why the brokers refuse this consumer, if they do.
    connectivity: Connectivity,
}

fn partitions(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| TopicPartition::new(e.topic(), e.partition()))
        .collect()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl SourceContext {
    fn has_revoked(&self) -> bool {
        self.any_revoked.load(Ordering::Acquire)
    }

    /// The partitions revoked since the last call, if any.
    fn take_revoked(&self) -> Option<Vec<TopicPartition>> {
        // A load first: the swap is a locked instruction, and this is asked per record.
        if !self.any_revoked.load(Ordering::Acquire)
            || !self.any_revoked.swap(false, Ordering::AcqRel)
        {
            return None;
        }
        let revoked = std::mem::take(&mut *lock(&self.revoked));
        (!revoked.is_empty()).then_some(revoked)
    }

    /// Hands the acknowledged positions to librdkafka, to be committed.
    fn store_acks(&self, consumer: &impl Consumer<SourceContext>) {
        let acks: Vec<_> = lock(&self.acks).drain().collect();
        if acks.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::with_capacity(acks.len());
        for (tp, next_offset) in &acks {
            // A partition already revoked fails here alone; the others are still stored.
            let _ = tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*next_offset));
        }
        if let Err(error) = consumer.store_offsets(&tpl) {
            tracing::debug!(%error, "some acknowledged offsets were not stored (revoked partitions)");
        }
    }
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        crate::metrics::consumer_lag(&self.group, &statistics);
    }

    fn error(&self, error: RdError, reason: &str) {
        self.connectivity.reported(&error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        self.connectivity.logged(level, facility, message);
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            // Commit what is done before the partitions go to another member.
            self.store_acks(consumer);
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) | Err(RdError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(error) => tracing::warn!(%error, "commit on revocation failed"),
            }
            let revoked = partitions(tpl);
            tracing::info!(partitions = ?revoked, "partitions revoked");
            lock(&self.assigned).retain(|tp| !revoked.contains(tp));
            lock(&self.revoked).extend(revoked);
            self.any_revoked.store(true, Ordering::Release);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let assigned = partitions(tpl);
            tracing::info!(partitions = ?assigned, "partitions assigned");
            // librdkafka keeps the application's pause of a partition across its revocation;
            // the dispatcher forgets the partition (and that it paused it) when it is revoked,
            // so nobody would ever resume it. Each assignment starts unpaused.
            if let Err(error) = consumer.resume(tpl) {
                tracing::warn!(%error, "resuming newly assigned partitions failed");
            }
            lock(&self.assigned).extend(assigned);
        }
    }
}

/// A live view of a [`KafkaSource`], readable from other tasks.
#[derive(Clone)]
pub struct SourceStatus(Arc<SourceContext>);

impl std::fmt::Debug for SourceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceStatus").finish_non_exhaustive()
    }
}

impl SourceStatus {
    /// The partitions the source holds now, sorted.
    pub fn assigned(&self) -> Vec<TopicPartition> {
        let mut assigned = lock(&self.0.assigned).clone();
        assigned.sort();
        assigned
    }
}

/// A [`Source`] over a Kafka consumer group, decoding values with a [`Codec`].
///
/// Offsets are stored only when the dispatcher acknowledges them
/// (`enable.auto.offset.store=false`) and committed in batches, with a synchronous commit on
/// revocation and on [`Source::commit`].
pub struct KafkaSource<E, C> {
    consumer: Arc<StreamConsumer<SourceContext>>,
    codec: C,
    group: String,
    topics: TopicNames,
    /// A record received while a revocation was pending: the revocation is reported first.
    stash: Option<ordering_core::Record<E>>,
    /// When acknowledgements are next handed to librdkafka.
    next_store: Instant,
    /// Records to take before the clock is read again.
    until_clock: u32,
    _event: PhantomData<fn() -> E>,
}

impl<E, C> std::fmt::Debug for KafkaSource<E, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl<E, C> Drop for KafkaSource<E, C> {
    fn drop(&mut self) {
        // Closing leaves the group, which waits for the coordinator: with the broker down
        // that can take minutes. Close on a thread of its own, off the async runtime, so a
        // shutting-down service is not held up (process exit ends the thread).
        let consumer = self.consumer.clone();
        let _ = std::thread::Builder::new()
            .name("kafka-consumer-close".into())
            .spawn(move || drop(consumer));
    }
}

impl<E, C: Codec<E>> KafkaSource<E, C> {
    pub fn new(config: &SourceConfig, codec: C) -> Result<Self, KafkaError> {
        let mut client = config.cluster.client_config();
        client
            .set("group.id", &config.group_id)
            .set("enable.auto.commit", "true")
            .set(
                "auto.commit.interval.ms",
                config.commit_interval.as_millis().max(1).to_string(),
            )
            .set("enable.auto.offset.store", "false")
            // Eager rebalancing, on purpose: every rebalance revokes everything, the
            // dispatcher drops and cancels all it holds, and what each member gets is fetched
            // from the last commit. Round-robin spreads the partitions of all the topics
            // evenly over the members (range would give one member every topic's first
            // partition). cooperative-sticky would move fewer partitions; it needs incremental
            // assignment from the broker and client, not tested here yet.
            .set("partition.assignment.strategy", "roundrobin")
            // The commit on revocation is synchronous and runs in librdkafka's rebalance
            // callback, on the thread polling the consumer (a runtime worker): a request
            // bound of 10 s (librdkafka's default is 60 s) bounds how long it can block.
            .set("socket.timeout.ms", REQUEST_TIMEOUT_MS)
            .set("auto.offset.reset", "earliest")
            // librdkafka (2.4+) waits a full second before fetching again once its prefetch
            // queue was over its bounds: a consumer slower than the broker then stalls for a
            // second at every refill. A short wait keeps the queue fed at no real cost.
            .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
            // A partition resumed after a backpressure pause is fetched again only once the
            // fetch already waiting at the broker (for the partitions with nothing new, for up
            // to this long) has returned: librdkafka keeps one fetch per broker in flight. At
            // librdkafka's 500 ms, a consumer whose handler is slower than the broker stalled
            // half a second per pause (a store-backed drain ran at 6 k/s instead of 290 k/s).
            .set(
                "fetch.wait.max.ms",
                config.fetch_wait_max.as_millis().max(1).to_string(),
            )
            // Consumer lag per partition, for metrics.
            .set(
                "statistics.interval.ms",
                crate::metrics::STATISTICS_INTERVAL_MS,
            );
        crate::metrics::describe();
        for (key, value) in &config.overrides {
            client.set(key, value);
        }
        let consumer: StreamConsumer<SourceContext> = client
            .create_with_context(SourceContext {
                group: config.group_id.clone(),
                connectivity: Connectivity::of(&config.cluster),
                ..SourceContext::default()
            })
            .map_err(KafkaError::client("creating the consumer"))?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(KafkaError::client("subscribing"))?;
        Ok(Self {
            consumer: Arc::new(consumer),
            codec,
            group: config.group_id.clone(),
            topics: TopicNames::default(),
            stash: None,
            next_store: Instant::now() + STORE_EVERY,
            until_clock: CLOCK_EVERY,
            _event: PhantomData,
        })
    }

    pub fn status(&self) -> SourceStatus {
        SourceStatus(self.consumer.context().clone())
    }

    /// Hands the acknowledgements to librdkafka when `STORE_EVERY` has passed.
    fn store_if_due(&mut self) {
        let now = Instant::now();
        if now >= self.next_store {
            self.consumer.context().store_acks(&*self.consumer);
            self.next_store = now + STORE_EVERY;
        }
    }

    fn partition_list(tp: &TopicPartition) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::with_capacity(1);
        tpl.add_partition(&tp.topic, tp.partition);
        tpl
    }
}

impl<E, C> Source for KafkaSource<E, C>
where
    E: Send + Sync + 'static,
    C: Codec<E> + 'static,
{
    type Event = E;

    async fn next(&mut self) -> Result<Option<Polled<E>>, SourceError> {
        loop {
            if let Some(revoked) = self.consumer.context().take_revoked() {
                return Ok(Some(Polled::Revoked(revoked)));
            }
            if let Some(record) = self.stash.take() {
                return Ok(Some(Polled::Record(record)));
            }
            // Acknowledgements are stored on a clock checked here rather than by a timer
            // polled per record, which would cost more than the record itself.
            self.until_clock -= 1;
            if self.until_clock == 0 {
                self.until_clock = CLOCK_EVERY;
                self.store_if_due();
            }
            // A record librdkafka already holds is taken without arming a timer.
            let received = match self.consumer.recv().now_or_never() {
                Some(received) => received,
                None => {
                    self.store_if_due();
                    tokio::select! {
                        biased;
                        received = self.consumer.recv() => received,
                        // Idle: wake up to store what was acknowledged meanwhile.
                        () = tokio::time::sleep_until(self.next_store) => continue,
                    }
                }
            };
            match received {
                Ok(message) => {
                    let record = to_record(&message, &self.codec, &mut self.topics);
                    drop(message);
                    if self.consumer.context().has_revoked() {
                        // Rebalance callbacks run inside `recv`: partitions it revoked are
                        // reported before this record. Reported after, the dispatcher could
                        // take older records for a fresh start of their partition.
                        self.stash = Some(record);
                        continue;
                    }
                    return Ok(Some(Polled::Record(record)));
                }
                // librdkafka reconnects by itself; the error is only news.
                Err(error) if is_retryable(&error) => {
                    tracing::warn!(%error, "consumer error; librdkafka keeps trying");
                }
                Err(error) => return Err(SourceError::receive(error)),
            }
        }
    }

    fn ack(&mut self, tp: &TopicPartition, next_offset: i64) {
        let mut acks = lock(&self.consumer.context().acks);
        match acks.get_mut(tp) {
            Some(position) => *position = next_offset,
            None => {
                acks.insert(tp.clone(), next_offset);
            }
        }
    }

    fn pause(&mut self, tp: &TopicPartition) {
        if let Err(error) = self.consumer.pause(&Self::partition_list(tp)) {
            tracing::warn!(%tp, %error, "pausing failed");
        }
    }

    fn resume(&mut self, tp: &TopicPartition) {
        if let Err(error) = self.consumer.resume(&Self::partition_list(tp)) {
            tracing::warn!(%tp, %error, "resuming failed");
        }
    }

    async fn commit(&mut self) -> Result<(), SourceError> {
        self.consumer.context().store_acks(&*self.consumer);
        let consumer = self.consumer.clone();
        // A synchronous commit blocks its thread until the broker answers, and a broker that
        // is down may never answer: bound the wait.
        let commit =
            tokio::task::spawn_blocking(move || consumer.commit_consumer_state(CommitMode::Sync));
        let committed = tokio::time::timeout(COMMIT_TIMEOUT, commit)
            .await
            .map_err(|_| SourceError::CommitTimeout(COMMIT_TIMEOUT))?
            .map_err(SourceError::commit)?;
        match committed {
            Ok(()) | Err(RdError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            Err(error) => Err(SourceError::commit(error)),
        }
    }

    fn consumer_group(&self) -> &str {
        &self.group
    }
}
