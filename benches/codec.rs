//! Avro single-object encode and decode, per record; and the same in the Confluent Schema
//! Registry framing, its writer schemas fetched once and kept (a registry served in memory).
//!
//! `cargo bench -p ordering-benches --bench codec`

#![allow(clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use ordering_core::order::{Order, OrderEvent, OrderId, OrderItem, Status, StatusUpdate};
use ordering_kafka::Codec;
use ordering_kafka::order::{AvroCodec, SchemaFamily};
use std::hint::black_box;

fn order() -> Order {
    Order {
        order_id: OrderId::parse("ORD-2026-000123").unwrap(),
        customer_id: "CUST-4821".into(),
        order_date: "2026-01-30T12:00:00.000Z".into(),
        items: (0..3)
            .map(|i| OrderItem {
                item_id: format!("ITEM-LAMP-{i:03}"),
                quantity: 2,
                price: 24.5,
            })
            .collect(),
        total_amount: 147.0,
        currency: "USD".into(),
        status: Status::parse("pending").unwrap(),
        status_reason: None,
    }
}

fn update() -> StatusUpdate {
    StatusUpdate::new(
        &OrderId::parse("ORD-2026-000123").unwrap(),
        &Status::parse("shipped").unwrap(),
        "2026-01-30T12:00:00.000Z".into(),
    )
}

fn codec(c: &mut Criterion) {
    let codec = AvroCodec::new().unwrap();
    let (order, update) = (order(), update());
    let order_bytes = codec.encode(&order).unwrap();
    let update_bytes = codec.encode(&update).unwrap();

    let mut group = c.benchmark_group("avro");
    group.bench_function("encode_status_update", |b| {
        b.iter(|| codec.encode(black_box(&update)).unwrap())
    });
    group.bench_function("decode_status_update", |b| {
        b.iter(|| Codec::<OrderEvent>::decode(&codec, black_box(&update_bytes)).unwrap())
    });
    // A record of the first version: read through schema resolution into the current one
    // (a `Value` first, then the type), against the direct path above.
    let v1 = codec.pin(SchemaFamily::StatusUpdate, 1).unwrap();
    let update_v1_bytes = v1.encode(&update).unwrap();
    group.bench_function("decode_status_update_v1_resolved", |b| {
        b.iter(|| Codec::<OrderEvent>::decode(&codec, black_box(&update_v1_bytes)).unwrap())
    });
    group.bench_function("encode_status_update_pinned_v1", |b| {
        b.iter(|| v1.encode(black_box(&update)).unwrap())
    });
    group.bench_function("encode_order_3_items", |b| {
        b.iter(|| codec.encode(black_box(&order)).unwrap())
    });
    group.bench_function("decode_order_3_items", |b| {
        b.iter(|| Codec::<OrderEvent>::decode(&codec, black_box(&order_bytes)).unwrap())
    });
    group.finish();
}

/// The registry framing, beside the single-object figures above: writer schemas fetched
/// once (before timing), then kept.
fn registry(c: &mut Criterion) {
    use ordering_kafka::testing::{STATUS_UPDATE_V3, TestRegistry};
    use ordering_kafka::{Registration, Registry, RegistryConfig};

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _server_runs_here = runtime.enter();
    let server = runtime.block_on(TestRegistry::start());
    let mut config = RegistryConfig::new(server.url());
    config.registration = Registration::AutoRegister;
    let registry = Registry::new(&config).unwrap();
    let codec = runtime
        .block_on(AvroCodec::new().unwrap().write_registered(
            registry,
            SchemaFamily::StatusUpdate,
            "updates",
        ))
        .unwrap();
    let update = update();
    let framed = codec.encode(&update).unwrap();
    // A version this build does not embed (3), known only through the registry: resolved
    // through the registry's schema on every record.
    let v3_id = server.register("updates-value", STATUS_UPDATE_V3).unwrap();
    let mut v3 = vec![0];
    v3.extend_from_slice(&v3_id.to_be_bytes());
    v3.extend_from_slice(
        &ordering_kafka::testing::status_update_v3("ORD-2026-000123", "late")[10..],
    );
    for payload in [&framed, &v3] {
        if let Some(fetch) = Codec::<OrderEvent>::prepare(&codec, payload) {
            runtime.block_on(fetch).unwrap();
        }
    }

    let mut group = c.benchmark_group("avro_registry");
    group.bench_function("encode_status_update", |b| {
        b.iter(|| codec.encode(black_box(&update)).unwrap())
    });
    group.bench_function("decode_status_update", |b| {
        b.iter(|| Codec::<OrderEvent>::decode(&codec, black_box(&framed)).unwrap())
    });
    group.bench_function("decode_status_update_v3_resolved", |b| {
        b.iter(|| Codec::<OrderEvent>::decode(&codec, black_box(&v3)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, codec, registry);
criterion_main!(benches);
