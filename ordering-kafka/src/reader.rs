//! Reading a whole topic, start to end, outside any consumer group: for the DLQ endpoints,
//! for listing a topic's keys, and for replay.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ordering_core::Record;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::codec::Codec;
use crate::convert::{TopicNames, to_record};
use crate::error::KafkaError;

/// Every record of `topic` from each partition's start to its end offset as of the call, in
/// partition then offset order, decoded with `codec` (a record that does not decode comes
/// with its `DecodeError`). A topic that does not exist has no records.
pub async fn read_topic<M, C>(
    bootstrap_servers: &str,
    topic: &str,
    codec: C,
    timeout: Duration,
) -> Result<Vec<Record<M>>, KafkaError>
where
    M: Send + 'static,
    C: Codec<M> + 'static,
{
    let bootstrap = bootstrap_servers.to_owned();
    let topic = topic.to_owned();
    // librdkafka's metadata, watermark and poll calls block their thread.
    tokio::task::spawn_blocking(move || read_blocking(&bootstrap, &topic, &codec, timeout))
        .await
        .map_err(|_| KafkaError::Timeout {
            operation: "reading a topic",
            after: timeout,
        })?
}

fn read_blocking<M, C: Codec<M>>(
    bootstrap: &str,
    topic: &str,
    codec: &C,
    timeout: Duration,
) -> Result<Vec<Record<M>>, KafkaError> {
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "ordering-topic-reader") // required by librdkafka; nothing is committed
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .map_err(KafkaError::client("creating the reader"))?;

    let metadata = consumer
        .fetch_metadata(Some(topic), left())
        .map_err(KafkaError::client("reading topic metadata"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();

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
                let record = to_record(&message, codec, &mut names);
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
