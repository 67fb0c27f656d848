//! `/health`: the broker, the store, the producer, the dead letters and the consumer.

use hyper::StatusCode;
use ordering_core::StoreError;
use ordering_http::{Response, json};
use serde_json::{Value, json};

use super::HEALTH_TIMEOUT;
use crate::App;

/// What `/health` asks the broker and the store, in words.
#[derive(Debug, Clone)]
pub(crate) struct Probes {
    broker: Result<(), String>,
    store: Result<(), String>,
}

impl App {
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

    /// Health, for anyone: the store's kind and state, never its address; the address too for
    /// the operator.
    pub(super) async fn health(&self, operator: bool) -> Response {
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
        // Records in the registry's framing wait while it fails: say so.
        let (registry, registry_ok) =
            ordering_http::registry::health(self.config.registry, operator);
        let healthy = running
            && broker.is_ok()
            && store.is_ok()
            && producer.is_none()
            && !dead_letters_stuck
            && registry_ok;
        let mut store_state = json!({
            "kind": self.config.store.kind(),
            "state": if store.is_ok() { "available" } else { "unavailable" },
        });
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
            "schemaRegistry": registry,
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
    pub(super) fn consumer_state(&self) -> Value {
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
