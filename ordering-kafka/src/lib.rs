//! The Kafka transport of `ordering-core`.
//!
//! - [`Cluster`]: where the brokers are and how every client gets in ([`ClientSecurity`]:
//!   TLS, SASL `PLAIN`/`SCRAM-SHA-256`/`SCRAM-SHA-512`, a `client.properties` file); every
//!   constructor below takes one, and a plain `"host:port"` converts to a plaintext one.
//! - [`KafkaSource`]: a consumer-group member yielding decoded records to the dispatcher;
//!   offsets are stored only when acknowledged and committed in batches.
//! - [`KafkaProducer`] / [`KafkaSink`]: `acks=all`, idempotent, answering only once the broker
//!   has the record, in bounded time.
//! - [`Avro`]: Avro single-object encoding for any serde type registered with its schema's
//!   [`SchemaVersions`] (older and newer versions read through resolution);
//!   [`DeadLetterCodec`]: dead letters, beside any event codec;
//!   [`order::AvroCodec`]: the order flow's three types, registered that way from `schemas/`.
//! - [`ensure_topics`], [`read_topic`], [`read_page`]: topic creation, whole-topic reads and
//!   bounded pages (DLQ).
//! - [`Redriver`]: dead letters sent back to their topic, filtered, paced, remembered in a
//!   ledger so none is sent twice, and bounded so none loops forever.
//! - `testing::TestBroker` (feature `testing`): a throwaway local broker for tests.

#![deny(missing_docs)]

mod admin;
mod codec;
mod convert;
mod error;
mod group;
mod message;
mod metrics;
mod parking;
mod reader;
mod redrive;
mod security;
mod sink;
mod source;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(all(feature = "testing", feature = "registry"))]
mod testing_registry;
mod topic_id;

pub use admin::{TopicDrift, TopicSettings, ensure_topics, ensure_topics_when_ready};
pub use codec::framed::{CONFLUENT_MAGIC, split_framed};
pub use codec::{
    Avro, Codec, DEAD_LETTER_SCHEMA, DeadLetterCodec, Fetch, FetchError, Json, MAGIC, SchemaError,
    SchemaSource, SchemaVersions, WireFormat, WriterSchema,
};
#[cfg(feature = "registry")]
pub use codec::{
    BasicAuth, Registration, Registry, RegistryConfig, RegistryError, SubjectStrategy,
};

/// What a service of its own imports: the traits whose methods it calls (`publish` is
/// `Sink`'s, the key is `Message`'s) and the types it implements or names.
/// `use ordering_kafka::prelude::*;`
pub mod prelude {
    pub use crate::{
        Avro, ClientSecurity, Cluster, Codec, DeadLetterCodec, KafkaProducer, KafkaSource, Message,
        ProducerConfig, SchemaVersions, SourceConfig,
    };
    pub use ordering_core::{
        Classify, DeadLetter, Dispatcher, DispatcherConfig, ErrorClass, Handler, LaneMode,
        RecordMeta, Sink,
    };
}

#[cfg(feature = "order")]
/// The order flow's codec and schemas (feature `order`): what the two shells read and write. A service of its
/// own needs none of it: [`Avro`] for its events, [`DeadLetterCodec`] for its dead letters.
pub mod order {
    pub use crate::codec::{
        AvroCodec, ORDER_FLOW_DLQ_VERSION, ORDER_SCHEMA, STATUS_UPDATE_SCHEMA, SchemaFamily,
    };
}
pub use error::KafkaError;
pub use group::GroupMember;
pub use message::{DLQ_ORIGINAL_INCARNATION_HEADER, Message};
pub use parking::PARKED_BYTES_PER_PARTITION;
pub use reader::{
    Cursor, Page, PageBounds, Scanned, end_offsets, read_page, read_topic, scan_page,
};
pub use redrive::{
    DEFAULT_MAX_REDRIVES, LetterOutcome, Outcome, REDRIVABLE_DLQ_VERSION, Redrive, RedriveError,
    RedriveReport, Redriver, RedriverBuilder, Skip, Skips,
};
pub use secrecy::{ExposeSecret, SecretString};
pub use security::{
    ClientCertificate, ClientSecurity, Cluster, ConnectFailure, Connectivity, PropertiesError,
    SaslCredentials, SaslMechanism, SecurityProtocol,
};
pub use sink::{Delivered, KafkaProducer, KafkaSink, ProducerConfig};
pub use source::{
    DEFAULT_FETCH_WAIT_MAX, FETCH_QUEUE_BACKOFF_MS, KafkaSource, SourceConfig, SourceStatus,
};
