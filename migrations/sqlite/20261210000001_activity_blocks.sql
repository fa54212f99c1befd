-- The daily rollups by column, for the scans of scoring and training (store::events::blocks).
-- A block holds one day's rollups of 4,096 consecutive customer ids, packed: customer id
-- deltas, kind codes, counts and totals as varints. `activity_daily` stays the record;
-- blocks are kept up to date by ingest in the same transaction, for the days listed in
-- `activity_block_days` (a day's blocks are complete). Days not listed (rollups stored
-- before this migration) are read from `activity_daily` until `Db::seal_rollup_days`
-- builds their blocks.
CREATE TABLE activity_blocks (
    day INTEGER NOT NULL,
    block INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (day, block)
);

CREATE TABLE activity_block_days (
    day INTEGER PRIMARY KEY
);
