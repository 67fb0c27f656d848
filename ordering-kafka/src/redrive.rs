//! Redrive: dead letters sent back to the topic they came from, once their cause is fixed.
//!
//! A run reads the DLQ page by page up to where it ended when the run began (letters that fail
//! again during the run are left for a later one), keeps the letters its [`LetterFilter`]
//! accepts, and republishes each one's `originalValue` byte for byte, with its original key
//! and headers byte for byte, to its `originalTopic`, adding headers with the redrive count,
//! the record's origin (where it was first published) and the letter's DLQ position.
//!
//! What it promises:
//! - **Never backwards.** A letter the application's [`RedriveGuard`] finds superseded
//!   (something newer was applied meanwhile) is skipped; the consumer guards the same way by
//!   the origin the copy carries.
//! - **Once per record.** The [`RedriveLedger`] is keyed on the record, not the letter: a
//!   record dead-lettered twice is sent back once, and two runs never send it twice (unless
//!   asked `again`).
//! - **Nothing blind.** A republish whose outcome is unknown (it timed out, and may have been
//!   written) keeps its claim and is reported `unknown`; `again` sends it.
//! - **No loops.** A record redriven `max_redrives` times is not sent again (unless forced).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use futures::StreamExt;
use ordering_core::{
    Claim, DeadLetter, LetterFilter, LetterId, Record, RedriveGuard, RedriveKey, RedriveLedger,
};
use serde::Serialize;
use std::collections::{BTreeSet, HashSet};
use tokio::time::Instant;
use tracing::Instrument;

use crate::codec::DeadLetterCodec;
use crate::error::KafkaError;
use crate::reader::{Cursor, PageBounds, end_offsets, read_page};
use crate::security::Cluster;
use crate::sink::KafkaProducer;

/// The oldest dead-letter schema version that keeps what a redrive needs: the key's bytes and
/// the headers, among them a redriven record's origin. A service that redrives must not write
/// its letters with an older one (`DeadLetterCodec::pin`): a letter of a redriven copy would lose
/// its origin, and could move an order backwards when sent again.
pub const REDRIVABLE_DLQ_VERSION: u32 = 3;

/// Records one page of the DLQ reads at most.
const PAGE_SCAN: usize = 10_000;
/// How long reading one page (or the DLQ's end) may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Republishes awaiting the broker at once.
const IN_FLIGHT: usize = 32;
/// Letters listed one by one in a report; the counts cover them all.
const LISTED: usize = 1000;

/// What one run sends back.
#[derive(Debug, Clone)]
pub struct Redrive {
    /// Which letters match; the default matches every one.
    pub filter: LetterFilter,
    /// Only these letters, by their place in the DLQ (partition, offset), if they pass the
    /// filter too; `None`: every letter the filter accepts.
    pub letters: Option<BTreeSet<(i32, i64)>>,
    /// Letters matched at most; the run stops there.
    pub max_messages: usize,
    /// Republishes per second at most; `None`: as fast as the broker takes them.
    pub rate_per_second: Option<NonZeroU32>,
    /// Decide and report, change nothing: no republish, no claim.
    pub dry_run: bool,
    /// Send letters that were sent before too.
    pub again: bool,
    /// Send records that reached the redrive bound too.
    pub force: bool,
}

impl Default for Redrive {
    fn default() -> Self {
        Self {
            filter: LetterFilter::default(),
            letters: None,
            max_messages: 1000,
            rate_per_second: None,
            dry_run: false,
            again: false,
            force: false,
        }
    }
}

/// Why a matched letter was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum Skip {
    /// Sent back by an earlier run (ask `again` to send it anyway).
    AlreadyRedriven,
    /// Its record was redriven the maximum number of times and failed each time (ask `force`).
    MaxRedrives,
    /// A reduced letter holds only the start of the payload: it cannot be replayed.
    Reduced,
    /// Its `originalTopic` is not one this redriver may publish to.
    ForeignTopic,
    /// Something newer was applied to what its record changes: sending it back would move
    /// that backwards.
    Superseded,
    /// Another letter of the same record (dead-lettered twice) comes first in this run.
    SameRecord,
}

/// What became of one matched letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "outcome", content = "reason")]
#[non_exhaustive]
pub enum Outcome {
    /// Written back to its `originalTopic`, acknowledged by the broker.
    Republished,
    /// A dry run's answer: it would have been republished.
    WouldRepublish,
    /// Not sent, for the reason given.
    Skipped(Skip),
    /// Surely not written; its claim was taken back, so a later run sends it.
    Failed(String),
    /// The republish failed in a way that may have written it all the same (it timed out):
    /// the claim stays, so no run sends it blindly; `again` sends it.
    Unknown(String),
}

/// One matched letter and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LetterOutcome {
    /// The letter's partition in the DLQ.
    pub dlq_partition: i32,
    /// The letter's offset in that partition.
    pub dlq_offset: i64,
    /// The topic the failed record came from, and goes back to.
    pub original_topic: String,
    /// The failed record's key as text (lossy when it is not UTF-8); `None` when it had none.
    pub original_key: Option<String>,
    /// The letter's `errorType`: why the record failed.
    pub error_type: String,
    /// The redrive count the republished record carries (or would).
    pub redrive_count: u32,
    /// What became of it.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Letters skipped, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Skips {
    /// Letters skipped as [`Skip::AlreadyRedriven`].
    pub already_redriven: u64,
    /// Letters skipped as [`Skip::MaxRedrives`].
    pub max_redrives: u64,
    /// Letters skipped as [`Skip::Reduced`].
    pub reduced: u64,
    /// Letters skipped as [`Skip::ForeignTopic`].
    pub foreign_topic: u64,
    /// Letters skipped as [`Skip::Superseded`].
    pub superseded: u64,
    /// Letters skipped as [`Skip::SameRecord`].
    pub same_record: u64,
}

impl Skips {
    fn count(&mut self, skip: Skip) {
        let n = match skip {
            Skip::AlreadyRedriven => &mut self.already_redriven,
            Skip::MaxRedrives => &mut self.max_redrives,
            Skip::Reduced => &mut self.reduced,
            Skip::ForeignTopic => &mut self.foreign_topic,
            Skip::Superseded => &mut self.superseded,
            Skip::SameRecord => &mut self.same_record,
        };
        *n += 1;
    }

    /// Letters skipped, whatever the reason.
    pub fn total(&self) -> u64 {
        self.already_redriven
            + self.max_redrives
            + self.reduced
            + self.foreign_topic
            + self.superseded
            + self.same_record
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RedriveReport {
    /// Whether the run was a dry run ([`Redrive::dry_run`]): nothing was sent or claimed.
    pub dry_run: bool,
    /// DLQ records read.
    pub scanned: u64,
    /// DLQ records that are not letters this codec reads (never matched).
    pub unreadable: u64,
    /// Letters the request matched, at most [`Redrive::max_messages`]; the outcome of each is
    /// counted below, unless the run stopped before it.
    pub matched: u64,
    /// Letters sent back ([`Outcome::Republished`]).
    pub republished: u64,
    /// Letters a dry run would have sent back ([`Outcome::WouldRepublish`]).
    pub would_republish: u64,
    /// Letters not sent ([`Outcome::Skipped`]).
    pub skipped: u64,
    /// [`RedriveReport::skipped`], by reason.
    pub skipped_by_reason: Skips,
    /// Republishes that surely failed; their claims were taken back, so a later run sends
    /// them.
    pub failed: u64,
    /// Republishes whose outcome is unknown; their claims stay (`again` sends them).
    pub unknown: u64,
    /// Why the run stopped before its end, if it did (the broker or the ledger failed).
    pub stopped: Option<String>,
    /// The first matched letters, one by one.
    pub letters: Vec<LetterOutcome>,
}

impl RedriveReport {
    fn record(&mut self, letter: LetterOutcome) {
        match &letter.outcome {
            Outcome::Republished => self.republished += 1,
            Outcome::WouldRepublish => self.would_republish += 1,
            Outcome::Skipped(skip) => {
                self.skipped += 1;
                self.skipped_by_reason.count(*skip);
            }
            Outcome::Failed(_) => self.failed += 1,
            Outcome::Unknown(_) => self.unknown += 1,
        }
        if self.letters.len() < LISTED {
            self.letters.push(letter);
        }
    }
}

/// A run that could not start: the DLQ could not be read.
#[derive(Debug, thiserror::Error)]
#[error("the dead-letter topic could not be read: {0}")]
pub struct RedriveError(#[from] pub KafkaError);

impl RedriveError {
    /// Worth trying again later (the broker is down or slow).
    pub fn is_retryable(&self) -> bool {
        self.0.is_retryable()
    }
}

/// How many times a record is redriven at most, unless set ([`RedriverBuilder::max_redrives`]).
pub const DEFAULT_MAX_REDRIVES: u32 = 3;

/// What a [`Redriver`] is made of; from [`Redriver::builder`].
pub struct RedriverBuilder {
    producer: KafkaProducer,
    codec: DeadLetterCodec,
    ledger: Arc<dyn RedriveLedger>,
    dlq_topic: Option<String>,
    topics: Vec<String>,
    max_redrives: u32,
    guard: Option<Arc<dyn RedriveGuard>>,
    read_from: Option<Cluster>,
}

impl std::fmt::Debug for RedriverBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedriverBuilder")
            .field("dlq_topic", &self.dlq_topic)
            .field("topics", &self.topics)
            .field("max_redrives", &self.max_redrives)
            .finish_non_exhaustive()
    }
}

impl RedriverBuilder {
    /// The dead-letter topic it reads. Required.
    pub fn dead_letters(mut self, topic: impl Into<String>) -> Self {
        self.dlq_topic = Some(topic.into());
        self
    }

    /// The topics letters may be sent back to: a letter of any other topic is skipped
    /// (`foreignTopic`). Required: at least one.
    pub fn topics<T: Into<String>>(mut self, topics: impl IntoIterator<Item = T>) -> Self {
        self.topics = topics.into_iter().map(Into::into).collect();
        self
    }

    /// Redrives of one record at most, unless a run is forced ([`DEFAULT_MAX_REDRIVES`]).
    pub fn max_redrives(mut self, max: u32) -> Self {
        self.max_redrives = max;
        self
    }

    /// Asks `guard` before sending a letter back, and skips those it finds superseded.
    pub fn guard(mut self, guard: Arc<dyn RedriveGuard>) -> Self {
        self.guard = Some(guard);
        self
    }

    /// Reads the DLQ on `cluster` rather than on the producer's.
    pub fn read_from(mut self, cluster: impl Into<Cluster>) -> Self {
        self.read_from = Some(cluster.into());
        self
    }

    /// The redriver; a [`KafkaError::Config`] names what is missing.
    pub fn build(self) -> Result<Redriver, KafkaError> {
        let dlq_topic = self.dlq_topic.ok_or_else(|| {
            KafkaError::Config(
                "a redriver reads a dead-letter topic: name it with RedriverBuilder::dead_letters"
                    .into(),
            )
        })?;
        if self.topics.is_empty() {
            return Err(KafkaError::Config(
                "a redriver sends letters back to named topics only: name them with RedriverBuilder::topics".into(),
            ));
        }
        Ok(Redriver {
            cluster: (self.read_from).unwrap_or_else(|| self.producer.cluster().clone()),
            producer: self.producer,
            dlq_topic,
            topics: self.topics,
            max_redrives: self.max_redrives,
            ledger: self.ledger,
            guard: self.guard,
            codec: self.codec,
        })
    }
}

/// Sends letters of one DLQ back. Cheap to share; runs may overlap (the ledger keeps them
/// from sending one letter twice).
pub struct Redriver {
    producer: KafkaProducer,
    cluster: Cluster,
    dlq_topic: String,
    topics: Vec<String>,
    max_redrives: u32,
    ledger: Arc<dyn RedriveLedger>,
    guard: Option<Arc<dyn RedriveGuard>>,
    codec: DeadLetterCodec,
}

impl std::fmt::Debug for Redriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redriver")
            .field("dlq_topic", &self.dlq_topic)
            .field("topics", &self.topics)
            .field("max_redrives", &self.max_redrives)
            .finish_non_exhaustive()
    }
}

impl Redriver {
    /// A redriver that republishes through `producer` (and reads the DLQ on its cluster),
    /// reads letters with `codec` and remembers what it sent in `ledger`. Name the
    /// dead-letter topic it reads ([`RedriverBuilder::dead_letters`]) and the topics letters
    /// may go back to ([`RedriverBuilder::topics`]) before [`build`](RedriverBuilder::build).
    pub fn builder(
        producer: KafkaProducer,
        codec: DeadLetterCodec,
        ledger: Arc<dyn RedriveLedger>,
    ) -> RedriverBuilder {
        RedriverBuilder {
            producer,
            codec,
            ledger,
            dlq_topic: None,
            topics: Vec::new(),
            max_redrives: DEFAULT_MAX_REDRIVES,
            guard: None,
            read_from: None,
        }
    }

    /// How many times one record is redriven at most, unless a run is forced.
    pub fn max_redrives(&self) -> u32 {
        self.max_redrives
    }

    /// Runs `request` over the DLQ as it is now. Fails only when the DLQ cannot be read at
    /// the start; a failure later stops the run with what it did so far ([`RedriveReport::stopped`]).
    pub async fn run(&self, request: &Redrive) -> Result<RedriveReport, RedriveError> {
        let end = end_offsets(&self.cluster, &self.dlq_topic, READ_TIMEOUT).await?;
        let mut report = RedriveReport {
            dry_run: request.dry_run,
            ..RedriveReport::default()
        };
        let mut pace = Pace::new(request.rate_per_second);
        let mut seen = HashSet::new();
        let mut from = Cursor::default();
        // Letters chosen one by one: the run ends once it has them all.
        let wanted = request
            .letters
            .as_ref()
            .map_or(request.max_messages, |l| l.len().min(request.max_messages));
        while (report.matched as usize) < wanted && !from.reached(&end) {
            let unreadable = Arc::new(AtomicU64::new(0));
            let keep = {
                let (filter, end, unreadable) =
                    (request.filter.clone(), end.clone(), unreadable.clone());
                let chosen = request.letters.clone();
                move |record: &Record<DeadLetter>| {
                    let at = (record.meta.tp.partition, record.meta.offset);
                    let before_end = end.get(at.0).is_some_and(|end| at.1 < end);
                    let chosen = chosen.as_ref().is_none_or(|chosen| chosen.contains(&at));
                    match &record.event {
                        Ok(letter) => before_end && chosen && filter.accepts(letter),
                        Err(_) => {
                            unreadable.fetch_add(u64::from(before_end), Relaxed);
                            false
                        }
                    }
                }
            };
            let bounds = PageBounds {
                keep: wanted - report.matched as usize,
                scan: PAGE_SCAN,
                timeout: READ_TIMEOUT,
            };
            let page = match read_page(
                &self.cluster,
                &self.dlq_topic,
                self.codec,
                from.clone(),
                bounds,
                keep,
            )
            .await
            {
                Ok(page) => page,
                Err(error) if report.scanned == 0 => return Err(error.into()),
                Err(error) => {
                    report.stopped = Some(format!("reading the dead-letter topic: {error}"));
                    break;
                }
            };
            report.scanned += page.scanned as u64;
            report.unreadable += unreadable.load(Relaxed);
            report.matched += page.records.len() as u64;
            let letters = page.records.into_iter().filter_map(|r| {
                let mut letter = r.event.ok()?;
                letter.original_incarnation = crate::message::original_incarnation(&r.meta.headers);
                let id = LetterId {
                    topic: r.meta.tp.topic.to_string(),
                    partition: r.meta.tp.partition,
                    offset: r.meta.offset,
                };
                Some((id, letter))
            });
            if let Err(stop) = self
                .send_page(
                    request,
                    letters.collect(),
                    &mut seen,
                    &mut pace,
                    &mut report,
                )
                .await
            {
                report.stopped = Some(stop);
                break;
            }
            match page.next {
                Some(next) => from = next,
                None => break,
            }
        }
        Ok(report)
    }

    /// Decides, claims and republishes one page's matched letters. `seen` holds the records
    /// this run took already. `Err` stops the run.
    async fn send_page(
        &self,
        request: &Redrive,
        letters: Vec<(LetterId, DeadLetter)>,
        seen: &mut HashSet<RedriveKey>,
        pace: &mut Pace,
        report: &mut RedriveReport,
    ) -> Result<(), String> {
        // What the letter itself and the application rule out, whatever the ledger says.
        let mut candidates = Vec::new();
        for (id, letter) in letters {
            let skip = if !letter.is_replayable() {
                Some(Skip::Reduced)
            } else if !self.topics.contains(&letter.original_topic) {
                Some(Skip::ForeignTopic)
            } else if letter.redrive_count >= self.max_redrives && !request.force {
                Some(Skip::MaxRedrives)
            } else if !seen.insert(letter.redrive_key()) {
                Some(Skip::SameRecord)
            } else if self.superseded(&letter).await? {
                Some(Skip::Superseded)
            } else {
                None
            };
            match skip {
                Some(skip) => self.record(report, &id, &letter, Outcome::Skipped(skip)),
                None => candidates.push((id, letter)),
            }
        }
        if candidates.is_empty() {
            return Ok(());
        }
        if request.dry_run {
            let keys: Vec<RedriveKey> = candidates.iter().map(|(_, l)| l.redrive_key()).collect();
            let known = self.ledger.lookup(&keys).await.map_err(ledger_failed)?;
            for ((id, letter), known) in candidates.iter().zip(known) {
                let outcome = match known {
                    Some(_) if !request.again => Outcome::Skipped(Skip::AlreadyRedriven),
                    _ => Outcome::WouldRepublish,
                };
                self.record(report, id, letter, outcome);
            }
            return Ok(());
        }

        // Claimed a few at a time, just before they are sent: if the run is cut short (the
        // process stops), few records are left claimed but unsent (`again` sends those).
        let mut candidates = candidates.into_iter().peekable();
        while candidates.peek().is_some() {
            let chunk = candidates.by_ref().take(IN_FLIGHT).collect();
            self.claim_and_send(request, chunk, pace, report).await?;
        }
        Ok(())
    }

    async fn superseded(&self, letter: &DeadLetter) -> Result<bool, String> {
        match &self.guard {
            None => Ok(false),
            Some(guard) => guard
                .superseded(letter)
                .await
                .map_err(|e| format!("checking whether a letter was superseded failed: {e}")),
        }
    }

    /// Claims the records of `letters` and republishes those claimed, in DLQ order. `Err`
    /// stops the run.
    async fn claim_and_send(
        &self,
        request: &Redrive,
        letters: Vec<(LetterId, DeadLetter)>,
        pace: &mut Pace,
        report: &mut RedriveReport,
    ) -> Result<(), String> {
        let keys: Vec<RedriveKey> = letters.iter().map(|(_, l)| l.redrive_key()).collect();
        let claims = self
            .ledger
            .claim(&keys, request.again, now_ms())
            .await
            .map_err(ledger_failed)?;
        let mut claimed = Vec::new();
        for ((id, letter), claim) in letters.into_iter().zip(claims) {
            match claim {
                Claim::Claimed => claimed.push((id, letter)),
                Claim::Already(_) => {
                    self.record(
                        report,
                        &id,
                        &letter,
                        Outcome::Skipped(Skip::AlreadyRedriven),
                    );
                }
            }
        }
        // The producer keeps the order of sends to one partition, so a key's letters reach
        // its partition in the order they failed.
        let sends = futures::stream::iter(claimed)
            .map(|(id, letter)| {
                let at = pace.next();
                async move {
                    if let Some(at) = at {
                        tokio::time::sleep_until(at).await;
                    }
                    let sent = self.republish(&id, &letter).await;
                    (id, letter, sent)
                }
            })
            .buffered(IN_FLIGHT)
            .collect::<Vec<_>>()
            .await;
        let mut unsent = Vec::new();
        let mut error = None;
        for (id, letter, sent) in sends {
            let outcome = match sent {
                Ok(()) => Outcome::Republished,
                Err(e) => {
                    let message = e.to_string();
                    error.get_or_insert_with(|| message.clone());
                    if e.surely_not_written() {
                        unsent.push(letter.redrive_key());
                        Outcome::Failed(message)
                    } else {
                        tracing::warn!(letter = %id, error = %message, "republish outcome unknown; the record stays claimed (redrive with again to send it)");
                        Outcome::Unknown(message)
                    }
                }
            };
            self.record(report, &id, &letter, outcome);
        }
        if let Some(error) = error {
            // Taken back, so a later run sends them; a failed release leaves them marked as
            // sent, which `again` overrides.
            if !unsent.is_empty()
                && let Err(e) = self.ledger.release(&unsent).await
            {
                tracing::error!(error = %e, letters = unsent.len(), "releasing claims of unsent letters failed; redrive them with again");
            }
            return Err(format!("republishing failed: {error}"));
        }
        Ok(())
    }

    /// Sends one letter's record back, in a span of its own: a new trace, linked to the
    /// record's original one (its trace headers, kept in the letter), which the copy carries
    /// on to its consumer.
    async fn republish(&self, id: &LetterId, letter: &DeadLetter) -> Result<(), KafkaError> {
        let span = tracing::info_span!(
            target: ordering_core::trace::TARGET,
            "redrive",
            otel.name = %format_args!("redrive {}", letter.original_topic),
            otel.kind = "producer",
            messaging.system = "kafka",
            messaging.destination.name = %letter.original_topic,
            ordering.letter = %id,
            ordering.origin = %letter.origin(),
            ordering.redrive_count = letter.redrive_count + 1,
        );
        ordering_core::trace::link_new_trace(&span, &letter.original_headers);
        let mut headers = letter.redrive_headers(id);
        ordering_core::trace::inject_span(&span, &mut headers);
        self.producer
            .send(
                &letter.original_topic,
                letter.original_key.as_deref(),
                &letter.original_value,
                &headers,
            )
            .instrument(span)
            .await?;
        tracing::info!(letter = %id, topic = %letter.original_topic, origin = %letter.origin(), "dead letter redriven");
        Ok(())
    }

    fn record(
        &self,
        report: &mut RedriveReport,
        id: &LetterId,
        letter: &DeadLetter,
        outcome: Outcome,
    ) {
        match outcome {
            Outcome::Republished => crate::metrics::redriven("republished"),
            Outcome::Skipped(_) => crate::metrics::redriven("skipped"),
            Outcome::Failed(_) => crate::metrics::redriven("failed"),
            Outcome::Unknown(_) => crate::metrics::redriven("unknown"),
            Outcome::WouldRepublish => {} // a dry run changes nothing, metrics included
        }
        report.record(LetterOutcome {
            dlq_partition: id.partition,
            dlq_offset: id.offset,
            original_topic: letter.original_topic.clone(),
            original_key: letter.key_str(),
            error_type: letter.error_type.clone(),
            redrive_count: letter.redrive_count.saturating_add(1),
            outcome,
        });
    }
}

/// When each republish may go, for a rate limit: one every `1 / rate` seconds, never in a
/// burst after a pause (a slow page read does not earn credit).
struct Pace {
    every: Option<Duration>,
    next: Option<Instant>,
}

impl Pace {
    fn new(rate: Option<NonZeroU32>) -> Self {
        Self {
            every: rate.map(|r| Duration::from_secs(1) / r.get()),
            next: None,
        }
    }

    /// When the next republish may go; `None` without a rate limit.
    fn next(&mut self) -> Option<Instant> {
        let every = self.every?;
        let at = self
            .next
            .map_or_else(Instant::now, |next| next.max(Instant::now()));
        self.next = Some(at + every);
        Some(at)
    }
}

fn ledger_failed(error: ordering_core::StoreError) -> String {
    format!("the redrive ledger failed: {error}")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pace_spaces_sends_and_earns_no_credit_while_idle() {
        let mut pace = Pace::new(NonZeroU32::new(4));
        let start = Instant::now();
        let times: Vec<Duration> = (0..3).map(|_| pace.next().unwrap() - start).collect();
        assert_eq!(times, [0, 250, 500].map(Duration::from_millis));
        tokio::time::sleep(Duration::from_secs(10)).await;
        let after = pace.next().unwrap();
        assert_eq!(after - start, Duration::from_secs(10));
        assert_eq!(pace.next().unwrap() - after, Duration::from_millis(250));
        assert_eq!(Pace::new(None).next(), None);
    }
}
