//! The model registry: versions, promotions with their history and audit entries,
//! rollback, and each scoring run's drift.

use attune::features::{FeatureRow, FeatureValue};
use attune::model::drift;
use attune::store::StoreError;
use serde_json::json;

use super::helpers::{TestDb, d};
use crate::both_backends;

fn artifact(version: &str, intercept: f64) -> serde_json::Value {
    json!({
        "format": 1,
        "version": version,
        "intercept": intercept,
        "features": [{"name": "tenure_months", "coefficient": -0.25}],
        "profiles": [],
    })
}

async fn register_three(t: &TestDb) {
    for (i, v) in ["v1", "v2", "v3"].into_iter().enumerate() {
        t.db.save_model_version(
            v,
            "store",
            &artifact(v, i as f64 / 10.0),
            Some("2025-12-31..2026-10-31"),
            Some(&format!("spec-{i}")),
        )
        .await
        .unwrap();
    }
}

async fn champion(t: &TestDb) -> Option<String> {
    t.db.champion_model().await.unwrap().map(|m| m.version)
}

async fn promote_then_roll_back(t: &TestDb) {
    register_three(t).await;
    let v2 = t.db.model("v2").await.unwrap().unwrap();
    assert_eq!(v2.data_window.as_deref(), Some("2025-12-31..2026-10-31"));
    assert_eq!(v2.feature_spec_hash.as_deref(), Some("spec-1"));
    assert_eq!(v2.artifact.0, artifact("v2", 0.1));
    assert!(!v2.is_champion && v2.promoted_at.is_none());
    assert!(t.db.model("v9").await.unwrap().is_none());
    assert_eq!(
        champion(t).await,
        None,
        "registering never makes a champion"
    );

    let detail = json!({"auc": 0.81});
    let steps = [
        ("v1", "ana", None),
        ("v2", "ben", Some("v1")),
        ("v3", "retrain", Some("v2")),
    ];
    for (v, actor, previous) in steps {
        let got =
            t.db.promote_model(v, actor, &format!("{v} is better"), &detail)
                .await
                .unwrap();
        assert_eq!(got.as_deref(), previous);
        assert_eq!(champion(t).await.as_deref(), Some(v));
    }
    let champions: Vec<String> =
        t.db.models()
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.is_champion)
            .map(|m| m.version)
            .collect();
    assert_eq!(champions, ["v3"]);
    assert!(
        t.db.model("v3")
            .await
            .unwrap()
            .unwrap()
            .promoted_at
            .is_some()
    );

    let history = t.db.promotions(10).await.unwrap();
    let got: Vec<(&str, Option<&str>, &str, &str)> = history
        .iter()
        .map(|p| {
            (
                p.version.as_str(),
                p.previous_version.as_deref(),
                p.actor.as_str(),
                p.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("v3", Some("v2"), "retrain", "v3 is better"),
            ("v2", Some("v1"), "ben", "v2 is better"),
            ("v1", None, "ana", "v1 is better"),
        ]
    );
    assert_eq!(history[0].detail.0, detail);

    let audit = t.db.audit_entries(10).await.unwrap();
    let got: Vec<(&str, &str, &str)> = audit
        .iter()
        .map(|a| (a.actor.as_str(), a.action.as_str(), a.subject.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("retrain", "model.promoted", "model:v3"),
            ("ben", "model.promoted", "model:v2"),
            ("ana", "model.promoted", "model:v1"),
        ]
    );
    assert_eq!(
        audit[0].detail.0,
        json!({"from": "v2", "to": "v3", "reason": "v3 is better", "detail": {"auc": 0.81}})
    );
    assert_eq!(audit[2].detail.0["from"], serde_json::Value::Null);

    // Promoting the champion again changes and records nothing.
    let again =
        t.db.promote_model("v3", "ana", "again", &json!({}))
            .await
            .unwrap();
    assert_eq!(again.as_deref(), Some("v3"));
    assert_eq!(t.db.promotions(10).await.unwrap().len(), 3);

    // Rollback restores the one before; rolling back again returns to where it started.
    let r =
        t.db.rollback_model("ana", "v3 misfires on new plans")
            .await
            .unwrap();
    assert_eq!(r, ("v2".to_string(), "v3".to_string()));
    assert_eq!(champion(t).await.as_deref(), Some("v2"));
    let r = t.db.rollback_model("ben", "false alarm").await.unwrap();
    assert_eq!(r, ("v3".to_string(), "v2".to_string()));
    assert_eq!(champion(t).await.as_deref(), Some("v3"));

    let history = t.db.promotions(2).await.unwrap();
    let got: Vec<(&str, Option<&str>, &str)> = history
        .iter()
        .map(|p| {
            (
                p.version.as_str(),
                p.previous_version.as_deref(),
                p.actor.as_str(),
            )
        })
        .collect();
    assert_eq!(got, [("v3", Some("v2"), "ben"), ("v2", Some("v3"), "ana")]);
    assert_eq!(history[1].reason, "v3 misfires on new plans");
    let audit = t.db.audit_entries(2).await.unwrap();
    assert_eq!(
        (
            audit[1].actor.as_str(),
            audit[1].action.as_str(),
            audit[1].subject.as_str()
        ),
        ("ana", "model.rolled_back", "model:v2")
    );
    assert_eq!(audit[1].detail.0["from"], "v3");
}
both_backends!(
    promotions_are_recorded_and_rollback_follows_them,
    super::promote_then_roll_back
);

async fn unknown_version_changes_nothing(t: &TestDb) {
    let err =
        t.db.rollback_model("ana", "oops")
            .await
            .unwrap_err()
            .to_string();
    assert!(err.contains("no champion"), "{err}");

    register_three(t).await;
    t.db.promote_model("v1", "ana", "first", &json!({}))
        .await
        .unwrap();
    let err =
        t.db.promote_model("v7", "ana", "typo", &json!({}))
            .await
            .unwrap_err();
    assert!(matches!(err, StoreError::Data(_)), "{err:?}");
    assert!(err.to_string().contains("\"v7\""), "{err}");
    assert_eq!(champion(t).await.as_deref(), Some("v1"));
    assert_eq!(t.db.promotions(10).await.unwrap().len(), 1);
    assert_eq!(t.db.audit_entries(10).await.unwrap().len(), 1);

    // The first champion has nothing before it.
    let err =
        t.db.rollback_model("ana", "oops")
            .await
            .unwrap_err()
            .to_string();
    assert!(err.contains("\"v1\" has no earlier champion"), "{err}");
    assert_eq!(champion(t).await.as_deref(), Some("v1"));
    assert_eq!(t.db.promotions(10).await.unwrap().len(), 1);
}
both_backends!(
    promoting_an_unknown_version_changes_nothing,
    super::unknown_version_changes_nothing
);

async fn versions_never_change(t: &TestDb) {
    let a = artifact("v1", 0.5);
    t.db.save_model_version("v1", "store", &a, None, None)
        .await
        .unwrap();
    // The same artifact again is fine, and may fill in what was not known.
    t.db.save_model_version(
        "v1",
        "store",
        &a,
        Some("2026-01-01..2026-10-31"),
        Some("h1"),
    )
    .await
    .unwrap();
    let m = t.db.model("v1").await.unwrap().unwrap();
    assert_eq!(
        (m.data_window.as_deref(), m.feature_spec_hash.as_deref()),
        (Some("2026-01-01..2026-10-31"), Some("h1"))
    );
    t.db.save_model_version("v1", "store", &a, None, Some("h1"))
        .await
        .unwrap();

    let err =
        t.db.save_model_version("v1", "store", &artifact("v1", 0.7), None, None)
            .await
            .unwrap_err();
    assert!(matches!(err, StoreError::Data(_)), "{err:?}");
    assert!(err.to_string().contains("\"v1\""), "{err}");
    let err =
        t.db.save_model_version("v1", "store", &a, None, Some("h2"))
            .await
            .unwrap_err();
    assert!(err.to_string().contains("feature spec hash"), "{err}");
    let m = t.db.model("v1").await.unwrap().unwrap();
    assert_eq!(m.artifact.0, a);
    assert_eq!(m.feature_spec_hash.as_deref(), Some("h1"));
    assert_eq!(t.db.models().await.unwrap().len(), 1);
}
both_backends!(
    a_different_artifact_under_a_registered_version_is_refused,
    super::versions_never_change
);

async fn training_registration_is_a_promotion(t: &TestDb) {
    // The train job's path: register and make champion in one call.
    t.db.save_model("t1", "store", &artifact("t1", 0.1), true)
        .await
        .unwrap();
    t.db.save_model("t2", "store", &artifact("t2", 0.2), false)
        .await
        .unwrap();
    assert_eq!(champion(t).await.as_deref(), Some("t1"));
    t.db.save_model("t2", "store", &artifact("t2", 0.2), true)
        .await
        .unwrap();
    assert_eq!(champion(t).await.as_deref(), Some("t2"));
    let history = t.db.promotions(10).await.unwrap();
    let got: Vec<(&str, Option<&str>, &str)> = history
        .iter()
        .map(|p| {
            (
                p.version.as_str(),
                p.previous_version.as_deref(),
                p.actor.as_str(),
            )
        })
        .collect();
    assert_eq!(got, [("t2", Some("t1"), "train"), ("t1", None, "train")]);
    let r = t.db.rollback_model("ana", "t2 is worse").await.unwrap();
    assert_eq!(r, ("t1".to_string(), "t2".to_string()));
}
both_backends!(
    champions_registered_by_training_are_in_the_history,
    super::training_registration_is_a_promotion
);

fn rows(offset: f64) -> Vec<FeatureRow> {
    (0..40)
        .map(|i| {
            let mut r = FeatureRow::new();
            r.insert("charge".into(), FeatureValue::Num(20.0 + offset + i as f64));
            r.insert(
                "plan".into(),
                if i % 7 == 0 {
                    FeatureValue::Missing
                } else {
                    FeatureValue::Cat(["basic", "plus", "max"][i % 3].into())
                },
            );
            r
        })
        .collect()
}

async fn drift_round_trips(t: &TestDb) {
    let (run, _) =
        t.db.start_scoring_run("v1", d("2026-11-24"), "test", "full", "test", None)
            .await
            .unwrap();
    assert!(t.db.drift_for_run(run).await.unwrap().is_empty());
    assert_eq!(t.db.score_distribution(run).await.unwrap(), None);

    let profiles = drift::profile(&rows(0.0));
    let now = rows(15.0);
    let measured = drift::drift(&profiles, &now);
    assert_eq!(measured.len(), 2);
    assert!(measured[0].psi > measured[1].psi);
    let scores = drift::score_profile(&[0.05, 0.12, 0.31, 0.33, 0.9]);
    t.db.save_drift(run, &measured, &scores).await.unwrap();
    assert_eq!(t.db.drift_for_run(run).await.unwrap(), measured);
    assert_eq!(t.db.score_distribution(run).await.unwrap(), Some(scores));

    // Writing a run's drift again replaces it.
    let same = drift::drift(&profiles, &rows(0.0));
    t.db.save_drift(run, &same[..1], &[0.1; 10]).await.unwrap();
    assert_eq!(t.db.drift_for_run(run).await.unwrap(), same[..1]);
    assert_eq!(
        t.db.score_distribution(run).await.unwrap(),
        Some(vec![0.1; 10])
    );

    // Other runs are untouched; a bad value is refused before anything is written.
    let (other, _) =
        t.db.start_scoring_run("v1", d("2026-11-25"), "test", "full", "test", None)
            .await
            .unwrap();
    assert!(t.db.drift_for_run(other).await.unwrap().is_empty());
    let mut bad = measured.clone();
    bad[1].psi = f64::NAN;
    let err = t.db.save_drift(other, &bad, &[]).await.unwrap_err();
    assert!(matches!(err, StoreError::Data(_)), "{err:?}");
    assert!(t.db.drift_for_run(other).await.unwrap().is_empty());
}
both_backends!(drift_rows_round_trip, super::drift_round_trips);
