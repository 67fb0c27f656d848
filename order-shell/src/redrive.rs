//! `POST /api/dlq/redrive`: the request body translated into an `ordering_kafka::Redrive`,
//! the report translated back. The rules live in `ordering_kafka::Redriver`.

use std::num::NonZeroU32;

use hyper::StatusCode;
use ordering_core::{FailureClass, LetterFilter, parse_instant};
use ordering_http::limit::Turn;
use ordering_http::{ApiError, HttpRequest, Response, json, read_typed_or_default};
use ordering_kafka::Redrive;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::App;

/// The largest body the endpoint reads: room for [`MAX_LETTERS`] chosen letters.
const BODY_LIMIT: usize = 64 * 1024;
/// Letters one request may name: a page of `/api/dlq/messages`, or a preview's list.
const MAX_LETTERS: usize = 1000;
/// Letters one request takes at most, and by default.
const MAX_MESSAGES: u64 = 100_000;
const DEFAULT_MAX_MESSAGES: u64 = 1000;
const MAX_RATE: u32 = 100_000;

/// The body: every field optional; an empty body redrives up to 1000 letters of any kind.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RedriveBody {
    error_type: Option<String>,
    error_class: Option<String>,
    order_id: Option<String>,
    from_timestamp: Option<String>,
    to_timestamp: Option<String>,
    max_messages: Option<u64>,
    rate_per_second: Option<u32>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    again: bool,
    #[serde(default)]
    force: bool,
    /// Only these letters (ticked in the console), if they pass the filter too.
    letters: Option<Vec<LetterRef>>,
}

/// A letter by its place in the DLQ topic, as `/api/dlq/messages` lists it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LetterRef {
    dlq_partition: i32,
    dlq_offset: i64,
}

/// A text filter: trimmed; blank means "not given".
fn text(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

impl RedriveBody {
    fn into_request(self) -> Result<Redrive, ApiError> {
        let bad = |field: &str, why: String| ApiError::bad_request(format!("{field}: {why}"));
        let error_class = match text(self.error_class) {
            None => None,
            Some(raw) => Some(
                raw.parse::<FailureClass>()
                    .map_err(|e| bad("errorClass", e.to_string()))?,
            ),
        };
        let instant = |field: &str, raw: Option<String>| match text(raw) {
            None => Ok(None),
            Some(raw) => parse_instant(&raw)
                .map(Some)
                .map_err(|e| bad(field, e.to_string())),
        };
        let failed_from = instant("fromTimestamp", self.from_timestamp)?;
        let failed_to = instant("toTimestamp", self.to_timestamp)?;
        if let (Some(from), Some(to)) = (failed_from, failed_to)
            && from > to
        {
            return Err(bad(
                "fromTimestamp",
                format!("{from} is after toTimestamp {to}"),
            ));
        }
        let max_messages = self.max_messages.unwrap_or(DEFAULT_MAX_MESSAGES);
        if !(1..=MAX_MESSAGES).contains(&max_messages) {
            return Err(bad(
                "maxMessages",
                format!("must be from 1 to {MAX_MESSAGES}, got {max_messages}"),
            ));
        }
        let rate_per_second = match self.rate_per_second {
            None => None,
            Some(rate) => Some(
                NonZeroU32::new(rate)
                    .filter(|r| r.get() <= MAX_RATE)
                    .ok_or_else(|| {
                        bad(
                            "ratePerSecond",
                            format!("must be from 1 to {MAX_RATE}, got {rate}"),
                        )
                    })?,
            ),
        };
        let letters = match self.letters {
            None => None,
            Some(letters) if letters.is_empty() || letters.len() > MAX_LETTERS => {
                return Err(bad(
                    "letters",
                    format!("must name from 1 to {MAX_LETTERS} letters"),
                ));
            }
            Some(letters) => Some(
                letters
                    .into_iter()
                    .map(|l| (l.dlq_partition, l.dlq_offset))
                    .collect(),
            ),
        };
        Ok(Redrive {
            letters,
            filter: LetterFilter {
                error_type: text(self.error_type),
                error_class,
                key: text(self.order_id),
                failed_from,
                failed_to,
            },
            max_messages: usize::try_from(max_messages).unwrap_or(usize::MAX),
            rate_per_second,
            dry_run: self.dry_run,
            again: self.again,
            force: self.force,
        })
    }
}

impl App {
    /// Redrives the letters the body asks for; `503` if the broker (or the ledger) fails,
    /// with what was done before it did.
    /// Runs a redrive in `turn`, which the run keeps until it ends.
    pub(crate) async fn redrive(
        &self,
        request: HttpRequest,
        turn: Turn,
    ) -> Result<Response, ApiError> {
        let body: RedriveBody = read_typed_or_default(request, BODY_LIMIT).await?;
        let request = body.into_request()?;
        // In a task of its own: a client that hangs up does not cut the run short (letters
        // claimed but not yet sent), nor frees its turn before it ends.
        let redriver = self.redriver.clone();
        let report = tokio::spawn(async move {
            let report = redriver.run(&request).await;
            drop(turn);
            report
        })
        .await
        .map_err(|e| ApiError::internal(format!("the redrive task failed: {e}")))?
        .map_err(|e| ApiError::broker_unavailable(e.to_string()))?;
        let mut answer = serde_json::to_value(&report).unwrap_or_default();
        if let Value::Object(map) = &mut answer {
            map.insert("maxRedrives".into(), json!(self.redriver.max_redrives()));
        }
        let (status, success) = match &report.stopped {
            None => (StatusCode::OK, true),
            Some(_) => (StatusCode::SERVICE_UNAVAILABLE, false),
        };
        let mut body = json!({"success": success});
        if let Some(reason) = &report.stopped {
            body["error"] = json!("Redrive stopped");
            body["details"] = json!(reason);
        }
        body["redrive"] = answer;
        Ok(json(status, &body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: Value) -> Result<Redrive, String> {
        let body: RedriveBody = serde_json::from_value(body).map_err(|e| e.to_string())?;
        body.into_request().map_err(|e| e.details)
    }

    #[test]
    fn every_field_is_optional() {
        let request = parse(json!({})).unwrap();
        assert!(request.filter.is_empty());
        assert_eq!(request.max_messages, 1000);
        assert!(!request.dry_run && !request.again && !request.force);
    }

    #[test]
    fn filters_are_read_and_checked() {
        let request = parse(json!({
            "errorType": "OrderNotFound", "errorClass": "retryable", "orderId": " ORD-1 ",
            "fromTimestamp": "2026-11-25T10:00:00Z", "toTimestamp": "2026-11-25T12:00:00+01:00",
            "maxMessages": 5, "ratePerSecond": 10, "dryRun": true,
            "letters": [{"dlqPartition": 1, "dlqOffset": 7}, {"dlqPartition": 0, "dlqOffset": 2}],
        }))
        .unwrap();
        let letters = request.letters.clone().unwrap();
        assert_eq!(letters.into_iter().collect::<Vec<_>>(), [(0, 2), (1, 7)]);
        assert_eq!(request.filter.key.as_deref(), Some("ORD-1"));
        assert_eq!(request.filter.error_class, Some(FailureClass::Retryable));
        assert_eq!(request.max_messages, 5);
        assert!(request.dry_run);
    }

    #[test]
    fn a_bad_filter_names_its_field() {
        for (body, field) in [
            (json!({"errorClass": "sometimes"}), "errorClass"),
            (json!({"fromTimestamp": "yesterday"}), "fromTimestamp"),
            (json!({"toTimestamp": "2026-11-25"}), "toTimestamp"),
            (
                json!({"fromTimestamp": "2026-11-26T00:00:00Z", "toTimestamp": "2026-11-25T00:00:00Z"}),
                "fromTimestamp",
            ),
            (json!({"maxMessages": 0}), "maxMessages"),
            (json!({"ratePerSecond": 0}), "ratePerSecond"),
            (json!({"letters": []}), "letters"),
        ] {
            let error = parse(body.clone()).unwrap_err();
            assert!(error.starts_with(field), "{body}: {error}");
        }
    }
}
