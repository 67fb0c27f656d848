//! The order flow's codec (feature `order`): its three types, registered from `schemas/`.

use std::path::Path;

use ordering_core::order::{Order, OrderEvent, StatusUpdate};
use ordering_core::{DeadLetter, DecodeError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::framed::{Fetch, Frame, SchemaSource, split_framed};
use super::schemas::{Family, Schemas, framed_writer, split, unknown};
use super::{Codec, DeadLetterCodec, SchemaError, SchemaFamily, fetch_for};
use crate::error::KafkaError;

/// The current schemas of the order flow, embedded from `schemas/`: never re-typed. Each is
/// the same text as the newest version in `schemas/history/`.
pub const ORDER_SCHEMA: &str = include_str!("../../schemas/order.avsc");
/// The current `com.ecommerce.order.OrderStatusUpdate` schema, `schemas/status_update.avsc`.
pub const STATUS_UPDATE_SCHEMA: &str = include_str!("../../schemas/status_update.avsc");

/// The Avro codec of the order flow. Cheap to copy: the schemas are parsed once per process.
#[derive(Clone, Copy)]
pub struct AvroCodec {
    schemas: &'static Schemas,
    /// Per family (in [`SchemaFamily::ALL`] order), the published version to write, if not
    /// the current one.
    pins: [Option<u32>; 3],
    /// Per family, how it is written: single-object, or framed with a registry's id.
    frames: [Frame; 3],
    /// Where the writer schemas of framed records are found, if anywhere.
    source: Option<&'static dyn SchemaSource>,
}

impl std::fmt::Debug for AvroCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroCodec")
            .field("pins", &self.pins)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl AvroCodec {
    /// Reads every published version, writes the current ones.
    pub fn new() -> Result<Self, KafkaError> {
        Ok(Self {
            schemas: Schemas::embedded()?,
            pins: [None; 3],
            frames: [Frame::SingleObject; 3],
            source: None,
        })
    }

    /// Also reads the versions in `dir` (`.avsc` files, each told apart by its record name):
    /// versions published after this binary was built, so that records a newer producer
    /// wrote decode without a new release. Each must resolve into the current version.
    pub fn with_schema_dir(dir: &Path) -> Result<Self, SchemaError> {
        Ok(Self {
            schemas: Schemas::with_dir(dir)?,
            pins: [None; 3],
            frames: [Frame::SingleObject; 3],
            source: None,
        })
    }

    /// Writes `family` with its published version `version` instead of the current one: for
    /// a rollout where the readers are upgraded first (README, "Changing a schema").
    pub fn pin(mut self, family: SchemaFamily, version: u32) -> Result<Self, SchemaError> {
        self.pins[family.index()] = self.family(family).pin(version)?;
        Ok(self)
    }

    /// The version this codec writes for `family`.
    pub fn writes(&self, family: SchemaFamily) -> u32 {
        let i = family.index();
        self.family(family)
            .writes_framed(self.pins[i], self.frames[i])
    }

    /// Also reads records in the Confluent framing, their writer schemas from `source` (a
    /// [`Registry`](crate::Registry)), beside single-object ones: a topic may carry both.
    pub fn reading_registry(mut self, source: &'static dyn SchemaSource) -> Self {
        self.source = Some(source);
        self
    }

    /// Writes `family` to `topic` in the Confluent framing: the version it writes (pin it
    /// first) looked up, or registered if the registry's settings say so, under the subject
    /// the registry's strategy names; once, now. Dead letters stay single-object: a letter
    /// keeps its record's bytes whatever their framing.
    #[cfg(feature = "registry")]
    pub async fn write_registered(
        mut self,
        registry: &'static crate::Registry,
        family: SchemaFamily,
        topic: &str,
    ) -> Result<Self, crate::RegistryError> {
        let version = self.writes(family);
        self.frames[family.index()] =
            super::registered_frame(self.family(family), registry, topic, version).await?;
        Ok(self.reading_registry(registry))
    }

    /// Its dead-letter codec: the same letter schemas (a schema directory included) and the
    /// same pinned version.
    pub fn dead_letters(&self) -> DeadLetterCodec {
        let family = SchemaFamily::DeadLetter;
        DeadLetterCodec {
            family: self.family(family),
            pin: self.pins[family.index()],
        }
    }

    /// The fingerprints of the current versions: order, status update, dead letter.
    pub fn fingerprints(&self) -> [[u8; 8]; 3] {
        SchemaFamily::ALL.map(|f| self.family(f).current.fingerprint)
    }

    fn family(&self, family: SchemaFamily) -> &'static Family {
        self.schemas.family(family)
    }

    fn encode_serde<M: Serialize>(
        &self,
        family: SchemaFamily,
        message: &M,
    ) -> Result<Vec<u8>, KafkaError> {
        self.family(family).encode_serde(
            self.pins[family.index()],
            self.frames[family.index()],
            message,
        )
    }

    fn decode_serde<M: DeserializeOwned>(
        &self,
        family: SchemaFamily,
        payload: &[u8],
    ) -> Result<M, DecodeError> {
        self.family(family).decode_serde(payload, self.source)
    }
}

impl Codec<Order> for AvroCodec {
    fn encode(&self, order: &Order) -> Result<Vec<u8>, KafkaError> {
        self.encode_serde(SchemaFamily::Order, order)
    }

    fn decode(&self, payload: &[u8]) -> Result<Order, DecodeError> {
        self.decode_serde(SchemaFamily::Order, payload)
    }

    fn prepare(&self, payload: &[u8]) -> Option<Fetch> {
        fetch_for(self.source, payload)
    }
}

impl Codec<StatusUpdate> for AvroCodec {
    fn encode(&self, update: &StatusUpdate) -> Result<Vec<u8>, KafkaError> {
        self.encode_serde(SchemaFamily::StatusUpdate, update)
    }

    fn decode(&self, payload: &[u8]) -> Result<StatusUpdate, DecodeError> {
        self.decode_serde(SchemaFamily::StatusUpdate, payload)
    }

    fn prepare(&self, payload: &[u8]) -> Option<Fetch> {
        fetch_for(self.source, payload)
    }
}

/// Either event, told apart by the fingerprint: one consumer can read both topics.
impl Codec<OrderEvent> for AvroCodec {
    fn encode(&self, event: &OrderEvent) -> Result<Vec<u8>, KafkaError> {
        match event {
            OrderEvent::Created(order) => self.encode(order),
            OrderEvent::StatusUpdated(update) => self.encode(update),
        }
    }

    fn decode(&self, payload: &[u8]) -> Result<OrderEvent, DecodeError> {
        if let Some((id, datum)) = split_framed(payload) {
            // Told apart by the registry's record name.
            let writer = framed_writer(id, self.source)?;
            let family = |f| self.family(f);
            return if family(SchemaFamily::Order).answers_to(writer.record()) {
                family(SchemaFamily::Order)
                    .decode_written_by(&writer, datum)
                    .map(OrderEvent::Created)
            } else if family(SchemaFamily::StatusUpdate).answers_to(writer.record()) {
                family(SchemaFamily::StatusUpdate)
                    .decode_written_by(&writer, datum)
                    .map(OrderEvent::StatusUpdated)
            } else {
                Err(DecodeError::unknown_schema(format!(
                    "schema id {id} is record {:?}, neither an order nor a status update",
                    writer.record()
                )))
            };
        }
        let (fingerprint, _) = split(payload)?;
        if self.family(SchemaFamily::Order).knows(fingerprint) {
            self.decode(payload).map(OrderEvent::Created)
        } else if self.family(SchemaFamily::StatusUpdate).knows(fingerprint) {
            self.decode(payload).map(OrderEvent::StatusUpdated)
        } else {
            Err(unknown(fingerprint))
        }
    }

    fn prepare(&self, payload: &[u8]) -> Option<Fetch> {
        fetch_for(self.source, payload)
    }
}

impl Codec<DeadLetter> for AvroCodec {
    fn encode(&self, letter: &DeadLetter) -> Result<Vec<u8>, KafkaError> {
        self.dead_letters().encode(letter)
    }

    fn decode(&self, payload: &[u8]) -> Result<DeadLetter, DecodeError> {
        self.dead_letters().decode(payload)
    }
}
