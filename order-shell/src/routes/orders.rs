//! The orders: one order, its history, the store's count and ids, and the ids in a topic.

use std::collections::HashSet;
use std::time::Duration;

use hyper::StatusCode;
use ordering_core::order::{OrderEvent, OrderId};
use ordering_core::{DeadLetter, Record, StoreError};
use ordering_http::limit::Turn;
use ordering_http::{ApiError, HttpRequest, Response, json, query};
use ordering_kafka::order::AvroCodec;
use ordering_kafka::{Codec, Cursor, PageBounds, scan_page};
use serde_json::{Value, json};

use super::{iso_millis, number};
use crate::App;

/// History entries `/api/order-history` answers per page, by default and at most.
const HISTORY_LIMIT: usize = 100;
const HISTORY_MAX_LIMIT: usize = 1000;
/// Ids `/api/stats` lists per page, by default and at most: a store of any size answers in
/// bounded memory.
const STATS_LIMIT: usize = 1000;
const STATS_MAX_LIMIT: usize = 10_000;
/// Records `/api/getAllOrderIdsFromTopic` reads at most.
const IDS_SCAN: usize = 100_000;
/// How long `/api/getAllOrderIdsFromTopic` may read, [`IDS_SCAN`] records at most (its
/// turns, `SCAN_CONCURRENCY`, bound how many run at once), before the answer is `503`.
const SCAN_TIMEOUT: Duration = Duration::from_secs(30);
/// Distinct ids `/api/getAllOrderIdsFromTopic` answers with per page, by default and at most:
/// what a scan holds no longer grows with the topic.
const IDS_LIMIT: usize = 1000;
const IDS_MAX_LIMIT: usize = 10_000;

impl App {
    pub(super) async fn order_details(&self, request: &HttpRequest) -> Result<Response, ApiError> {
        let raw = query(request).remove("orderId").unwrap_or_default();
        let id = OrderId::parse(&raw).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let order = self
            .store
            .get(&id)
            .await
            .map_err(|e| ApiError::store_unavailable(e.to_string()))?
            .ok_or_else(|| ApiError::not_found(format!("Order {id} not found")))?;
        let shipping_cost = order.shipping_cost();
        let mut data = serde_json::to_value(&order).unwrap_or_default();
        data["shippingCost"] = json!(shipping_cost);
        data["statusReason"] = json!(order.status_reason);
        Ok(json(
            StatusCode::OK,
            &json!({"success": true, "message": format!("Order '{id}' found"), "data": data}),
        ))
    }

    /// A page of an order's history, oldest first; `nextCursor` asks for the next.
    pub(super) async fn order_history(&self, request: &HttpRequest) -> Result<Response, ApiError> {
        let params = query(request);
        let raw = params.get("orderId").map_or("", String::as_str);
        let id = OrderId::parse(raw).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let limit = number(
            params.get("limit"),
            "limit",
            HISTORY_LIMIT,
            1,
            HISTORY_MAX_LIMIT,
        )?;
        let after = match params.get("cursor").map(|c| c.trim()) {
            None | Some("") => None,
            Some(raw) => Some(raw.parse::<i64>().ok().filter(|c| *c >= 0).ok_or_else(|| {
                ApiError::bad_request(format!("cursor is not one this service gave: {raw:?}"))
            })?),
        };
        let unavailable = |e: StoreError| ApiError::store_unavailable(e.to_string());
        let entries = self
            .store
            .history(&id, after, limit)
            .await
            .map_err(unavailable)?;
        if entries.is_empty()
            && after.is_none()
            && self.store.get(&id).await.map_err(unavailable)?.is_none()
        {
            return Err(ApiError::not_found(format!("Order {id} not found")));
        }
        let next = (entries.len() == limit)
            .then(|| entries.last().map(|e| e.seq.to_string()))
            .flatten();
        let entries: Vec<Value> = entries
            .iter()
            .map(|e| {
                json!({
                    "status": e.status,
                    "reason": e.reason,
                    "eventTime": e.event_time,
                    "appliedAt": iso_millis(e.applied_at_ms),
                    "topic": e.at.topic.as_ref(),
                    "partition": e.at.partition,
                    "offset": e.at.offset,
                    "incarnation": e.at.incarnation,
                })
            })
            .collect();
        Ok(json(
            StatusCode::OK,
            &json!({"success": true, "orderId": id.as_str(), "entries": entries, "nextCursor": next}),
        ))
    }

    /// The number of orders and one page of their ids, in byte order; `nextCursor` (the last
    /// id of the page) asks for the next, `null` after the last.
    pub(super) async fn stats(
        &self,
        request: &HttpRequest,
        turn: Turn,
    ) -> Result<Response, ApiError> {
        let params = query(request);
        let limit = number(
            params.get("limit"),
            "limit",
            STATS_LIMIT,
            1,
            STATS_MAX_LIMIT,
        )?;
        let after = match params.get("cursor").map(|c| c.trim()) {
            None | Some("") => None,
            Some(raw) => Some(OrderId::parse(raw).map_err(|e| {
                ApiError::bad_request(format!("cursor is not one this service gave: {e}"))
            })?),
        };
        let unavailable = |e: StoreError| ApiError::store_unavailable(e.to_string());
        let (total, ids) = tokio::try_join!(
            // Kept by the store as orders are created: no scan per request.
            async { self.store.count().await.map_err(unavailable) },
            async {
                // One more than asked tells whether a next page exists.
                let mut ids = self
                    .store
                    .ids(after, limit + 1)
                    .await
                    .map_err(unavailable)?;
                let more = ids.len() > limit;
                ids.truncate(limit);
                Ok((ids, more))
            },
        )?;
        drop(turn);
        let (ids, more) = ids;
        let next = more.then(|| ids.last().map(ToString::to_string)).flatten();
        Ok(json(
            StatusCode::OK,
            &json!({
                "success": true,
                "totalOrders": total,
                "orderIds": ids,
                "limit": limit,
                "nextCursor": next,
            }),
        ))
    }

    /// The order ids in one of this service's topics, from at most [`IDS_SCAN`] records.
    pub(super) async fn order_ids_in_topic(
        &self,
        request: &HttpRequest,
        turn: Turn,
    ) -> Result<Response, ApiError> {
        let mut params = query(request);
        let topic = params.remove("topicName").unwrap_or_default();
        let topic = topic.trim();
        if topic.is_empty() {
            return Err(ApiError::bad_request(
                "topicName must not be empty or whitespace",
            ));
        }
        let own = [
            &self.config.order_topic,
            &self.config.status_topic,
            &self.config.dlq_topic,
        ];
        if !own.iter().any(|t| t.as_str() == topic) {
            let names: Vec<&str> = own.iter().map(|t| t.as_str()).collect();
            return Err(ApiError::bad_request(format!(
                "topicName must be one of this service's topics: {}",
                names.join(", ")
            )));
        }
        let limit = number(params.get("limit"), "limit", IDS_LIMIT, 1, IDS_MAX_LIMIT)?;
        let bounds = PageBounds {
            keep: limit,
            scan: IDS_SCAN,
            timeout: SCAN_TIMEOUT,
        };
        let from: Cursor = match params.get("cursor").map(|c| c.trim()) {
            None | Some("") => Cursor::default(),
            Some(raw) => raw.parse().map_err(|e| {
                ApiError::bad_request(format!("cursor is not one this service gave: {e}"))
            })?,
        };
        // Only the ids are kept while reading, in first-seen order: each record is dropped
        // once its id is taken.
        let (ids, next) = if topic == self.config.dlq_topic {
            self.scan_ids::<DeadLetter>(topic, from, bounds, turn, |r| match &r.event {
                Ok(letter) => letter.key_str(),
                Err(_) => r.meta.key_str(),
            })
            .await?
        } else {
            self.scan_ids::<OrderEvent>(topic, from, bounds, turn, |r| match &r.event {
                Ok(event) => Some(event.order_id().to_owned()),
                Err(_) => r.meta.key_str(),
            })
            .await?
        };
        Ok(json(
            StatusCode::OK,
            &json!({
                "success": true,
                "message": format!("Found {} order ids in topic '{topic}'", ids.len()),
                "topicName": topic,
                "orderIds": ids,
                "count": ids.len(),
                "truncated": next.is_some(),
                "nextCursor": next.map(|c| c.to_string()),
            }),
        ))
    }

    /// The distinct ids `id_of` finds in a page of `topic`, in first-seen order, and where
    /// the next page starts if this one stopped before the end; only the ids are held while reading. The read keeps
    /// `turn` to its end, even if the client hangs up.
    async fn scan_ids<M: Send + 'static>(
        &self,
        topic: &str,
        from: Cursor,
        bounds: PageBounds,
        turn: Turn,
        id_of: fn(&Record<M>) -> Option<String>,
    ) -> Result<(Vec<String>, Option<Cursor>), ApiError>
    where
        AvroCodec: Codec<M>,
    {
        let (ids, scanned) = scan_page(
            &self.config.kafka.cluster,
            topic,
            self.codec,
            from,
            bounds,
            (Distinct::default(), turn),
            // Kept: a record whose id is new to the page, so the page ends at `keep` ids.
            move |(ids, _turn): &mut (Distinct, Turn), record| {
                id_of(&record).is_some_and(|id| ids.add(id))
            },
        )
        .await
        .map_err(|e| ApiError::broker_unavailable(format!("the topic could not be read: {e}")))?;
        Ok((ids.0.order, scanned.next))
    }
}

/// Ids in first-seen order, each once.
#[derive(Default)]
struct Distinct {
    seen: HashSet<String>,
    order: Vec<String>,
}

impl Distinct {
    /// Whether `id` was new.
    fn add(&mut self, id: String) -> bool {
        if self.seen.contains(&id) {
            return false;
        }
        self.seen.insert(id.clone());
        self.order.push(id);
        true
    }
}
