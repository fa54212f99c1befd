-- A customer's newest score since the latest full run: planning after a `changed` run
-- reads it by customer and run.
CREATE INDEX scores_by_customer_run ON scores (customer_id, run_id);
