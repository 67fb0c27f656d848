#![doc = include_str!("../README.md")]
//!
//! ## Modules
//! - [`model`]: orders, status updates, validated ids and the pricing rules;
//! - [`generate`]: orders made up from a number of items (the demo's create-order rule);
//! - [`handler`]: the [`Handler`] trait and error classes;
//! - [`orders`]: the handlers of the order flow;
//! - [`retry`]: the [`RetryPolicy`] (the only user of the `backoff` crate);
//! - [`dead_letter`]: the [`DeadLetter`] record;
//! - [`redrive`]: which letters to send back ([`LetterFilter`]) and the [`RedriveLedger`]
//!   that remembers which were;
//! - [`store`]: [`OrderStore`] and [`MemoryStore`];
//! - [`record`], [`source`], [`sink`]: what the transport implements;
//! - [`dispatcher`]: the engine;
//! - `testing` (feature `testing`): in-memory source and sink.

pub mod dead_letter;
pub mod dispatcher;
pub mod generate;
pub mod handler;
pub mod model;
pub mod orders;
pub mod record;
pub mod redrive;
pub mod retry;
pub mod sink;
pub mod source;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use dead_letter::{DeadLetter, FailureClass};
pub use dispatcher::{
    DispatchError, Dispatcher, DispatcherConfig, LaneMode, REDUCED_LETTER_PAYLOAD, Stats,
    StatsSnapshot,
};
pub use generate::{NumItems, generate_order};
pub use handler::{Classify, ErrorClass, Handler};
pub use model::{Order, OrderEvent, OrderId, OrderItem, Status, StatusUpdate, ValidationError};
pub use orders::{OrderCreatedHandler, OrderError, OrderEventHandler, StatusUpdateHandler};
pub use record::{DecodeError, DecodeErrorKind, Header, Record, RecordMeta, TopicPartition};
pub use redrive::{
    BadInstant, Claim, LetterFilter, LetterId, MemoryLedger, RedriveLedger, Redriven, parse_instant,
};
pub use retry::{Decision, PolicyError, RetryPolicy};
pub use sink::{DeadLetterSink, Sink, SinkError};
pub use source::{Polled, Source, SourceError};
pub use store::{MemoryStore, OrderStore, Position, StatusWrite, StoreError, Written};

// The code in the workspace README is compiled and run as a doctest of this crate.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
