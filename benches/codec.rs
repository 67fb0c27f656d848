//! Avro single-object encode and decode, per record.
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

criterion_group!(benches, codec);
criterion_main!(benches);
