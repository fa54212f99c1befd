//! Bring your own business: event logs attune did not generate (`tests/fixtures/byob`,
//! simulated by `bench/byob` with code that is not attune's), their own event kinds, churn
//! as inactivity, a backtest with intervals, and the rules that need a meaning seeing only
//! kinds mapped to it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead as _;
use std::path::{Path, PathBuf};

use attune::config::{ChurnKind, Config};
use attune::domain::{ActivityEvent, CustomerId};
use attune::ingest::CustomerPreset;
use attune::jobs::import::{import_customers_file, import_events_file};
use attune::jobs::plan::{self, PlanJob};
use attune::jobs::score::{self, ScoreJob};
use attune::jobs::train::{HistoryOptions, TrainOptions, train_from_history};
use attune::store::NudgeFilter;
use chrono::{Days, NaiveDate};

use super::helpers::{TestDb, customer, d, email_only};
use crate::both_backends;

fn fixture(business: &str, file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/byob")
        .join(business)
        .join(file)
}

/// The fixture's events, parsed here independently of attune: (customer, kind, day).
fn fixture_events(business: &str) -> Vec<(String, String, NaiveDate)> {
    let f = std::fs::File::open(fixture(business, "events.csv.gz")).unwrap();
    let r = std::io::BufReader::new(flate2::read::GzDecoder::new(f));
    let mut out = Vec::new();
    for line in r.lines().skip(1) {
        let line = line.unwrap();
        let cols: Vec<&str> = line.split(',').collect();
        out.push((
            cols[0].to_owned(),
            cols[1].to_owned(),
            cols[2][..10].parse().unwrap(),
        ));
    }
    out
}

fn declare(c: &mut Config, kinds: &[(&str, &str)]) {
    c.kinds = kinds
        .iter()
        .map(|(k, m)| ((*k).to_owned(), (*m).to_owned()))
        .collect::<BTreeMap<_, _>>();
}

const RETAIL_KINDS: &[(&str, &str)] = &[
    ("purchase", "payment"),
    ("product_view", "none"),
    ("add_to_cart", "none"),
    ("return", "none"),
    ("newsletter_click", "none"),
    ("support_ticket", "contact"),
    ("review_posted", "none"),
];

fn retail(c: &mut Config) {
    declare(c, RETAIL_KINDS);
    c.churn.definition = ChurnKind::Inactivity;
    c.churn.kinds = vec!["purchase".into()];
    c.churn.days = Some(90);
}

async fn retailer_with_inactivity_churn(t: &TestDb) {
    let today = d("2026-11-01");
    let ctx = t.ctx(retail);
    let r = import_customers_file(
        &t.db,
        &fixture("retail", "customers.csv"),
        CustomerPreset::Standard,
        today,
    )
    .await
    .unwrap();
    assert_eq!((r.imported, r.rejected), (1500, 0));
    let events = fixture("retail", "events.csv.gz");
    let r = import_events_file(&ctx, &events, Some("shop"))
        .await
        .unwrap();
    let truth = fixture_events("retail");
    assert_eq!(
        (r.imported, r.rejected, r.quarantined),
        (truth.len() as u64, 0, 0)
    );
    // The same file again: every event a duplicate.
    let r = import_events_file(&ctx, &events, Some("shop"))
        .await
        .unwrap();
    assert_eq!((r.imported, r.duplicate), (0, truth.len() as u64));

    let h = HistoryOptions::from_config(&ctx.config.training, ctx.churn().await.unwrap(), today);
    let trained = train_from_history(
        &t.db,
        &ctx.kinds().await.unwrap(),
        &ctx.feature_spec().await.unwrap(),
        &h,
        &TrainOptions::from_config(&ctx.config.training),
    )
    .await
    .unwrap();
    let m = &trained.model;
    // Auto features for the retailer's own kinds, with no spec written.
    let spec = m.training.feature_spec.as_deref().unwrap();
    for f in [
        "days_since_purchase",
        "product_view_30d",
        "purchase_value_90d",
        "tenure_days",
    ] {
        assert!(
            spec.contains(&format!("name = \"{f}\"")),
            "{f} in the model's spec"
        );
    }
    // The identifiers among the attributes are left out, and said so.
    let left: Vec<&str> = m
        .training
        .left_out
        .iter()
        .map(|l| l.attribute.as_str())
        .collect();
    assert_eq!(left, ["crm_number", "email"]);
    // ...and the model was fitted without them (the guard and the features are one pass
    // over the customers; the columns it leaves out are dropped before the fit).
    let sources: Vec<&str> = m.features.iter().map(|f| f.source.as_str()).collect();
    assert!(
        !sources.contains(&"attr.crm_number") && !sources.contains(&"attr.email"),
        "{sources:?}"
    );
    assert!(
        sources.iter().any(|s| s.starts_with("attr.")),
        "the attributes the guard kept are features: {sources:?}"
    );
    assert_eq!(m.training.churn.as_deref(), Some("no purchase for 90 days"));
    // Labels are "no purchase in the 90 days after": checked here from the raw file.
    let purchases: HashMap<&str, Vec<NaiveDate>> =
        truth
            .iter()
            .filter(|e| e.1 == "purchase")
            .fold(HashMap::new(), |mut m, e| {
                m.entry(e.0.as_str()).or_default().push(e.2);
                m
            });
    let ids: HashMap<i64, String> =
        t.db.customer_id_map()
            .await
            .unwrap()
            .into_iter()
            .map(|(k, v)| (v, k))
            .collect();
    for &(id, day, label, _) in trained.observations.iter().step_by(7) {
        let bought = purchases
            .get(ids[&id].as_str())
            .is_some_and(|p| p.iter().any(|&x| x >= day && x < day + Days::new(90)));
        assert_eq!(label, !bought, "{} on {day}", ids[&id]);
    }
    // No observation day before the first imported activity (2025-09-01).
    assert!(trained.window.dates.iter().all(|&x| x > d("2025-09-01")));
    assert_eq!(trained.window.days_before_history, vec![d("2025-09-01")]);
    // A backtest with intervals, and no customer on both sides.
    let b = &trained.backtest;
    assert_eq!(b.origins.len(), 3);
    let auc = b.pooled.auc.unwrap();
    let iv = b.pooled.auc_interval.unwrap();
    assert!(
        iv.low < auc && auc < iv.high && iv.high - iv.low < 0.2,
        "{iv:?}"
    );
    assert!(auc > 0.65, "learnable: {auc}");
    let test: HashSet<i64> = trained
        .observations
        .iter()
        .filter(|o| o.3)
        .map(|o| o.0)
        .collect();
    assert!(
        trained
            .observations
            .iter()
            .all(|o| o.3 == test.contains(&o.0))
    );

    // Scoring follows the definition: only customers who bought in the last 90 days, or
    // signed up in them, are customers today.
    attune::jobs::train::register(&t.db, m, Some(&trained.window), true)
        .await
        .unwrap();
    let s = score::run(
        &ctx,
        &ScoreJob {
            tick: None,
            as_of: Some(today),
            changed_only: false,
        },
    )
    .await
    .unwrap();
    let signups: HashMap<String, NaiveDate> =
        std::fs::read_to_string(fixture("retail", "customers.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                let c: Vec<&str> = l.split(',').collect();
                (c[0].to_owned(), c[1].parse().unwrap())
            })
            .collect();
    let from = today - Days::new(90);
    let active = signups
        .iter()
        .filter(|(id, signup)| {
            **signup > from
                || purchases
                    .get(id.as_str())
                    .is_some_and(|p| p.iter().any(|&x| x >= from && x < today))
        })
        .count();
    assert_eq!(s.customers, active);
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("scores.csv");
    let r = attune::jobs::predict::export_scores(
        &t.db,
        None,
        &file,
        attune::jobs::predict::ExportFormat::Csv,
    )
    .await
    .unwrap();
    assert_eq!(r.scores, active);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("customer_id,churn_probability,model_version,as_of,run_id,driver_1,"));
    assert_eq!(text.lines().count(), active + 1);
    // The same run as Parquet, read back with the parquet crate's own reader.
    let pq = out.path().join("scores.parquet");
    let r = attune::jobs::predict::export_scores(
        &t.db,
        Some(s.run_id),
        &pq,
        attune::jobs::predict::ExportFormat::Parquet,
    )
    .await
    .unwrap();
    assert_eq!(r.scores, active);
    use parquet::file::reader::FileReader as _;
    let reader =
        parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&pq).unwrap())
            .unwrap();
    let meta = reader.metadata();
    assert_eq!(meta.file_metadata().num_rows(), active as i64);
    let names: Vec<&str> = meta
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.name())
        .collect();
    assert_eq!(
        &names[..5],
        [
            "customer_id",
            "churn_probability",
            "model_version",
            "as_of",
            "run_id"
        ]
    );
    let first = reader.get_row_iter(None).unwrap().next().unwrap().unwrap();
    use parquet::record::RowAccessor as _;
    let p = first.get_double(1).unwrap();
    assert!((0.0..=1.0).contains(&p));
}
both_backends!(
    a_retailer_with_inactivity_churn,
    super::retailer_with_inactivity_churn
);

const SOCIAL_KINDS: &[(&str, &str)] = &[
    ("session_start", "login"),
    ("message_sent", "none"),
    ("like", "none"),
    ("post_created", "none"),
    ("comment", "none"),
    ("follow", "none"),
    ("report_content", "none"),
    ("upgrade", "none"),
    ("downgrade", "none"),
];

async fn social_app_with_its_own_kinds(t: &TestDb) {
    let today = d("2026-11-01");
    // `thumbs_down` is not declared yet.
    let ctx = t.ctx(|c| {
        declare(c, SOCIAL_KINDS);
        c.churn.definition = ChurnKind::Inactivity;
        c.churn.kinds = vec!["session_start".into()];
        c.churn.days = Some(30);
    });
    import_customers_file(
        &t.db,
        &fixture("social", "customers.csv"),
        CustomerPreset::Standard,
        today,
    )
    .await
    .unwrap();
    let events = fixture("social", "events.csv.gz");
    let truth = fixture_events("social");
    let dislikes = truth.iter().filter(|e| e.1 == "thumbs_down").count() as u64;
    assert!(dislikes > 100);
    let r = import_events_file(&ctx, &events, None).await.unwrap();
    // Every event but the undeclared kind's is stored, including rows alike in customer,
    // kind, time and value (no source ids here) that differ in another column.
    assert_eq!(r.imported, truth.len() as u64 - dislikes);
    assert_eq!(r.rejected, dislikes);
    let q =
        t.db.quarantined(false, Some("unknown_kind"), 1)
            .await
            .unwrap();
    assert!(
        q[0].reason.contains("[kinds] thumbs_down = \"none\"")
            && q[0].reason.contains("quarantine retry"),
        "{}",
        q[0].reason
    );
    assert_eq!(
        q[0].location
            .as_deref()
            .map(|l| l.starts_with(&events.display().to_string())),
        Some(true)
    );

    // Declared later: the quarantined events are stored, and nothing before them moves.
    let ctx = t.ctx(|c| {
        declare(c, SOCIAL_KINDS);
        c.kinds.insert("thumbs_down".into(), "none".into());
        c.churn.definition = ChurnKind::Inactivity;
        c.churn.kinds = vec!["session_start".into()];
        c.churn.days = Some(30);
    });
    let o = attune::jobs::sources::retry_quarantine(&ctx).await.unwrap();
    assert_eq!((o.released, o.still_quarantined), (dislikes, 0));
    let counts = t.db.kind_counts().await.unwrap();
    let kinds = ctx.kinds().await.unwrap();
    let stored: HashMap<String, i64> = counts
        .iter()
        .map(|c| (kinds.name(c.code).into_owned(), c.events))
        .collect();
    let mut want: HashMap<String, i64> = HashMap::new();
    for e in &truth {
        *want.entry(e.1.clone()).or_default() += 1;
    }
    assert_eq!(stored, want);
    // Sent again: nothing new.
    let r = import_events_file(&ctx, &events, None).await.unwrap();
    assert_eq!((r.imported, r.duplicate), (0, truth.len() as u64));

    // Too few churners on the test side: said in words, and the retrain gate keeps the
    // champion instead of deciding on noise.
    let h = HistoryOptions::from_config(&ctx.config.training, ctx.churn().await.unwrap(), today);
    let train = |seed: u64| {
        let (ctx, h) = (ctx.clone(), h.clone());
        async move {
            let kinds = ctx.kinds().await.unwrap();
            let spec = ctx.feature_spec().await.unwrap();
            train_from_history(
                &ctx.db,
                &kinds,
                &spec,
                &h,
                &TrainOptions {
                    seed: Some(seed),
                    version: Some(format!("social-{seed}")),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
        }
    };
    let first = train(1).await;
    let w = first.backtest.warning.clone().expect("few churners");
    assert!(w.starts_with("only ") && w.contains("fewer than 50"), "{w}");
    assert!(first.model.backtest.as_ref().unwrap().warning.is_some());
    attune::jobs::train::register(&t.db, &first.model, Some(&first.window), true)
        .await
        .unwrap();
    let second = train(2).await;
    let decision = attune::jobs::retrain::decide(&ctx, &second, "test")
        .await
        .unwrap();
    assert!(!decision.promoted);
    assert!(
        decision
            .why
            .starts_with("kept the champion without comparing: only "),
        "{}",
        decision.why
    );
    assert!(decision.challenger.auc_interval.is_some());
    assert_eq!(
        t.db.champion_model().await.unwrap().unwrap().version,
        "social-1"
    );
}
both_backends!(
    a_social_app_with_its_own_kinds,
    super::social_app_with_its_own_kinds
);

fn event(customer: &str, kind: attune::domain::KindCode, day: NaiveDate, n: &str) -> ActivityEvent {
    ActivityEvent {
        customer: CustomerId::parse(customer).unwrap(),
        kind,
        occurred_at: day.and_hms_opt(10, 0, 0).unwrap().and_utc(),
        value: Some(80.0),
        attributes: Default::default(),
        source: "app".into(),
        source_event_id: n.into(),
    }
}

/// Rules that need a meaning (complaints, bills, payments) see only kinds mapped to it.
async fn meaningless_kinds_never_fire_meaningful_rules(t: &TestDb) {
    let today = d("2026-11-23");
    let mut a = customer("a", d("2024-01-01"), email_only());
    a.first_invoice_due = Some(d("2024-02-01"));
    t.db.upsert_customers(&[a]).await.unwrap();
    let kinds = [
        ("dislike", "none"),
        ("charge_failed", "none"),
        ("statement", "none"),
    ];
    let ctx = t.ctx(|c| declare(c, &kinds));
    let catalog = ctx.kinds().await.unwrap();
    let code = |k: &str| catalog.lookup(k).unwrap().code;
    let mut evs = Vec::new();
    for (i, day) in [30u64, 20, 10, 3, 1].iter().enumerate() {
        let at = today - Days::new(*day);
        evs.push(event("a", code("dislike"), at, &format!("d{i}")));
        evs.push(event("a", code("charge_failed"), at, &format!("f{i}")));
        evs.push(event("a", code("statement"), at, &format!("s{i}")));
    }
    t.db.insert_events(&evs).await.unwrap();
    let job = PlanJob {
        run_id: None,
        as_of: Some(today),
    };
    plan::run(&ctx, &job).await.unwrap();
    let meaningful = |kind: &str| {
        kind.starts_with("complaint")
            || kind.contains("ombudsman")
            || kind.contains("bill")
            || kind.contains("payment")
    };
    let rules: Vec<String> =
        t.db.list_nudges(&NudgeFilter::default())
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.kind)
            .collect();
    assert!(!rules.iter().any(|k| meaningful(k)), "{rules:?}");
    let spec = ctx.planning_spec().await.unwrap();
    let id = t.db.customer_id_map().await.unwrap()["a"];
    let page = t.db.customers_with_ids(&[id]).await.unwrap();
    let row = plan::planning_features(&ctx, today, &page).await.unwrap();
    assert_eq!(
        row[&id]["complaints_90d"],
        attune::features::FeatureValue::Num(0.0)
    );
    assert!(
        spec.get("dislike_30d").is_some(),
        "auto features for a declared kind"
    );

    // The same kinds mapped to what they mean: the complaint and payment rules see them.
    let mapped = [
        ("dislike", "complaint_opened"),
        ("charge_failed", "payment_failed"),
        ("statement", "invoice"),
    ];
    let ctx = t.ctx(|c| declare(c, &mapped));
    plan::run(&ctx, &job).await.unwrap();
    let rules: HashSet<String> =
        t.db.list_nudges(&NudgeFilter::default())
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.kind)
            .collect();
    assert!(rules.contains("complaint_follow_up"), "{rules:?}");
    assert!(rules.contains("payment_failed_help"), "{rules:?}");
    let row = plan::planning_features(&ctx, today, &page).await.unwrap();
    assert_eq!(
        row[&id]["complaints_90d"],
        attune::features::FeatureValue::Num(5.0)
    );
}
both_backends!(
    a_declared_kind_meaning_nothing_never_fires_complaint_billing_or_payment_rules,
    super::meaningless_kinds_never_fire_meaningful_rules
);

/// A contract business as today: churn is the record's `churned_on`; the backtest has
/// enough churners to decide on.
async fn contract_business_backtest(t: &TestDb) {
    let inbox = tempfile::tempdir().unwrap();
    let ctx = t.ctx(|c| c.pull.inbox = Some(inbox.path().to_owned()));
    let today = attune::jobs::today();
    attune::demo::run_cycle(&ctx, 2000, 5, today).await.unwrap();
    let champion = t.db.champion_model().await.unwrap().unwrap();
    let m: attune::model::ModelArtifact = serde_json::from_value(champion.artifact.0).unwrap();
    let b = m.backtest.as_ref().unwrap();
    assert!(b.origins.len() >= 2, "{b:?}");
    assert_eq!(
        m.training.churn.as_deref(),
        Some("left (the churn date on the customer record) within 60 days")
    );
    assert!(
        b.pooled.test_churners >= b.min_test_churners && b.warning.is_none(),
        "{b:?}"
    );
    let iv = b.pooled.auc_interval.unwrap();
    assert!(iv.low < b.pooled.auc.unwrap() && b.pooled.auc.unwrap() < iv.high);
    assert_eq!(
        m.training.test_rows,
        Some(m.metrics.as_ref().unwrap().rows),
        "honest row counts"
    );
}
both_backends!(
    a_contract_business_as_today,
    super::contract_business_backtest
);
