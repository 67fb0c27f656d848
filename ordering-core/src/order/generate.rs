//! Orders made up from a number of items: how the order service's demo creates orders.

use rand::Rng;
use rand::seq::IndexedRandom;

use super::model::{Order, OrderId, OrderItem, Status, ValidationError, round_cents, total_amount};

/// The most items one generated order may have.
pub const MAX_ITEMS: u8 = 100;

const ITEM_NAMES: &[&str] = &[
    "LAMP", "BOOK", "PEN", "MUG", "CHAIR", "DESK", "SHIRT", "SHOE", "PHONE", "CABLE", "PLANT",
    "CLOCK",
];
const CURRENCIES: &[&str] = &["USD", "EUR", "GBP"];

/// How many items an order gets: 1 to [`MAX_ITEMS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumItems(u8);

impl NumItems {
    /// `n` items; outside 1 to [`MAX_ITEMS`], a [`ValidationError::OutOfRange`] for the
    /// field `numItems`.
    pub fn new(n: i64) -> Result<Self, ValidationError> {
        match u8::try_from(n) {
            Ok(n) if (1..=MAX_ITEMS).contains(&n) => Ok(Self(n)),
            _ => Err(ValidationError::OutOfRange {
                field: "numItems",
                value: n,
                min: 1,
                max: i64::from(MAX_ITEMS),
            }),
        }
    }

    /// The number of items, 1 to [`MAX_ITEMS`].
    pub fn get(self) -> u8 {
        self.0
    }
}

/// A new `pending` order for `id` with `num_items` random items: customer `CUST-dddd`, items
/// `ITEM-<NAME>-ddd` of quantity 1 to 5 at 10.00 to 500.00, the total rounded to cents, one of
/// a few currencies, dated `order_date` (ISO 8601).
pub fn generate_order(
    id: OrderId,
    num_items: NumItems,
    order_date: String,
    rng: &mut impl Rng,
) -> Order {
    let items: Vec<OrderItem> = (0..num_items.get())
        .map(|_| OrderItem {
            item_id: format!(
                "ITEM-{}-{:03}",
                ITEM_NAMES.choose(rng).copied().unwrap_or("ITEM"),
                rng.random_range(0..1000)
            ),
            quantity: rng.random_range(1..=5),
            price: round_cents(f64::from(rng.random_range(1_000..=50_000u32)) / 100.0),
        })
        .collect();
    Order {
        order_id: id,
        customer_id: format!("CUST-{:04}", rng.random_range(0..10_000)),
        order_date,
        total_amount: total_amount(&items),
        items,
        currency: CURRENCIES.choose(rng).copied().unwrap_or("USD").to_owned(),
        status: Status::pending(),
        status_reason: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn the_number_of_items_is_bounded() {
        assert!(NumItems::new(1).is_ok());
        assert!(NumItems::new(100).is_ok());
        for bad in [0, 101, -1, 256, i64::MAX] {
            assert_eq!(NumItems::new(bad).unwrap_err().field(), "numItems");
        }
    }

    #[test]
    fn generated_orders_follow_the_rules() {
        let mut rng = StdRng::seed_from_u64(7);
        for n in [1, 2, 100] {
            let id = OrderId::parse("ORD-TEST-001").unwrap();
            let order = generate_order(
                id,
                NumItems::new(n).unwrap(),
                "2026-01-30T12:00:00Z".into(),
                &mut rng,
            );
            assert_eq!(order.items.len(), n as usize);
            assert_eq!(order.status.as_str(), "pending");
            assert!(order.customer_id.len() == 9 && order.customer_id.starts_with("CUST-"));
            for item in &order.items {
                assert!((1..=5).contains(&item.quantity));
                assert!((10.0..=500.0).contains(&item.price));
                assert_eq!(round_cents(item.price), item.price);
                assert!(item.item_id.starts_with("ITEM-"));
            }
            order
                .check()
                .expect("a generated order passes the order rules");
        }
    }
}
