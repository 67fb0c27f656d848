//! HTTP in, JSON out: each route asks the store, the dispatcher's counters or the broker.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hyper::{Method, StatusCode};
use ordering_core::order::{OrderEvent, OrderId};
use ordering_core::{
    DeadLetter, FailureClass, LetterFilter, Record, RedriveKey, StoreError, TopicPartition,
    parse_instant,
};
use ordering_http::limit::Turn;
use ordering_http::router::{Route, Routes};
use ordering_http::{ApiError, HttpRequest, Response, json, query};
use ordering_kafka::order::AvroCodec;
use ordering_kafka::{Codec, Cursor, GroupMember, PageBounds, scan_page};
use serde_json::{Value, json};

use crate::App;
use crate::console::{self, Asset, Facts, Page, series};

/// How long `/health` waits for the broker and for the store.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/health` asks the broker and the store, in words.
#[derive(Debug, Clone)]
pub(crate) struct Probes {
    broker: Result<(), String>,
    store: Result<(), String>,
}
/// Records one `/api/dlq/messages` page reads at most (beyond what `offset` skips).
const PAGE_SCAN: usize = 10_000;
/// The most matches `offset` may skip: deeper pages are for `cursor`.
const MAX_SKIP: usize = 100_000;
/// Records `/api/getAllOrderIdsFromTopic` reads at most.
const IDS_SCAN: usize = 100_000;
/// How long a read of a topic may take before the answer is `503`.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The same for `/api/getAllOrderIdsFromTopic`, which may read [`IDS_SCAN`] records (its
/// turns, `SCAN_CONCURRENCY`, bound how many run at once).
const SCAN_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_LIMIT: usize = 100;
/// Ids `/api/stats` lists per page, by default and at most: a store of any size answers in
/// bounded memory.
const STATS_LIMIT: usize = 1000;
const STATS_MAX_LIMIT: usize = 10_000;
/// Distinct ids `/api/getAllOrderIdsFromTopic` answers with per page, by default and at most:
/// what a scan holds no longer grows with the topic.
const IDS_LIMIT: usize = 1000;
const IDS_MAX_LIMIT: usize = 10_000;

/// What serves a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    OrderDetails,
    DlqMessages,
    DlqInfo,
    DlqRedrive,
    Stats,
    OrderIdsInTopic,
    Health,
    Metrics,
    OpenApi,
    OrderHistory,
    ConsoleOverview,
    Console(Page),
    ConsoleAsset(Asset),
}

/// Every endpoint, once.
pub static ROUTES: Routes<Endpoint> = Routes(&[
    Route::new(Method::GET, "/api/order-details", Endpoint::OrderDetails),
    Route::new(Method::GET, "/api/dlq/messages", Endpoint::DlqMessages),
    Route::new(Method::GET, "/api/dlq/info", Endpoint::DlqInfo),
    Route::new(Method::POST, "/api/dlq/redrive", Endpoint::DlqRedrive),
    Route::new(Method::GET, "/api/stats", Endpoint::Stats),
    Route::new(
        Method::GET,
        "/api/getAllOrderIdsFromTopic",
        Endpoint::OrderIdsInTopic,
    ),
    Route::new(Method::GET, "/health", Endpoint::Health),
    Route::new(Method::GET, "/metrics", Endpoint::Metrics),
    Route::new(Method::GET, "/openapi.json", Endpoint::OpenApi),
    Route::new(Method::GET, "/api/order-history", Endpoint::OrderHistory),
    Route::new(
        Method::GET,
        "/api/console/overview",
        Endpoint::ConsoleOverview,
    ),
    Route::new(Method::GET, "/console", Endpoint::Console(Page::Overview)),
    Route::new(
        Method::GET,
        "/console/dead-letters",
        Endpoint::Console(Page::DeadLetters),
    ),
    Route::new(
        Method::GET,
        "/console/redrive",
        Endpoint::Console(Page::Redrive),
    ),
    Route::new(
        Method::GET,
        "/console/orders",
        Endpoint::Console(Page::Orders),
    ),
    Route::new(
        Method::GET,
        "/console/assets/console.js",
        Endpoint::ConsoleAsset(Asset::Script),
    ),
    Route::new(
        Method::GET,
        "/console/assets/console.css",
        Endpoint::ConsoleAsset(Asset::Styles),
    ),
    Route::new(
        Method::GET,
        "/console/assets/vendor/uPlot.iife.min.js",
        Endpoint::ConsoleAsset(Asset::ChartScript),
    ),
    Route::new(
        Method::GET,
        "/console/assets/vendor/uPlot.min.css",
        Endpoint::ConsoleAsset(Asset::ChartStyles),
    ),
]);
const MAX_LIMIT: usize = 1000;
/// How long the group's members, once asked, answer the overview.
const MEMBERS_FOR: Duration = Duration::from_secs(5);
/// History entries `/api/order-history` answers per page, by default and at most.
const HISTORY_LIMIT: usize = 100;
const HISTORY_MAX_LIMIT: usize = 1000;

impl App {
    /// Answers one request.
    pub async fn handle(&self, request: HttpRequest) -> Response {
        let endpoint = match ROUTES.find(request.method(), request.uri().path()) {
            Ok(endpoint) => endpoint,
            Err(unrouted) => return unrouted.into_response(),
        };
        let result = match endpoint {
            Endpoint::OrderDetails => self.order_details(&request).await,
            Endpoint::DlqMessages => self.dlq_messages(&request).await,
            Endpoint::DlqInfo => Ok(self.dlq_info()),
            Endpoint::DlqRedrive => self.operator_redrive(request).await,
            Endpoint::Stats => self.stats(&request).await,
            Endpoint::OrderIdsInTopic => self.order_ids_in_topic(&request).await,
            Endpoint::Health => Ok(self.health(&request).await),
            Endpoint::Metrics => Ok(self.metrics.response()),
            Endpoint::OpenApi => Ok(self.openapi.response()),
            Endpoint::OrderHistory => self.order_history(&request).await,
            Endpoint::ConsoleOverview => self.console_overview(&request).await,
            Endpoint::Console(page) => Ok(self.pages.render(page, &self.console_facts())),
            Endpoint::ConsoleAsset(asset) => Ok(console::asset(asset)),
        };
        result.unwrap_or_else(ApiError::into_response)
    }

    /// A redrive, for the operator only: refused outright without a token configured.
    async fn operator_redrive(&self, request: HttpRequest) -> Result<Response, ApiError> {
        match &self.config.operator_token {
            None => Err(ApiError::forbidden(
                "redrive is disabled: start order-shell with OPERATOR_TOKEN (or OPERATOR_TOKEN_FILE) set, and send Authorization: Bearer <token>",
            )),
            Some(token) => {
                token.check(&request)?;
                match self.config.limits.redrives.enter().await {
                    Ok(turn) => self.redrive(request, turn).await,
                    Err(busy) => Ok(busy.into_response()),
                }
            }
        }
    }

    async fn order_details(&self, request: &HttpRequest) -> Result<Response, ApiError> {
        let raw = query(request).remove("orderId").unwrap_or_default();
        let id = OrderId::parse(&raw).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let order = self
            .store
            .get(&id)
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?
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
    async fn order_history(&self, request: &HttpRequest) -> Result<Response, ApiError> {
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
        let unavailable = |e: StoreError| ApiError::unavailable(e.to_string());
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

    /// The console's overview: the group's members and their partitions, the lag of the
    /// partitions this instance holds, and the last hour of the charts' series.
    /// With a token configured, for the operator only: it names the group's hosts.
    async fn console_overview(&self, request: &HttpRequest) -> Result<Response, ApiError> {
        if let Some(token) = &self.config.operator_token {
            token.check(request)?;
        }
        let group = &self.config.consumer_group;
        let held: Vec<TopicPartition> = self
            .consumer
            .get()
            .map(|(_, source)| source.assigned())
            .unwrap_or_default();
        let names = |partitions: &[TopicPartition]| -> Vec<String> {
            partitions.iter().map(ToString::to_string).collect()
        };
        // As the coordinator sees the group; this instance alone when it cannot be asked, or
        // describes no assignments (some Kafka-protocol brokers leave them out).
        let (instances, members_error) = match self.group_members().await {
            Ok(members) if members.iter().any(|m| !m.partitions.is_empty()) => (
                members
                    .iter()
                    .map(|m| {
                        json!({
                            "clientId": m.client_id,
                            "host": m.client_host,
                            "partitions": names(&m.partitions),
                            // Two members never hold the same partitions.
                            "thisInstance": !held.is_empty() && m.partitions == held,
                        })
                    })
                    .collect::<Vec<_>>(),
                None,
            ),
            described => (
                vec![json!({
                    "clientId": "this instance",
                    "host": null,
                    "partitions": names(&held),
                    "thisInstance": true,
                })],
                Some(match described {
                    Err(error) => error.to_string(),
                    Ok(members) if members.is_empty() => {
                        "the coordinator lists no members yet".to_owned()
                    }
                    Ok(_) => "the coordinator describes no member's partitions".to_owned(),
                }),
            ),
        };
        let exposition = self.metrics.render();
        let held: Vec<(String, i32)> = held
            .iter()
            .map(|tp| (tp.topic.to_string(), tp.partition))
            .collect();
        Ok(json(
            StatusCode::OK,
            &json!({
                "success": true,
                "consumerGroup": group,
                "instances": instances,
                "membersError": members_error,
                "lag": series::lag(&exposition, group, &held),
                "series": self.series.json(),
            }),
        ))
    }

    /// The group's members, asked of the coordinator at most every [`MEMBERS_FOR`]: however
    /// many consoles poll, one request at a time reaches the broker (on a blocking thread).
    async fn group_members(&self) -> Result<Vec<GroupMember>, String> {
        let mut cached = self.members.lock().await;
        if let Some((at, members)) = cached.as_ref()
            && at.elapsed() < MEMBERS_FOR
        {
            return members.clone();
        }
        let members = self
            .producer
            .group_members(&self.config.consumer_group, HEALTH_TIMEOUT)
            .await
            .map_err(|e| e.to_string());
        *cached = Some((std::time::Instant::now(), members.clone()));
        members
    }

    fn console_facts(&self) -> Facts {
        Facts {
            token_configured: self.config.operator_token.is_some(),
            dlq_topic: self.config.dlq_topic.clone(),
            consumer_group: self.config.consumer_group.clone(),
        }
    }

    /// A page of dead letters, filtered. A page reads at most [`PAGE_SCAN`] records of the
    /// topic (more only to skip `offset` matches): follow `nextCursor` for the next one.
    ///
    /// Dead letters hold what customers sent (ids, amounts): with an operator token
    /// configured, only a caller presenting it gets them, contents included; without one,
    /// anyone gets them without their contents (`originalValue`, `originalMessage`).
    async fn dlq_messages(&self, request: &HttpRequest) -> Result<Response, ApiError> {
        let redacted = match &self.config.operator_token {
            Some(token) => {
                token.check(request)?;
                false
            }
            None => true,
        };
        // After the token check: a caller without one takes no turn from the operator.
        let turn = match self.config.limits.dlq_pages.enter().await {
            Ok(turn) => turn,
            Err(busy) => return Ok(busy.into_response()),
        };
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
        .map_err(|e| ApiError::unavailable(format!("the topic could not be read: {e}")))?;
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

    fn dlq_info(&self) -> Response {
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

    /// The number of orders and one page of their ids, in byte order; `nextCursor` (the last
    /// id of the page) asks for the next, `null` after the last.
    async fn stats(&self, request: &HttpRequest) -> Result<Response, ApiError> {
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
        let turn = match self.config.limits.stats.enter().await {
            Ok(turn) => turn,
            Err(busy) => return Ok(busy.into_response()),
        };
        let unavailable = |e: StoreError| ApiError::unavailable(e.to_string());
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
    async fn order_ids_in_topic(&self, request: &HttpRequest) -> Result<Response, ApiError> {
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
        let turn = match self.config.limits.scans.enter().await {
            Ok(turn) => turn,
            Err(busy) => return Ok(busy.into_response()),
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
        .map_err(|e| ApiError::unavailable(format!("the topic could not be read: {e}")))?;
        Ok((ids.0.order, scanned.next))
    }

    /// Health, for anyone: the store's kind and state, never its address; the address too for
    /// a caller presenting the operator token.
    /// The broker and the store, each within [`HEALTH_TIMEOUT`]: what `/health` caches.
    pub(crate) async fn probe(&self) -> Probes {
        let (broker, store) = tokio::join!(
            self.producer
                .ping_topic(&self.config.order_topic, HEALTH_TIMEOUT),
            tokio::time::timeout(HEALTH_TIMEOUT, self.store.check_writable())
        );
        Probes {
            broker: broker.map_err(|e| ordering_http::security::kafka_problem(&e)),
            store: store
                .unwrap_or_else(|_| {
                    Err(StoreError::unavailable(format!(
                        "no answer within {HEALTH_TIMEOUT:?}"
                    )))
                })
                .map_err(|e| e.to_string()),
        }
    }

    async fn health(&self, request: &HttpRequest) -> Response {
        let consumer = self.consumer_state();
        let running = consumer["isRunning"].as_bool().unwrap_or(false);
        // Probed at most once a second, one probe at a time, whatever the request rate: a
        // flood of probes must not take the store's connections or turn the answer red.
        let Probes { broker, store } = self.probes.get(|| self.probe()).await;
        let producer = self.producer.fatal_error();
        // Dead letters failing for long hold their records and lanes: say so, not "healthy".
        let failing_ms = consumer["deadLettersFailingForMs"].as_u64();
        let bound = self.config.dlq_unhealthy_after;
        let dead_letters_stuck = failing_ms.is_some_and(|ms| u128::from(ms) > bound.as_millis());
        let healthy =
            running && broker.is_ok() && store.is_ok() && producer.is_none() && !dead_letters_stuck;
        let mut store_state = json!({
            "kind": self.config.store.kind(),
            "state": if store.is_ok() { "available" } else { "unavailable" },
        });
        let operator = self
            .config
            .operator_token
            .as_ref()
            .is_some_and(|token| token.check(request).is_ok());
        if operator {
            store_state["url"] = json!(self.config.store.describe());
        }
        if let Err(error) = &store {
            store_state["error"] = json!(error);
        }
        let body = json!({
            "status": if healthy { "healthy" } else { "unhealthy" },
            "service": "order-shell",
            "broker": if broker.is_ok() { "available" } else { "unavailable" },
            "brokerError": broker.as_ref().err(),
            "store": store_state,
            "producer": match &producer {
                None => json!({"state": "ok"}),
                // Failed for good: the shell is stopping (exit code 3) to be restarted.
                Some(error) => json!({"state": "failed", "error": error}),
            },
            "deadLetters": match failing_ms {
                Some(ms) if dead_letters_stuck => json!({
                    "state": "failing",
                    "failingForMs": ms,
                    "error": format!("no dead letter written for {ms} ms (DLQ_UNHEALTHY_AFTER_MS={})", bound.as_millis()),
                }),
                Some(ms) => json!({"state": "retrying", "failingForMs": ms}),
                None => json!({"state": "ok"}),
            },
            "consumer": consumer,
        });
        let code = if healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        json(code, &body)
    }

    /// The consumer's live counters, or that it has not started (waiting for the broker).
    fn consumer_state(&self) -> Value {
        let group = &self.config.consumer_group;
        match self.consumer.get() {
            None => {
                json!({"isRunning": false, "consumerGroup": group, "state": "waiting for the broker"})
            }
            Some((stats, source)) => {
                let assigned: Vec<String> =
                    source.assigned().iter().map(ToString::to_string).collect();
                let mut state = serde_json::to_value(stats.snapshot()).unwrap_or_default();
                state["consumerGroup"] = json!(group);
                state["assignedPartitions"] = json!(assigned);
                state
            }
        }
    }
}

/// Milliseconds since the Unix epoch as ISO 8601 UTC, e.g. `2026-11-30T12:00:00.000Z`.
fn iso_millis(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(at).to_string()
}

/// A query parameter as a number within `min..=max`, or `default` when absent.
fn number(
    raw: Option<&String>,
    name: &str,
    default: usize,
    min: usize,
    max: usize,
) -> Result<usize, ApiError> {
    let Some(raw) = raw else { return Ok(default) };
    match raw.trim().parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ if max == usize::MAX => Err(ApiError::bad_request(format!(
            "{name} must be a whole number of at least {min}, got {raw:?}"
        ))),
        _ => Err(ApiError::bad_request(format!(
            "{name} must be a whole number from {min} to {max}, got {raw:?}"
        ))),
    }
}

/// `ids` without repeats, in the order first seen.
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
