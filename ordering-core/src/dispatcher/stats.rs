//! Live counters of a dispatcher, readable from other tasks (health and info endpoints), and
//! the same numbers as metrics through the `metrics` facade: the recorder an application
//! installs (Prometheus, in the shells) sees them; without one they cost next to nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Unit};
use tokio::time::Instant;

use serde::Serialize;

/// The dispatcher's metrics, labelled with its consumer group. Handles are made once, so
/// recording is an atomic add, never a registry lookup.
#[derive(Debug)]
struct Metrics {
    received: Counter,
    applied: Counter,
    dead_lettered: Counter,
    retried: Counter,
    abandoned: Counter,
    unavailable_waits: Counter,
    dead_letter_failures: Counter,
    dead_letters_reduced: Counter,
    in_flight: Gauge,
    waiting_unavailable: Gauge,
    paused_partitions: Gauge,
    handled_ok: Histogram,
    handled_error: Histogram,
}

/// Says what each metric means, once per process (for `# HELP` lines).
fn describe() {
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(|| {
        use metrics::{describe_counter, describe_gauge, describe_histogram};
        describe_counter!(
            "ordering_records_received_total",
            "Records received from the source"
        );
        describe_counter!(
            "ordering_records_applied_total",
            "Records the handler applied"
        );
        describe_counter!(
            "ordering_records_dead_lettered_total",
            "Records whose dead letter was written"
        );
        describe_counter!(
            "ordering_records_retried_total",
            "Retries scheduled for records' own failures"
        );
        describe_counter!(
            "ordering_records_abandoned_total",
            "Records left uncommitted by a shutdown or a revoked partition, to be delivered again"
        );
        describe_counter!(
            "ordering_unavailable_waits_total",
            "Waits for something unavailable (a store outage); never dead-lettered"
        );
        describe_counter!(
            "ordering_dead_letter_failures_total",
            "Dead-letter writes that failed (each is tried again)"
        );
        describe_counter!(
            "ordering_dead_letters_reduced_total",
            "Dead letters refused for good (too large) and written reduced"
        );
        describe_gauge!(
            "ordering_records_in_flight",
            "Records received and not yet finished"
        );
        describe_gauge!(
            "ordering_records_waiting_unavailable",
            "Records waiting for something unavailable to come back"
        );
        describe_gauge!(
            "ordering_partitions_paused",
            "Partitions paused because too many of their records are in flight"
        );
        describe_histogram!(
            "ordering_handler_duration_seconds",
            Unit::Seconds,
            "Time of one handler call (store writes included), by result"
        );
    });
}

impl Metrics {
    fn new(group: &str) -> Self {
        describe();
        let group = group.to_owned();
        let handled = |result: &'static str| metrics::histogram!("ordering_handler_duration_seconds", "group" => group.clone(), "result" => result);
        Self {
            received: metrics::counter!("ordering_records_received_total", "group" => group.clone()),
            applied: metrics::counter!("ordering_records_applied_total", "group" => group.clone()),
            dead_lettered: metrics::counter!("ordering_records_dead_lettered_total", "group" => group.clone()),
            retried: metrics::counter!("ordering_records_retried_total", "group" => group.clone()),
            abandoned: metrics::counter!("ordering_records_abandoned_total", "group" => group.clone()),
            unavailable_waits: metrics::counter!("ordering_unavailable_waits_total", "group" => group.clone()),
            dead_letter_failures: metrics::counter!("ordering_dead_letter_failures_total", "group" => group.clone()),
            dead_letters_reduced: metrics::counter!("ordering_dead_letters_reduced_total", "group" => group.clone()),
            in_flight: metrics::gauge!("ordering_records_in_flight", "group" => group.clone()),
            waiting_unavailable: metrics::gauge!("ordering_records_waiting_unavailable", "group" => group.clone()),
            paused_partitions: metrics::gauge!("ordering_partitions_paused", "group" => group.clone()),
            handled_ok: handled("ok"),
            handled_error: handled("error"),
        }
    }
}

/// The per-record counts, kept by the dispatcher's task in plain integers and published to
/// [`Counters`] once per round of its loop: atomic adds per record were a tenth of the
/// dispatcher's own cost (BENCHMARKS.md, "Down to 5 M"). Readers see them a round late, which is
/// microseconds.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) received: u64,
    pub(crate) applied: u64,
    /// Records that left the dispatcher: finished, or skipped as received twice.
    pub(crate) left: u64,
}

#[derive(Debug)]
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
    abandoned: AtomicU64,
    metrics: Metrics,
}

impl Counters {
    pub(crate) fn new(group: &str) -> Self {
        Self {
            running: AtomicBool::default(),
            received: AtomicU64::default(),
            applied: AtomicU64::default(),
            dead_lettered: AtomicU64::default(),
            retries: AtomicU64::default(),
            unavailable_waits: AtomicU64::default(),
            waiting_unavailable: AtomicU64::default(),
            dead_letter_failures: AtomicU64::default(),
            dead_letters_reduced: AtomicU64::default(),
            dead_letters_failing_since: Mutex::default(),
            in_flight: AtomicU64::default(),
            abandoned: AtomicU64::default(),
            metrics: Metrics::new(group),
        }
    }

    pub(crate) fn set_running(&self, running: bool) {
        self.running.store(running, Relaxed);
    }

    /// Adds what the dispatcher counted since the last call, and clears it.
    pub(crate) fn publish(&self, tally: &mut Tally) {
        let Tally {
            received,
            applied,
            left,
        } = std::mem::take(tally);
        if received > 0 {
            self.received.fetch_add(received, Relaxed);
            self.in_flight.fetch_add(received, Relaxed);
            self.metrics.received.increment(received);
            self.metrics.in_flight.increment(received as f64);
        }
        if applied > 0 {
            self.applied.fetch_add(applied, Relaxed);
            self.metrics.applied.increment(applied);
        }
        if left > 0 {
            self.left(left);
        }
    }

    pub(crate) fn dead_lettered(&self) {
        self.dead_lettered.fetch_add(1, Relaxed);
        self.metrics.dead_lettered.increment(1);
    }

    pub(crate) fn retried(&self) {
        self.retries.fetch_add(1, Relaxed);
        self.metrics.retried.increment(1);
    }

    /// `n` records were given up uncommitted (shutdown, revocation): delivered again later.
    pub(crate) fn abandoned(&self, n: u64) {
        self.abandoned.fetch_add(n, Relaxed);
        self.metrics.abandoned.increment(n);
    }

    /// One handler call took `elapsed`.
    pub(crate) fn handled(&self, elapsed: Duration, ok: bool) {
        let histogram = if ok {
            &self.metrics.handled_ok
        } else {
            &self.metrics.handled_error
        };
        histogram.record(elapsed);
    }

    /// A partition was paused (`true`) or resumed.
    pub(crate) fn paused(&self, paused: bool) {
        let gauge = &self.metrics.paused_partitions;
        if paused {
            gauge.increment(1.0);
        } else {
            gauge.decrement(1.0);
        }
    }

    /// A record starts waiting out an outage (see [`ErrorClass::Unavailable`]).
    ///
    /// [`ErrorClass::Unavailable`]: crate::ErrorClass::Unavailable
    /// The wait ends when the guard is dropped, also when the wait is cancelled.
    pub(crate) fn outage_wait(&self) -> OutageWait<'_> {
        self.unavailable_waits.fetch_add(1, Relaxed);
        self.waiting_unavailable.fetch_add(1, Relaxed);
        self.metrics.unavailable_waits.increment(1);
        self.metrics.waiting_unavailable.increment(1.0);
        OutageWait(self)
    }

    pub(crate) fn dead_letter_failed(&self) {
        self.dead_letter_failures.fetch_add(1, Relaxed);
        self.metrics.dead_letter_failures.increment(1);
        self.failing_since().get_or_insert_with(Instant::now);
    }

    /// A dead letter was refused for good and is written reduced.
    pub(crate) fn dead_letter_reduced(&self) {
        self.dead_letters_reduced.fetch_add(1, Relaxed);
        self.metrics.dead_letters_reduced.increment(1);
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
        self.metrics.in_flight.decrement(n as f64);
    }
}

/// A record waiting out an outage; counted in `waiting_on_unavailable` while it lives.
pub(crate) struct OutageWait<'a>(&'a Counters);

impl Drop for OutageWait<'_> {
    fn drop(&mut self) {
        self.0.waiting_unavailable.fetch_sub(1, Relaxed);
        self.0.metrics.waiting_unavailable.decrement(1.0);
    }
}

/// A handle on a dispatcher's counters; cheap to clone, valid after the dispatcher ends.
#[derive(Debug, Clone)]
pub struct Stats(pub(crate) Arc<Counters>);

impl Stats {
    /// The counters now. Each is read on its own, so while the dispatcher runs they need not
    /// add up exactly.
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
            abandoned: c.abandoned.load(Relaxed),
        }
    }
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsSnapshot {
    /// The dispatcher is pulling records.
    pub is_running: bool,
    /// Records taken from the source.
    pub received: u64,
    /// Records the handler applied (it returned `Ok`, at once or after retries).
    pub applied: u64,
    /// Records whose dead letter was written.
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
    /// Given up uncommitted by a shutdown or a revoked partition: delivered again later.
    pub abandoned: u64,
}
