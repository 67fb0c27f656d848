-- A topic deleted and created again starts its offsets over: positions say which incarnation
-- of their topic they are in (ordering-core's `Position::incarnation`). 1: the first this
-- store knows, and every position written before this version.
CREATE TABLE topic_incarnations (
    topic         TEXT    NOT NULL,
    -- The broker's id for this incarnation of the topic.
    topic_id      TEXT    NOT NULL,
    incarnation   INTEGER NOT NULL,
    first_seen_ms BIGINT  NOT NULL,
    PRIMARY KEY (topic, topic_id),
    UNIQUE (topic, incarnation)
);

ALTER TABLE orders ADD COLUMN created_incarnation INTEGER NOT NULL DEFAULT 1;
ALTER TABLE order_status ADD COLUMN status_incarnation INTEGER NOT NULL DEFAULT 1;
ALTER TABLE order_history ADD COLUMN src_incarnation INTEGER NOT NULL DEFAULT 1;

-- The ledger keys on the origin's incarnation too; SQLite cannot change a primary key in
-- place, so the table is copied.
CREATE TABLE redriven_records_keyed (
    origin_topic       TEXT    NOT NULL,
    origin_incarnation INTEGER NOT NULL,
    origin_partition   INTEGER NOT NULL,
    origin_offset      BIGINT  NOT NULL,
    redrive_count      INTEGER NOT NULL,
    times              INTEGER NOT NULL,
    last_at_ms         BIGINT  NOT NULL,
    PRIMARY KEY (origin_topic, origin_incarnation, origin_partition, origin_offset,
                 redrive_count)
);
INSERT INTO redriven_records_keyed
    SELECT origin_topic, 1, origin_partition, origin_offset, redrive_count, times, last_at_ms
    FROM redriven_records;
DROP TABLE redriven_records;
ALTER TABLE redriven_records_keyed RENAME TO redriven_records;
