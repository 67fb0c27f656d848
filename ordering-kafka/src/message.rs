//! What a message carries besides its value: its key and headers.

use ordering_core::DeadLetter;
#[cfg(feature = "order")]
use ordering_core::order::{Order, OrderEvent, StatusUpdate};

/// The Kafka key and headers of a message.
pub trait Message: Send + Sync {
    /// Records with the same key land on the same partition, in order.
    fn key(&self) -> Option<&[u8]>;

    /// Headers for tools that do not decode the value.
    fn headers(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

#[cfg(feature = "order")]
impl Message for Order {
    fn key(&self) -> Option<&[u8]> {
        Some(self.order_id.as_str().as_bytes())
    }
}

#[cfg(feature = "order")]
impl Message for StatusUpdate {
    fn key(&self) -> Option<&[u8]> {
        Some(self.order_id.as_bytes())
    }
}

#[cfg(feature = "order")]
impl Message for OrderEvent {
    fn key(&self) -> Option<&[u8]> {
        Some(self.order_id().as_bytes())
    }
}

/// The header of a dead letter's record that says which incarnation of its topic the failed
/// record was in (`DeadLetter::original_incarnation`, not a field of the letter's schema).
pub const DLQ_ORIGINAL_INCARNATION_HEADER: &str = "dlq.original.incarnation";

/// The incarnation a dead letter's record `headers` name; the first when they name none.
pub(crate) fn original_incarnation(headers: &[ordering_core::Header]) -> u32 {
    headers
        .iter()
        .find(|h| h.name == DLQ_ORIGINAL_INCARNATION_HEADER)
        .and_then(|h| {
            std::str::from_utf8(h.value.as_deref()?)
                .ok()?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(ordering_core::FIRST_INCARNATION)
}

/// A dead letter keeps the failed record's key, byte for byte (so it lands with its key's
/// other letters), and says where it came from and why in headers.
impl Message for DeadLetter {
    fn key(&self) -> Option<&[u8]> {
        self.original_key.as_deref()
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("dlq.original.topic", self.original_topic.clone()),
            (
                "dlq.original.partition",
                self.original_partition.to_string(),
            ),
            ("dlq.original.offset", self.original_offset.to_string()),
            (
                DLQ_ORIGINAL_INCARNATION_HEADER,
                self.original_incarnation.to_string(),
            ),
            ("dlq.error.type", self.error_type.clone()),
            ("dlq.error.class", self.error_class.as_str().to_owned()),
            ("dlq.error.message", self.error_message.clone()),
            ("dlq.retry.count", self.retry_count.to_string()),
            ("dlq.consumer.group", self.consumer_group.clone()),
        ]
    }
}
