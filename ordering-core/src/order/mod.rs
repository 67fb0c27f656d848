//! The order flow of the two services, built on the engine: the model (validated ids, orders,
//! status updates, pricing), its handlers, the [`OrderStore`] they write to, and the demo's
//! order generator. Nothing in the engine depends on this module.

mod generate;
mod handlers;
mod model;
mod store;

pub use generate::{MAX_ITEMS, NumItems, generate_order};
pub use handlers::{
    DecodeEvent, OrderCreatedHandler, OrderError, OrderEventHandler, OrderRedriveGuard,
    StatusUpdateHandler,
};
pub use model::{
    InvalidOrder, MAX_ORDER_ID_LEN, MAX_REASON_CHARS, MAX_STATUS_LEN, Order, OrderEvent, OrderId,
    OrderItem, STATUS_UPDATE_EVENT_TYPE, Status, StatusUpdate, ValidationError, parse_reason,
    round_cents, shipping_cost, total_amount,
};
pub use store::{
    CreateWrite, HistoryEntry, MemoryStore, OrderPositions, OrderStore, StatusChange, StatusWrite,
    prune_history_older_than,
};
