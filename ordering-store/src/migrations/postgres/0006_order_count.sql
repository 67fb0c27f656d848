-- The number of orders, kept as they are created: `COUNT(*) FROM orders` reads every order,
-- which a dashboard polling /api/stats must not make the server do per request. Kept in 16
-- rows, one per slot of the inserting connection's process id, so the writers of several
-- instances rarely wait on one row; the count is their sum. A statement-level trigger adds a
-- batch's creates at once (one row update per statement, not per order).
-- No instance of an older version may add orders between the count and the triggers (they
-- would never be counted): the table is locked against writes until the migration commits.
-- Counting a large table may take longer than the pool's per-statement timeout.
SET LOCAL statement_timeout = 0;
LOCK TABLE orders IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE order_count (
    slot   SMALLINT PRIMARY KEY,
    orders BIGINT   NOT NULL
);
INSERT INTO order_count (slot, orders) SELECT 0, COUNT(*) FROM orders;

CREATE FUNCTION order_count_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_count (slot, orders)
    SELECT pg_backend_pid() % 16, COUNT(*) FROM added HAVING COUNT(*) > 0
    ON CONFLICT (slot) DO UPDATE SET orders = order_count.orders + EXCLUDED.orders;
    RETURN NULL;
END $$;

CREATE FUNCTION order_count_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_count (slot, orders)
    SELECT pg_backend_pid() % 16, -COUNT(*) FROM removed HAVING COUNT(*) > 0
    ON CONFLICT (slot) DO UPDATE SET orders = order_count.orders + EXCLUDED.orders;
    RETURN NULL;
END $$;

CREATE TRIGGER orders_counted AFTER INSERT ON orders
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION order_count_added();
CREATE TRIGGER orders_uncounted AFTER DELETE ON orders
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION order_count_removed();
