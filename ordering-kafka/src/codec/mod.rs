//! Avro single-object encoding over the schemas in `schemas/`.
//!
//! A value on the wire is `C3 01`, the 8-byte little-endian CRC-64-AVRO fingerprint of the
//! writer schema's canonical form, then the Avro binary datum. Any Avro implementation can
//! read it without a registry. A reader finds the writer's schema by its fingerprint among
//! every published version ([`schemas`]) and resolves it into the current one, so producers
//! and consumers can be upgraded in either order. An unknown fingerprint is a [`DecodeError`]
//! of kind `UnknownSchema`; a truncated or garbage payload one of kind `Malformed` (the
//! dispatcher dead-letters either as poison).
//!
//! Records in the Confluent Schema Registry's framing (`00`, a schema id, the datum) are read
//! beside them by a codec given a [`SchemaSource`] (the [`Registry`] client, feature
//! `registry`), and written by one told to ([`framed`]).

mod dead_letter;
pub mod framed;
mod json;
#[cfg(feature = "order")]
mod order;
#[cfg(feature = "registry")]
pub mod registry;
mod schemas;

use std::path::Path;

use ordering_core::{DeadLetter, DecodeError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::KafkaError;
use dead_letter::{dead_letter_from, dead_letter_value};
use framed::Frame;
use schemas::{Family, Schemas, split, unknown};

pub use framed::{Fetch, FetchError, SchemaSource, WireFormat, WriterSchema};
pub use json::Json;
#[cfg(feature = "order")]
pub use order::{AvroCodec, ORDER_SCHEMA, STATUS_UPDATE_SCHEMA};
#[cfg(feature = "registry")]
pub use registry::{
    BasicAuth, Registration, Registry, RegistryConfig, RegistryError, SubjectStrategy,
};
pub use schemas::{MAGIC, SchemaError, SchemaVersions};
#[cfg(feature = "order")]
pub use schemas::{ORDER_FLOW_DLQ_VERSION, SchemaFamily};

/// Encodes messages of type `M` for the wire and decodes them back. Implement it for another
/// framing (a Confluent schema-registry codec, say) without touching any handler. `Avro<M>`
/// and `Json<M>` are two. A decode failure says what it was ([`DecodeError`]'s kinds): bytes
/// that are not what their framing says (poison), a schema this reader does not know
/// (poison), or a readable value that is not a valid event (`DecodeError::invalid`: a
/// permanent failure, with an `errorType` of the codec's naming).
pub trait Codec<M>: Send + Sync {
    /// The record value for `message`. A failure is [`KafkaError::Encode`]: the message does
    /// not fit the format (or a pinned version), and sending it again will not help.
    fn encode(&self, message: &M) -> Result<Vec<u8>, KafkaError>;
    /// The message in a record value, whichever known version or framing wrote it; a
    /// failure's kind says whether the record is poison or an invalid event.
    fn decode(&self, payload: &[u8]) -> Result<M, DecodeError>;

    /// What [`decode`](Self::decode) of `payload` needs done first, if anything: a registry
    /// codec fetching the writer schema of an id it has not seen. The source awaits it before
    /// it decodes; while it fails (the registry unreachable), the record waits and the fetch
    /// is tried again: never a dead letter for the world's fault. `None`, the default, when
    /// there is nothing to do.
    fn prepare(&self, payload: &[u8]) -> Option<Fetch> {
        let _ = payload;
        None
    }
}

/// The current dead-letter schema (record `ordering.dlq.DeadLetter`), the newest version in
/// `schemas/history/`, embedded: never re-typed.
pub const DEAD_LETTER_SCHEMA: &str = include_str!("../../schemas/history/dlq.v4.avsc");

/// The dead-letter codec, beside any event codec: letters in Avro with the DLQ's own schema
/// ([`DEAD_LETTER_SCHEMA`], record `ordering.dlq.DeadLetter`), every published version read
/// (versions 1 to 3, named `com.ecommerce.dlq.DeadLetter`, included), the newest written unless
/// pinned. A letter keeps the failed record's bytes as they were, so
/// it does not matter how the events themselves are encoded (`Avro<M>` of any type, JSON,
/// bytes). Cheap to copy.
#[derive(Clone, Copy)]
pub struct DeadLetterCodec {
    family: &'static Family,
    pin: Option<u32>,
}

impl std::fmt::Debug for DeadLetterCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterCodec")
            .field("writes", &self.writes())
            .finish()
    }
}

impl DeadLetterCodec {
    /// Reads every published version of the letter schema, writes the newest.
    pub fn new() -> Result<Self, SchemaError> {
        Self::with(None)
    }

    /// Also reads the letter versions in the `.avsc` files of `dir`. Every file there must
    /// be a version of the letter record (`ordering.dlq.DeadLetter`, or its old name
    /// `com.ecommerce.dlq.DeadLetter`): a file of another
    /// record is refused (`SchemaError::UnknownRecord`), so keep the letters' versions in a
    /// directory of their own.
    pub fn with_schema_dir(dir: &Path) -> Result<Self, SchemaError> {
        Self::with(Some(dir))
    }

    fn with(dir: Option<&Path>) -> Result<Self, SchemaError> {
        // The embedded versions are parsed once per process, however many codecs are made.
        static EMBEDDED: std::sync::LazyLock<Result<&'static Family, String>> =
            std::sync::LazyLock::new(|| {
                DeadLetterCodec::parse(None)
                    .map(|codec| codec.family)
                    .map_err(|e| e.to_string())
            });
        if dir.is_none() {
            let family = EMBEDDED.clone().map_err(|reason| SchemaError::Embedded {
                name: schemas::DEAD_LETTER_VERSIONS.name.into(),
                reason,
            })?;
            return Ok(Self { family, pin: None });
        }
        Self::parse(dir)
    }

    fn parse(dir: Option<&Path>) -> Result<Self, SchemaError> {
        let family = Schemas::one(schemas::DEAD_LETTER_VERSIONS, dir)?;
        Ok(Self { family, pin: None })
    }

    /// Writes published version `version` instead of the newest (for a rollout where the
    /// readers of the DLQ are upgraded first).
    pub fn pin(mut self, version: u32) -> Result<Self, SchemaError> {
        self.pin = self.family.pin(version)?;
        Ok(self)
    }

    /// The version this codec writes.
    pub fn writes(&self) -> u32 {
        self.family.writes(self.pin)
    }
}

impl Codec<DeadLetter> for DeadLetterCodec {
    fn encode(&self, letter: &DeadLetter) -> Result<Vec<u8>, KafkaError> {
        self.family
            .encode_as(self.writes(), dead_letter_value(letter))
    }

    fn decode(&self, payload: &[u8]) -> Result<DeadLetter, DecodeError> {
        let (fingerprint, _) = split(payload)?;
        let value = self
            .family
            .read(payload)?
            .ok_or_else(|| unknown(fingerprint))?;
        dead_letter_from(value)
    }
}

/// The Avro codec of any serde type `M`, given its [`SchemaVersions`]: the current version
/// read and written straight from and to `M`, every other version (and any found in a schema
/// directory) read through resolution, and the writer pinnable to an older version for a
/// rollout. The order flow's own types use [`AvroCodec`], which registers its three this way.
///
/// The schemas are parsed once per construction and kept for the process: make one codec and
/// copy it (it is `Copy`).
pub struct Avro<M> {
    family: &'static Family,
    pin: Option<u32>,
    frame: Frame,
    source: Option<&'static dyn SchemaSource>,
    _message: std::marker::PhantomData<fn() -> M>,
}

impl<M> Clone for Avro<M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M> Copy for Avro<M> {}

impl<M> std::fmt::Debug for Avro<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Avro")
            .field("schema", &self.family.name)
            .field("writes", &self.writes())
            .finish()
    }
}

impl<M: DeserializeOwned> Avro<M> {
    /// A codec for the versions of `versions`. Refuses a type whose serde name is not the
    /// schema record's name (every decode would fail), saying how to fix it.
    pub fn new(versions: SchemaVersions) -> Result<Self, SchemaError> {
        Self::with(versions, None)
    }

    /// Also reads the versions of the type in the `.avsc` files of `dir` (files of other
    /// records are refused): versions published after this build.
    pub fn with_schema_dir(versions: SchemaVersions, dir: &Path) -> Result<Self, SchemaError> {
        Self::with(versions, Some(dir))
    }

    fn with(versions: SchemaVersions, dir: Option<&Path>) -> Result<Self, SchemaError> {
        let family = Schemas::one(versions, dir)?;
        // After the schemas: `record` is then known to name the schema's record.
        let short = versions
            .record
            .rsplit('.')
            .next()
            .unwrap_or(versions.record);
        if let Some(serde_name) = serde_struct_name::<M>()
            && serde_name != short
        {
            return Err(SchemaError::TypeName {
                rust_type: std::any::type_name::<M>(),
                serde_name,
                record: versions.record.into(),
                short: short.into(),
            });
        }
        Ok(Self {
            family,
            pin: None,
            frame: Frame::SingleObject,
            source: None,
            _message: std::marker::PhantomData,
        })
    }
}

impl<M> Avro<M> {
    /// Writes published version `version` instead of the newest.
    pub fn pin(mut self, version: u32) -> Result<Self, SchemaError> {
        self.pin = self.family.pin(version)?;
        Ok(self)
    }

    /// The version this codec writes.
    pub fn writes(&self) -> u32 {
        self.family.writes_framed(self.pin, self.frame)
    }

    /// Also reads records in the Confluent framing, their writer schemas from `source` (a
    /// [`Registry`]): the registry's version of the type, resolved into the current one as
    /// any version is. It still writes single-object encoding unless told otherwise
    /// ([`Avro::write_registered`]).
    pub fn reading_registry(mut self, source: &'static dyn SchemaSource) -> Self {
        self.source = Some(source);
        self
    }

    /// Writes the Confluent framing to `topic`: the version it writes (pin it first) looked
    /// up, or registered if the registry's settings say so, under the subject its strategy
    /// names; once, now. Reads the registry's records too.
    #[cfg(feature = "registry")]
    pub async fn write_registered(
        mut self,
        registry: &'static Registry,
        topic: &str,
    ) -> Result<Self, RegistryError> {
        let version = self.writes();
        self.frame = registered_frame(self.family, registry, topic, version).await?;
        Ok(self.reading_registry(registry))
    }
}

/// The frame of `family`'s published version `version` written to `topic` through `registry`.
#[cfg(feature = "registry")]
async fn registered_frame(
    family: &Family,
    registry: &Registry,
    topic: &str,
    version: u32,
) -> Result<Frame, RegistryError> {
    let text = family
        .text_of(version)
        .map_err(|e| RegistryError::Config(e.to_string()))?;
    let record = family.record();
    let subject = registry.strategy().subject(topic, record);
    let id = registry.id_of(&subject, record, text).await?;
    Ok(Frame::Registered { id, version })
}

/// What a codec with `source` must fetch before decoding `payload`: the writer schema of a
/// framed record it has not seen.
fn fetch_for(source: Option<&'static dyn SchemaSource>, payload: &[u8]) -> Option<Fetch> {
    let (id, _) = framed::split_framed(payload)?;
    let source = source?;
    match source.writer(id) {
        Some(_) => None,
        None => Some(source.fetch(id)),
    }
}

/// The name serde gives `M` when `M` is a struct (its `#[serde(rename)]` included), found by
/// asking `M` to deserialize from a probe that only notes the name; `None` for other shapes.
fn serde_struct_name<M: DeserializeOwned>() -> Option<&'static str> {
    use serde::de::{Error as _, Visitor};

    struct Probe<'a>(&'a std::cell::Cell<Option<&'static str>>);

    impl<'de> serde::Deserializer<'de> for Probe<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(Self::Error::custom("a probe, not data"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            _fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.set(Some(name));
            Err(Self::Error::custom("a probe, not data"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let name = std::cell::Cell::new(None);
    let _ = M::deserialize(Probe(&name));
    name.get()
}

impl<M: Serialize + DeserializeOwned> Codec<M> for Avro<M> {
    fn encode(&self, message: &M) -> Result<Vec<u8>, KafkaError> {
        self.family.encode_serde(self.pin, self.frame, message)
    }

    fn decode(&self, payload: &[u8]) -> Result<M, DecodeError> {
        self.family.decode_serde(payload, self.source)
    }

    fn prepare(&self, payload: &[u8]) -> Option<Fetch> {
        fetch_for(self.source, payload)
    }
}
