//! Publishing: a producer that answers only once the broker has the record.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ordering_core::{Header as RecordHeader, Sink, SinkError};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::sync::{Semaphore, SemaphorePermit};
use tracing::Instrument;

use crate::codec::Codec;
use crate::error::KafkaError;
use crate::message::Message;
use crate::security::{Cluster, Connectivity};

/// How to reach the broker and how long a publish may take.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// The brokers, and how the producer gets in.
    pub cluster: Cluster,
    /// The longest a publish waits for the broker's acknowledgement, retries included; past
    /// it, the publish fails with a retryable error instead of hanging.
    pub delivery_timeout: Duration,
    /// Further librdkafka properties, applied last.
    pub overrides: Vec<(String, String)>,
    /// Load shedding: at most this many publishes handed to librdkafka and not yet
    /// acknowledged. Beyond, a publish waits at most `queue_wait` for its turn and then fails
    /// with [`KafkaError::Overloaded`]; librdkafka's queue is bounded to match and never
    /// waited for (full, a publish fails at once). Either way nothing is sent, and the
    /// [`SinkError`] is `Overloaded`. `None` (the default): a publish waits up to the delivery
    /// timeout for room in librdkafka's queue (100 000 messages or 1 GiB).
    pub max_in_flight: Option<usize>,
    /// How long a publish waits for its turn under `max_in_flight`; default 250 ms.
    pub queue_wait: Duration,
}

impl ProducerConfig {
    /// The defaults for `cluster`: a 10 s delivery timeout, no overrides, no load shedding
    /// (`max_in_flight` `None`, `queue_wait` 250 ms).
    pub fn new(cluster: impl Into<Cluster>) -> Self {
        Self {
            cluster: cluster.into(),
            delivery_timeout: Duration::from_secs(10),
            overrides: Vec::new(),
            max_in_flight: None,
            queue_wait: Duration::from_millis(250),
        }
    }
}

/// librdkafka's queue under `max_in_flight`: a ceiling on the bytes it holds, whatever the
/// records' sizes (a few hundred bytes each in the order flow).
const SHEDDING_QUEUE_KBYTES: usize = 32 * 1024;

/// The turns of a producer with `max_in_flight`: a publish holds one from before it is handed
/// to librdkafka until it is acknowledged.
#[derive(Debug)]
struct Slots {
    free: Semaphore,
    max: usize,
    wait: Duration,
}

impl Slots {
    fn new(max: usize, wait: Duration) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            free: Semaphore::new(max),
            max,
            wait,
        }
    }

    /// A turn, if one is free within the wait.
    async fn take(&self) -> Result<SemaphorePermit<'_>, KafkaError> {
        let overloaded = || KafkaError::Overloaded {
            max_in_flight: self.max,
            waited: self.wait,
        };
        match tokio::time::timeout(self.wait, self.free.acquire()).await {
            Ok(Ok(slot)) => Ok(slot),
            Ok(Err(_closed)) => Err(overloaded()), // never closed
            Err(_elapsed) => Err(overloaded()),
        }
    }
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// The partition the record was written to.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
}

/// A producer with `acks=all` and idempotence: a publish returns only once every in-sync
/// replica has the record, and retries inside librdkafka cannot duplicate or reorder it.
/// Cheap to clone; one per process is enough.
#[derive(Clone)]
pub struct KafkaProducer {
    pub(crate) producer: FutureProducer<Connectivity>,
    /// For [`ping_topic`](Self::ping_topic)'s reader.
    cluster: Cluster,
    connectivity: Connectivity,
    delivery_timeout: Duration,
    slots: Option<Arc<Slots>>,
}

impl std::fmt::Debug for KafkaProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaProducer").finish_non_exhaustive()
    }
}

impl KafkaProducer {
    /// The brokers it publishes to, and how it gets in.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// A producer as `config` says (`acks=all`, idempotent, `linger.ms` 2, then the
    /// overrides). Does not wait for the brokers: fails only on a configuration librdkafka
    /// refuses, which retrying does not fix.
    pub fn new(config: &ProducerConfig) -> Result<Self, KafkaError> {
        let mut client = config.cluster.client_config();
        client
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set(
                "message.timeout.ms",
                config.delivery_timeout.as_millis().max(1).to_string(),
            )
            .set("linger.ms", "2");
        if let Some(max) = config.max_in_flight {
            // Twice the slots: a publish given up by its caller (a client that hung up) frees
            // its slot while librdkafka still holds the record, and librdkafka counts a record
            // out only after it has reported its delivery.
            let messages = max.clamp(1, 1 << 20) * 2;
            client
                .set("queue.buffering.max.messages", messages.to_string())
                .set(
                    "queue.buffering.max.kbytes",
                    SHEDDING_QUEUE_KBYTES.to_string(),
                );
        }
        for (key, value) in &config.overrides {
            client.set(key, value);
        }
        let connectivity = Connectivity::of(&config.cluster);
        let producer = client
            .create_with_context(connectivity.clone())
            .map_err(KafkaError::client("creating the producer"))?;
        crate::metrics::describe();
        Ok(Self {
            producer,
            cluster: config.cluster.clone(),
            connectivity,
            delivery_timeout: config.delivery_timeout,
            slots: config
                .max_in_flight
                .map(|max| Arc::new(Slots::new(max, config.queue_wait))),
        })
    }

    /// A sink of `M` to `topic`, encoded with `codec`.
    pub fn sink<M, C: Codec<M>>(&self, topic: impl Into<String>, codec: C) -> KafkaSink<M, C> {
        KafkaSink {
            producer: self.clone(),
            topic: topic.into(),
            codec,
            _message: PhantomData,
        }
    }

    /// Publishes raw bytes and waits for the broker's acknowledgement. With `max_in_flight`, a
    /// publish that gets no turn within `queue_wait`, or finds librdkafka's queue full, fails
    /// at once with an error that [`is_overloaded`](KafkaError::is_overloaded), having sent
    /// nothing.
    ///
    /// The record carries the trace context of its send's span (a `producer` span under
    /// `ordering_core::trace::TARGET`, child of the caller's) when a subscriber records it.
    pub async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: &[RecordHeader],
    ) -> Result<Delivered, KafkaError> {
        let span = tracing::info_span!(
            target: ordering_core::trace::TARGET,
            "send",
            otel.name = %format_args!("send {topic}"),
            otel.kind = "producer",
            messaging.system = "kafka",
            messaging.operation.type = "send",
            messaging.operation.name = "send",
            messaging.destination.name = topic,
            messaging.destination.partition.id = tracing::field::Empty,
            messaging.kafka.offset = tracing::field::Empty,
        );
        if span.is_disabled() {
            return self.send_record(topic, key, payload, headers).await;
        }
        let mut traced = headers.to_vec();
        ordering_core::trace::inject_span(&span, &mut traced);
        let sent = self
            .send_record(topic, key, payload, &traced)
            .instrument(span.clone())
            .await;
        if let Ok(delivered) = &sent {
            span.record("messaging.destination.partition.id", delivered.partition);
            span.record("messaging.kafka.offset", delivered.offset);
        }
        sent
    }

    async fn send_record(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: &[RecordHeader],
    ) -> Result<Delivered, KafkaError> {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        if !headers.is_empty() {
            let mut owned = OwnedHeaders::new_with_capacity(headers.len());
            for header in headers {
                owned = owned.insert(Header {
                    key: &header.name,
                    value: header.value.as_deref(),
                });
            }
            record = record.headers(owned);
        }
        // With slots, the wait for a turn is the only wait before the queue: a full queue is
        // "not now" at once. Without, waiting for room counts against the delivery timeout.
        let (_slot, queue_timeout) = match &self.slots {
            Some(slots) => (Some(slots.take().await?), Duration::ZERO),
            None => (None, self.delivery_timeout),
        };
        let started = std::time::Instant::now();
        let sent = self.producer.send(record, queue_timeout).await;
        crate::metrics::published(topic, started.elapsed(), sent.is_ok());
        match sent {
            Ok(delivery) => Ok(Delivered {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Err((error, _)) => Err(KafkaError::client("publishing")(error)),
        }
    }

    /// The producer's fatal error, if it has one. librdkafka's idempotent producer stops for
    /// good on some broker answers (a sequence gap it cannot repair, a fenced epoch): every
    /// later publish fails, and only a new producer (a restart of the service) recovers.
    pub fn fatal_error(&self) -> Option<String> {
        self.producer
            .client()
            .fatal_error()
            .map(|(code, reason)| format!("{code:?}: {reason}"))
    }

    /// Completes once the producer has a fatal error, with its description.
    pub async fn fatal(&self) -> String {
        loop {
            if let Some(error) = self.fatal_error() {
                return error;
            }
            // librdkafka raises it from its own threads; a look now and then is enough.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Puts the producer in librdkafka's fatal state, as a broker could (feature `testing`).
    #[cfg(feature = "testing")]
    #[allow(unsafe_code)] // the one call librdkafka has no safe binding for; test-only
    pub fn inject_fatal_error(&self, reason: &str) {
        let reason = std::ffi::CString::new(reason.replace('\0', " ")).unwrap_or_default();
        // SAFETY: the client pointer is valid while `self.producer` lives, and librdkafka
        // copies the reason before returning.
        unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                self.producer.client().native_ptr(),
                rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                reason.as_ptr(),
            );
        }
    }

    /// Checks that the broker answers, within `timeout`. When it does not because it refuses
    /// this client (a login or a certificate), the error says so: [`KafkaError::Connect`].
    pub async fn ping(&self, timeout: Duration) -> Result<(), KafkaError> {
        let producer = self.producer.clone();
        self.probe(timeout, move || {
            producer
                .client()
                .fetch_metadata(None, timeout)
                .map(|_| ())
                .map_err(KafkaError::client("reaching the broker"))
        })
        .await
    }

    /// [`ping`](Self::ping), asking for the metadata of `topic` alone, on a pooled reader of
    /// the same cluster: a health probe's, which on a cluster of thousands of topics must not
    /// fetch them all, and must never have a broker auto-create `topic` (with its defaults)
    /// before the service creates it with its own settings, as a producer's request may.
    pub async fn ping_topic(&self, topic: &str, timeout: Duration) -> Result<(), KafkaError> {
        let (cluster, topic) = (self.cluster.clone(), topic.to_owned());
        self.probe(timeout, move || {
            crate::reader::probe_topic(&cluster, &topic, timeout)
        })
        .await
    }

    /// Runs a metadata request (which blocks its thread in librdkafka) off the async threads,
    /// and gives its outcome with the producer's own word on a refusal.
    async fn probe(
        &self,
        timeout: Duration,
        request: impl FnOnce() -> Result<(), KafkaError> + Send + 'static,
    ) -> Result<(), KafkaError> {
        let answered =
            tokio::task::spawn_blocking(request)
                .await
                .map_err(|_| KafkaError::Timeout {
                    operation: "reaching the broker",
                    after: timeout,
                })?;
        let connectivity = &self.connectivity;
        match answered {
            Ok(()) => {
                connectivity.answered();
                Ok(())
            }
            Err(KafkaError::Connect(failure)) => Err(KafkaError::Connect(failure)),
            Err(error) => Err(connectivity.failure().map_or(error, KafkaError::Connect)),
        }
    }

    /// Why the brokers refuse this producer, if they do (as last reported by librdkafka).
    pub fn connect_failure(&self) -> Option<crate::ConnectFailure> {
        self.connectivity.failure()
    }

    /// Pings until the cluster answers, for at most `within`: a service calls it at start-up,
    /// so that settings a person must fix (a login, a certificate, the protocol) stop it there
    /// rather than leave it waiting. A cluster that is merely down is not an error here: the
    /// service starts and waits for it.
    pub async fn check_access(&self, within: Duration) -> Result<(), crate::ConnectFailure> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.ping(left.min(Duration::from_secs(2))).await {
                Ok(()) => return Ok(()),
                Err(KafkaError::Connect(failure)) => return Err(failure),
                Err(error) if left.is_zero() => {
                    tracing::warn!(%error, "Kafka does not answer yet; starting, and waiting for it");
                    return Ok(());
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Waits until every record handed to the producer is acknowledged, or the delivery
    /// timeout passes.
    pub async fn flush(&self) -> Result<(), KafkaError> {
        let producer = self.producer.clone();
        let timeout = self.delivery_timeout;
        // librdkafka's flush blocks the calling thread.
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|_| KafkaError::Timeout {
                operation: "flushing the producer",
                after: timeout,
            })?
            .map_err(KafkaError::client("flushing the producer"))
    }
}

/// Publishes messages of one type to one topic; the key and headers come from [`Message`].
pub struct KafkaSink<M, C> {
    producer: KafkaProducer,
    topic: String,
    codec: C,
    _message: PhantomData<fn(&M)>,
}

impl<M, C> std::fmt::Debug for KafkaSink<M, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl<M, C> KafkaSink<M, C> {
    /// The topic it publishes to.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

#[async_trait]
impl<M: Message, C: Codec<M>> Sink<M> for KafkaSink<M, C> {
    async fn publish(&self, message: &M) -> Result<(), SinkError> {
        let payload = self.codec.encode(message)?;
        let headers: Vec<RecordHeader> = message
            .headers()
            .into_iter()
            .map(|(name, value)| RecordHeader {
                name: name.to_owned(),
                value: Some(value.into_bytes()),
            })
            .collect();
        self.producer
            .send(&self.topic, message.key(), &payload, &headers)
            .await?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), SinkError> {
        Ok(self.producer.flush().await?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testing::{TestBroker, unique_topic};
    use crate::{TopicSettings, ensure_topics, read_topic};

    /// Payloads as they are.
    struct Raw;

    impl Codec<Vec<u8>> for Raw {
        fn encode(&self, message: &Vec<u8>) -> Result<Vec<u8>, KafkaError> {
            Ok(message.clone())
        }

        fn decode(&self, payload: &[u8]) -> Result<Vec<u8>, ordering_core::DecodeError> {
            Ok(payload.to_vec())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_publish_waits_its_turn_at_most_the_queue_wait() {
        let slots = Slots::new(2, Duration::from_millis(250));
        let first = slots.take().await.unwrap();
        let _second = slots.take().await.unwrap();
        let error = slots.take().await.unwrap_err();
        assert!(error.is_overloaded(), "{error}");
        assert!(matches!(SinkError::from(error), SinkError::Overloaded(_)));
        // A turn given back is taken by the next publish: no restart needed.
        drop(first);
        assert!(slots.take().await.is_ok());
        // No wait at all: a publish goes only if a turn is free now.
        let none = Slots::new(1, Duration::ZERO);
        let _only = none.take().await.unwrap();
        assert!(none.take().await.unwrap_err().is_overloaded());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_is_overloaded_at_once_and_sends_nothing() {
        let broker = TestBroker::start();
        let topic = unique_topic("shed");
        let settings = TopicSettings::new(1);
        ensure_topics(
            &broker.bootstrap(),
            &[&topic],
            &settings,
            Duration::from_secs(20),
        )
        .await
        .unwrap();
        let mut config = ProducerConfig::new(broker.bootstrap());
        config.max_in_flight = Some(8);
        // One record fills librdkafka's queue and lingers there: the second finds it full.
        config.overrides = vec![
            ("queue.buffering.max.messages".into(), "1".into()),
            ("linger.ms".into(), "1000".into()),
        ];
        let producer = KafkaProducer::new(&config).unwrap();
        let (first, second) = tokio::join!(
            producer.send(&topic, Some(b"a"), b"first", &[]),
            producer.send(&topic, Some(b"b"), b"second", &[]),
        );
        first.unwrap();
        let error = second.unwrap_err();
        assert!(error.is_overloaded(), "{error}");
        assert!(matches!(SinkError::from(error), SinkError::Overloaded(_)));
        // Room comes back by itself: librdkafka counts the first record out just after it
        // reported its delivery, so the next publish may still find the queue full once.
        let mut tries = 0;
        let third = loop {
            match producer.send(&topic, Some(b"c"), b"third", &[]).await {
                Err(error) if error.is_overloaded() && tries < 500 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                sent => break sent,
            }
        };
        third.unwrap();
        let payloads: Vec<Vec<u8>> =
            read_topic(&broker.bootstrap(), &topic, Raw, Duration::from_secs(60))
                .await
                .unwrap()
                .into_iter()
                .map(|record| record.event.unwrap())
                .collect();
        assert_eq!(payloads, vec![b"first".to_vec(), b"third".to_vec()]);
    }
}
