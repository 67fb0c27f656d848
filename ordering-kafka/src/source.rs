//! Consuming: a consumer-group member that commits only what the dispatcher finished.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::FutureExt;
use ordering_core::{Polled, Record, Source, SourceError, TopicIncarnations, TopicPartition};
use rdkafka::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rustc_hash::FxHashMap;
use tokio::time::Instant;

use crate::codec::Codec;
use crate::convert::{TopicNames, to_record};
use crate::error::{KafkaError, is_retryable};
use crate::parking::{PARKED_BYTES_PER_PARTITION, Parking};
use crate::security::{Cluster, Connectivity};

/// How to join the consumer group.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// The brokers, and how the consumer gets in.
    pub cluster: Cluster,
    /// The consumer group (`group.id`): its members share the topics' partitions, and its
    /// committed offsets are where a member resumes.
    pub group_id: String,
    /// The topics subscribed to.
    pub topics: Vec<String>,
    /// How often acknowledged offsets are committed. Commits are batched: a crash may
    /// deliver up to this much finished work again (at-least-once), never skip any.
    pub commit_interval: Duration,
    /// The longest the broker may hold a fetch while it has nothing new (`fetch.wait.max.ms`).
    /// Short, so a partition resumed after a pause is fetched again soon; the cost is an empty
    /// fetch per broker at most this often while idle (200/s at the default 5 ms).
    pub fetch_wait_max: Duration,
    /// The bytes of records the source keeps per partition the dispatcher paused (at its
    /// in-flight bound) before it pauses the partition in librdkafka, which drops what it
    /// prefetched and fetches again only after up to a second. Counted as key, payload and
    /// headers plus 256 bytes a record. Default [`PARKED_BYTES_PER_PARTITION`].
    pub max_parked_bytes_per_partition: usize,
    /// Further librdkafka properties, applied last.
    pub overrides: Vec<(String, String)>,
}

impl SourceConfig {
    /// Joins `group_id` on `topics`, with the defaults for the rest: a commit every second,
    /// [`DEFAULT_FETCH_WAIT_MAX`], [`PARKED_BYTES_PER_PARTITION`], no overrides.
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
            max_parked_bytes_per_partition: PARKED_BYTES_PER_PARTITION,
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

/// How long reading the topics' ids may take.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a final commit may wait for the broker.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often acknowledgements are handed to librdkafka (which commits them every
/// `commit_interval`): storing is cheap but not free, so it is not done per record.
const STORE_EVERY: Duration = Duration::from_millis(100);

/// Records taken between two looks at the clock while records flow: a clock read per record
/// cost more than storing acknowledgements late by 64 records (microseconds).
const CLOCK_EVERY: u32 = 64;

/// The first wait after a codec could not fetch what a record needs (a registry down), and
/// the longest: the waits double in between.
const FIRST_FETCH_WAIT: Duration = Duration::from_millis(250);
const MAX_FETCH_WAIT: Duration = Duration::from_secs(10);

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
    /// Assignments so far: each may bring partitions of a topic created again meanwhile.
    assignments: AtomicU64,
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
            self.assignments.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// What a source knows of its topics' incarnations.
struct Incarnations {
    registry: Arc<dyn TopicIncarnations>,
    /// The number of each subscribed topic's incarnation.
    of_topic: FxHashMap<Arc<str>, u32>,
    /// The assignment `of_topic` was read after; `None` before the first read.
    resolved_at: Option<u64>,
    /// A partition's offsets went backwards since: read again.
    stale: bool,
    /// What the watcher compares the brokers' ids with.
    watch: Arc<IdWatch>,
    /// The watcher's count of changes when the ids were last read.
    changes_seen: u64,
    /// The watcher runs.
    watching: bool,
    /// The offset last handed out per partition since then.
    last_offset: FxHashMap<TopicPartition, i64>,
    /// When to try again after a failed read.
    retry_at: Option<Instant>,
}

/// The topics' ids as the source last read them, and whether the brokers give others now.
#[derive(Default)]
struct IdWatch {
    read: Mutex<FxHashMap<String, String>>,
    /// Times the watcher found an id other than the one read.
    changes: AtomicU64,
    /// Wakes an idle source at each change.
    wake: tokio::sync::Notify,
}

/// How often the ids of the subscribed topics are read, to notice a topic created again while
/// its partitions stay assigned. librdkafka sees the new id but keeps fetching from the old
/// topic's position (`rdkafka_topic.c`: "an offset reset must be triggered"): a broker that
/// does not answer that position with "out of range" would have the consumer skip the new
/// topic's records up to it.
const WATCH_EVERY: Duration = Duration::from_secs(5);

/// The ids of `topics` as the brokers give them now, read on a blocking thread.
async fn describe(
    consumer: Arc<StreamConsumer<SourceContext>>,
    topics: Vec<String>,
) -> Result<Vec<(String, String)>, String> {
    tokio::task::spawn_blocking(move || {
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        crate::topic_id::describe(consumer.client(), &topics, DESCRIBE_TIMEOUT)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("the task describing the topics failed: {e}"))?
}

/// Reads the ids of `topics` every [`WATCH_EVERY`] and flags `watch` when one differs from
/// what the source read, until the consumer is gone.
async fn watch_topic_ids(
    consumer: std::sync::Weak<StreamConsumer<SourceContext>>,
    topics: Vec<String>,
    watch: Arc<IdWatch>,
) {
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let Some(consumer) = consumer.upgrade() else {
            return;
        };
        // A failed read is tried again at the next round; the consumer reports outages. A
        // topic deleted and not created yet is no news.
        let Ok(ids) = describe(consumer, topics.clone()).await else {
            continue;
        };
        let changed = {
            let read = lock(&watch.read);
            ids.iter()
                .any(|(topic, id)| read.get(topic).is_some_and(|before| before != id))
        };
        if changed {
            watch.changes.fetch_add(1, Ordering::AcqRel);
            watch.wake.notify_one();
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
    /// A record received and not yet handed out: a revocation pending is reported first, and
    /// the incarnation of its topic may have to be resolved first.
    stash: Option<Record<E>>,
    /// The stashed record is still to be decoded: its codec must fetch something first (a
    /// registry's writer schema), which the loop awaits, and retries, before handing it out.
    undecoded: bool,
    /// How long to wait before fetching again after a fetch failed; doubled each time.
    fetch_wait: Duration,
    /// The fetch the stashed record waits for, kept across cancelled polls.
    fetching: Option<crate::Fetch>,
    /// Partitions held back after a fetch failed: paused, their position set back to the
    /// record that could not be decoded, until when. The other partitions go on, and the
    /// consumer keeps polling (its group membership and rebalances with it).
    held: Vec<(TopicPartition, Instant)>,
    /// The partitions the dispatcher paused, and their records parked meanwhile.
    parking: Parking<E>,
    /// Which incarnation of its topic each record is in, when the source was given a
    /// registry ([`KafkaSource::with_incarnations`]).
    incarnations: Option<Incarnations>,
    /// The topics subscribed to.
    subscribed: Vec<String>,
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
    /// A member of `config.group_id` subscribed to `config.topics`, decoding with `codec`; it
    /// joins the group once polled. Sets eager round-robin rebalancing,
    /// `auto.offset.reset=earliest` and [`FETCH_QUEUE_BACKOFF_MS`] (librdkafka's 1 s default
    /// stalls a consumer slower than the broker at every refill), then the overrides. Fails
    /// only on a configuration librdkafka refuses.
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
            undecoded: false,
            fetch_wait: FIRST_FETCH_WAIT,
            fetching: None,
            held: Vec::new(),
            parking: Parking::new(config.max_parked_bytes_per_partition),
            incarnations: None,
            subscribed: config.topics.clone(),
            next_store: Instant::now() + STORE_EVERY,
            until_clock: CLOCK_EVERY,
            _event: PhantomData,
        })
    }

    /// Stamps each record with the incarnation of its topic ([`Record`]'s
    /// `meta.incarnation`), numbered by `registry` from the topic ids the brokers give: a
    /// topic deleted and created again under its name gets the next number, so its records
    /// are ordered after every record of the topic it replaced (`ordering_core::Position`).
    ///
    /// The ids are read when the source starts reading, after every assignment, and whenever
    /// a partition's offsets go backwards; until they are, records wait (retrying each
    /// second), as they would for a store that is down. Without a registry every record is in
    /// the topic's first incarnation, and a re-created topic's records at offsets already
    /// applied are taken for redeliveries.
    pub fn with_incarnations(mut self, registry: Arc<dyn TopicIncarnations>) -> Self {
        self.incarnations = Some(Incarnations {
            registry,
            of_topic: FxHashMap::default(),
            resolved_at: None,
            stale: false,
            watch: Arc::default(),
            changes_seen: 0,
            watching: false,
            last_offset: FxHashMap::default(),
            retry_at: None,
        });
        self
    }

    /// A live view of what the source holds, for other tasks (a health endpoint, say).
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

    /// Whether the watcher saw the topics' ids change since they were last read; starts the
    /// watcher on the first call.
    fn ids_changed(&mut self) -> bool {
        let Some(incarnations) = self.incarnations.as_mut() else {
            return false;
        };
        if !incarnations.watching {
            incarnations.watching = true;
            tokio::spawn(watch_topic_ids(
                Arc::downgrade(&self.consumer),
                self.subscribed.clone(),
                incarnations.watch.clone(),
            ));
        }
        incarnations.watch.changes.load(Ordering::Acquire) != incarnations.changes_seen
    }

    /// Holds `record`'s partition back after its codec could not fetch what its decode needs
    /// (a schema registry down: the world's fault, never a dead letter): paused, its position
    /// set back to the record, for a wait that doubles each time. The record comes again
    /// once the wait is over; the other partitions go on meanwhile.
    fn hold(&mut self, record: &Record<E>, error: &crate::FetchError) {
        let tp = record.meta.tp.clone();
        metrics::counter!("schema_fetch_failures_total").increment(1);
        tracing::warn!(%tp, offset = record.meta.offset, %error, retry_in = ?self.fetch_wait, "cannot fetch the record's writer schema; its partition waits");
        let list = Self::partition_list(&tp);
        if let Err(error) = self.consumer.pause(&list) {
            tracing::warn!(%tp, %error, "pausing failed");
        }
        let offset = Offset::Offset(record.meta.offset);
        if let Err(error) = self
            .consumer
            .seek(&tp.topic, tp.partition, offset, Duration::ZERO)
        {
            tracing::warn!(%tp, %error, "seeking back failed");
        }
        self.held.push((tp, Instant::now() + self.fetch_wait));
        self.fetch_wait = (self.fetch_wait * 2).min(MAX_FETCH_WAIT);
        self.undecoded = false;
    }

    /// Resumes the held partitions whose wait is over (unless paused in librdkafka for their
    /// parked records).
    fn release_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut still = Vec::with_capacity(self.held.len());
        for (tp, until) in std::mem::take(&mut self.held) {
            if until > now {
                still.push((tp, until));
            } else if !self.parking.holds_fetch(&tp)
                && let Err(error) = self.consumer.resume(&Self::partition_list(&tp))
            {
                tracing::warn!(%tp, %error, "resuming failed");
            }
        }
        self.held = still;
    }

    /// Parks `record` of a paused partition; pauses the partition in librdkafka when its
    /// parked records reach the bound.
    fn park(&mut self, record: Record<E>) {
        let tp = record.meta.tp.clone();
        if self.parking.park(record)
            && let Err(error) = self.consumer.pause(&Self::partition_list(&tp))
        {
            tracing::warn!(%tp, %error, "pausing failed");
        }
    }

    /// Lets librdkafka fetch `tp` again, unless it is held for its codec.
    fn fetch_again(&self, tp: &TopicPartition) {
        if !self.held.iter().any(|(held, _)| held == tp)
            && let Err(error) = self.consumer.resume(&Self::partition_list(tp))
        {
            tracing::warn!(%tp, %error, "resuming failed");
        }
    }

    /// When the first held partition is due, if any.
    fn next_release(&self) -> Option<Instant> {
        self.held.iter().map(|(_, until)| *until).min()
    }

    /// Sets `record`'s incarnation; `false` when the topics' incarnations must be resolved
    /// first.
    fn stamp(&mut self, record: &mut Record<E>) -> bool {
        let Some(incarnations) = self.incarnations.as_mut() else {
            return true;
        };
        let assignments = self.consumer.context().assignments.load(Ordering::Acquire);
        if incarnations.resolved_at != Some(assignments) || incarnations.stale {
            return false;
        }
        let meta = &mut record.meta;
        let Some(&incarnation) = incarnations.of_topic.get(&*meta.tp.topic) else {
            return false;
        };
        match incarnations.last_offset.get_mut(&meta.tp) {
            // Backwards without a revocation: the log was truncated, or the topic created
            // again under this member's feet. Which one, its id tells.
            Some(last) if meta.offset <= *last => {
                incarnations.stale = true;
                return false;
            }
            Some(last) => *last = meta.offset,
            None => {
                incarnations
                    .last_offset
                    .insert(meta.tp.clone(), meta.offset);
            }
        }
        meta.incarnation = incarnation;
        true
    }

    /// Reads the subscribed topics' ids and their incarnations' numbers. On failure, says
    /// so and leaves the next try for a second later. Cancel-safe: nothing changes before
    /// the end.
    async fn resolve(&mut self) {
        let Some(incarnations) = self.incarnations.as_mut() else {
            return;
        };
        if let Some(at) = incarnations.retry_at {
            tokio::time::sleep_until(at).await;
        }
        // Taken first: a change seen while reading is read again.
        let changes = incarnations.watch.changes.load(Ordering::Acquire);
        let assignments = self.consumer.context().assignments.load(Ordering::Acquire);
        let described = describe(self.consumer.clone(), self.subscribed.clone()).await;
        let mut numbered = FxHashMap::default();
        let resolved = match described {
            Err(error) => Err(error),
            Ok(ids) => {
                let mut failed = None;
                for (topic, id) in ids {
                    match incarnations.registry.incarnation(&topic, &id).await {
                        Ok(n) => {
                            numbered.insert(Arc::<str>::from(topic), (n, id));
                        }
                        Err(error) => {
                            failed = Some(format!("numbering the incarnation of {topic}: {error}"));
                            break;
                        }
                    }
                }
                failed.map_or(Ok(()), Err)
            }
        };
        if let Err(error) = resolved {
            tracing::warn!(%error, "cannot tell which incarnation of its topics the consumer reads; its records wait");
            incarnations.retry_at = Some(Instant::now() + Duration::from_secs(1));
            return;
        }
        // Partitions this member went on fetching from the old topic's position (no
        // assignment since it last read the ids) start over from the new topic's beginning.
        let same_assignment = incarnations.resolved_at == Some(assignments);
        let mut restarted = Vec::new();
        for (topic, (n, id)) in &numbered {
            match incarnations.of_topic.get(topic) {
                Some(before) if before == n => {}
                Some(before) => {
                    tracing::warn!(
                        %topic, topic_id = %id, incarnation = n, before,
                        "topic was created again: its records are ordered after every record of the topic it replaced"
                    );
                    if same_assignment {
                        restarted.push(topic.clone());
                    }
                }
                None => tracing::info!(%topic, topic_id = %id, incarnation = n, "reading topic"),
            }
        }
        let missing: Vec<&String> = (self.subscribed.iter())
            .filter(|t| !numbered.contains_key(t.as_str()))
            .collect();
        // A record of a topic not described yet (its metadata still spreading) waits for the
        // next read; the others go on.
        incarnations.retry_at = (!missing.is_empty()).then(|| {
            tracing::info!(topics = ?missing, "topics not described by the brokers (yet)");
            Instant::now() + Duration::from_secs(1)
        });
        let ids_read: Vec<(String, String)> = (numbered.iter())
            .map(|(topic, (_, id))| (topic.to_string(), id.clone()))
            .collect();
        // A topic not described keeps its number: deleted, it is compared with its successor.
        incarnations
            .of_topic
            .extend(numbered.into_iter().map(|(t, (n, _))| (t, n)));
        incarnations.last_offset.clear();
        incarnations.resolved_at = Some(assignments);
        incarnations.stale = false;
        incarnations.changes_seen = changes;
        lock(&incarnations.watch.read).extend(ids_read);
        if !restarted.is_empty() {
            self.start_over(&restarted);
        }
    }

    /// Starts this member's partitions of `topics`, created again, over from the beginning
    /// of the new topic: what was fetched, held or acknowledged of the old one is dropped (its
    /// offsets mean nothing in the new one), and the dispatcher is told they were revoked, so
    /// it takes them afresh.
    fn start_over(&mut self, topics: &[Arc<str>]) {
        let context = self.consumer.context();
        let partitions: Vec<TopicPartition> = lock(&context.assigned)
            .iter()
            .filter(|tp| topics.contains(&tp.topic))
            .cloned()
            .collect();
        tracing::warn!(
            ?partitions,
            "partitions start over from the beginning of the topic created again"
        );
        lock(&context.acks).retain(|tp, _| !partitions.contains(tp));
        if self
            .stash
            .as_ref()
            .is_some_and(|r| topics.contains(&r.meta.tp.topic))
        {
            self.stash = None; // fetched from the old topic's position: read again
            self.undecoded = false;
            self.fetching = None;
        }
        let mut tpl = TopicPartitionList::with_capacity(partitions.len());
        for tp in &partitions {
            // The seek drops what librdkafka fetched before it; the stored offset is put back
            // to the start, so the old topic's position is never committed for the new one.
            let _ = tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(0));
            if let Err(error) =
                self.consumer
                    .seek(&tp.topic, tp.partition, Offset::Beginning, Duration::ZERO)
            {
                tracing::warn!(%tp, %error, "seeking to the beginning failed");
            }
        }
        if let Err(error) = self.consumer.store_offsets(&tpl) {
            tracing::warn!(%error, "resetting the stored offsets failed");
        }
        // The dispatcher forgets that it paused them, as at a revocation.
        if let Err(error) = self.consumer.resume(&tpl) {
            tracing::warn!(%error, "resuming the partitions started over failed");
        }
        lock(&context.revoked).extend(partitions);
        context.any_revoked.store(true, Ordering::Release);
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
                self.held.retain(|(tp, _)| !revoked.contains(tp));
                self.parking.revoke(&revoked);
                return Ok(Some(Polled::Revoked(revoked)));
            }
            if self.ids_changed() {
                self.resolve().await;
                continue;
            }
            self.release_held();
            if let (Some(record), fetch) = self.parking.unpark() {
                if let Some(tp) = fetch {
                    self.fetch_again(&tp);
                }
                return Ok(Some(Polled::Record(record)));
            }
            if let Some(mut record) = self.stash.take() {
                if self.undecoded {
                    if self.fetching.is_none() {
                        self.fetching = self.codec.prepare(&record.payload);
                    }
                    if let Some(fetch) = self.fetching.as_mut() {
                        // Both kept while fetching: a poll cancelled here loses nothing and
                        // resumes the same fetch.
                        self.stash = Some(record);
                        let fetched = fetch.await;
                        self.fetching = None;
                        let Some(waiting) = self.stash.take() else {
                            continue;
                        };
                        record = waiting;
                        if let Err(error) = fetched {
                            self.hold(&record, &error);
                            continue;
                        }
                        // Answered, with the schema or without it (then the decode says
                        // the record is at fault): decoded now, not fetched again.
                    }
                    self.fetch_wait = FIRST_FETCH_WAIT;
                    self.undecoded = false;
                    record.event = self.codec.decode(&record.payload);
                }
                if self.stamp(&mut record) {
                    if self.parking.is_paused(&record.meta.tp) {
                        self.park(record);
                        continue;
                    }
                    return Ok(Some(Polled::Record(record)));
                }
                self.stash = Some(record);
                self.resolve().await;
                continue;
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
                    let watch = self.incarnations.as_ref().map(|i| i.watch.clone());
                    let ids_changed = async {
                        match watch {
                            Some(watch) => watch.wake.notified().await,
                            None => std::future::pending().await,
                        }
                    };
                    let release = self.next_release();
                    let held_due = async {
                        match release {
                            Some(at) => tokio::time::sleep_until(at).await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        biased;
                        received = self.consumer.recv() => received,
                        // A partition held for its codec is due to be tried again.
                        () = held_due => continue,
                        // Idle: wake up to store what was acknowledged meanwhile.
                        () = tokio::time::sleep_until(self.next_store) => continue,
                        // A topic created again may bring no record at all (see WATCH_EVERY).
                        () = ids_changed => continue,
                    }
                }
            };
            match received {
                Ok(message) => {
                    // A record whose decode needs a fetch first is decoded once it is done.
                    self.fetching = message.payload().and_then(|p| self.codec.prepare(p));
                    self.undecoded = self.fetching.is_some();
                    let record =
                        to_record(&message, &self.codec, &mut self.topics, !self.undecoded);
                    drop(message);
                    // Handed out from the stash, at the top of the loop: rebalance callbacks
                    // run inside `recv`, and partitions it revoked are reported before this
                    // record. Reported after, the dispatcher could take older records for a
                    // fresh start of their partition.
                    self.stash = Some(record);
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

    /// Parks what arrives for `tp` from now on: librdkafka goes on fetching it until
    /// [`SourceConfig::max_parked_bytes_per_partition`] is parked.
    fn pause(&mut self, tp: &TopicPartition) {
        self.parking.pause(tp);
    }

    fn resume(&mut self, tp: &TopicPartition) {
        if self.parking.resume(tp) {
            self.fetch_again(tp);
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
