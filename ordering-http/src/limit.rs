//! Limits on expensive work (topic scans, DLQ pages, redrives): at most so many of a kind at
//! once. Beyond, a request waits a short, bounded time for a turn, then is told to come back
//! (`503` with `Retry-After`) instead of piling up memory and broker clients. Cheap requests
//! (order lookups, `/health`, `/metrics`) take no turn and never wait behind them.

use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{ApiError, Response};

/// At most `concurrency` requests of one kind at once.
#[derive(Debug, Clone)]
pub struct WorkLimit {
    kind: &'static str,
    concurrency: usize,
    turns: Arc<Semaphore>,
    wait: Duration,
}

/// A turn: the work may run while it is held.
#[derive(Debug)]
pub struct Turn(#[allow(dead_code)] OwnedSemaphorePermit);

/// No turn came within the wait: the request should come back later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "too many {kind} at once (at most {concurrency}); none finished within {waited:?}: try again shortly"
)]
pub struct Busy {
    /// The kind of work, as named to [`WorkLimit::new`] (`"scans"`).
    pub kind: &'static str,
    /// How many requests of the kind may run at once.
    pub concurrency: usize,
    /// How long the request waited for a turn before giving up.
    pub waited: Duration,
}

impl WorkLimit {
    /// `concurrency` (at least 1) at once; a request waits up to `wait` for its turn.
    pub fn new(kind: &'static str, concurrency: usize, wait: Duration) -> Self {
        let concurrency = concurrency.max(1);
        crate::metrics::describe_limits();
        Self {
            kind,
            concurrency,
            turns: Arc::new(Semaphore::new(concurrency)),
            wait,
        }
    }

    /// Waits for a turn, at most the bounded wait.
    pub async fn enter(&self) -> Result<Turn, Busy> {
        let turn = tokio::time::timeout(self.wait, self.turns.clone().acquire_owned()).await;
        match turn {
            Ok(Ok(permit)) => Ok(Turn(permit)),
            // Timed out, or the semaphore was closed (never done): busy either way.
            _ => {
                crate::metrics::work_refused(self.kind);
                Err(Busy {
                    kind: self.kind,
                    concurrency: self.concurrency,
                    waited: self.wait,
                })
            }
        }
    }

    /// Turns free now.
    pub fn available(&self) -> usize {
        self.turns.available_permits()
    }
}

impl Busy {
    /// `503` with the error body and `Retry-After: 1`: a turn frees up as soon as one of the
    /// running requests ends.
    pub fn into_response(self) -> Response {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Busy", self.to_string())
            .with_retry_after(Duration::from_secs(1))
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn beyond_the_limit_a_request_waits_its_bound_then_is_busy() {
        let limit = WorkLimit::new("scans", 2, Duration::from_millis(500));
        let first = limit.enter().await.unwrap();
        let _second = limit.enter().await.unwrap();
        assert_eq!(limit.available(), 0);
        let started = tokio::time::Instant::now();
        let busy = limit.enter().await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_millis(500));
        assert!(busy.to_string().contains("scans"), "{busy}");
        let response = busy.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[hyper::header::RETRY_AFTER], "1");
        // A turn given back is taken by the next one waiting.
        let waiting = tokio::spawn({
            let limit = limit.clone();
            async move { limit.enter().await.map(drop) }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(first);
        assert!(waiting.await.unwrap().is_ok());
    }
}
