//! Reading topics outside any consumer group: a whole topic start to end ([`read_topic`]),
//! or one bounded page at a time from a [`Cursor`] ([`read_page`]), for the DLQ endpoints
//! and for listing a topic's keys.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ordering_core::Record;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::codec::Codec;
use crate::convert::{TopicNames, to_record};
use crate::error::KafkaError;
use crate::security::{Cluster, Connectivity};

/// Every record of `topic` from each partition's start to its end offset as of the call, in
/// partition then offset order, decoded with `codec` (a record that does not decode comes
/// with its `DecodeError`). A topic that does not exist has no records.
pub async fn read_topic<M, C>(
    cluster: impl Into<Cluster>,
    topic: &str,
    codec: C,
    timeout: Duration,
) -> Result<Vec<Record<M>>, KafkaError>
where
    M: Send + 'static,
    C: Codec<M> + 'static,
{
    let cluster = cluster.into();
    let topic = topic.to_owned();
    // librdkafka's metadata, watermark and poll calls block their thread.
    tokio::task::spawn_blocking(move || read_blocking(&cluster, &topic, &codec, timeout))
        .await
        .map_err(|_| KafkaError::Timeout {
            operation: "reading a topic",
            after: timeout,
        })?
}

/// What librdkafka may prefetch per reader, in KiB: its default (64 MiB per client) times a
/// few concurrent scans is hundreds of MB for records a scan looks at once and drops.
const READER_QUEUE_KB: &str = "1024";
/// The most bytes one fetch brings back to a reader (the broker's default message limit is
/// 1 MB, well below).
const READER_FETCH_BYTES: &str = "1048576";
/// How long librdkafka waits before fetching again once a reader's queue is at
/// [`READER_QUEUE_KB`]: its default (1 s) stalled every page that filled the small queue (a
/// dead-letter page's p99 was 1 s, a 10 000-record search 3 s); a scan drains its queue in
/// milliseconds.
const READER_QUEUE_BACKOFF_MS: &str = "5";
/// Idle readers kept per broker address for the next scan: creating one costs a client and
/// its threads; more than this idle is memory for nothing.
const IDLE_READERS: usize = 4;

/// Readers not in use, by cluster, for the next scan to take.
static IDLE: std::sync::Mutex<Vec<(Cluster, BaseConsumer<Connectivity>)>> =
    std::sync::Mutex::new(Vec::new());

/// A reader outside any group, taken from the idle ones or created; [`Reader::drop`] gives it
/// back.
struct Reader {
    cluster: Cluster,
    consumer: Option<BaseConsumer<Connectivity>>,
}

impl Reader {
    fn take(cluster: &Cluster) -> Result<Self, KafkaError> {
        let idle = {
            let mut idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
            idle.iter()
                .position(|(c, _)| c == cluster)
                .map(|i| idle.swap_remove(i).1)
        };
        let consumer = match idle {
            Some(consumer) => consumer,
            None => cluster
                .client_config()
                .set("group.id", "ordering-topic-reader") // required by librdkafka; nothing is committed
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("queued.max.messages.kbytes", READER_QUEUE_KB)
                .set("fetch.max.bytes", READER_FETCH_BYTES)
                .set("fetch.queue.backoff.ms", READER_QUEUE_BACKOFF_MS)
                .create_with_context(Connectivity::of(cluster))
                .map_err(KafkaError::client("creating the reader"))?,
        };
        Ok(Self {
            cluster: cluster.clone(),
            consumer: Some(consumer),
        })
    }
}

impl std::ops::Deref for Reader {
    type Target = BaseConsumer<Connectivity>;
    fn deref(&self) -> &BaseConsumer<Connectivity> {
        // Only `drop` takes it out.
        self.consumer.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let Some(consumer) = self.consumer.take() else {
            return;
        };
        // Nothing assigned: an idle reader fetches nothing and holds no records.
        if consumer.unassign().is_err() {
            return;
        }
        let mut idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < IDLE_READERS {
            idle.push((self.cluster.clone(), consumer));
        }
    }
}

/// A reader, and the partitions of `topic` in order (none if it does not exist).
fn open_reader(
    cluster: &Cluster,
    topic: &str,
    timeout: Duration,
) -> Result<(Reader, Vec<i32>), KafkaError> {
    let consumer = Reader::take(cluster)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|error| match consumer.context().failure() {
            Some(failure) => KafkaError::Connect(failure),
            None => KafkaError::client("reading topic metadata")(error),
        })?;
    let mut partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    partitions.sort_unstable();
    Ok((consumer, partitions))
}

/// Asks the brokers for `topic`'s metadata on a pooled reader (a consumer: it never has the
/// broker auto-create the topic, as a producer's metadata request may), blocking: a health
/// probe that touches one topic, not the whole cluster's list.
pub(crate) fn probe_topic(
    cluster: &Cluster,
    topic: &str,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let consumer = Reader::take(cluster)?;
    consumer
        .fetch_metadata(Some(topic), timeout)
        .map(drop)
        .map_err(|error| match consumer.context().failure() {
            Some(failure) => KafkaError::Connect(failure),
            None => KafkaError::client("reaching the broker")(error),
        })
}

fn read_blocking<M, C: Codec<M>>(
    cluster: &Cluster,
    topic: &str,
    codec: &C,
    timeout: Duration,
) -> Result<Vec<Record<M>>, KafkaError> {
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let (consumer, partitions) = open_reader(cluster, topic, left())?;

    // Where each partition ends now; records produced later are not waited for.
    let mut ends = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, left())
            .map_err(KafkaError::client("reading watermarks"))?;
        if high > low {
            ends.insert(partition, high);
            tpl.add_partition_offset(topic, partition, Offset::Offset(low))
                .map_err(KafkaError::client("assigning partitions"))?;
        }
    }
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    consumer
        .assign(&tpl)
        .map_err(KafkaError::client("assigning partitions"))?;

    let mut names = TopicNames::default();
    let mut records = Vec::new();
    while !ends.is_empty() {
        if left().is_zero() {
            return Err(KafkaError::Timeout {
                operation: "reading a topic",
                after: timeout,
            });
        }
        match consumer.poll(left().min(Duration::from_millis(200))) {
            Some(Ok(message)) => {
                let record = to_record(&message, codec, &mut names, true);
                let (partition, next) = (record.meta.tp.partition, record.meta.offset + 1);
                if ends.get(&partition).is_some_and(|&end| next >= end) {
                    ends.remove(&partition);
                }
                records.push(record);
            }
            Some(Err(error)) => tracing::warn!(%error, topic, "reading; librdkafka keeps trying"),
            None => {
                // Offsets may have gaps at the end (transaction markers): trust the position.
                if let Ok(positions) = consumer.position() {
                    for e in positions.elements() {
                        if let (Offset::Offset(at), Some(&end)) =
                            (e.offset(), ends.get(&e.partition()))
                            && at >= end
                        {
                            ends.remove(&e.partition());
                        }
                    }
                }
            }
        }
    }
    records.sort_by_key(|r| (r.meta.tp.partition, r.meta.offset));
    Ok(records)
}

/// Where a page of a topic ends and the next begins: the next offset to read in each
/// partition not read to its end. Its text form (`0:15,2:7`) is what a client hands back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor(std::collections::BTreeMap<i32, i64>);

impl Cursor {
    /// The next offset to read in `partition`, if the cursor says.
    pub fn get(&self, partition: i32) -> Option<i64> {
        self.0.get(&partition).copied()
    }

    /// Whether this cursor is at or past `end` in every partition `end` names.
    pub fn reached(&self, end: &Cursor) -> bool {
        end.0
            .iter()
            .all(|(p, end)| self.get(*p).is_some_and(|at| at >= *end))
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(p, o)| format!("{p}:{o}")).collect();
        f.write_str(&parts.join(","))
    }
}

impl std::str::FromStr for Cursor {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        let mut positions = std::collections::BTreeMap::new();
        for part in raw.split(',').filter(|p| !p.trim().is_empty()) {
            let (partition, offset) = part
                .trim()
                .split_once(':')
                .ok_or_else(|| format!("{part:?} is not PARTITION:OFFSET"))?;
            let partition: i32 = partition
                .parse()
                .map_err(|_| format!("{partition:?} is not a partition"))?;
            let offset: i64 = offset
                .parse()
                .map_err(|_| format!("{offset:?} is not an offset"))?;
            if partition < 0 || offset < 0 {
                return Err(format!("{part:?} is negative"));
            }
            positions.insert(partition, offset);
        }
        Ok(Self(positions))
    }
}

/// Where each partition of `topic` ends now (its high watermark): a cursor that a reader can
/// stop at, so records produced later (by the reader's own doing, say) are left alone.
pub async fn end_offsets(
    cluster: impl Into<Cluster>,
    topic: &str,
    timeout: Duration,
) -> Result<Cursor, KafkaError> {
    let cluster = cluster.into();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(Instant::now());
        let (consumer, partitions) = open_reader(&cluster, &topic, left())?;
        let mut ends = std::collections::BTreeMap::new();
        for partition in partitions {
            let (_, high) = consumer
                .fetch_watermarks(&topic, partition, left())
                .map_err(KafkaError::client("reading watermarks"))?;
            ends.insert(partition, high);
        }
        Ok(Cursor(ends))
    })
    .await
    .map_err(|_| KafkaError::Timeout {
        operation: "reading a topic's end offsets",
        after: timeout,
    })?
}

/// A page of a topic.
#[derive(Debug)]
pub struct Page<M> {
    /// The records kept, in partition then offset order.
    pub records: Vec<Record<M>>,
    /// Where the next page starts; `None` when this one read every partition to its end.
    pub next: Option<Cursor>,
    /// Records read for this page, kept or not: at most the page's scan bound.
    pub scanned: usize,
    /// Records in the topic now (between each partition's low and high watermarks).
    pub total: u64,
}

/// How much of a topic one page may read.
#[derive(Debug, Clone, Copy)]
pub struct PageBounds {
    /// Stop once this many records are kept.
    pub keep: usize,
    /// Stop once this many records are read, kept or not: what bounds a page's cost, whatever
    /// the size of the topic.
    pub scan: usize,
    /// How long the whole page may take, the topic's metadata included: past it the read fails
    /// with [`KafkaError::Timeout`] and what it read is dropped.
    pub timeout: Duration,
}

/// Reads one page of `topic` from `from` (a partition it does not name is read from its
/// start): partition by partition, in order, keeping the records `keep` accepts, until
/// `bounds` say stop. Records produced after the call are left for a later page.
pub async fn read_page<M, C, K>(
    cluster: impl Into<Cluster>,
    topic: &str,
    codec: C,
    from: Cursor,
    bounds: PageBounds,
    keep: K,
) -> Result<Page<M>, KafkaError>
where
    M: Send + 'static,
    C: Codec<M> + 'static,
    K: Fn(&Record<M>) -> bool + Send + 'static,
{
    let (records, scan) = scan_page(
        cluster,
        topic,
        codec,
        from,
        bounds,
        Vec::new(),
        move |records: &mut Vec<Record<M>>, record| {
            let kept = keep(&record);
            if kept {
                records.push(record);
            }
            kept
        },
    )
    .await?;
    Ok(Page {
        records,
        next: scan.next,
        scanned: scan.scanned,
        total: scan.total,
    })
}

/// What a scan read, besides what its visitor kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// Where the next page starts; `None` when this one read every partition to its end.
    pub next: Option<Cursor>,
    /// Records read, kept or not: at most the page's scan bound.
    pub scanned: usize,
    /// Records the visitor kept.
    pub kept: usize,
    /// Records in the topic now (between each partition's low and high watermarks).
    pub total: u64,
}

/// Reads one page like [`read_page`], handing each record to `visit` with `state`, and keeps
/// nothing itself: a scan that needs a little of each record (its order id, say) holds that
/// little, whatever the page's size. `visit` says whether the record counts as kept (toward
/// `bounds.keep`). Gives back the state and what was read.
pub async fn scan_page<M, C, S, V>(
    cluster: impl Into<Cluster>,
    topic: &str,
    codec: C,
    from: Cursor,
    bounds: PageBounds,
    mut state: S,
    mut visit: V,
) -> Result<(S, Scanned), KafkaError>
where
    M: Send + 'static,
    C: Codec<M> + 'static,
    S: Send + 'static,
    V: FnMut(&mut S, Record<M>) -> bool + Send + 'static,
{
    let cluster = cluster.into();
    let topic = topic.to_owned();
    let timeout = bounds.timeout;
    // librdkafka's metadata, watermark and poll calls block their thread.
    tokio::task::spawn_blocking(move || {
        let scanned = page_blocking(&cluster, &topic, &codec, &from, bounds, &mut |record| {
            visit(&mut state, record)
        })?;
        Ok((state, scanned))
    })
    .await
    .map_err(|_| KafkaError::Timeout {
        operation: "reading a page of a topic",
        after: timeout,
    })?
}

fn page_blocking<M, C: Codec<M>>(
    cluster: &Cluster,
    topic: &str,
    codec: &C,
    from: &Cursor,
    bounds: PageBounds,
    visit: &mut dyn FnMut(Record<M>) -> bool,
) -> Result<Scanned, KafkaError> {
    let deadline = Instant::now() + bounds.timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let timed_out = || KafkaError::Timeout {
        operation: "reading a page of a topic",
        after: bounds.timeout,
    };
    let (consumer, partitions) = open_reader(cluster, topic, left())?;

    let mut names = TopicNames::default();
    let mut page = Scanned {
        next: None,
        scanned: 0,
        kept: 0,
        total: 0,
    };
    let mut next = std::collections::BTreeMap::new();
    let mut unfinished = false;
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, left())
            .map_err(KafkaError::client("reading watermarks"))?;
        page.total += u64::try_from(high - low).unwrap_or(0);
        let mut at = from.get(partition).unwrap_or(low).max(low);
        let full = page.kept >= bounds.keep || page.scanned >= bounds.scan;
        if full || at >= high {
            // Not reached on this page, or read to its end: either way the next page goes
            // on from here (a partition read to its end is not read again).
            unfinished |= at < high;
            next.insert(partition, at);
            continue;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(at))
            .map_err(KafkaError::client("assigning a partition"))?;
        consumer
            .assign(&tpl)
            .map_err(KafkaError::client("assigning a partition"))?;
        while at < high && page.kept < bounds.keep && page.scanned < bounds.scan {
            if left().is_zero() {
                return Err(timed_out());
            }
            match consumer.poll(left().min(Duration::from_millis(200))) {
                // A reader taken from the idle ones read other partitions before: only this
                // one's records count.
                Some(Ok(message))
                    if message.partition() == partition
                        && message.topic() == topic
                        && message.offset() >= at =>
                {
                    let record = to_record(&message, codec, &mut names, true);
                    at = record.meta.offset + 1;
                    page.scanned += 1;
                    if visit(record) {
                        page.kept += 1;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    tracing::warn!(%error, topic, "reading; librdkafka keeps trying")
                }
                None => {
                    // Offsets may have gaps at the end (transaction markers): trust the position.
                    if let Ok(positions) = consumer.position()
                        && let Some(Offset::Offset(position)) =
                            positions.elements().first().map(|e| e.offset())
                    {
                        at = at.max(position);
                    }
                }
            }
        }
        unfinished |= at < high;
        next.insert(partition, at);
    }
    page.next = unfinished.then_some(Cursor(next));
    Ok(page)
}
