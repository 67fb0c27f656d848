//! The Avro codec fuzzed: any bytes, any fingerprint (known or not), valid messages cut short
//! or with bytes flipped, length prefixes claiming gigabytes, and payloads grown past a
//! megabyte. Every one must decode or fail with a `DecodeError`: no panic, and no more
//! memory than the codec's bound (each allocation at most 16 MiB: `MAX_ALLOCATION`), measured
//! as the peak heap growth of the decode by an instrumenting allocator.
//!
//! `FUZZ_CASES` (default 2 000) and `FUZZ_SEED` choose the run. The only test in this binary,
//! so that nothing else moves the heap while it measures.

#![allow(clippy::unwrap_used)]

use std::alloc::System;

use ordering_core::DeadLetter;
use ordering_core::order::{NumItems, Order, OrderEvent, OrderId, Status, StatusUpdate};
use ordering_core::testing::Seeded;
use ordering_kafka::order::AvroCodec;
use ordering_kafka::{Codec, MAGIC};
use peakmem_alloc::{PeakMemAlloc, PeakMemAllocTrait};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

#[global_allocator]
static HEAP: PeakMemAlloc<System> = PeakMemAlloc::new(System);

/// The most one decode may add to the heap at its peak: two of the codec's largest blocks.
const PEAK_BOUND: usize = 32 * 1024 * 1024;

/// Valid payloads of every type the codec writes, to cut and flip.
fn valid(codec: &AvroCodec) -> Vec<Vec<u8>> {
    let mut rng = rand::rng();
    let mut order = |items| {
        ordering_core::order::generate_order(
            OrderId::parse("ORD-FUZZ-1").unwrap(),
            NumItems::new(items).unwrap(),
            "2026-11-30T12:00:00Z".into(),
            &mut rng,
        )
    };
    let (small, large): (Order, Order) = (order(1), order(100));
    let update = StatusUpdate::new(
        &OrderId::parse("ORD-FUZZ-1").unwrap(),
        &Status::parse("shipped").unwrap(),
        "2026-11-30T12:00:00Z".into(),
    )
    .with_reason(Some("a reason".into()));
    let letter = DeadLetter {
        original_topic: "order-status-updates".into(),
        original_partition: 1,
        original_offset: 7,
        original_incarnation: 1,
        original_key: Some(b"ORD-FUZZ-1".to_vec()),
        original_headers: Vec::new(),
        original_timestamp: Some(1_700_000_000_000),
        original_value: codec.encode(&update).unwrap(),
        original_message: Some("{}".into()),
        error_type: "OrderNotFound".into(),
        error_class: ordering_core::FailureClass::Retryable,
        error_message: "not found".into(),
        retry_count: 3,
        failed_attempts: 4,
        first_failure_timestamp: "2026-11-30T12:00:00Z".into(),
        last_failure_timestamp: "2026-11-30T12:00:07Z".into(),
        consumer_group: "g".into(),
        redrive_count: 0,
        reduced_from: None,
    };
    vec![
        codec.encode(&small).unwrap(),
        codec.encode(&large).unwrap(),
        codec.encode(&update).unwrap(),
        codec.encode(&letter).unwrap(),
    ]
}

fn payloads(valid: Vec<Vec<u8>>, fingerprints: Vec<[u8; 8]>) -> impl Strategy<Value = Vec<u8>> {
    let header = |fingerprint: [u8; 8]| {
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&fingerprint);
        header
    };
    let known = proptest::sample::select(fingerprints).prop_map(header);
    let any_fingerprint = any::<[u8; 8]>().prop_map(header);
    let fingerprint = prop_oneof![3 => known, 1 => any_fingerprint];
    let one_valid = proptest::sample::select(valid);
    prop_oneof![
        // Anything at all.
        2 => proptest::collection::vec(any::<u8>(), 0..512),
        // A header, then anything.
        3 => (fingerprint.clone(), proptest::collection::vec(any::<u8>(), 0..512))
            .prop_map(|(mut p, tail)| { p.extend(tail); p }),
        // A valid message cut short.
        3 => (one_valid.clone(), any::<proptest::sample::Index>())
            .prop_map(|(p, cut)| p[..cut.index(p.len() + 1)].to_vec()),
        // A valid message with bytes flipped.
        3 => (one_valid.clone(), proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..6))
            .prop_map(|(mut p, flips)| {
                for (at, byte) in flips {
                    let i = at.index(p.len());
                    p[i] ^= byte | 1;
                }
                p
            }),
        // A header, then a length prefix that claims up to 2^63 bytes.
        2 => (fingerprint, 1..10usize, proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(mut p, n, tail)| {
                p.extend(std::iter::repeat_n(0xFF, n - 1));
                p.push(0x7F);
                p.extend(tail);
                p
            }),
        // A valid message grown past a megabyte.
        1 => (one_valid, 1_000_000..1_200_000usize)
            .prop_map(|(mut p, len)| { p.resize(len, 0x41); p }),
    ]
}

#[test]
fn no_payload_panics_the_codec_or_grows_its_heap_past_the_bound() {
    let codec = AvroCodec::new().unwrap();
    let Seeded {
        mut runner,
        seed,
        cases,
    } = Seeded::new("FUZZ", 2000);
    let strategy = payloads(valid(&codec), codec.fingerprints().to_vec());
    let highest = std::sync::atomic::AtomicUsize::new(0);
    let result = runner.run(&strategy, |payload| {
        HEAP.reset_peak_memory();
        let before = HEAP.get_peak_memory();
        let results = (
            Codec::<OrderEvent>::decode(&codec, &payload).is_ok(),
            Codec::<Order>::decode(&codec, &payload).is_ok(),
            Codec::<StatusUpdate>::decode(&codec, &payload).is_ok(),
            Codec::<DeadLetter>::decode(&codec, &payload).is_ok(),
        );
        let grown = HEAP.get_peak_memory().saturating_sub(before);
        highest.fetch_max(grown, std::sync::atomic::Ordering::Relaxed);
        std::hint::black_box(results);
        if grown > PEAK_BOUND {
            return Err(TestCaseError::fail(format!(
                "decoding {} bytes grew the heap by {grown} bytes at its peak",
                payload.len()
            )));
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("FUZZ_SEED={seed} ({cases} cases): {failure}");
    }
    eprintln!(
        "{cases} payloads, seed {seed}: no panic; the largest peak heap growth of a decode was {} KiB",
        highest.load(std::sync::atomic::Ordering::Relaxed) / 1024
    );
}
