//! The order domain: validated identifiers, the events of the order flow and the pricing rules.
//!
//! Field names follow the Avro schemas in `schemas/` (camelCase on the wire), so the same
//! types serve the Avro codec and JSON bodies.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest order id accepted, in characters.
pub const MAX_ORDER_ID_LEN: usize = 128;
/// The longest status accepted, in characters.
pub const MAX_STATUS_LEN: usize = 64;
/// The `eventType` of every status update.
pub const STATUS_UPDATE_EVENT_TYPE: &str = "STATUS_UPDATE";

/// Why a value was refused at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The value is empty or only whitespace.
    #[error("{field} must not be empty or whitespace")]
    Blank {
        /// The field, as named on the wire (`orderId`).
        field: &'static str,
    },
    /// The value, trimmed, is longer than the field allows.
    #[error("{field} is {len} characters long, the limit is {max}")]
    TooLong {
        /// The field, as named on the wire.
        field: &'static str,
        /// The value's length, in characters.
        len: usize,
        /// The longest allowed, in characters.
        max: usize,
    },
    /// A number outside its bounds.
    #[error("{field} must be between {min} and {max}, got {value}")]
    OutOfRange {
        /// The field, as named on the wire.
        field: &'static str,
        /// The number given.
        value: i64,
        /// The smallest accepted (inclusive).
        min: i64,
        /// The largest accepted (inclusive).
        max: i64,
    },
}

impl ValidationError {
    /// The field the error is about, as named on the wire.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Blank { field }
            | Self::TooLong { field, .. }
            | Self::OutOfRange { field, .. } => field,
        }
    }
}

/// Trims `raw` and checks it is non-empty and at most `max` characters.
fn bounded(field: &'static str, raw: &str, max: usize) -> Result<String, ValidationError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(ValidationError::Blank { field });
    }
    let len = trimmed.chars().count();
    if len > max {
        return Err(ValidationError::TooLong { field, len, max });
    }
    Ok(trimmed.to_owned())
}

macro_rules! validated_string {
    ($(#[$doc:meta])* $name:ident, field = $field:literal, max = $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Trims `raw`; refuses it if blank or too long.
            pub fn parse(raw: &str) -> Result<Self, ValidationError> {
                bounded($field, raw, $max).map(Self)
            }

            /// The value, trimmed.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValidationError;
            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::parse(&raw)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

validated_string!(
    /// An order identifier: trimmed, non-empty, at most [`MAX_ORDER_ID_LEN`] characters.
    OrderId, field = "orderId", max = MAX_ORDER_ID_LEN
);
validated_string!(
    /// An order status: trimmed, non-empty, at most [`MAX_STATUS_LEN`] characters.
    Status, field = "status", max = MAX_STATUS_LEN
);

impl Status {
    /// The status of a new order.
    pub fn pending() -> Self {
        Self("pending".to_owned())
    }
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderItem {
    /// The item's id; [`Order::check`] refuses a blank one.
    pub item_id: String,
    /// Units ordered; [`Order::check`] wants at least 1.
    pub quantity: i32,
    /// The price of one unit, in the order's currency; [`Order::check`] wants it finite and
    /// not negative.
    pub price: f64,
}

/// A full order (`schemas/order.avsc`). Orders are facts published by the producer, so the id
/// and status are validated when decoded: an order with a blank id cannot be represented.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// The order's id, validated when decoded; the key of its records.
    pub order_id: OrderId,
    /// The customer's id, as received (not checked).
    pub customer_id: String,
    /// When the order was placed, as received (ISO 8601 by convention, not checked).
    pub order_date: String,
    /// The order's lines; [`Order::check`] wants at least one.
    pub items: Vec<OrderItem>,
    /// Σ price × quantity, in `currency`; [`Order::check`] wants it within half a cent of the
    /// items' total.
    pub total_amount: f64,
    /// The currency's code; [`Order::check`] wants three upper-case ASCII letters (`USD`).
    pub currency: String,
    /// `pending` when created; then the status of the last status update applied.
    pub status: Status,
    /// The reason given with the status update last applied, if any. Kept by the store with
    /// the status; not part of the order event (nor of its schema).
    #[serde(skip)]
    pub status_reason: Option<String>,
}

impl Order {
    /// Shipping cost: 2% of the total, rounded to cents.
    pub fn shipping_cost(&self) -> f64 {
        shipping_cost(self.total_amount)
    }

    /// Business rules an order must satisfy before it is stored.
    pub fn check(&self) -> Result<(), InvalidOrder> {
        if self.items.is_empty() {
            return Err(InvalidOrder::NoItems);
        }
        for item in &self.items {
            if item.item_id.trim().is_empty() {
                return Err(InvalidOrder::BlankItemId);
            }
            if item.quantity < 1 {
                return Err(InvalidOrder::Quantity {
                    item: item.item_id.clone(),
                    quantity: item.quantity,
                });
            }
            if !item.price.is_finite() || item.price < 0.0 {
                return Err(InvalidOrder::Price {
                    item: item.item_id.clone(),
                    price: item.price,
                });
            }
        }
        let currency_ok =
            self.currency.len() == 3 && self.currency.bytes().all(|b| b.is_ascii_uppercase());
        if !currency_ok {
            return Err(InvalidOrder::Currency(self.currency.clone()));
        }
        let expected = total_amount(&self.items);
        if (expected - self.total_amount).abs() > 0.005 {
            return Err(InvalidOrder::Total {
                given: self.total_amount,
                expected,
            });
        }
        Ok(())
    }
}

/// A business rule an order breaks (see [`Order::check`]). Never worth a retry: the same
/// order breaks it again.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidOrder {
    /// The order has no items.
    #[error("an order needs at least one item")]
    NoItems,
    /// An item's `itemId` is blank.
    #[error("itemId must not be blank")]
    BlankItemId,
    /// An item's quantity is below 1.
    #[error("item {item} has quantity {quantity}")]
    Quantity {
        /// The item's id.
        item: String,
        /// The quantity given.
        quantity: i32,
    },
    /// An item's price is negative, infinite or NaN.
    #[error("item {item} has price {price}")]
    Price {
        /// The item's id.
        item: String,
        /// The price given.
        price: f64,
    },
    /// The currency given is not three upper-case ASCII letters.
    #[error("currency {0:?} is not a 3-letter code")]
    Currency(String),
    /// `totalAmount` is more than half a cent away from the items' total.
    #[error("totalAmount {given} does not match the items ({expected})")]
    Total {
        /// The `totalAmount` the order states.
        given: f64,
        /// Σ price × quantity over the items, rounded to cents.
        expected: f64,
    },
}

/// Σ price × quantity, rounded to cents.
pub fn total_amount(items: &[OrderItem]) -> f64 {
    round_cents(items.iter().map(|i| i.price * f64::from(i.quantity)).sum())
}

/// Shipping cost of an order total: 2%, rounded to cents.
pub fn shipping_cost(total_amount: f64) -> f64 {
    round_cents(total_amount * 0.02)
}

/// Rounds half away from zero to two decimals.
pub fn round_cents(amount: f64) -> f64 {
    (amount * 100.0).round() / 100.0
}

/// A request to change an order's status (`schemas/status_update.avsc`).
///
/// Unlike [`Order`], a status update is a *request* checked asynchronously by the consumer,
/// so its fields are kept as received; [`StatusUpdate::validate`] turns them into domain
/// values, and a blank status becomes a permanent handler error rather than a decode error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename = "OrderStatusUpdate", rename_all = "camelCase")] // the Avro record's name
pub struct StatusUpdate {
    /// The order to update, as received ([`validate`](Self::validate) checks it).
    pub order_id: String,
    /// The new status, as received ([`validate`](Self::validate) checks it).
    pub status: String,
    /// When the client says the change happened, as received (ISO 8601 by convention, not
    /// checked).
    pub update_timestamp: String,
    /// [`STATUS_UPDATE_EVENT_TYPE`], filled in when absent (not checked).
    #[serde(default = "default_event_type")]
    pub event_type: String,
    /// Why the status changed, when the client said (`status_update.avsc` version 2; a
    /// version 1 update reads as `None`).
    #[serde(default)]
    pub reason: Option<String>,
}

/// The longest status reason accepted, in characters.
pub const MAX_REASON_CHARS: usize = 256;

/// A status reason as a client sends it: trimmed, blank meaning none, at most
/// [`MAX_REASON_CHARS`] characters.
pub fn parse_reason(raw: Option<&str>) -> Result<Option<String>, ValidationError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(reason) => bounded("reason", reason, MAX_REASON_CHARS).map(Some),
    }
}

fn default_event_type() -> String {
    STATUS_UPDATE_EVENT_TYPE.to_owned()
}

impl StatusUpdate {
    /// A status update for `order_id`, stamped `update_timestamp` (ISO 8601).
    pub fn new(order_id: &OrderId, status: &Status, update_timestamp: String) -> Self {
        Self {
            order_id: order_id.to_string(),
            status: status.to_string(),
            update_timestamp,
            event_type: default_event_type(),
            reason: None,
        }
    }

    /// This update with `reason`.
    pub fn with_reason(mut self, reason: Option<String>) -> Self {
        self.reason = reason;
        self
    }

    /// The order id and status, validated.
    pub fn validate(&self) -> Result<(OrderId, Status), ValidationError> {
        Ok((
            OrderId::parse(&self.order_id)?,
            Status::parse(&self.status)?,
        ))
    }
}

/// Every event the order service consumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OrderEvent {
    /// An order was placed (`schemas/order.avsc`).
    Created(Order),
    /// A status change was asked for (`schemas/status_update.avsc`).
    StatusUpdated(StatusUpdate),
}

impl OrderEvent {
    /// The order the event is about, as received (the Kafka key of the event).
    pub fn order_id(&self) -> &str {
        match self {
            Self::Created(order) => order.order_id.as_str(),
            Self::StatusUpdated(update) => &update.order_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(items: Vec<OrderItem>, total: f64) -> Order {
        Order {
            order_id: OrderId::parse("ORD-1").unwrap(),
            customer_id: "CUST-0001".into(),
            order_date: "2026-01-30T12:00:00Z".into(),
            items,
            total_amount: total,
            currency: "USD".into(),
            status: Status::parse("pending").unwrap(),
            status_reason: None,
        }
    }

    fn item(price: f64, quantity: i32) -> OrderItem {
        OrderItem {
            item_id: "ITEM-BOOK-001".into(),
            quantity,
            price,
        }
    }

    #[test]
    fn ids_are_trimmed() {
        assert_eq!(OrderId::parse("  ORD-123 \n").unwrap().as_str(), "ORD-123");
    }

    #[test]
    fn blank_values_are_refused_with_the_field_name() {
        assert_eq!(
            Status::parse("   ").unwrap_err(),
            ValidationError::Blank { field: "status" }
        );
        assert_eq!(OrderId::parse("").unwrap_err().field(), "orderId");
    }

    #[test]
    fn lengths_are_bounded_in_characters() {
        assert!(OrderId::parse(&"é".repeat(MAX_ORDER_ID_LEN)).is_ok());
        let err = OrderId::parse(&"x".repeat(MAX_ORDER_ID_LEN + 1)).unwrap_err();
        assert_eq!(
            err,
            ValidationError::TooLong {
                field: "orderId",
                len: MAX_ORDER_ID_LEN + 1,
                max: MAX_ORDER_ID_LEN
            }
        );
        assert!(Status::parse(&"s".repeat(MAX_STATUS_LEN + 1)).is_err());
    }

    #[test]
    fn decoding_an_order_validates_its_id() {
        let mut json = serde_json::to_value(order(vec![item(10.0, 1)], 10.0)).unwrap();
        json["orderId"] = " ".into();
        assert!(serde_json::from_value::<Order>(json).is_err());
    }

    #[test]
    fn shipping_is_two_percent_rounded_to_cents() {
        assert_eq!(shipping_cost(100.0), 2.0);
        assert_eq!(shipping_cost(123.45), 2.47); // 2.469
        assert_eq!(shipping_cost(0.0), 0.0);
        assert_eq!(order(vec![item(99.99, 3)], 299.97).shipping_cost(), 6.0);
    }

    #[test]
    fn order_rules() {
        assert!(
            order(vec![item(19.99, 2), item(5.0, 1)], 44.98)
                .check()
                .is_ok()
        );
        assert!(order(vec![], 0.0).check().is_err());
        assert!(order(vec![item(10.0, 0)], 0.0).check().is_err());
        assert!(order(vec![item(10.0, 1)], 11.0).check().is_err());
        let mut bad_currency = order(vec![item(10.0, 1)], 10.0);
        bad_currency.currency = "usd".into();
        assert!(bad_currency.check().is_err());
    }

    #[test]
    fn status_update_json_uses_the_schema_names() {
        let update = StatusUpdate::new(
            &OrderId::parse("ORD-123").unwrap(),
            &Status::parse("shipped").unwrap(),
            "2026-01-30T12:00:00Z".into(),
        );
        let json = serde_json::to_value(&update).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "orderId": "ORD-123",
                "status": "shipped",
                "updateTimestamp": "2026-01-30T12:00:00Z",
                "eventType": "STATUS_UPDATE",
                "reason": null
            })
        );
    }

    #[test]
    fn a_blank_status_survives_decoding_and_fails_validation() {
        let update: StatusUpdate = serde_json::from_value(serde_json::json!({
            "orderId": "ORD-1", "status": "  ", "updateTimestamp": "t"
        }))
        .unwrap();
        assert_eq!(update.event_type, "STATUS_UPDATE");
        assert_eq!(
            update.validate().unwrap_err(),
            ValidationError::Blank { field: "status" }
        );
    }
}
