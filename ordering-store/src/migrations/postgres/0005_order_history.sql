-- Every status an order took (see ordering-core's OrderStore::history): written by the same
-- transaction as the status itself, so history and status never disagree. Bounded by the
-- retention setting (OrderStore::prune_history), which deletes by applied time. Orders stored
-- before this version have history from the upgrade on.
CREATE TABLE order_history (
    seq           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id      TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    reason        TEXT,
    -- When the client says it happened, as sent.
    event_time    TEXT,
    -- When it was applied (milliseconds since the Unix epoch).
    applied_at_ms BIGINT  NOT NULL,
    -- The record it came from.
    src_topic     TEXT    NOT NULL,
    src_partition INTEGER NOT NULL,
    src_offset    BIGINT  NOT NULL
);
-- An order's history page by page; and the oldest entries first, for the retention.
CREATE INDEX order_history_by_order ON order_history (order_id, seq);
CREATE INDEX order_history_by_age ON order_history (applied_at_ms);
