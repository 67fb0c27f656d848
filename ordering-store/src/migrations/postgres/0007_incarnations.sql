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

-- A column with a constant default is added without rewriting the table.
ALTER TABLE orders ADD COLUMN created_incarnation INTEGER NOT NULL DEFAULT 1;
ALTER TABLE order_status ADD COLUMN status_incarnation INTEGER NOT NULL DEFAULT 1;
ALTER TABLE order_history ADD COLUMN src_incarnation INTEGER NOT NULL DEFAULT 1;

ALTER TABLE redriven_records ADD COLUMN origin_incarnation INTEGER NOT NULL DEFAULT 1;
ALTER TABLE redriven_records DROP CONSTRAINT redriven_records_pkey;
ALTER TABLE redriven_records ADD PRIMARY KEY
    (origin_topic, origin_incarnation, origin_partition, origin_offset, redrive_count);
