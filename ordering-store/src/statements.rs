//! The statements both dialects read alike. Their parameters are `$1`, `$2`, …: PostgreSQL's
//! own, and SQLite reads each as a parameter named by it, numbered where it first appears;
//! every statement here names them in order, so both bind them by position.

/// [`Position::is_covered_by`](ordering_core::Position::is_covered_by) in SQL: whether the
/// status position of the `order_status` row (columns prefixed by the first argument, `s.` or
/// nothing) covers the new position given by the other four expressions. The one rule, spelt
/// once for both dialects; a NULL partition is no position yet, a NULL topic one kept before
/// topics were.
macro_rules! status_covers {
    ($row:literal, topic: $topic:literal, partition: $partition:literal,
     offset: $offset:literal, incarnation: $incarnation:literal) => {
        concat!(
            "(",
            $row,
            "status_partition IS NOT NULL AND ",
            $row,
            "status_partition = ",
            $partition,
            " AND (",
            $row,
            "status_incarnation, ",
            $row,
            "status_offset) >= (",
            $incarnation,
            ", ",
            $offset,
            ") AND (",
            $row,
            "status_topic IS NULL OR ",
            $row,
            "status_topic = ",
            $topic,
            "))"
        )
    };
}
pub(crate) use status_covers;

pub(crate) const HISTORY: &str = "
    SELECT seq, status, reason, event_time, applied_at_ms, src_topic, src_partition, src_offset,
           src_incarnation
    FROM order_history WHERE order_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";

pub(crate) const PRUNE_HISTORY: &str = "
    DELETE FROM order_history WHERE seq IN (
        SELECT seq FROM order_history WHERE applied_at_ms < $1 ORDER BY applied_at_ms LIMIT $2)";

pub(crate) const GET: &str = "
    SELECT orders.body, order_status.status, order_status.status_reason
    FROM orders JOIN order_status USING (order_id)
    WHERE orders.order_id = $1";

pub(crate) const POSITIONS: &str = "
    SELECT o.created_topic, o.created_partition, o.created_offset, o.created_incarnation,
           s.status_topic, s.status_partition, s.status_offset, s.status_incarnation
    FROM orders AS o LEFT JOIN order_status AS s USING (order_id)
    WHERE o.order_id = $1";

pub(crate) const HEALTH_WRITE: &str = "
    INSERT INTO store_health (id, checked_at_ms) VALUES (1, $1)
    ON CONFLICT (id) DO UPDATE SET checked_at_ms = EXCLUDED.checked_at_ms";

pub(crate) const INCARNATION: &str =
    "SELECT incarnation FROM topic_incarnations WHERE topic = $1 AND topic_id = $2";

// The redrive ledger.
pub(crate) const CLAIM: &str = "
    INSERT INTO redriven_records
        (origin_topic, origin_partition, origin_offset, redrive_count, origin_incarnation,
         times, last_at_ms)
    VALUES ($1, $2, $3, $4, $5, 1, $6)
    ON CONFLICT (origin_topic, origin_incarnation, origin_partition, origin_offset,
                 redrive_count) DO NOTHING";

pub(crate) const CLAIM_AGAIN: &str = "
    INSERT INTO redriven_records
        (origin_topic, origin_partition, origin_offset, redrive_count, origin_incarnation,
         times, last_at_ms)
    VALUES ($1, $2, $3, $4, $5, 1, $6)
    ON CONFLICT (origin_topic, origin_incarnation, origin_partition, origin_offset,
                 redrive_count) DO UPDATE SET
        times = redriven_records.times + 1, last_at_ms = excluded.last_at_ms";

pub(crate) const RELEASE: &str = "
    UPDATE redriven_records SET times = times - 1
    WHERE origin_topic = $1 AND origin_partition = $2 AND origin_offset = $3
      AND redrive_count = $4 AND origin_incarnation = $5";

pub(crate) const FORGET: &str = "
    DELETE FROM redriven_records
    WHERE origin_topic = $1 AND origin_partition = $2 AND origin_offset = $3
      AND redrive_count = $4 AND origin_incarnation = $5 AND times <= 0";

pub(crate) const LOOKUP: &str = "
    SELECT times, last_at_ms FROM redriven_records
    WHERE origin_topic = $1 AND origin_partition = $2 AND origin_offset = $3
      AND redrive_count = $4 AND origin_incarnation = $5";
