#![doc = include_str!("../README.md")]
//!
//! ## What is where
//! Every engine item is at the crate's root (one path each):
//! - handling: [`Handler`], whose errors say through [`Classify`] which [`ErrorClass`] they
//!   are;
//! - retrying: [`RetryPolicy`] decides ([`Decision`]); it is the only user of the `backoff`
//!   crate;
//! - dead letters: [`DeadLetter`], [`FailureClass`], the `REDRIVE_*` headers;
//! - redrive: which letters to send back ([`LetterFilter`]), the [`RedriveLedger`] that
//!   remembers which records were, and the application's [`RedriveGuard`] that says which
//!   were superseded;
//! - stores: what idempotent stores share ([`StoreError`], [`Position`], [`Written`], the
//!   [`TopicIncarnations`] that order a re-created topic's positions after the old ones);
//! - errors: each says whether trying again can help, and carries its [`Cause`];
//! - transport: [`Record`], [`Source`], [`Sink`], what a transport implements;
//! - the engine: [`Dispatcher`], [`DispatcherConfig`], [`Stats`].
//!
//! Apart from the engine: [`order`], the order flow of the two services (an application of
//! the engine, which never imports it), and `testing` (feature `testing`): an in-memory
//! source and sink.

#![deny(missing_docs)]

mod cause;
mod dead_letter;
mod dispatcher;
mod handler;
mod header;
#[cfg(feature = "order")]
pub mod order;
mod position;
mod record;
mod redrive;
mod retry;
mod sink;
mod source;
mod storage;
#[cfg(feature = "testing")]
pub mod testing;
mod time;
pub mod trace;

pub use cause::Cause;
pub use dead_letter::{DeadLetter, FailureClass, LetterId, RedriveKey, UnknownFailureClass};
pub use dispatcher::{
    DispatchError, Dispatcher, DispatcherConfig, LaneMode, REDUCED_LETTER_PAYLOAD, Stats,
    StatsSnapshot,
};
pub use handler::{Classify, ErrorClass, Handler};
pub use header::{
    Header, REDRIVE_COUNT_HEADER, REDRIVE_DLQ_OFFSET_HEADER, REDRIVE_DLQ_PARTITION_HEADER,
    REDRIVE_DLQ_TOPIC_HEADER, REDRIVE_ORIGIN_INCARNATION_HEADER, REDRIVE_ORIGIN_OFFSET_HEADER,
    REDRIVE_ORIGIN_PARTITION_HEADER, REDRIVE_ORIGIN_TOPIC_HEADER, redrive_count,
};
pub use position::{FIRST_INCARNATION, Position};
pub use record::{DecodeError, DecodeErrorKind, Record, RecordMeta, TopicPartition};
pub use redrive::{
    BadInstant, Claim, LetterFilter, MemoryLedger, RedriveGuard, RedriveLedger, Redriven,
    parse_instant,
};
pub use retry::{Decision, PolicyError, RetryPolicy};
pub use sink::{DeadLetterSink, Sink, SinkError};
pub use source::{Polled, Source, SourceError};
pub use storage::{MemoryIncarnations, StoreError, TopicIncarnations, Written};
pub use time::{now_iso8601, now_ms};

// The code in the workspace README is compiled and run as a doctest of this crate.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
