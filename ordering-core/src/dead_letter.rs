//! The record of a failure (the letter schema, `schemas/history/dlq.vN.avsc`): everything an operator needs to understand
//! and replay it without any other source.

use std::fmt;
use std::str::FromStr;

use crate::handler::ErrorClass;
use crate::header::{
    Header, REDRIVE_COUNT_HEADER, REDRIVE_DLQ_OFFSET_HEADER, REDRIVE_DLQ_PARTITION_HEADER,
    REDRIVE_DLQ_TOPIC_HEADER, REDRIVE_HEADER_PREFIX, REDRIVE_ORIGIN_INCARNATION_HEADER,
    REDRIVE_ORIGIN_OFFSET_HEADER, REDRIVE_ORIGIN_PARTITION_HEADER, REDRIVE_ORIGIN_TOPIC_HEADER,
    origin_from,
};
use crate::position::Position;
use crate::record::DecodeErrorKind;

/// Why a record ended in the dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureClass {
    /// Failed every retry the policy allowed.
    Retryable,
    /// Failed in a way retrying cannot fix; not retried.
    Permanent,
    /// Could not be decoded; not retried.
    Poison,
}

impl FailureClass {
    /// The wire name: `retryable`, `permanent` or `poison`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retryable => "retryable",
            Self::Permanent => "permanent",
            Self::Poison => "poison",
        }
    }
}

impl From<ErrorClass> for FailureClass {
    fn from(class: ErrorClass) -> Self {
        match class {
            // `Unavailable` never leads to a dead letter (the policy waits); should a letter
            // be written anyway it was still worth retrying.
            ErrorClass::Retryable | ErrorClass::Unavailable => Self::Retryable,
            ErrorClass::Permanent => Self::Permanent,
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<DecodeErrorKind> for FailureClass {
    /// A payload that does not decode: poison, or permanent for a readable value the codec
    /// refused ([`DecodeErrorKind::Invalid`]).
    fn from(kind: DecodeErrorKind) -> Self {
        match kind {
            DecodeErrorKind::Malformed | DecodeErrorKind::UnknownSchema => Self::Poison,
            DecodeErrorKind::Invalid => Self::Permanent,
        }
    }
}

/// An `errorClass` that is none of the known names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error class {0:?} (expected retryable, permanent or poison)")]
pub struct UnknownFailureClass(pub String);

impl FromStr for FailureClass {
    type Err = UnknownFailureClass;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "retryable" => Ok(Self::Retryable),
            "permanent" => Ok(Self::Permanent),
            "poison" => Ok(Self::Poison),
            other => Err(UnknownFailureClass(other.to_owned())),
        }
    }
}

/// Where a dead letter sits in the DLQ: what identifies it to the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LetterId {
    /// The dead-letter topic.
    pub topic: String,
    /// The partition of the dead-letter topic.
    pub partition: i32,
    /// The letter's offset in that partition.
    pub offset: i64,
}

impl fmt::Display for LetterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.topic, self.partition, self.offset)
    }
}

/// What a redrive ledger keys on: the record a letter is about, by where it was first
/// published ([`DeadLetter::origin`]), and how many times it had been redriven when it failed.
/// Two letters of one delivery share it; a redriven copy that failed again has its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedriveKey {
    /// Where the record was first published ([`DeadLetter::origin`]).
    pub origin: Position,
    /// Times the record had been redriven when it failed ([`DeadLetter::redrive_count`]): 0
    /// for the original.
    pub redrive_count: u32,
}

impl fmt::Display for RedriveKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (redriven {} times)", self.origin, self.redrive_count)
    }
}

/// A dead letter. Field for field the `DeadLetter` record of the letter schema
/// (`schemas/history/dlq.vN.avsc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The topic the failed record was consumed from (for a redriven copy, the copy's;
    /// [`origin`](Self::origin) gives the first).
    pub original_topic: String,
    /// The partition it was consumed from.
    pub original_partition: i32,
    /// Its offset in that partition.
    pub original_offset: i64,
    /// Which incarnation of its topic the record was in ([`Position::incarnation`]). Not a
    /// field of the schema: it travels in the letter's `dlq.original.incarnation` header, and
    /// a letter without one was written for the topic's first.
    pub original_incarnation: u32,
    /// The record's key exactly as received (a redrive sends it back byte for byte, so the
    /// record lands on the same partition).
    pub original_key: Option<Vec<u8>>,
    /// The record's headers exactly as received.
    pub original_headers: Vec<Header>,
    /// Milliseconds since the Unix epoch.
    pub original_timestamp: Option<i64>,
    /// The payload exactly as received, so it can be replayed byte for byte.
    pub original_value: Vec<u8>,
    /// The decoded event as JSON; `None` when it could not be decoded.
    pub original_message: Option<String>,
    /// A short, stable name: `OrderNotFound`, `InvalidStatus`, `DecodeError`, …
    pub error_type: String,
    /// Why it ended here: retries spent, a permanent failure, or a payload that does not
    /// decode.
    pub error_class: FailureClass,
    /// The last failure as its error displays it (cut short in a [`reduced`] letter).
    ///
    /// [`reduced`]: DeadLetter::reduced
    pub error_message: String,
    /// Retries made (attempts after the first).
    pub retry_count: u32,
    /// Attempts made, all failed. Zero for a record that could not be decoded.
    pub failed_attempts: u32,
    /// ISO 8601.
    pub first_failure_timestamp: String,
    /// ISO 8601.
    pub last_failure_timestamp: String,
    /// The consumer group whose handler failed.
    pub consumer_group: String,
    /// Times the record had been redriven from the DLQ before it failed this time (its
    /// [`REDRIVE_COUNT_HEADER`]); redrive stops at a bound, so a letter cannot loop forever.
    pub redrive_count: u32,
    /// `Some(size)`: the sink refused the full letter, so this one is [`reduced`]: no
    /// `original_message`, and `original_value` holds only the first bytes of a `size`-byte
    /// payload. Such a letter explains a failure but cannot be replayed.
    ///
    /// [`reduced`]: DeadLetter::reduced
    pub reduced_from: Option<u64>,
}

/// The longest error message a reduced letter keeps, in bytes.
const REDUCED_MESSAGE_MAX: usize = 1024;

impl DeadLetter {
    /// This letter in the form a sink can take when it refused the whole one (too large):
    /// without the decoded copy, the payload cut to `max_payload` bytes and a long error
    /// message cut short; `reduced_from` says so and keeps the payload's real size.
    pub fn reduced(&self, max_payload: usize) -> DeadLetter {
        let size = self
            .reduced_from
            .unwrap_or(self.original_value.len() as u64);
        let mut value = self.original_value.clone();
        value.truncate(max_payload);
        DeadLetter {
            original_value: value,
            original_message: None,
            original_key: self.original_key.as_deref().map(|k| {
                let mut k = k.to_vec();
                k.truncate(REDUCED_MESSAGE_MAX);
                k
            }),
            // Headers can be what made it too large; the origin they may carry goes with
            // them, as a reduced letter is never sent back.
            original_headers: Vec::new(),
            error_message: cut(&self.error_message, REDUCED_MESSAGE_MAX),
            error_type: cut(&self.error_type, REDUCED_MESSAGE_MAX),
            reduced_from: Some(size),
            ..self.clone()
        }
    }

    /// Whether this letter holds the complete payload, so it can be replayed byte for byte.
    pub fn is_replayable(&self) -> bool {
        self.reduced_from.is_none()
    }

    /// The key as text (lossy for keys that are not UTF-8), for people and filters.
    pub fn key_str(&self) -> Option<String> {
        self.original_key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
    }

    /// Where the failed record was first published: its own position, or for a redriven
    /// record the position of the record it copies.
    pub fn origin(&self) -> Position {
        origin_from(&self.original_headers).unwrap_or_else(|| {
            Position::new(
                self.original_topic.as_str(),
                self.original_partition,
                self.original_offset,
            )
            .in_incarnation(self.original_incarnation)
        })
    }

    /// What a redrive ledger keys this letter on: two letters of one delivery of a record
    /// (written twice by a crash before the commit) share it, so the record is sent back once;
    /// the letter of a redriven copy that failed again has a key of its own.
    pub fn redrive_key(&self) -> RedriveKey {
        RedriveKey {
            origin: self.origin(),
            redrive_count: self.redrive_count,
        }
    }

    /// The headers of this letter's record sent back from `letter`: the original headers byte
    /// for byte, without those of an earlier redrive, then the redrive count, the origin and
    /// where the letter sits.
    pub fn redrive_headers(&self, letter: &LetterId) -> Vec<Header> {
        let origin = self.origin();
        let mut headers: Vec<Header> = self
            .original_headers
            .iter()
            .filter(|h| !h.name.starts_with(REDRIVE_HEADER_PREFIX))
            .cloned()
            .collect();
        let added = [
            (
                REDRIVE_COUNT_HEADER,
                self.redrive_count.saturating_add(1).to_string(),
            ),
            (REDRIVE_ORIGIN_TOPIC_HEADER, origin.topic.to_string()),
            (
                REDRIVE_ORIGIN_PARTITION_HEADER,
                origin.partition.to_string(),
            ),
            (REDRIVE_ORIGIN_OFFSET_HEADER, origin.offset.to_string()),
            (
                REDRIVE_ORIGIN_INCARNATION_HEADER,
                origin.incarnation.to_string(),
            ),
            (REDRIVE_DLQ_TOPIC_HEADER, letter.topic.clone()),
            (REDRIVE_DLQ_PARTITION_HEADER, letter.partition.to_string()),
            (REDRIVE_DLQ_OFFSET_HEADER, letter.offset.to_string()),
        ];
        headers.extend(added.into_iter().map(|(name, value)| Header {
            name: name.to_owned(),
            value: Some(value.into_bytes()),
        }));
        headers
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let end = (0..=max)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::redrive_count;

    fn letter(value: Vec<u8>, message: &str) -> DeadLetter {
        DeadLetter {
            original_topic: "t".into(),
            original_partition: 0,
            original_offset: 7,
            original_incarnation: 1,
            original_key: Some(b"ORD-1".to_vec()),
            original_headers: Vec::new(),
            original_timestamp: None,
            original_value: value,
            original_message: Some("{}".into()),
            error_type: "DecodeError".into(),
            error_class: FailureClass::Poison,
            error_message: message.into(),
            retry_count: 0,
            failed_attempts: 0,
            first_failure_timestamp: "2026-01-30T12:00:00.000Z".into(),
            last_failure_timestamp: "2026-01-30T12:00:00.000Z".into(),
            consumer_group: "g".into(),
            redrive_count: 0,
            reduced_from: None,
        }
    }

    #[test]
    fn a_reduced_letter_keeps_the_start_and_the_size_of_the_payload() {
        let full = letter(vec![7; 5000], &"é".repeat(2000));
        assert!(full.is_replayable());
        let reduced = full.reduced(100);
        assert_eq!(reduced.original_value, vec![7; 100]);
        assert_eq!(reduced.reduced_from, Some(5000));
        assert_eq!(reduced.original_message, None);
        assert!(reduced.error_message.len() <= REDUCED_MESSAGE_MAX + '…'.len_utf8());
        assert!(reduced.error_message.starts_with("éé"));
        assert!(!reduced.is_replayable());
        // Reducing again keeps the size of the original payload, not of the cut one.
        assert_eq!(reduced.reduced(10).reduced_from, Some(5000));
    }

    #[test]
    fn the_redrive_count_comes_from_its_header() {
        let header = |value: &str| Header {
            name: REDRIVE_COUNT_HEADER.into(),
            value: Some(value.as_bytes().to_vec()),
        };
        assert_eq!(redrive_count(&[]), 0);
        assert_eq!(redrive_count(&[header("2")]), 2);
        assert_eq!(redrive_count(&[header("lots")]), 0);
    }

    #[test]
    fn a_redrive_keeps_the_headers_and_the_first_origin() {
        let mut first = letter(vec![1], "m");
        // Failed in the topic's third incarnation: the redriven copy says so.
        first.original_incarnation = 3;
        first.original_headers = vec![Header {
            name: "traceparent".into(),
            value: Some(vec![0xff, 0]),
        }];
        let at = |offset| LetterId {
            topic: "dlq".into(),
            partition: 2,
            offset,
        };
        let origin = Position::new("t", 0, 7).in_incarnation(3);
        let headers = first.redrive_headers(&at(40));
        assert_eq!(headers[0], first.original_headers[0]);
        assert_eq!(origin_from(&headers), Some(origin.clone()));
        assert_eq!(redrive_count(&headers), 1);
        // The copy failed again, at another offset: its letter keeps the first origin, and
        // its own redrive replaces the earlier redrive headers instead of adding to them.
        let second = DeadLetter {
            original_offset: 99,
            original_incarnation: 1,
            original_headers: headers,
            redrive_count: 1,
            ..first.clone()
        };
        assert_eq!(second.origin(), first.origin());
        assert_ne!(second.redrive_key(), first.redrive_key());
        let again = second.redrive_headers(&at(41));
        assert_eq!(again.len(), headers_len(&first) + 8);
        assert_eq!(origin_from(&again), Some(origin));
        // Redriven before incarnations were kept: the first.
        let older: Vec<Header> = (again.iter())
            .filter(|h| h.name != REDRIVE_ORIGIN_INCARNATION_HEADER)
            .cloned()
            .collect();
        assert_eq!(origin_from(&older), Some(Position::new("t", 0, 7)));
        assert_eq!(redrive_count(&again), 2);
    }

    fn headers_len(letter: &DeadLetter) -> usize {
        letter.original_headers.len()
    }
}
