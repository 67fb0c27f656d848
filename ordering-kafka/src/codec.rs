//! Avro single-object encoding over the schemas in `schemas/`.
//!
//! A value on the wire is `C3 01`, the 8-byte little-endian CRC-64-AVRO fingerprint of the
//! writer schema's canonical form, then the Avro binary datum. Any Avro implementation can
//! read it without a registry; an unknown fingerprint, a truncated or garbage payload is a
//! [`DecodeError`] (the dispatcher dead-letters such a record as poison).

use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::rabin::Rabin;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use ordering_core::{DeadLetter, DecodeError, FailureClass, Order, OrderEvent, StatusUpdate};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::KafkaError;

/// Encodes messages of type `M` for the wire and decodes them back. Implement it for another
/// framing (a Confluent schema-registry codec, say) without touching any handler.
pub trait Codec<M>: Send + Sync {
    fn encode(&self, message: &M) -> Result<Vec<u8>, KafkaError>;
    fn decode(&self, payload: &[u8]) -> Result<M, DecodeError>;
}

/// The schemas, embedded from `schemas/`: never re-typed.
pub const ORDER_SCHEMA: &str = include_str!("../../schemas/order.avsc");
pub const STATUS_UPDATE_SCHEMA: &str = include_str!("../../schemas/status_update.avsc");
pub const DEAD_LETTER_SCHEMA: &str = include_str!("../../schemas/dlq.avsc");
/// The first version of `dlq.avsc`: letters it wrote are still read (new fields default).
const DEAD_LETTER_SCHEMA_V1: &str = include_str!("../../schemas/history/dlq.v1.avsc");

/// The two bytes that open a single-object encoded value.
pub const MAGIC: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;

/// The largest block a decoder may allocate for one field. Kafka records are small (1 MiB by
/// default); without a bound, a garbage length prefix could make the decoder allocate
/// hundreds of megabytes before failing.
const MAX_ALLOCATION: usize = 16 * 1024 * 1024;

/// One schema, ready to write and read.
struct Entry {
    schema: &'static Schema,
    fingerprint: [u8; 8],
    writer: GenericDatumWriter<'static>,
    reader: GenericDatumReader<'static>,
}

struct Schemas {
    order: Entry,
    status_update: Entry,
    dead_letter: Entry,
    /// Earlier versions of the dead letter, read into the current one.
    dead_letter_history: Vec<Older>,
}

/// An earlier version of a schema: its fingerprint, and a reader that resolves what it wrote
/// against the current version (Avro schema resolution: added fields take their defaults).
struct Older {
    fingerprint: [u8; 8],
    reader: GenericDatumReader<'static>,
}

impl Older {
    fn new(writer: &'static Schema, current: &'static Schema) -> Result<Self, String> {
        Ok(Self {
            fingerprint: fingerprint(writer)?,
            reader: GenericDatumReader::builder(writer)
                .reader_schema(current)
                .build()
                .map_err(|e| e.to_string())?,
        })
    }
}

fn fingerprint(schema: &Schema) -> Result<[u8; 8], String> {
    schema
        .fingerprint::<Rabin>()
        .bytes
        .try_into()
        .map_err(|_| "a Rabin fingerprint is 8 bytes".to_owned())
}

static PARSED: LazyLock<Result<[Schema; 4], String>> = LazyLock::new(|| {
    apache_avro::util::max_allocation_bytes(MAX_ALLOCATION);
    let parse = |name: &str, text: &str| {
        Schema::parse_str(text).map_err(|e| format!("embedded schema {name} is invalid: {e}"))
    };
    Ok([
        parse("order.avsc", ORDER_SCHEMA)?,
        parse("status_update.avsc", STATUS_UPDATE_SCHEMA)?,
        parse("dlq.avsc", DEAD_LETTER_SCHEMA)?,
        parse("history/dlq.v1.avsc", DEAD_LETTER_SCHEMA_V1)?,
    ])
});

static SCHEMAS: LazyLock<Result<Schemas, String>> = LazyLock::new(|| {
    let [order, status_update, dead_letter, dead_letter_v1] =
        PARSED.as_ref().map_err(Clone::clone)?;
    Ok(Schemas {
        order: Entry::new(order)?,
        status_update: Entry::new(status_update)?,
        dead_letter: Entry::new(dead_letter)?,
        dead_letter_history: vec![Older::new(dead_letter_v1, dead_letter)?],
    })
});

impl Entry {
    fn new(schema: &'static Schema) -> Result<Self, String> {
        Ok(Self {
            schema,
            fingerprint: fingerprint(schema)?,
            writer: GenericDatumWriter::builder(schema)
                .build()
                .map_err(|e| e.to_string())?,
            reader: GenericDatumReader::builder(schema)
                .build()
                .map_err(|e| e.to_string())?,
        })
    }

    fn encode(&self, value: Value) -> Result<Vec<u8>, KafkaError> {
        let mut out = self.header();
        self.writer
            .write_value(&mut out, value)
            .map_err(|e| KafkaError::Encode(e.to_string()))?;
        Ok(out)
    }

    fn encode_serde(&self, message: &impl Serialize) -> Result<Vec<u8>, KafkaError> {
        let mut out = self.header();
        self.writer
            .write_ser(&mut out, message)
            .map_err(|e| KafkaError::Encode(e.to_string()))?;
        Ok(out)
    }

    fn header(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.fingerprint);
        out
    }

    /// Reads the datum after the header as a `Value`.
    fn read(&self, datum: &[u8]) -> Result<Value, DecodeError> {
        self.whole(datum, |reader, bytes| reader.read_value(bytes))
    }

    /// Deserializes straight from the bytes (no intermediate `Value`: half the cost).
    fn decode_serde<M: DeserializeOwned>(&self, datum: &[u8]) -> Result<M, DecodeError> {
        self.whole(datum, |reader, bytes| reader.read_deser(bytes))
    }

    /// Runs `read` over `datum`, which must be exactly one datum: trailing bytes mean the
    /// payload is not what its header says.
    fn whole<T>(
        &self,
        datum: &[u8],
        read: impl FnOnce(&GenericDatumReader<'static>, &mut &[u8]) -> apache_avro::AvroResult<T>,
    ) -> Result<T, DecodeError> {
        self.whole_with(&self.reader, datum, read)
    }

    /// [`Entry::whole`] with another reader (one resolving an older version).
    fn whole_with<T>(
        &self,
        reader: &GenericDatumReader<'static>,
        mut datum: &[u8],
        read: impl FnOnce(&GenericDatumReader<'static>, &mut &[u8]) -> apache_avro::AvroResult<T>,
    ) -> Result<T, DecodeError> {
        let value = read(reader, &mut datum)
            .map_err(|e| DecodeError(format!("not a valid {}: {e}", self.name())))?;
        if !datum.is_empty() {
            return Err(DecodeError(format!(
                "{} trailing bytes after a {}",
                datum.len(),
                self.name()
            )));
        }
        Ok(value)
    }

    /// Decodes a whole payload written with this schema.
    fn decode_payload<M: DeserializeOwned>(&self, payload: &[u8]) -> Result<M, DecodeError> {
        match split(payload)? {
            (fp, datum) if fp == self.fingerprint => self.decode_serde(datum),
            (fp, _) => Err(unknown(fp)),
        }
    }

    fn name(&self) -> String {
        match self.schema {
            Schema::Record(record) => record.name.fullname(None),
            _ => "value".into(),
        }
    }
}

/// Splits a payload into its fingerprint and datum.
fn split(payload: &[u8]) -> Result<([u8; 8], &[u8]), DecodeError> {
    if payload.len() < HEADER_LEN {
        return Err(DecodeError(format!(
            "{} bytes is too short for Avro single-object encoding",
            payload.len()
        )));
    }
    let (header, datum) = payload.split_at(HEADER_LEN);
    if header[..2] != MAGIC {
        return Err(DecodeError(format!(
            "not Avro single-object encoding (starts {:02X} {:02X}, expected C3 01)",
            header[0], header[1]
        )));
    }
    let mut fingerprint = [0; 8];
    fingerprint.copy_from_slice(&header[2..]);
    Ok((fingerprint, datum))
}

fn unknown(fingerprint: [u8; 8]) -> DecodeError {
    DecodeError(format!(
        "unknown schema fingerprint {:016X}",
        u64::from_le_bytes(fingerprint)
    ))
}

/// The Avro codec of the order flow. Cheap to copy: the schemas are parsed once per process.
#[derive(Clone, Copy)]
pub struct AvroCodec {
    schemas: &'static Schemas,
}

impl std::fmt::Debug for AvroCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AvroCodec")
    }
}

impl AvroCodec {
    pub fn new() -> Result<Self, KafkaError> {
        let schemas = SCHEMAS
            .as_ref()
            .map_err(|e| KafkaError::Config(e.clone()))?;
        Ok(Self { schemas })
    }

    /// The fingerprints written by this codec: order, status update, dead letter.
    pub fn fingerprints(&self) -> [[u8; 8]; 3] {
        let s = self.schemas;
        [
            s.order.fingerprint,
            s.status_update.fingerprint,
            s.dead_letter.fingerprint,
        ]
    }
}

impl Codec<Order> for AvroCodec {
    fn encode(&self, order: &Order) -> Result<Vec<u8>, KafkaError> {
        self.schemas.order.encode_serde(order)
    }

    fn decode(&self, payload: &[u8]) -> Result<Order, DecodeError> {
        self.schemas.order.decode_payload(payload)
    }
}

impl Codec<StatusUpdate> for AvroCodec {
    fn encode(&self, update: &StatusUpdate) -> Result<Vec<u8>, KafkaError> {
        self.schemas.status_update.encode_serde(update)
    }

    fn decode(&self, payload: &[u8]) -> Result<StatusUpdate, DecodeError> {
        self.schemas.status_update.decode_payload(payload)
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
        let s = self.schemas;
        match split(payload)? {
            (fp, datum) if fp == s.order.fingerprint => {
                s.order.decode_serde(datum).map(OrderEvent::Created)
            }
            (fp, datum) if fp == s.status_update.fingerprint => s
                .status_update
                .decode_serde(datum)
                .map(OrderEvent::StatusUpdated),
            (fp, _) => Err(unknown(fp)),
        }
    }
}

impl Codec<DeadLetter> for AvroCodec {
    fn encode(&self, letter: &DeadLetter) -> Result<Vec<u8>, KafkaError> {
        self.schemas.dead_letter.encode(dead_letter_value(letter))
    }

    fn decode(&self, payload: &[u8]) -> Result<DeadLetter, DecodeError> {
        let entry = &self.schemas.dead_letter;
        let (fp, datum) = split(payload)?;
        if fp == entry.fingerprint {
            return dead_letter_from(entry.read(datum)?);
        }
        let history = &self.schemas.dead_letter_history;
        let Some(older) = history.iter().find(|o| o.fingerprint == fp) else {
            return Err(unknown(fp));
        };
        dead_letter_from(entry.whole_with(&older.reader, datum, |r, b| r.read_value(b))?)
    }
}

// The dead letter is mapped by hand: it has unions and bytes, which serde would have to be
// told about field by field anyway, and the class is an enum in Rust and a string on the wire.
fn dead_letter_value(l: &DeadLetter) -> Value {
    fn opt(value: Option<Value>) -> Value {
        match value {
            None => Value::Union(0, Box::new(Value::Null)),
            Some(v) => Value::Union(1, Box::new(v)),
        }
    }
    let int = |n: u32| Value::Int(i32::try_from(n).unwrap_or(i32::MAX));
    let fields = [
        ("originalTopic", Value::String(l.original_topic.clone())),
        ("originalPartition", Value::Int(l.original_partition)),
        ("originalOffset", Value::Long(l.original_offset)),
        (
            "originalKey",
            opt(l.original_key.clone().map(Value::String)),
        ),
        (
            "originalTimestamp",
            opt(l.original_timestamp.map(Value::Long)),
        ),
        ("originalValue", Value::Bytes(l.original_value.clone())),
        (
            "originalMessage",
            opt(l.original_message.clone().map(Value::String)),
        ),
        ("errorType", Value::String(l.error_type.clone())),
        ("errorClass", Value::String(l.error_class.as_str().into())),
        ("errorMessage", Value::String(l.error_message.clone())),
        ("retryCount", int(l.retry_count)),
        ("failedAttempts", int(l.failed_attempts)),
        (
            "firstFailureTimestamp",
            Value::String(l.first_failure_timestamp.clone()),
        ),
        (
            "lastFailureTimestamp",
            Value::String(l.last_failure_timestamp.clone()),
        ),
        ("consumerGroup", Value::String(l.consumer_group.clone())),
        ("redriveCount", int(l.redrive_count)),
        ("reduced", Value::Boolean(l.reduced_from.is_some())),
        (
            "originalValueSize",
            opt(l
                .reduced_from
                .map(|n| Value::Long(i64::try_from(n).unwrap_or(i64::MAX)))),
        ),
    ];
    Value::Record(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn dead_letter_from(value: Value) -> Result<DeadLetter, DecodeError> {
    let Value::Record(fields) = value else {
        return Err(DecodeError("a dead letter must be a record".into()));
    };
    let mut fields: std::collections::HashMap<String, Value> = fields.into_iter().collect();
    let mut take = |name: &str| {
        let value = fields
            .remove(name)
            .ok_or_else(|| DecodeError(format!("dead letter without {name}")))?;
        Ok::<_, DecodeError>(match value {
            Value::Union(_, inner) => *inner,
            other => other,
        })
    };
    let bad = |name: &str, v: &Value| DecodeError(format!("dead letter field {name}: {v:?}"));
    macro_rules! field {
        ($name:literal, $($pat:pat => $out:expr),+) => {{
            match take($name)? {
                $($pat => $out,)+
                other => return Err(bad($name, &other)),
            }
        }};
    }
    let count = |n: i32| u32::try_from(n).unwrap_or(0);
    let error_class: String = field!("errorClass", Value::String(s) => s);
    let reduced: bool = field!("reduced", Value::Boolean(b) => b);
    let value_size: Option<i64> =
        field!("originalValueSize", Value::Null => None, Value::Long(n) => Some(n));
    let original_value: Vec<u8> = field!("originalValue", Value::Bytes(b) => b);
    let reduced_from = reduced.then(|| {
        value_size
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(original_value.len() as u64)
    });
    Ok(DeadLetter {
        original_topic: field!("originalTopic", Value::String(s) => s),
        original_partition: field!("originalPartition", Value::Int(n) => n),
        original_offset: field!("originalOffset", Value::Long(n) => n),
        original_key: field!("originalKey", Value::Null => None, Value::String(s) => Some(s)),
        original_timestamp: field!("originalTimestamp", Value::Null => None, Value::Long(n) => Some(n)),
        original_value,
        original_message: field!("originalMessage", Value::Null => None, Value::String(s) => Some(s)),
        error_type: field!("errorType", Value::String(s) => s),
        error_class: error_class
            .parse::<FailureClass>()
            .map_err(|e| DecodeError(e.to_string()))?,
        error_message: field!("errorMessage", Value::String(s) => s),
        retry_count: field!("retryCount", Value::Int(n) => count(n)),
        failed_attempts: field!("failedAttempts", Value::Int(n) => count(n)),
        first_failure_timestamp: field!("firstFailureTimestamp", Value::String(s) => s),
        last_failure_timestamp: field!("lastFailureTimestamp", Value::String(s) => s),
        consumer_group: field!("consumerGroup", Value::String(s) => s),
        redrive_count: field!("redriveCount", Value::Int(n) => count(n)),
        reduced_from,
    })
}
