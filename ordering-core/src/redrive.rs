//! Sending dead letters back, the transport-free half: which letters a redrive takes
//! ([`LetterFilter`]), the durable memory of which records were sent back already
//! ([`RedriveLedger`]), so that no record is republished twice however many letters it has,
//! and the application's word on whether a record was superseded ([`RedriveGuard`]), so that a
//! redrive never moves anything backwards.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use jiff::Timestamp;

use crate::dead_letter::RedriveKey;
use crate::dead_letter::{DeadLetter, FailureClass};
use crate::storage::StoreError;

/// Which dead letters an operation takes; every criterion is optional and all must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LetterFilter {
    /// Only letters with this `errorType`, exactly.
    pub error_type: Option<String>,
    /// Only letters of this class.
    pub error_class: Option<FailureClass>,
    /// The original record's key (for the order flow, the order id).
    pub key: Option<String>,
    /// The letter's last failure at or after this instant.
    pub failed_from: Option<Timestamp>,
    /// The letter's last failure at or before this instant.
    pub failed_to: Option<Timestamp>,
}

/// A time bound that is not an ISO 8601 instant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{raw:?} is not an ISO 8601 date and time with an offset (e.g. 2026-11-25T10:00:00Z): {reason}"
)]
pub struct BadInstant {
    /// The text as given.
    pub raw: String,
    /// What the parser found wrong with it.
    pub reason: String,
}

/// Parses an ISO 8601 instant with its offset, e.g. `2026-11-25T10:00:00Z` or
/// `2026-11-25T11:00:00+01:00`.
pub fn parse_instant(raw: &str) -> Result<Timestamp, BadInstant> {
    raw.trim().parse().map_err(|e: jiff::Error| BadInstant {
        raw: raw.to_owned(),
        reason: e.to_string(),
    })
}

impl LetterFilter {
    /// Whether nothing is asked: every letter passes.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether `letter` meets every criterion set. A letter whose last failure time cannot be
    /// read is outside any time bound.
    pub fn accepts(&self, letter: &DeadLetter) -> bool {
        let failed_at = || parse_instant(&letter.last_failure_timestamp).ok();
        self.error_type
            .as_ref()
            .is_none_or(|t| *t == letter.error_type)
            && self.error_class.is_none_or(|c| c == letter.error_class)
            && self
                .key
                .as_ref()
                .is_none_or(|key| letter.original_key.as_deref() == Some(key.as_bytes()))
            // A letter whose time cannot be read is outside any time window.
            && self
                .failed_from
                .is_none_or(|from| failed_at().is_some_and(|at| at >= from))
            && self
                .failed_to
                .is_none_or(|to| failed_at().is_some_and(|at| at <= to))
    }
}

/// What the ledger remembers of a record sent back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redriven {
    /// Times it was sent back.
    pub times: u32,
    /// When it was last sent back, in milliseconds since the Unix epoch.
    pub last_at_ms: i64,
}

/// The answer to a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Recorded: this run may send the record back.
    Claimed,
    /// Sent back before, and the claim did not ask for `again`: leave it.
    Already(Redriven),
}

/// The durable memory of redrives, keyed on the record ([`RedriveKey`]), not on the letter:
/// a record dead-lettered twice is sent back once. A record is claimed before it is
/// republished, and the claim is released only if the republish surely did not happen; a
/// claim is atomic, so of two runs racing for one record only one republishes it. (A crash
/// between a claim and its republish, or a republish whose outcome is unknown, leaves the
/// record marked as sent: a run with `again` sends it.)
#[async_trait]
pub trait RedriveLedger: Send + Sync {
    /// Claims each record, in order: [`Claim::Claimed`] for one never sent back (or for any,
    /// with `again`), else what the ledger knows of it. `at_ms` is now.
    async fn claim(
        &self,
        records: &[RedriveKey],
        again: bool,
        at_ms: i64,
    ) -> Result<Vec<Claim>, StoreError>;

    /// Takes back one claim of each record (its republish surely failed).
    async fn release(&self, records: &[RedriveKey]) -> Result<(), StoreError>;

    /// What the ledger knows of each record, changing nothing (dry runs).
    async fn lookup(&self, records: &[RedriveKey]) -> Result<Vec<Option<Redriven>>, StoreError>;
}

/// The application's word on a letter before it is sent back: whether something newer was
/// applied to what its record would change, so that applying it now would move that
/// backwards. Such a letter is skipped as superseded. (The application's handler must guard
/// the same way, by [`RecordMeta::position`](crate::RecordMeta::position), for a record
/// superseded between this check and its arrival.)
#[async_trait]
pub trait RedriveGuard: Send + Sync {
    /// `true` if `letter` must not be sent back: something newer was applied to what its
    /// record would change. An error means the guard could not tell: the letter must not be
    /// sent (a redrive stops there).
    async fn superseded(&self, letter: &DeadLetter) -> Result<bool, StoreError>;
}

/// A ledger in memory: gone with the process. For tests, and for `memory://` stores.
#[derive(Debug, Default)]
pub struct MemoryLedger(Mutex<HashMap<RedriveKey, Redriven>>);

impl MemoryLedger {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<RedriveKey, Redriven>> {
        // A panic while it was held left a valid map behind.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl RedriveLedger for MemoryLedger {
    async fn claim(
        &self,
        records: &[RedriveKey],
        again: bool,
        at_ms: i64,
    ) -> Result<Vec<Claim>, StoreError> {
        let mut entries = self.entries();
        Ok(records
            .iter()
            .map(|id| match entries.get_mut(id) {
                Some(known) if !again => Claim::Already(*known),
                Some(known) => {
                    known.times = known.times.saturating_add(1);
                    known.last_at_ms = at_ms;
                    Claim::Claimed
                }
                None => {
                    let first = Redriven {
                        times: 1,
                        last_at_ms: at_ms,
                    };
                    entries.insert(id.clone(), first);
                    Claim::Claimed
                }
            })
            .collect())
    }

    async fn release(&self, records: &[RedriveKey]) -> Result<(), StoreError> {
        let mut entries = self.entries();
        for id in records {
            if let Some(known) = entries.get_mut(id) {
                known.times = known.times.saturating_sub(1);
                if known.times == 0 {
                    entries.remove(id);
                }
            }
        }
        Ok(())
    }

    async fn lookup(&self, records: &[RedriveKey]) -> Result<Vec<Option<Redriven>>, StoreError> {
        let entries = self.entries();
        Ok(records.iter().map(|id| entries.get(id).copied()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::Position;

    fn letter(error_type: &str, key: &str, failed_at: &str) -> DeadLetter {
        DeadLetter {
            original_topic: "t".into(),
            original_partition: 0,
            original_offset: 0,
            original_incarnation: 1,
            original_key: Some(key.as_bytes().to_vec()),
            original_headers: Vec::new(),
            original_timestamp: None,
            original_value: vec![],
            original_message: None,
            error_type: error_type.into(),
            error_class: FailureClass::Retryable,
            error_message: String::new(),
            retry_count: 0,
            failed_attempts: 1,
            first_failure_timestamp: failed_at.into(),
            last_failure_timestamp: failed_at.into(),
            consumer_group: "g".into(),
            redrive_count: 0,
            reduced_from: None,
        }
    }

    #[test]
    fn every_criterion_must_hold() {
        let l = letter("OrderNotFound", "ORD-1", "2026-11-25T10:00:00.000Z");
        assert!(LetterFilter::default().accepts(&l));
        let by_type = |t: &str| LetterFilter {
            error_type: Some(t.into()),
            ..LetterFilter::default()
        };
        assert!(by_type("OrderNotFound").accepts(&l));
        assert!(!by_type("DecodeError").accepts(&l));
        let both = LetterFilter {
            key: Some("ORD-2".into()),
            ..by_type("OrderNotFound")
        };
        assert!(!both.accepts(&l));
        let poison = LetterFilter {
            error_class: Some(FailureClass::Poison),
            ..LetterFilter::default()
        };
        assert!(!poison.accepts(&l));
    }

    #[test]
    fn time_windows_are_inclusive_and_know_offsets() {
        let l = letter("OrderNotFound", "ORD-1", "2026-11-25T10:00:00.000Z");
        let window = |from: &str, to: &str| LetterFilter {
            failed_from: Some(parse_instant(from).unwrap()),
            failed_to: Some(parse_instant(to).unwrap()),
            ..LetterFilter::default()
        };
        assert!(window("2026-11-25T10:00:00Z", "2026-11-25T10:00:00Z").accepts(&l));
        assert!(window("2026-11-25T10:30:00+01:00", "2026-11-25T12:00:00+01:00").accepts(&l));
        assert!(!window("2026-11-25T10:00:01Z", "2026-11-26T00:00:00Z").accepts(&l));
        let unreadable = letter("OrderNotFound", "ORD-1", "yesterday");
        assert!(!window("2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z").accepts(&unreadable));
        let error = parse_instant("2026-11-25 10:00").unwrap_err();
        assert!(
            error.to_string().contains("2026-11-25T10:00:00Z"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_letter_is_claimed_once_unless_again() {
        let ledger = MemoryLedger::default();
        let id = |offset| RedriveKey {
            origin: Position::new("orders", 0, offset),
            redrive_count: 0,
        };
        let claims = ledger.claim(&[id(1), id(2)], false, 10).await.unwrap();
        assert_eq!(claims, [Claim::Claimed, Claim::Claimed]);
        let first = Redriven {
            times: 1,
            last_at_ms: 10,
        };
        assert_eq!(
            ledger.claim(&[id(1)], false, 20).await.unwrap(),
            [Claim::Already(first)]
        );
        assert_eq!(
            ledger.claim(&[id(1)], true, 30).await.unwrap(),
            [Claim::Claimed]
        );
        assert_eq!(ledger.lookup(&[id(1)]).await.unwrap()[0].unwrap().times, 2);
        ledger.release(&[id(1), id(2)]).await.unwrap();
        assert_eq!(ledger.lookup(&[id(1)]).await.unwrap()[0].unwrap().times, 1);
        assert_eq!(ledger.lookup(&[id(2)]).await.unwrap(), [None]);
    }
}
