-- Dead letters sent back to their topic (see ordering-core's redrive module): a letter is
-- claimed here before it is republished, so that two runs never republish it twice.
CREATE TABLE redriven_letters (
    dlq_topic     TEXT    NOT NULL,
    dlq_partition INTEGER NOT NULL,
    dlq_offset    BIGINT  NOT NULL,
    -- Times it was sent back, and when last (milliseconds since the Unix epoch).
    times         INTEGER NOT NULL,
    last_at_ms    BIGINT  NOT NULL,
    PRIMARY KEY (dlq_topic, dlq_partition, dlq_offset)
);
