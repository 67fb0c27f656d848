-- Positions know their topic. NULL: written before this version, by the one topic the order
-- flow had; such a position compares as the same topic.
ALTER TABLE orders ADD COLUMN created_topic TEXT;
ALTER TABLE order_status ADD COLUMN status_topic TEXT;

-- Records sent back from the DLQ (see ordering-core's redrive module), keyed on the record:
-- where it was first published, and how many times it had been redriven when it failed. Two
-- letters of one record are sent back once. It replaces the ledger keyed on the letter's DLQ
-- position, whose entries cannot be keyed on their record without reading the DLQ.
DROP TABLE redriven_letters;
CREATE TABLE redriven_records (
    origin_topic     TEXT    NOT NULL,
    origin_partition INTEGER NOT NULL,
    origin_offset    BIGINT  NOT NULL,
    redrive_count    INTEGER NOT NULL,
    -- Times it was sent back, and when last (milliseconds since the Unix epoch).
    times            INTEGER NOT NULL,
    last_at_ms       BIGINT  NOT NULL,
    PRIMARY KEY (origin_topic, origin_partition, origin_offset, redrive_count)
);

-- One row that health checks write: a store that answers reads but refuses writes (a
-- read-only standby after a failover, a revoked grant, a full disk) is not healthy.
CREATE TABLE store_health (
    id            INTEGER NOT NULL PRIMARY KEY,
    checked_at_ms BIGINT  NOT NULL
);

-- Order ids listed page by page in byte order, whatever the database's collation: a range
-- scan of this index rather than a sort of every id.
CREATE INDEX orders_id_bytes ON orders (order_id COLLATE "C");
