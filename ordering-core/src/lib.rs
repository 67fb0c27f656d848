#![doc = include_str!("../README.md")]
//!
//! ## Modules
//! - [`handler`]: the [`Handler`] trait and error classes;
//! - [`retry`]: the [`RetryPolicy`] (the only user of the `backoff` crate);
//! - [`dead_letter`]: the [`DeadLetter`] record;
//! - [`redrive`]: which letters to send back ([`LetterFilter`]) and the [`RedriveLedger`]
//!   that remembers which were;
//! - [`storage`]: what idempotent stores share ([`StoreError`], [`Position`]);
//! - [`record`], [`source`], [`sink`]: what the transport implements;
//! - [`dispatcher`]: the engine;
//! - [`order`]: the order flow of the two services, an application of the engine;
//! - `testing` (feature `testing`): in-memory source and sink.

pub mod dead_letter;
pub mod dispatcher;
pub mod handler;
pub mod order;
pub mod record;
pub mod redrive;
pub mod retry;
pub mod sink;
pub mod source;
pub mod storage;
#[cfg(feature = "testing")]
pub mod testing;
mod time;

pub use dead_letter::{DeadLetter, FailureClass};
pub use dispatcher::{
    DispatchError, Dispatcher, DispatcherConfig, LaneMode, REDUCED_LETTER_PAYLOAD, Stats,
    StatsSnapshot,
};
pub use handler::{Classify, ErrorClass, Handler};
pub use record::{DecodeError, DecodeErrorKind, Header, Record, RecordMeta, TopicPartition};
pub use redrive::{
    BadInstant, Claim, LetterFilter, LetterId, MemoryLedger, RedriveLedger, Redriven, parse_instant,
};
pub use retry::{Decision, PolicyError, RetryPolicy};
pub use sink::{DeadLetterSink, Sink, SinkError};
pub use source::{Polled, Source, SourceError};
pub use storage::{Position, StoreError, Written};
pub use time::now_iso8601;

// The code in the workspace README is compiled and run as a doctest of this crate.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
