//! Answers that are cheap to ask for and costly to compute (`/health`'s probes, a count of
//! every order): computed at most once per period and one at a time, whatever the request
//! rate, so a flood of probes and dashboards costs the store and the broker one computation
//! a period instead of one per request.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

// tokio's clock, which a test can pause and advance.
use tokio::time::Instant;

/// A value recomputed at most once per `period`. While one request computes it, the others
/// take the last value (however old) rather than wait; only the very first requests wait for
/// the first value.
#[derive(Debug)]
pub struct Cached<T> {
    period: Duration,
    last: Mutex<Option<(Instant, T)>>,
    computing: tokio::sync::Mutex<()>,
}

impl<T: Clone> Cached<T> {
    /// Empty, keeping each value for `period`: the first [`get`](Self::get) computes it.
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            last: Mutex::new(None),
            computing: tokio::sync::Mutex::new(()),
        }
    }

    /// The value, computed by `compute` if the last one is older than the period and no
    /// other request is computing it now.
    pub async fn get<F>(&self, compute: impl FnOnce() -> F) -> T
    where
        F: Future<Output = T>,
    {
        let last = self.last();
        if let Some((at, value)) = &last
            && at.elapsed() < self.period
        {
            return value.clone();
        }
        let turn = match (self.computing.try_lock(), last) {
            (Ok(turn), _) => turn,
            // Another request is computing: its value is on the way, the last one will do.
            (Err(_), Some((_, value))) => return value.clone(),
            (Err(_), None) => self.computing.lock().await,
        };
        // Computed by the request that held the turn before this one?
        if let Some((at, value)) = self.last()
            && at.elapsed() < self.period
        {
            return value;
        }
        let value = compute().await;
        *self.slot() = Some((Instant::now(), value.clone()));
        drop(turn);
        value
    }

    fn last(&self) -> Option<(Instant, T)> {
        self.slot().clone()
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<(Instant, T)>> {
        // A panic while it was held left a valid value (or none) behind.
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_requests_computes_once_a_period_and_nobody_waits_for_a_slow_one() {
        let cached = Arc::new(Cached::new(Duration::from_secs(1)));
        let computed = Arc::new(AtomicUsize::new(0));
        let compute = |computed: Arc<AtomicUsize>, took: Duration| async move {
            tokio::time::sleep(took).await;
            computed.fetch_add(1, Ordering::SeqCst) + 1
        };
        // 100 at once, before any value: one computes, the others wait for its value.
        let first: Vec<_> = (0..100)
            .map(|_| {
                let (cached, computed) = (cached.clone(), computed.clone());
                tokio::spawn(async move {
                    cached
                        .get(|| compute(computed, Duration::from_millis(10)))
                        .await
                })
            })
            .collect();
        for request in first {
            assert_eq!(request.await.unwrap(), 1);
        }
        // Within the period: the same value, nothing computed.
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(
            cached
                .get(|| compute(computed.clone(), Duration::ZERO))
                .await,
            1
        );
        assert_eq!(computed.load(Ordering::SeqCst), 1);
        // Past it, one slow computation (2 s): everyone else gets the last value at once.
        tokio::time::advance(Duration::from_millis(600)).await;
        let slow = {
            let (cached, computed) = (cached.clone(), computed.clone());
            tokio::spawn(async move {
                cached
                    .get(|| compute(computed, Duration::from_secs(2)))
                    .await
            })
        };
        tokio::task::yield_now().await;
        let started = tokio::time::Instant::now();
        for _ in 0..50 {
            assert_eq!(
                cached
                    .get(|| compute(computed.clone(), Duration::ZERO))
                    .await,
                1
            );
        }
        assert_eq!(started.elapsed(), Duration::ZERO, "nobody waited");
        assert_eq!(slow.await.unwrap(), 2);
        assert_eq!(computed.load(Ordering::SeqCst), 2);
        assert_eq!(
            cached
                .get(|| compute(computed.clone(), Duration::ZERO))
                .await,
            2
        );
    }
}
