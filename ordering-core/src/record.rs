//! What a source yields: a record's origin, its raw bytes and the decoded event (or why it
//! could not be decoded).

use std::fmt;
use std::sync::Arc;

use crate::header::Header;
use crate::position::Position;

/// A partition of a topic. The topic name is shared, so cloning is cheap.
#[derive(Debug, Clone, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic's name.
    pub topic: Arc<str>,
    /// The partition's number within the topic.
    pub partition: i32,
}

// Sources hand out clones of one `Arc` per topic, so comparing pointers first skips comparing
// names on the dispatcher's per-record lookups.
impl PartialEq for TopicPartition {
    fn eq(&self, other: &Self) -> bool {
        self.partition == other.partition
            && (Arc::ptr_eq(&self.topic, &other.topic) || self.topic == other.topic)
    }
}

impl Eq for TopicPartition {}

impl std::hash::Hash for TopicPartition {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.topic.hash(state);
        self.partition.hash(state);
    }
}

impl TopicPartition {
    /// Partition `partition` of `topic`.
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// Where a record came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    /// The topic and partition the record was read from.
    pub tp: TopicPartition,
    /// The record's offset in that partition.
    pub offset: i64,
    /// Which incarnation of the topic the record is in ([`Position::incarnation`]): a source
    /// that cannot tell gives [`FIRST_INCARNATION`].
    ///
    /// [`FIRST_INCARNATION`]: crate::FIRST_INCARNATION
    pub incarnation: u32,
    /// The record's key exactly as received; `None` for a record without one.
    pub key: Option<Vec<u8>>,
    /// Milliseconds since the Unix epoch, when the broker gave one.
    pub timestamp: Option<i64>,
    /// The record's headers, in the order received.
    pub headers: Vec<Header>,
}

impl RecordMeta {
    /// A record's origin with no key, timestamp or headers.
    pub fn new(tp: TopicPartition, offset: i64) -> Self {
        Self {
            tp,
            offset,
            incarnation: crate::FIRST_INCARNATION,
            key: None,
            timestamp: None,
            headers: Vec::new(),
        }
    }

    /// Where the record was first published: for a redriven record (one sent back from a
    /// dead-letter queue) the position of the record it copies, from its
    /// [`REDRIVE_ORIGIN_TOPIC_HEADER`] headers; `None` for any other record.
    ///
    /// [`REDRIVE_ORIGIN_TOPIC_HEADER`]: crate::REDRIVE_ORIGIN_TOPIC_HEADER
    pub fn origin(&self) -> Option<Position> {
        crate::header::origin_from(&self.headers)
    }

    /// The position that orders this record against others of its key: its
    /// [`origin`](Self::origin) when it was redriven, else where it sits.
    pub fn position(&self) -> Position {
        self.origin().unwrap_or_else(|| {
            Position::new(self.tp.topic.clone(), self.tp.partition, self.offset)
                .in_incarnation(self.incarnation)
        })
    }

    /// The trace context the record's headers carry (W3C `traceparent`, `tracestate`,
    /// `baggage`), as the producer injected it; empty when there is none.
    pub fn trace_context(&self) -> opentelemetry::Context {
        crate::trace::extract(&self.headers)
    }

    /// The key as text (lossy for keys that are not UTF-8).
    pub fn key_str(&self) -> Option<String> {
        self.key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
    }
}

/// A payload that could not be decoded. Such a record is dead-lettered at once, with its raw
/// bytes, and never retried (a redrive can send it back later, once a reader that can read it
/// runs). Its [`kind`](Self::kind) says which letter it gets: *poison* for bytes that are not
/// what their framing says or a schema this reader does not know, *permanent* for a readable
/// value the codec refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    kind: DecodeErrorKind,
    /// The letter's `errorType` for an [`DecodeErrorKind::Invalid`] value.
    invalid_type: Option<std::borrow::Cow<'static, str>>,
    message: String,
}

/// Why a payload could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// Not what its framing says: garbage, truncated, an invalid field.
    Malformed,
    /// Written with a schema this reader does not know (a newer writer): it decodes once the
    /// reader knows that schema.
    UnknownSchema,
    /// Readable, but not a valid event (a field missing, a value out of range): the record is
    /// at fault, a *permanent* failure rather than poison.
    Invalid,
}

impl DecodeError {
    /// A malformed payload.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            kind: DecodeErrorKind::Malformed,
            invalid_type: None,
            message: message.into(),
        }
    }

    /// A payload written with a schema this reader does not know.
    pub fn unknown_schema(message: impl Into<String>) -> Self {
        Self {
            kind: DecodeErrorKind::UnknownSchema,
            invalid_type: None,
            message: message.into(),
        }
    }

    /// A readable payload whose value the codec refuses; `error_type` names the failure in
    /// the dead letter (`InvalidReservation`, say), as a handler's error kind does.
    pub fn invalid(
        error_type: impl Into<std::borrow::Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind: DecodeErrorKind::Invalid,
            invalid_type: Some(error_type.into()),
            message: message.into(),
        }
    }

    /// Why the payload could not be decoded, which decides the letter's
    /// [`FailureClass`](crate::FailureClass).
    pub fn kind(&self) -> DecodeErrorKind {
        self.kind
    }

    /// The dead letter's `errorType` for it: `DecodeError`, `UnknownSchema`, or what the
    /// codec named an invalid value.
    pub fn error_type(&self) -> &str {
        match self.kind {
            DecodeErrorKind::Malformed => "DecodeError",
            DecodeErrorKind::UnknownSchema => "UnknownSchema",
            DecodeErrorKind::Invalid => self.invalid_type.as_deref().unwrap_or("InvalidEvent"),
        }
    }
}

/// One record from a source.
#[derive(Debug, Clone)]
pub struct Record<E> {
    /// Where the record came from.
    pub meta: RecordMeta,
    /// The payload exactly as received.
    pub payload: Vec<u8>,
    /// The decoded event, or why the payload could not be decoded (such a record is
    /// dead-lettered at once).
    pub event: Result<E, DecodeError>,
}

impl<E> Record<E> {
    /// A record from its parts.
    pub fn new(meta: RecordMeta, payload: Vec<u8>, event: Result<E, DecodeError>) -> Self {
        Self {
            meta,
            payload,
            event,
        }
    }
}

/// A record's position for idempotence: where it was first published. For a redriven record
/// that is the position of the record it copies ([`RecordMeta::origin`]), so that a redrive
/// is ordered like the original.
impl From<&RecordMeta> for Position {
    fn from(meta: &RecordMeta) -> Self {
        meta.position()
    }
}
