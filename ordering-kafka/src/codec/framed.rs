//! The Confluent Schema Registry framing, beside single-object encoding: a zero byte, the
//! writer schema's id as 4 big-endian bytes, then the Avro datum. The first byte tells the
//! two apart (single-object encoding opens with `C3 01`), so one topic may carry both, as it
//! does during a rolling move from one to the other.
//!
//! Reading a framed record needs its writer schema, which a registry keeps: a
//! [`SchemaSource`] (the [`Registry`](super::Registry) client, feature `registry`) gives it.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;

use apache_avro::Schema;

use super::schemas::fingerprint;

/// The byte that opens a Confluent-framed value.
pub const CONFLUENT_MAGIC: u8 = 0;

/// The schema id and the datum of a Confluent-framed payload; `None` if it is not one.
pub fn split_framed(payload: &[u8]) -> Option<(u32, &[u8])> {
    match payload {
        [CONFLUENT_MAGIC, a, b, c, d, datum @ ..] => {
            Some((u32::from_be_bytes([*a, *b, *c, *d]), datum))
        }
        _ => None,
    }
}

/// How a codec writes: what the readers of its topic understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WireFormat {
    /// Avro single-object encoding (`C3 01`, the schema's fingerprint, the datum): no
    /// registry needed; every reader knows the schema versions it may meet.
    #[default]
    SingleObject,
    /// Confluent's framing (`00`, a registry's schema id, the datum): what Java's, Python's
    /// and Kafka Connect's Avro serializers write and read.
    Confluent,
}

impl FromStr for WireFormat {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "single-object" => Ok(Self::SingleObject),
            "confluent" => Ok(Self::Confluent),
            _ => Err(format!("must be single-object or confluent, got {raw:?}")),
        }
    }
}

/// What a codec puts before the datum it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Frame {
    /// Single-object encoding, with the fingerprint of the version written.
    #[default]
    SingleObject,
    /// Confluent framing: published version `version`, registered under id `id`.
    // Written only through a registry (feature `registry`); read always.
    #[cfg_attr(not(feature = "registry"), allow(dead_code))]
    Registered {
        /// The registry's id of the schema.
        id: u32,
        /// The published version it is.
        version: u32,
    },
}

/// The Confluent header of a value written with schema `id`.
pub(super) fn framed_header(id: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.push(CONFLUENT_MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
    out
}

/// A writer schema a registry gave, parsed once.
#[derive(Debug)]
pub struct WriterSchema {
    pub(super) schema: Schema,
    /// Its Rabin fingerprint: a schema that is a version the codec embeds takes that
    /// version's fast path.
    pub(super) fingerprint: [u8; 8],
    /// The record's full name, which tells a codec's types apart.
    pub(super) record: String,
}

impl WriterSchema {
    /// Parses a schema's text, as a registry keeps it.
    pub fn parse(text: &str) -> Result<Self, apache_avro::Error> {
        let schema = Schema::parse_str(text)?;
        let record = match &schema {
            Schema::Record(record) => record.name.fullname(None),
            _ => String::new(),
        };
        Ok(Self {
            fingerprint: fingerprint(&schema),
            schema,
            record,
        })
    }

    /// The full name of the record it defines (empty for a schema that is not a record).
    pub fn record(&self) -> &str {
        &self.record
    }
}

/// Fetching a writer schema: `Err` when its source cannot answer now (a registry down), so
/// the record waits and the fetch is tried again.
pub type Fetch = Pin<Box<dyn Future<Output = Result<(), FetchError>> + Send>>;

/// A writer schema could not be fetched now: the source's outage, never the record's fault.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(pub String);

/// Where a codec finds the writer schema of a Confluent-framed record, by its id.
pub trait SchemaSource: Send + Sync + std::fmt::Debug {
    /// The writer schema of `id`, if at hand now.
    fn writer(&self, id: u32) -> Option<Arc<WriterSchema>>;

    /// Fetches the writer schema of `id` so that [`writer`](Self::writer) has it. `Ok` once
    /// the source answered, whether it has the schema or not (`writer` then says); `Err` if
    /// it could not answer.
    fn fetch(&'static self, id: u32) -> Fetch;
}
