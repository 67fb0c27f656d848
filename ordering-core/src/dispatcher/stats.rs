//! Live counters of a dispatcher, readable from other tasks (health and info endpoints).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use serde::Serialize;

#[derive(Debug, Default)]
pub(crate) struct Counters {
    running: AtomicBool,
    received: AtomicU64,
    applied: AtomicU64,
    dead_lettered: AtomicU64,
    retries: AtomicU64,
    unavailable_waits: AtomicU64,
    waiting_unavailable: AtomicU64,
    dead_letter_failures: AtomicU64,
    dead_letters_reduced: AtomicU64,
    /// Since when dead letters have failed with no success in between, if they do now.
    dead_letters_failing_since: Mutex<Option<Instant>>,
    in_flight: AtomicU64,
}

impl Counters {
    pub(crate) fn set_running(&self, running: bool) {
        self.running.store(running, Relaxed);
    }

    pub(crate) fn received(&self) {
        self.received.fetch_add(1, Relaxed);
        self.in_flight.fetch_add(1, Relaxed);
    }

    pub(crate) fn applied(&self) {
        self.applied.fetch_add(1, Relaxed);
    }

    pub(crate) fn dead_lettered(&self) {
        self.dead_lettered.fetch_add(1, Relaxed);
    }

    pub(crate) fn retried(&self) {
        self.retries.fetch_add(1, Relaxed);
    }

    /// A record starts waiting out an outage (see [`ErrorClass::Unavailable`]).
    ///
    /// [`ErrorClass::Unavailable`]: crate::ErrorClass::Unavailable
    /// The wait ends when the guard is dropped, also when the wait is cancelled.
    pub(crate) fn outage_wait(&self) -> OutageWait<'_> {
        self.unavailable_waits.fetch_add(1, Relaxed);
        self.waiting_unavailable.fetch_add(1, Relaxed);
        OutageWait(self)
    }

    pub(crate) fn dead_letter_failed(&self) {
        self.dead_letter_failures.fetch_add(1, Relaxed);
        self.failing_since().get_or_insert_with(Instant::now);
    }

    /// A dead letter was refused for good and is written reduced.
    pub(crate) fn dead_letter_reduced(&self) {
        self.dead_letters_reduced.fetch_add(1, Relaxed);
    }

    /// A dead letter was written: the sink works (again).
    pub(crate) fn dead_letter_written(&self) {
        *self.failing_since() = None;
    }

    // Only dead-letter outcomes take this lock, never the per-record path; a panic while it
    // was held left a plain `Option` behind, still valid.
    fn failing_since(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.dead_letters_failing_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// `n` records left the dispatcher: finished, abandoned or dropped with their partition.
    pub(crate) fn left(&self, n: u64) {
        self.in_flight.fetch_sub(n, Relaxed);
    }
}

/// A record waiting out an outage; counted in `waiting_on_unavailable` while it lives.
pub(crate) struct OutageWait<'a>(&'a Counters);

impl Drop for OutageWait<'_> {
    fn drop(&mut self) {
        self.0.waiting_unavailable.fetch_sub(1, Relaxed);
    }
}

/// A handle on a dispatcher's counters; cheap to clone, valid after the dispatcher ends.
#[derive(Debug, Clone)]
pub struct Stats(pub(crate) Arc<Counters>);

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let c = &self.0;
        StatsSnapshot {
            is_running: c.running.load(Relaxed),
            received: c.received.load(Relaxed),
            applied: c.applied.load(Relaxed),
            dead_lettered: c.dead_lettered.load(Relaxed),
            retries: c.retries.load(Relaxed),
            unavailable_waits: c.unavailable_waits.load(Relaxed),
            waiting_on_unavailable: c.waiting_unavailable.load(Relaxed),
            dead_letter_failures: c.dead_letter_failures.load(Relaxed),
            dead_letters_reduced: c.dead_letters_reduced.load(Relaxed),
            dead_letters_failing_for_ms: c
                .failing_since()
                .map(|since| u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)),
            in_flight: c.in_flight.load(Relaxed),
        }
    }
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsSnapshot {
    /// The dispatcher is pulling records.
    pub is_running: bool,
    pub received: u64,
    pub applied: u64,
    pub dead_lettered: u64,
    /// Retries scheduled for the records' own failures, over all records.
    pub retries: u64,
    /// Waits for something unavailable (a store outage), over all records: not counted as
    /// retries, never leading to a dead letter.
    pub unavailable_waits: u64,
    /// Records waiting right now for something unavailable to come back.
    pub waiting_on_unavailable: u64,
    /// Dead letters the sink failed to write (each was tried again).
    pub dead_letter_failures: u64,
    /// Dead letters refused for good (too large) and written reduced instead.
    pub dead_letters_reduced: u64,
    /// How long dead letters have been failing with none written since, if they are: their
    /// records (and their lanes) wait meanwhile. A health check turns this into a `503`.
    pub dead_letters_failing_for_ms: Option<u64>,
    /// Received and not yet finished (queued, running or waiting to retry).
    pub in_flight: u64,
}
