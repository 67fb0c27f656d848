-- Orders, with the positions that make writes idempotent (see ordering-core's store module).
CREATE TABLE orders (
    order_id          TEXT    NOT NULL PRIMARY KEY,
    -- The order as created, as JSON; `status` below is the current status.
    body              TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    -- The order event last applied.
    created_partition INTEGER NOT NULL,
    created_offset    BIGINT  NOT NULL,
    -- The status update last applied, if any.
    status_partition  INTEGER,
    status_offset     BIGINT
);
