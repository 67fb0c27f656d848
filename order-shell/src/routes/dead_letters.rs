//! The dead letters: a page of them, the DLQ's settings, and the operator's redrive.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hyper::StatusCode;
use ordering_core::{
    DeadLetter, FailureClass, LetterFilter, Record, RedriveKey, StoreError, parse_instant,
};
use ordering_http::limit::Turn;
use ordering_http::{ApiError, HttpRequest, Response, json, query};
use ordering_kafka::{Cursor, PageBounds, scan_page};
use serde_json::{Value, json};

use super::{iso_millis, number};
use crate::App;

/// Records one `/api/dlq/messages` page reads at most (beyond what `offset` skips).
const PAGE_SCAN: usize = 10_000;
/// The most matches `offset` may skip: deeper pages are for `cursor`.
const MAX_SKIP: usize = 100_000;
/// How long a page may read the topic before the answer is `503`.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Letters a page holds, by default and at most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

impl App {
    /// A page of dead letters, filtered. A page reads at most [`PAGE_SCAN`] records of the
    /// topic (more only to skip `offset` matches): follow `nextCursor` for the next one.
    ///
    /// Dead letters hold what customers sent (ids, amounts): with an operator token
    /// configured, only a caller presenting it gets them, contents included; without one,
    /// anyone gets them without their contents (`originalValue`, `originalMessage`).
    pub(super) async fn dlq_messages(
        &self,
        request: &HttpRequest,
        operator: bool,
        turn: Turn,
    ) -> Result<Response, ApiError> {
        let redacted = !operator;
        let params = query(request);
        let limit = number(params.get("limit"), "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)?;
        let offset = number(params.get("offset"), "offset", 0, 0, MAX_SKIP)?;
        let filter = letter_filter(&params)?;
        let from: Cursor = match params.get("cursor").map(|c| c.trim()) {
            None | Some("") => Cursor::default(),
            Some(raw) => raw.parse().map_err(|e| {
                ApiError::bad_request(format!("cursor is not one this service gave: {e}"))
            })?,
        };
        let topic = &self.config.dlq_topic;
        let bounds = PageBounds {
            keep: offset + limit,
            scan: PAGE_SCAN + offset,
            timeout: READ_TIMEOUT,
        };
        // Matches before `offset` are counted, not kept; the page's letters are kept as their
        // answer only. The read keeps its turn to its end.
        let ((mut messages, _, _turn), page) = scan_page(
            &self.config.kafka.cluster,
            topic,
            self.codec,
            from,
            bounds,
            (Vec::new(), offset, turn),
            move |(messages, skip, _): &mut (Vec<(Value, Option<RedriveKey>)>, usize, Turn),
                  record| {
                let matches = match &record.event {
                    Ok(letter) => filter.accepts(letter),
                    // Not a letter this service can read: kept only when nothing is asked of it.
                    Err(_) => filter.is_empty(),
                };
                if matches {
                    match skip.checked_sub(1) {
                        Some(left) => *skip = left,
                        None => messages.push((
                            letter_json(&record, redacted),
                            record.event.as_ref().ok().map(DeadLetter::redrive_key),
                        )),
                    }
                }
                matches
            },
        )
        .await
        .map_err(|e| ApiError::broker_unavailable(format!("the topic could not be read: {e}")))?;
        // The letters come from the broker; only their redrive history from the store: a
        // store that is down leaves that out, not the page.
        let redrives_unknown = match redacted {
            true => None,
            false => self.add_redrives(&mut messages).await.err(),
        };
        let messages: Vec<Value> = messages.into_iter().map(|(letter, _)| letter).collect();
        Ok(json(
            StatusCode::OK,
            &json!({
                "success": true,
                "dlqTopic": topic,
                "messageCount": messages.len(),
                "totalCount": page.total,
                "offset": offset,
                "limit": limit,
                "scanned": page.scanned,
                "nextCursor": page.next.map(|c| c.to_string()),
                "redacted": redacted,
                "redrivesUnknown": redrives_unknown.map(|e| e.to_string()),
                "messages": messages,
            }),
        ))
    }

    /// Each letter's history of redrives, from the ledger: `redriven` is `null` for a record
    /// never sent back, else how often and when last.
    async fn add_redrives(
        &self,
        letters: &mut [(Value, Option<RedriveKey>)],
    ) -> Result<(), StoreError> {
        let keys: Vec<RedriveKey> = letters.iter().filter_map(|(_, k)| k.clone()).collect();
        let known = self.store.lookup(&keys).await?;
        let mut known = known.into_iter();
        for (letter, _) in letters.iter_mut().filter(|(_, key)| key.is_some()) {
            letter["redriven"] = match known.next().flatten() {
                Some(r) => json!({"times": r.times, "lastAt": iso_millis(r.last_at_ms)}),
                None => Value::Null,
            };
        }
        Ok(())
    }

    pub(super) fn dlq_info(&self) -> Response {
        let retry = &self.config.retry;
        json(
            StatusCode::OK,
            &json!({
                "success": true,
                "dlqConfig": {
                    "dlqTopic": self.config.dlq_topic,
                    "maxRetries": retry.max_retries(),
                    "initialBackoffMs": retry.initial_backoff().as_millis() as u64,
                    "maxBackoffMs": retry.max_backoff().as_millis() as u64,
                    "multiplier": retry.multiplier(),
                    "retryStrategy": "exponential_backoff",
                },
                "consumerStats": self.consumer_state(),
            }),
        )
    }
}

/// Which dead letters a page keeps: `errorType`, `errorClass` and `orderId` (the original
/// key), each optional.
fn letter_filter(params: &HashMap<String, String>) -> Result<LetterFilter, ApiError> {
    let text = |name: &str| {
        params
            .get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let error_class = match text("errorClass") {
        None => None,
        Some(raw) => Some(raw.parse::<FailureClass>().map_err(|_| {
            ApiError::bad_request(format!(
                "errorClass must be retryable, permanent or poison, got {raw:?}"
            ))
        })?),
    };
    let instant = |name: &str| match text(name) {
        None => Ok(None),
        Some(raw) => parse_instant(&raw)
            .map(Some)
            .map_err(|e| ApiError::bad_request(format!("{name}: {e}"))),
    };
    let (failed_from, failed_to) = (instant("fromTimestamp")?, instant("toTimestamp")?);
    if let (Some(from), Some(to)) = (failed_from, failed_to)
        && from > to
    {
        return Err(ApiError::bad_request(format!(
            "fromTimestamp: {from} is after toTimestamp {to}"
        )));
    }
    Ok(LetterFilter {
        error_type: text("errorType"),
        error_class,
        key: text("orderId"),
        failed_from,
        failed_to,
    })
}

/// A dead letter as JSON: the schema's field names, the bytes as base64, and where the letter
/// itself sits in the DLQ topic. `redacted`: without what the original record said.
fn letter_json(record: &Record<DeadLetter>, redacted: bool) -> Value {
    let position =
        json!({"dlqPartition": record.meta.tp.partition, "dlqOffset": record.meta.offset});
    let mut value = match &record.event {
        Ok(l) => json!({
            "originalTopic": l.original_topic,
            "originalPartition": l.original_partition,
            "originalOffset": l.original_offset,
            "originalKey": l.key_str(),
            "originalKeyBytes": l.original_key.as_ref().map(|k| BASE64.encode(k)),
            "originalHeaders": l.original_headers.iter().map(|h| json!({
                "name": h.name,
                "value": h.value.as_ref().map(|v| BASE64.encode(v)),
            })).collect::<Vec<_>>(),
            "originalTimestamp": l.original_timestamp,
            "originalValue": BASE64.encode(&l.original_value),
            "originalMessage": l.original_message,
            "errorType": l.error_type,
            "errorClass": l.error_class.as_str(),
            "errorMessage": l.error_message,
            "retryCount": l.retry_count,
            "failedAttempts": l.failed_attempts,
            "firstFailureTimestamp": l.first_failure_timestamp,
            "lastFailureTimestamp": l.last_failure_timestamp,
            "consumerGroup": l.consumer_group,
            "redriveCount": l.redrive_count,
            "reduced": l.reduced_from.is_some(),
            "originalValueSize": l.reduced_from,
        }),
        // Not written by this service: shown raw rather than hidden.
        Err(error) => json!({
            "decodeError": error.to_string(),
            "rawValue": BASE64.encode(&record.payload),
        }),
    };
    if let (Value::Object(map), Value::Object(extra)) = (&mut value, position) {
        map.extend(extra);
        if redacted {
            // Everything drawn from the record: its bytes, what they decode to, the headers,
            // the key's bytes, and error texts, which can quote the payload.
            for contents in [
                "originalValue",
                "originalMessage",
                "rawValue",
                "originalHeaders",
                "originalKeyBytes",
                "errorMessage",
                "decodeError",
            ] {
                map.remove(contents);
            }
        }
    }
    value
}
