//! Importing files: good rows are kept, bad rows are reported by line and column, and the
//! same event is never stored twice.

use attune::ingest::CustomerPreset;
use attune::jobs::import::{import_customers_file, import_events_file};

use super::helpers::{TestDb, d};
use crate::both_backends;

const CUSTOMERS: &str = "\
customer_id,signup_date,plan,monthly_charge,contract_type,preferred_channel,consent,region
a1,2026-01-10,basic,20,month_to_month,email,email,north
a2,2026-13-01,basic,20,month_to_month,email,email,north
a3,2026-02-01,basic,-4,month_to_month,email,email,south
a4,2026-02-01,fibre,45.5,two_year,sms,email;sms,south
a5,2026-02-01,fibre,45.5,weekly,sms,email,south
";

const EVENTS: &str = "\
customer_id,kind,occurred_at,value,source_event_id
a1,usage,2026-03-01T10:00:00Z,12.5,e1
a1,complaint_opened,2026-03-02,,e2
a4,login,2026-03-03 08:00:00,,e3
zz,login,2026-03-03,,e4
a4,teleport,2026-03-03,,e5
a4,usage,yesterday,3,e6
a4,payment_made,2026-03-04,45.5,e7
";

async fn bad_rows_are_reported_and_good_rows_kept(t: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let customers = dir.path().join("customers.csv");
    std::fs::write(&customers, CUSTOMERS).unwrap();
    let r = import_customers_file(&t.db, &customers, CustomerPreset::Standard, d("2026-06-01"))
        .await
        .unwrap();
    assert_eq!((r.imported, r.updated, r.rejected), (2, 0, 3));
    let name = customers.display().to_string();
    assert!(
        r.errors[0].starts_with(&format!("{name}:3: column signup_date:")),
        "{:?}",
        r.errors
    );
    assert!(
        r.errors[1].starts_with(&format!("{name}:4: column monthly_charge:")),
        "{:?}",
        r.errors
    );
    assert!(
        r.errors[2].starts_with(&format!("{name}:6: column contract_type:")),
        "{:?}",
        r.errors
    );

    // Importing the same file again refreshes, never duplicates.
    let r = import_customers_file(&t.db, &customers, CustomerPreset::Standard, d("2026-06-01"))
        .await
        .unwrap();
    assert_eq!((r.imported, r.updated, r.rejected), (0, 2, 3));
    assert_eq!(t.db.counts().await.unwrap().customers, 2);

    let events = dir.path().join("events.csv");
    std::fs::write(&events, EVENTS).unwrap();
    let ctx = t.ctx(|_| {});
    let r = import_events_file(&ctx, &events, None).await.unwrap();
    assert_eq!(
        (r.imported, r.duplicate, r.quarantined, r.rejected),
        (4, 0, 1, 2),
        "{:?}",
        r.errors
    );
    let name = events.display().to_string();
    assert!(
        r.errors[0].starts_with(&format!("{name}:6: column kind:")),
        "{:?}",
        r.errors
    );
    assert!(
        r.errors[1].starts_with(&format!("{name}:7: column occurred_at:")),
        "{:?}",
        r.errors
    );
    assert_eq!(r.quarantine.len(), 1);
    assert!(
        r.quarantine[0].starts_with(&format!(
            "{name}:5: column customer_id: unknown customer \"zz\""
        )),
        "{:?}",
        r.quarantine
    );

    // Again: nothing is stored twice, and nothing is quarantined twice.
    let r = import_events_file(&ctx, &events, None).await.unwrap();
    assert_eq!(
        (r.imported, r.duplicate, r.quarantined, r.rejected),
        (0, 4, 1, 2)
    );
    assert_eq!(t.db.counts().await.unwrap().events, 4);
    let held = t.db.quarantined(false, None, 10).await.unwrap();
    let codes: Vec<&str> = held.iter().map(|q| q.reason_code.as_str()).collect();
    assert_eq!(codes, ["unknown_customer", "unknown_kind", "bad_timestamp"]);
    assert_eq!(held[0].customer_external_id.as_deref(), Some("zz"));
    assert!(
        held[0].reason.starts_with("unknown customer \"zz\""),
        "{}",
        held[0].reason
    );
    assert_eq!(
        held[1].location.as_deref(),
        Some(format!("{name}:6").as_str())
    );

    // Until the customer exists, a retry keeps the event; once it does, the event is stored.
    let retry = || attune::jobs::sources::retry_quarantine(&ctx);
    assert_eq!(
        retry().await.unwrap(),
        attune::store::RetryOutcome {
            released: 0,
            duplicate: 0,
            still_quarantined: 3
        }
    );
    t.db.upsert_customers(&[super::helpers::customer(
        "zz",
        d("2026-01-01"),
        super::helpers::email_only(),
    )])
    .await
    .unwrap();
    assert_eq!(
        retry().await.unwrap(),
        attune::store::RetryOutcome {
            released: 1,
            duplicate: 0,
            still_quarantined: 2
        }
    );
    assert_eq!(t.db.counts().await.unwrap().events, 5);
    assert!(
        t.db.quarantined(false, Some("unknown_customer"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        t.db.quarantined(true, None, 10).await.unwrap()[0]
            .released_at
            .is_some()
    );
    assert_eq!(
        retry().await.unwrap(),
        attune::store::RetryOutcome {
            released: 0,
            duplicate: 0,
            still_quarantined: 2
        }
    );
}
both_backends!(
    csv_with_bad_rows_keeps_the_good_ones,
    super::bad_rows_are_reported_and_good_rows_kept
);

async fn telco_preset_imports_every_row(t: &TestDb) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/telco.csv");
    let r = import_customers_file(&t.db, &path, CustomerPreset::Telco, d("2026-11-23"))
        .await
        .unwrap();
    assert_eq!((r.imported, r.rejected), (7043, 0));
    let counts = t.db.counts().await.unwrap();
    assert_eq!(
        (counts.customers, counts.active_customers),
        (7043, 7043 - 1869)
    );
    // PostgreSQL's planner knows the table's size after a bulk load (autovacuum may be
    // off, or not have come round yet).
    if let attune::store::Db::Postgres(p) = &t.db {
        let (rows,): (f32,) =
            sqlx::query_as("SELECT reltuples FROM pg_class WHERE oid = 'customers'::regclass")
                .fetch_one(p)
                .await
                .unwrap();
        assert_eq!(rows, 7043.0);
    }
}
both_backends!(
    telco_csv_imports_as_shipped,
    super::telco_preset_imports_every_row
);
