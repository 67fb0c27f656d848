-- The reason given with the status update last applied (status_update.avsc version 2);
-- NULL when none was given, and again when the order is created anew.
ALTER TABLE order_status ADD COLUMN status_reason TEXT;
