//! An rdkafka message as an `ordering-core` record, decoded.

use std::sync::Arc;

use ordering_core::{DecodeError, Header, Record, RecordMeta, TopicPartition};
use rdkafka::message::{BorrowedMessage, Headers, Message as _};

use crate::codec::Codec;

/// Topic names handed out as shared `Arc`s: one allocation per topic, not per record.
#[derive(Debug, Default)]
pub(crate) struct TopicNames(Vec<Arc<str>>);

impl TopicNames {
    pub(crate) fn get(&mut self, topic: &str) -> Arc<str> {
        if let Some(known) = self.0.iter().find(|t| ***t == *topic) {
            return known.clone();
        }
        let name: Arc<str> = topic.into();
        self.0.push(name.clone());
        name
    }
}

/// The record of `message`, decoded unless `decode` is false (its event then says it is not
/// decoded yet, until the caller decodes it).
pub(crate) fn to_record<E, C: Codec<E>>(
    message: &BorrowedMessage<'_>,
    codec: &C,
    topics: &mut TopicNames,
    decode: bool,
) -> Record<E> {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| Header {
                    name: h.key.to_owned(),
                    value: h.value.map(<[u8]>::to_vec),
                })
                .collect()
        })
        .unwrap_or_default();
    let meta = RecordMeta {
        tp: TopicPartition {
            topic: topics.get(message.topic()),
            partition: message.partition(),
        },
        offset: message.offset(),
        // The source stamps the incarnation it resolved for the topic.
        incarnation: ordering_core::FIRST_INCARNATION,
        key: message.key().map(<[u8]>::to_vec),
        timestamp: message.timestamp().to_millis(),
        headers,
    };
    let (payload, event) = match message.payload() {
        Some(payload) if decode => (payload.to_vec(), codec.decode(payload)),
        Some(payload) => (
            payload.to_vec(),
            Err(DecodeError::unknown_schema("not decoded yet")),
        ),
        None => (
            Vec::new(),
            Err(DecodeError::new("record without a value (a tombstone)")),
        ),
    };
    Record::new(meta, payload, event)
}
