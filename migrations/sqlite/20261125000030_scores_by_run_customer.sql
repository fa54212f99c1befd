-- Scores are kept per run and every run scores everyone: an index that starts with the
-- customer is rewritten from end to end by every run (one entry slotted beside each
-- customer's older ones), which made each nightly run slower than the last. Indexes that
-- start with the run only ever grow at their end. A customer's scores are found run by
-- run (a few hundred runs, one index seek each): `scoring_runs` drives the join.
DROP INDEX scores_by_customer;
DROP INDEX scores_by_customer_run;
CREATE INDEX scores_by_run_customer ON scores (run_id, customer_id);
