//! Integration tests: one binary, a module per area. Every test runs on SQLite and, when
//! `ATTUNE_TEST_POSTGRES_URL` is set, on PostgreSQL, each in a database of its own.

mod it;
