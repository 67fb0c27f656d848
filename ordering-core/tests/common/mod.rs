//! A scriptable event and handler for dispatcher tests.

#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ordering_core::{
    Classify, DecodeError, ErrorClass, Handler, Record, RecordMeta, TopicPartition,
};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

/// An event that says how its handling should go.
#[derive(Debug, Clone, Serialize)]
pub struct Ev {
    pub n: u32,
    /// Fail this many attempts (`u32::MAX`: always), then succeed.
    pub fail: u32,
    pub class: Class,
    /// Wait for the script's gate to open before answering.
    pub gated: bool,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub enum Class {
    Retryable,
    Permanent,
    Unavailable,
}

impl Ev {
    pub fn ok(n: u32) -> Self {
        Self {
            n,
            fail: 0,
            class: Class::Retryable,
            gated: false,
        }
    }
    pub fn failing(n: u32, fail: u32, class: Class) -> Self {
        Self {
            n,
            fail,
            class,
            gated: false,
        }
    }
    pub fn gated(n: u32) -> Self {
        Self {
            n,
            fail: 0,
            class: Class::Retryable,
            gated: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("event {n} failed ({class:?})")]
pub struct ScriptError {
    n: u32,
    class: Class,
}

impl Classify for ScriptError {
    fn class(&self) -> ErrorClass {
        match self.class {
            Class::Retryable => ErrorClass::Retryable,
            Class::Permanent => ErrorClass::Permanent,
            Class::Unavailable => ErrorClass::Unavailable,
        }
    }
    fn kind(&self) -> &'static str {
        "ScriptError"
    }
}

/// Follows each event's script and logs every call with its (tokio) time.
#[derive(Clone)]
pub struct Script {
    calls: Arc<Mutex<Vec<(u32, Instant)>>>,
    /// Events whose handling ran to its end (its "write"), in order.
    finished: Arc<Mutex<Vec<u32>>>,
    attempts: Arc<Mutex<HashMap<u32, u32>>>,
    gate: watch::Sender<bool>,
}

impl Script {
    pub fn new() -> Self {
        Self {
            calls: Arc::default(),
            finished: Arc::default(),
            attempts: Arc::default(),
            gate: watch::Sender::new(false),
        }
    }

    pub fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    /// Every call, in order: (event, when).
    pub fn calls(&self) -> Vec<(u32, Instant)> {
        self.calls.lock().unwrap().clone()
    }

    /// When `n` was called, in order.
    pub fn times_of(&self, n: u32) -> Vec<Instant> {
        self.calls()
            .into_iter()
            .filter(|(m, _)| *m == n)
            .map(|(_, t)| t)
            .collect()
    }

    /// The events whose handling ran to its end, in order.
    pub fn finished(&self) -> Vec<u32> {
        self.finished.lock().unwrap().clone()
    }

    /// The events that completed a call, in order of call.
    pub fn called(&self) -> Vec<u32> {
        self.calls().into_iter().map(|(n, _)| n).collect()
    }
}

#[async_trait]
impl Handler<Ev> for Script {
    type Error = ScriptError;

    async fn handle(&self, ev: &Ev, _meta: &RecordMeta) -> Result<(), ScriptError> {
        self.calls.lock().unwrap().push((ev.n, Instant::now()));
        if ev.gated {
            let mut gate = self.gate.subscribe();
            let _ = gate.wait_for(|open| *open).await;
        }
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap();
            let a = attempts.entry(ev.n).or_default();
            *a += 1;
            *a
        };
        self.finished.lock().unwrap().push(ev.n);
        if attempt <= ev.fail {
            Err(ScriptError {
                n: ev.n,
                class: ev.class,
            })
        } else {
            Ok(())
        }
    }
}

pub fn tp(partition: i32) -> TopicPartition {
    TopicPartition::new("events", partition)
}

/// A decodable record of `ev` at `tp`/`offset`, keyed `key`.
pub fn record(partition: i32, offset: i64, key: &str, ev: Ev) -> Record<Ev> {
    let meta = RecordMeta {
        key: Some(key.as_bytes().to_vec()),
        timestamp: Some(1_700_000_000_000 + offset),
        ..RecordMeta::new(tp(partition), offset)
    };
    let payload = format!("payload-{}", ev.n).into_bytes();
    Record::new(meta, payload, Ok(ev))
}

/// A record whose payload could not be decoded.
pub fn poison(partition: i32, offset: i64, payload: &[u8]) -> Record<Ev> {
    Record::new(
        RecordMeta::new(tp(partition), offset),
        payload.to_vec(),
        Err(DecodeError::new("not an event")),
    )
}
