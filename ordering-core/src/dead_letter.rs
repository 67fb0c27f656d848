//! The record of a failure (`schemas/dlq.avsc`): everything an operator needs to understand
//! and replay it without any other source.

use std::fmt;
use std::str::FromStr;

use crate::handler::ErrorClass;

/// Why a record ended in the dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
}
