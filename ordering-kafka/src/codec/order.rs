//! The order flow's codec (feature `order`): its three types, registered from `schemas/`.

use std::path::Path;

use ordering_core::order::{Order, OrderEvent, StatusUpdate};
use ordering_core::{DeadLetter, DecodeError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::schemas::{Family, Schemas, split, unknown};
use super::{Codec, DeadLetterCodec, SchemaError, SchemaFamily};
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
}

impl std::fmt::Debug for AvroCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroCodec")
            .field("pins", &self.pins)
            .finish()
    }
}

impl AvroCodec {
    /// Reads every published version, writes the current ones.
    pub fn new() -> Result<Self, KafkaError> {
        Ok(Self {
            schemas: Schemas::embedded()?,
            pins: [None; 3],
        })
    }

    /// Also reads the versions in `dir` (`.avsc` files, each told apart by its record name):
    /// versions published after this binary was built, so that records a newer producer
    /// wrote decode without a new release. Each must resolve into the current version.
    pub fn with_schema_dir(dir: &Path) -> Result<Self, SchemaError> {
        Ok(Self {
            schemas: Schemas::with_dir(dir)?,
            pins: [None; 3],
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
        self.family(family).writes(self.pins[family.index()])
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
        self.family(family)
            .encode_serde(self.pins[family.index()], message)
    }

    fn decode_serde<M: DeserializeOwned>(
        &self,
        family: SchemaFamily,
        payload: &[u8],
    ) -> Result<M, DecodeError> {
        self.family(family).decode_serde(payload)
    }
}

impl Codec<Order> for AvroCodec {
    fn encode(&self, order: &Order) -> Result<Vec<u8>, KafkaError> {
        self.encode_serde(SchemaFamily::Order, order)
    }

    fn decode(&self, payload: &[u8]) -> Result<Order, DecodeError> {
        self.decode_serde(SchemaFamily::Order, payload)
    }
}

impl Codec<StatusUpdate> for AvroCodec {
    fn encode(&self, update: &StatusUpdate) -> Result<Vec<u8>, KafkaError> {
        self.encode_serde(SchemaFamily::StatusUpdate, update)
    }

    fn decode(&self, payload: &[u8]) -> Result<StatusUpdate, DecodeError> {
        self.decode_serde(SchemaFamily::StatusUpdate, payload)
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
        let (fingerprint, _) = split(payload)?;
        if self.family(SchemaFamily::Order).knows(fingerprint) {
            self.decode(payload).map(OrderEvent::Created)
        } else if self.family(SchemaFamily::StatusUpdate).knows(fingerprint) {
            self.decode(payload).map(OrderEvent::StatusUpdated)
        } else {
            Err(unknown(fingerprint))
        }
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
