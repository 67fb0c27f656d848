//! The dispatcher: pulls records, runs them through the handler in lanes, retries and
//! dead-letters per the policy, and turns finished records into in-order commits.
//!
//! One task owns all the bookkeeping (lanes, watermarks, pausing), so none of it needs a
//! lock; handlers of different lanes run concurrently as futures of that task.

mod lanes;
mod process;
mod stats;
mod watermark;

use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rustc_hash::FxHashMap;
use serde::Serialize;
use tokio::sync::watch;

use crate::handler::Handler;
use crate::record::{Record, TopicPartition};
use crate::retry::RetryPolicy;
use crate::sink::DeadLetterSink;
use crate::source::{Polled, Source, SourceError};

pub use lanes::LaneMode;
pub use stats::{Stats, StatsSnapshot};

use lanes::{LaneId, Lanes};
use process::{Outcome, Shared, process};
use stats::{Counters, Tally};
use watermark::Watermark;

/// Records taken from a source in one go when it has them ready.
const INTAKE_BATCH: usize = 64;

/// How a dispatcher runs.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// When a failing record is tried again and when it is dead-lettered; also paces outage
    /// waits and dead-letter writes the sink did not take.
    pub retry: RetryPolicy,
    /// How a partition's records are split into lanes that run concurrently.
    pub lanes: LaneMode,
    /// Records of one partition held in memory, running or waiting in their lane, at most.
    /// At the bound the partition is paused, and resumed when half of them are done: memory
    /// stays bounded while the source keeps being polled (and keeps its group membership).
    pub max_in_flight_per_partition: NonZeroUsize,
    /// Records of one partition received and not yet committed, at most: finished ones
    /// behind a record still running count here, not above (they cost 16 bytes each, but a
    /// crash delivers them all again). `None`: 8 times `max_in_flight_per_partition`, room
    /// for a key's records to wait behind each other in key lanes without holding the rest.
    pub max_uncommitted_per_partition: Option<NonZeroUsize>,
    /// How long shutdown waits for handler calls already running. Records waiting to retry
    /// are abandoned at once; abandoned records stay uncommitted.
    pub shutdown_grace: Duration,
    /// The payload bytes a reduced dead letter keeps. A letter the sink refuses for good (one
    /// too large for the broker) is written again without its decoded copy and with its
    /// payload cut to this many bytes, rather than holding its lane forever.
    pub reduced_letter_payload: usize,
    /// Time every handler call for the `ordering_handler_duration_seconds` histogram. Two
    /// clock reads and a record per call: about 46 ns, a quarter of the dispatcher's own
    /// cost per record with a handler that does nothing (187 ns; BENCHMARKS.md, "Down to
    /// 5 M"), and nothing next to a handler that writes to a store. Off for pure-overhead
    /// benchmarks.
    pub handler_latency: bool,
}

/// What a reduced dead letter keeps of the payload by default: far below any broker's
/// message limit (Kafka's default is 1 MB), enough to recognise the record.
pub const REDUCED_LETTER_PAYLOAD: usize = 64 * 1024;

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            lanes: LaneMode::Partition,
            max_in_flight_per_partition: NonZeroUsize::new(1024).unwrap_or(NonZeroUsize::MIN),
            max_uncommitted_per_partition: None,
            shutdown_grace: Duration::from_secs(10),
            reduced_letter_payload: REDUCED_LETTER_PAYLOAD,
            handler_latency: true,
        }
    }
}

/// Why a dispatcher stopped other than by its shutdown signal or an exhausted source.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError {
    /// The source failed for good; what was not committed is delivered again.
    #[error("reading records failed: {0}")]
    Source(#[source] SourceError),
    /// The final commit failed; what it did not commit is delivered again.
    #[error("the final commit failed: {0}")]
    Commit(#[source] SourceError),
}

/// One partition's bookkeeping.
struct PartitionState<E> {
    tp: TopicPartition,
    /// Distinguishes this assignment of the partition from earlier ones (and from other
    /// partitions that held its slot), so a record that finishes after its partition was
    /// revoked is ignored.
    epoch: u64,
    watermark: Watermark,
    lanes: Lanes<Record<E>>,
    /// Records received and not finished: running, or waiting in their lane.
    held: usize,
    paused: bool,
    /// Set when the partition is revoked: its running handlers and retry timers are dropped
    /// there and then, so nothing of the old assignment runs on after the revocation.
    revoked: watch::Sender<bool>,
}

/// When a partition is paused: at either bound, the records it holds in memory or those not
/// yet committed; resumed when both are down to half.
#[derive(Debug, Clone, Copy)]
struct Bound {
    held: usize,
    uncommitted: usize,
}

impl Bound {
    fn new(held: NonZeroUsize, uncommitted: Option<NonZeroUsize>) -> Self {
        let uncommitted = uncommitted.map_or(held.get().saturating_mul(8), NonZeroUsize::get);
        Self {
            held: held.get(),
            // Never below the other bound: what is held is also uncommitted.
            uncommitted: uncommitted.max(held.get()),
        }
    }

    fn is_full<E>(&self, state: &PartitionState<E>) -> bool {
        state.held >= self.held || state.watermark.len() >= self.uncommitted
    }

    fn has_room<E>(&self, state: &PartitionState<E>) -> bool {
        state.held <= self.held / 2 && state.watermark.len() <= self.uncommitted / 2
    }
}

/// Where a partition's state is kept in [`Dispatcher::slots`].
type Slot = usize;

/// What a finished record reports back.
struct Done {
    slot: Slot,
    epoch: u64,
    lane: LaneId,
    offset: i64,
    outcome: Outcome,
}

/// A record whose lane is free, with its partition's slot and epoch and its lane: ready to
/// start.
type Ready<E> = (Record<E>, Slot, u64, LaneId);

/// A record's processing, as first started.
type Work = Pin<Box<dyn Future<Output = Done> + Send>>;

/// How a record that had to wait left `running`.
enum Finished {
    Done(Done),
    /// Its partition was revoked: its processing was dropped, nothing more to book.
    Revoked,
}

/// A record being processed that had to wait: cancelled when its partition is revoked.
type Running = Pin<Box<dyn Future<Output = Finished> + Send>>;

/// Runs records from a [`Source`] through a [`Handler`], with retries and dead letters.
pub struct Dispatcher<S: Source, H, D> {
    source: S,
    shared: Arc<Shared<H, D>>,
    lanes: LaneMode,
    bound: Bound,
    shutdown_grace: Duration,
    /// The partitions held, in slots: a finished record names its slot, so booking it costs
    /// no hash lookup and no reference count. A revoked partition's slot is reused.
    slots: Vec<Option<PartitionState<S::Event>>>,
    // Keyed by what the source yields, not by anything a producer controls: a fast hasher.
    slot_of: FxHashMap<TopicPartition, Slot>,
    next_epoch: u64,
    tally: Tally,
}

impl<S: Source, H, D> std::fmt::Debug for Dispatcher<S, H, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("lanes", &self.lanes)
            .field("bound", &self.bound)
            .field("partitions", &self.slot_of.len())
            .finish_non_exhaustive()
    }
}

impl<S, H, D> Dispatcher<S, H, D>
where
    S: Source,
    S::Event: Serialize,
    H: Handler<S::Event> + 'static,
    D: DeadLetterSink + 'static,
{
    /// A dispatcher reading `source`, handling with `handler` and writing dead letters to
    /// `dead_letters`; nothing is read until [`run`](Self::run). Its metrics are labelled
    /// with the source's consumer group.
    pub fn new(source: S, handler: H, dead_letters: D, config: DispatcherConfig) -> Self {
        let consumer_group = source.consumer_group().to_owned();
        let bound = Bound::new(
            config.max_in_flight_per_partition,
            config.max_uncommitted_per_partition,
        );
        let counters = Arc::new(Counters::new(&consumer_group));
        Self {
            source,
            shared: Arc::new(Shared {
                handler,
                dead_letters,
                policy: config.retry,
                consumer_group,
                reduced_letter_payload: config.reduced_letter_payload,
                handler_latency: config.handler_latency,
                counters,
                stopping: watch::Sender::new(false),
            }),
            lanes: config.lanes,
            bound,
            shutdown_grace: config.shutdown_grace,
            slots: Vec::new(),
            slot_of: FxHashMap::default(),
            next_epoch: 0,
            tally: Tally::default(),
        }
    }

    /// Live counters; keep a clone to read them while the dispatcher runs.
    pub fn stats(&self) -> Stats {
        Stats(self.shared.counters.clone())
    }

    /// Runs until `shutdown` completes or the source is exhausted, then commits.
    ///
    /// On shutdown: no new records are taken, handler calls already running get
    /// `shutdown_grace` to finish, records waiting in a lane or for a retry stay uncommitted
    /// (they are delivered again), and what is done is committed. An exhausted source is
    /// drained instead: every record it gave is finished before `run` returns.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), DispatchError> {
        let counters = self.shared.counters.clone();
        counters.set_running(true);
        let mut running = FuturesUnordered::new();
        let mut shutdown = pin!(shutdown);
        let mut intake = true;

        let intake_result = 'intake: loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break Ok(()),
                Some(finished) = running.next() => {
                    if let Finished::Done(done) = finished {
                        let next = self.complete(done, true);
                        self.launch_all(next, &running);
                    } else {
                        self.shared.counters.left(1);
                        self.shared.counters.abandoned(1);
                    }
                }
                polled = self.source.next(), if intake => {
                    // Take what the source has ready in one go (bounded, so finished records
                    // are booked regularly): a `select!` round per record would cost more than
                    // the bookkeeping itself. Dropping a pending `next()` is fine: it is
                    // cancel-safe, and `select!` polls it again with the real waker.
                    let mut polled = polled;
                    for taken in 1.. {
                        match polled {
                            Ok(Some(Polled::Record(record))) => {
                                let next = self.accept(record);
                                self.launch_all(next, &running);
                            }
                            Ok(Some(Polled::Revoked(tps))) => self.revoke(&tps),
                            Ok(None) => {
                                intake = false;
                                break;
                            }
                            Err(error) => break 'intake Err(error),
                        }
                        if taken == INTAKE_BATCH {
                            break;
                        }
                        // Polled where it is made (`now_or_never` would move it first).
                        let next = pin!(self.source.next());
                        match next.poll(&mut Context::from_waker(Waker::noop())) {
                            Poll::Ready(ready) => polled = ready,
                            Poll::Pending => break,
                        }
                    }
                }
            }
            counters.publish(&mut self.tally);
            if !intake && running.is_empty() {
                break Ok(()); // exhausted and drained
            }
        };
        counters.publish(&mut self.tally);
        counters.set_running(false);

        // Stop: waiting retries give up, running handler calls get the grace period.
        self.shared.stopping.send_replace(true);
        let grace = self.shutdown_grace;
        let drain = async {
            while let Some(finished) = running.next().await {
                match finished {
                    Finished::Done(done) => drop(self.complete(done, false)),
                    Finished::Revoked => {
                        self.shared.counters.left(1);
                        self.shared.counters.abandoned(1);
                    }
                }
            }
        };
        let drained = tokio::time::timeout(grace, drain).await;
        counters.publish(&mut self.tally);
        if drained.is_err() {
            tracing::warn!(
                abandoned = running.len(),
                "handlers still running after the shutdown grace period; left uncommitted"
            );
        }
        let unfinished = running.len()
            + self
                .slots
                .iter()
                .flatten()
                .map(|p| p.lanes.queued())
                .sum::<usize>();
        counters.left(unfinished as u64);
        counters.abandoned(unfinished as u64);

        let committed = self.source.commit().await;
        if let Err(error) = self.shared.dead_letters.flush().await {
            // Every dead letter was already acknowledged one by one; this is belt and braces.
            tracing::warn!(%error, "flushing the dead-letter sink failed");
        }
        intake_result.map_err(DispatchError::Source)?;
        committed.map_err(DispatchError::Commit)
    }

    /// Takes a new record in. Returns it if its lane is idle and it should start now.
    fn accept(&mut self, record: Record<S::Event>) -> Option<Ready<S::Event>> {
        self.tally.received += 1;
        let meta = &record.meta;
        let slot = match self.slot_of.get(&meta.tp) {
            Some(&slot) => slot,
            None => self.hold(meta.tp.clone()),
        };
        let tracked = self
            .slots
            .get_mut(slot)?
            .as_mut()?
            .watermark
            .track(meta.offset);
        let slot = if tracked {
            slot
        } else {
            // The partition's offsets went backwards without a revocation: its log was
            // truncated (an unclean leader election) or its position reset. Skipping the
            // record would commit past data never processed; start the partition over from
            // here instead, as a new owner would.
            tracing::warn!(tp = %meta.tp, offset = meta.offset, "offsets went backwards; the partition starts over from this record");
            let tp = meta.tp.clone();
            let slot = self.reset(&tp);
            // What was acknowledged for the old records is past the new ones: a commit of it
            // would skip them after a crash. Commit from this record instead.
            self.source.ack(&tp, meta.offset);
            slot
        };
        let state = self.slots.get_mut(slot)?.as_mut()?;
        if !tracked {
            state.watermark.track(meta.offset); // a fresh watermark takes any offset
        }
        state.held += 1;
        if !state.paused && self.bound.is_full(state) {
            state.paused = true;
            self.shared.counters.paused(true);
            self.source.pause(&meta.tp);
        }
        let lane = self.lanes.lane_of(meta);
        let epoch = state.epoch;
        state
            .lanes
            .admit(lane, record)
            .map(|record| (record, slot, epoch, lane))
    }

    /// Drops what the dispatcher holds of `tp` (its queued and running records, as at a
    /// revocation) and starts it anew, fetching again if it was paused.
    fn reset(&mut self, tp: &TopicPartition) -> Slot {
        let paused = self
            .slot_of
            .get(tp)
            .and_then(|&slot| self.slots.get(slot)?.as_ref())
            .is_some_and(|state| state.paused);
        self.revoke(std::slice::from_ref(tp));
        if paused {
            self.source.resume(tp);
        }
        self.hold(tp.clone())
    }

    /// Starts bookkeeping for a partition seen for the first time (since its last revocation).
    fn hold(&mut self, tp: TopicPartition) -> Slot {
        self.next_epoch += 1;
        let state = PartitionState {
            tp: tp.clone(),
            epoch: self.next_epoch,
            watermark: Watermark::default(),
            lanes: Lanes::default(),
            held: 0,
            paused: false,
            revoked: watch::Sender::new(false),
        };
        let slot = match self.slots.iter().position(Option::is_none) {
            Some(free) => {
                self.slots[free] = Some(state);
                free
            }
            None => {
                self.slots.push(Some(state));
                self.slots.len() - 1
            }
        };
        self.slot_of.insert(tp, slot);
        slot
    }

    /// Books a finished record. Returns the next record of its lane to start, if any and if
    /// `start_next`.
    fn complete(&mut self, done: Done, start_next: bool) -> Option<Ready<S::Event>> {
        self.tally.left += 1;
        match done.outcome {
            Outcome::Applied => self.tally.applied += 1,
            Outcome::DeadLettered => self.shared.counters.dead_lettered(),
            Outcome::Abandoned => {
                self.shared.counters.abandoned(1);
                return None;
            }
        }
        let state = self
            .slots
            .get_mut(done.slot)?
            .as_mut()
            .filter(|state| state.epoch == done.epoch)?; // revoked meanwhile: not ours to commit
        state.held -= 1;
        if let Some(next_offset) = state.watermark.complete(done.offset) {
            self.source.ack(&state.tp, next_offset);
        }
        if state.paused && self.bound.has_room(state) {
            state.paused = false;
            self.shared.counters.paused(false);
            self.source.resume(&state.tp);
        }
        if !start_next {
            return None; // stopping: what waits in the lane stays queued, uncommitted
        }
        let next = state.lanes.finish(done.lane)?;
        Some((next, done.slot, done.epoch, done.lane))
    }

    /// Forgets revoked partitions: queued records are dropped uncommitted, running ones
    /// (handlers, retry timers, dead letters being written) are cancelled. Either way they
    /// are delivered again to whoever holds the partition next.
    fn revoke(&mut self, tps: &[TopicPartition]) {
        for tp in tps {
            let state = self
                .slot_of
                .remove(tp)
                .and_then(|slot| self.slots.get_mut(slot)?.take());
            if let Some(state) = state {
                state.revoked.send_replace(true);
                let queued = state.lanes.queued() as u64;
                self.shared.counters.left(queued);
                self.shared.counters.abandoned(queued);
                if state.paused {
                    self.shared.counters.paused(false);
                }
            }
        }
    }

    /// Launches `next`, then whatever its finishing frees, until a record has to wait.
    fn launch_all(
        &mut self,
        mut next: Option<Ready<S::Event>>,
        running: &FuturesUnordered<Running>,
    ) {
        while let Some(record) = next.take() {
            next = self.launch(record, running);
        }
    }

    /// Starts a record. A handler that finishes without waiting (the common case) is booked at
    /// once, and the next record of its lane returned to be launched in turn; one that waits
    /// joins `running`.
    fn launch(
        &mut self,
        (record, slot, epoch, lane): Ready<S::Event>,
        running: &FuturesUnordered<Running>,
    ) -> Option<Ready<S::Event>> {
        let shared = self.shared.clone();
        let mut work: Work = Box::pin(async move {
            let outcome = process(&shared, &record).await;
            Done {
                slot,
                epoch,
                lane,
                offset: record.meta.offset,
                outcome,
            }
        });
        // Polling once here with a no-op waker is safe: a future pushed into `running` is
        // always polled again, with the dispatcher's waker, before the dispatcher sleeps.
        match work.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(done) => self.complete(done, true),
            Poll::Pending => {
                // Only work that waits can outlive a revocation; what finished inline never
                // pays for the watch.
                match self.slots.get(slot).and_then(Option::as_ref) {
                    Some(state) => {
                        let mut revoked = state.revoked.subscribe();
                        running.push(Box::pin(async move {
                            tokio::select! {
                                biased;
                                // Also when the partition's state is gone: revoked all the same.
                                _ = revoked.wait_for(|revoked| *revoked) => Finished::Revoked,
                                done = work => Finished::Done(done),
                            }
                        }));
                    }
                    // Not reachable (the record's partition is live while it is launched);
                    // if it were, finishing the work is the safe way.
                    None => running.push(Box::pin(work.map(Finished::Done))),
                }
                None
            }
        }
    }
}
