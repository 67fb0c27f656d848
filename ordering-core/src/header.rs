//! Record headers, and the ones a redrive adds to the records it sends back.

use crate::position::Position;

/// A record header as it came with the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header's name, as sent.
    pub name: String,
    /// The value's bytes; `None` for a header sent without a value.
    pub value: Option<Vec<u8>>,
}

/// The header a redriven record carries: how many times it was redriven (1 for the first).
pub const REDRIVE_COUNT_HEADER: &str = "redrive-count";
/// Headers a redriven record carries: where its dead letter sits in the DLQ.
pub const REDRIVE_DLQ_TOPIC_HEADER: &str = "redrive-dlq-topic";
/// The partition of the DLQ its dead letter sits in, in decimal.
pub const REDRIVE_DLQ_PARTITION_HEADER: &str = "redrive-dlq-partition";
/// The offset of its dead letter in that partition, in decimal.
pub const REDRIVE_DLQ_OFFSET_HEADER: &str = "redrive-dlq-offset";
/// Headers a redriven record carries: where the record it copies was first published
/// ([`RecordMeta::origin`](crate::RecordMeta::origin)). A record redriven twice keeps the
/// first record's position.
pub const REDRIVE_ORIGIN_TOPIC_HEADER: &str = "redrive-origin-topic";
/// The partition the record it copies was first published to, in decimal.
pub const REDRIVE_ORIGIN_PARTITION_HEADER: &str = "redrive-origin-partition";
/// The offset of the record it copies in that partition, in decimal.
pub const REDRIVE_ORIGIN_OFFSET_HEADER: &str = "redrive-origin-offset";
/// Which incarnation of its topic the origin is in; [`FIRST_INCARNATION`] when absent (a
/// record redriven before incarnations were kept).
///
/// [`FIRST_INCARNATION`]: crate::FIRST_INCARNATION
pub const REDRIVE_ORIGIN_INCARNATION_HEADER: &str = "redrive-origin-incarnation";

/// The prefix of every header a redrive adds; a redrive replaces them all.
pub(crate) const REDRIVE_HEADER_PREFIX: &str = "redrive-";

/// The origin a redrive wrote into `headers`; `None` unless its topic, partition and offset
/// headers are there and readable (the incarnation's may be absent: the first).
pub(crate) fn origin_from(headers: &[Header]) -> Option<Position> {
    if headers.is_empty() {
        return None; // the common case, at no cost
    }
    let text = |name: &str| {
        headers
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| h.value.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
    };
    let incarnation = match text(REDRIVE_ORIGIN_INCARNATION_HEADER) {
        None => crate::FIRST_INCARNATION,
        Some(n) => n.trim().parse().ok()?,
    };
    Some(
        Position::new(
            text(REDRIVE_ORIGIN_TOPIC_HEADER)?,
            text(REDRIVE_ORIGIN_PARTITION_HEADER)?.trim().parse().ok()?,
            text(REDRIVE_ORIGIN_OFFSET_HEADER)?.trim().parse().ok()?,
        )
        .in_incarnation(incarnation),
    )
}

/// How many times a record was redriven, from its headers: 0 when it never was (or the header
/// is not a number).
pub fn redrive_count(headers: &[Header]) -> u32 {
    headers
        .iter()
        .find(|h| h.name == REDRIVE_COUNT_HEADER)
        .and_then(|h| h.value.as_deref())
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
