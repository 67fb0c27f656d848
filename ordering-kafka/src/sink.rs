//! Publishing: a producer that answers only once the broker has the record.

use std::marker::PhantomData;
use std::time::Duration;

use async_trait::async_trait;
use ordering_core::{Header as RecordHeader, Sink, SinkError};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::codec::Codec;
use crate::error::KafkaError;
use crate::message::Message;

/// How to reach the broker and how long a publish may take.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub bootstrap_servers: String,
    /// The longest a publish waits for the broker's acknowledgement, retries included; past
    /// it, the publish fails with a retryable error instead of hanging.
    pub delivery_timeout: Duration,
    /// Further librdkafka properties, applied last.
    pub overrides: Vec<(String, String)>,
}

impl ProducerConfig {
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            delivery_timeout: Duration::from_secs(10),
            overrides: Vec::new(),
        }
    }
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// A producer with `acks=all` and idempotence: a publish returns only once every in-sync
/// replica has the record, and retries inside librdkafka cannot duplicate or reorder it.
/// Cheap to clone; one per process is enough.
#[derive(Clone)]
pub struct KafkaProducer {
    producer: FutureProducer,
    delivery_timeout: Duration,
}

impl std::fmt::Debug for KafkaProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaProducer").finish_non_exhaustive()
    }
}

impl KafkaProducer {
    pub fn new(config: &ProducerConfig) -> Result<Self, KafkaError> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.bootstrap_servers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set(
                "message.timeout.ms",
                config.delivery_timeout.as_millis().max(1).to_string(),
            )
            .set("linger.ms", "2");
        for (key, value) in &config.overrides {
            client.set(key, value);
        }
        let producer = client
            .create()
            .map_err(KafkaError::client("creating the producer"))?;
        crate::metrics::describe();
        Ok(Self {
            producer,
            delivery_timeout: config.delivery_timeout,
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

    /// Publishes raw bytes and waits for the broker's acknowledgement.
    pub async fn send(
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
        // Waiting for room in librdkafka's queue counts against the same bound.
        let started = std::time::Instant::now();
        let sent = self.producer.send(record, self.delivery_timeout).await;
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

    /// Checks that the broker answers, within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> Result<(), KafkaError> {
        let producer = self.producer.clone();
        // librdkafka's metadata request blocks the calling thread.
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, timeout)
                .map(|_| ())
                .map_err(KafkaError::client("reaching the broker"))
        })
        .await
        .map_err(|_| KafkaError::Timeout {
            operation: "reaching the broker",
            after: timeout,
        })?
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
