-- Orders, with the positions that make writes idempotent (see ordering-core's store module).
-- The order as created never changes but for a newer order event; its status changes often,
-- so it lives in a narrow table of its own: a status update rewrites a short row, not the
-- whole order.

-- The order as created, as JSON, and the order event last applied.
CREATE TABLE orders (
    order_id          TEXT    NOT NULL PRIMARY KEY,
    body              TEXT    NOT NULL,
    created_partition INTEGER NOT NULL,
    created_offset    INTEGER NOT NULL
) WITHOUT ROWID;

-- The current status, and the status update last applied (none yet: NULL).
CREATE TABLE order_status (
    order_id         TEXT    NOT NULL PRIMARY KEY,
    status           TEXT    NOT NULL,
    status_partition INTEGER,
    status_offset    INTEGER
) WITHOUT ROWID;
