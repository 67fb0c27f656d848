//! The record of a failure (`schemas/dlq.avsc`): everything an operator needs to understand
//! and replay it without any other source.

use std::fmt;
use std::str::FromStr;

use crate::handler::ErrorClass;

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

/// A dead letter. Field for field the `DeadLetter` record of `schemas/dlq.avsc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub original_topic: String,
    pub original_partition: i32,
    pub original_offset: i64,
    pub original_key: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub original_timestamp: Option<i64>,
    /// The payload exactly as received, so it can be replayed byte for byte.
    pub original_value: Vec<u8>,
    /// The decoded event as JSON; `None` when it could not be decoded.
    pub original_message: Option<String>,
    /// A short, stable name: `OrderNotFound`, `InvalidStatus`, `DecodeError`, …
    pub error_type: String,
    pub error_class: FailureClass,
    pub error_message: String,
    /// Retries made (attempts after the first).
    pub retry_count: u32,
    /// Attempts made, all failed. Zero for a record that could not be decoded.
    pub failed_attempts: u32,
    /// ISO 8601.
    pub first_failure_timestamp: String,
    /// ISO 8601.
    pub last_failure_timestamp: String,
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

/// The header a redriven record carries: how many times it was redriven (1 for the first).
pub const REDRIVE_COUNT_HEADER: &str = "redrive-count";
/// Headers a redriven record carries: where its dead letter sits in the DLQ.
pub const REDRIVE_DLQ_TOPIC_HEADER: &str = "redrive-dlq-topic";
pub const REDRIVE_DLQ_PARTITION_HEADER: &str = "redrive-dlq-partition";
pub const REDRIVE_DLQ_OFFSET_HEADER: &str = "redrive-dlq-offset";

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
            original_key: self
                .original_key
                .as_deref()
                .map(|k| cut(k, REDUCED_MESSAGE_MAX)),
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

/// How many times a record was redriven, from its headers: 0 when it never was (or the header
/// is not a number).
pub fn redrive_count(headers: &[crate::Header]) -> u32 {
    headers
        .iter()
        .find(|h| h.name == REDRIVE_COUNT_HEADER)
        .and_then(|h| h.value.as_deref())
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(value: Vec<u8>, message: &str) -> DeadLetter {
        DeadLetter {
            original_topic: "t".into(),
            original_partition: 0,
            original_offset: 7,
            original_key: Some("ORD-1".into()),
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
        let header = |value: &str| crate::Header {
            name: REDRIVE_COUNT_HEADER.into(),
            value: Some(value.as_bytes().to_vec()),
        };
        assert_eq!(redrive_count(&[]), 0);
        assert_eq!(redrive_count(&[header("2")]), 2);
        assert_eq!(redrive_count(&[header("lots")]), 0);
    }
}
