-- `nudges_queue_by_rule (status, kind, expected_value DESC, id)` starts with the same two
-- columns, so it answers every lookup `nudges_by_status (status, kind)` did; planning paid
-- for both on each of the hundreds of thousands of nudges a run can queue.
DROP INDEX nudges_by_status;
