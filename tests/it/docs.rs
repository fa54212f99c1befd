//! The README documents what the parsers accept; this keeps the two from drifting apart.

#[test]
fn readme_documents_every_column_and_event_kind() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let columns = attune::ingest::CUSTOMER_COLUMNS
        .iter()
        .chain(attune::ingest::EVENT_COLUMNS);
    for (name, _) in columns.filter(|(n, _)| !n.starts_with('(')) {
        assert!(
            readme.contains(&format!("`{name}`")),
            "README does not document the column {name}"
        );
    }
    for kind in attune::domain::Meaning::ALL {
        assert!(
            readme.contains(&format!("`{}`", kind.as_str())),
            "README does not document the event kind {kind}"
        );
    }
}

#[test]
fn readme_documents_every_feature_type_default_feature_and_quarantine_reason() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for (t, _) in attune::features::FEATURE_TYPES {
        assert!(
            readme.contains(&format!("`{t}`")),
            "README does not document feature type {t}"
        );
    }
    for f in attune::features::FeatureSpec::default_spec().features {
        assert!(
            readme.contains(&format!("`{}`", f.name)),
            "README does not name the default feature {}",
            f.name
        );
    }
    use attune::ingest::mapping::RejectCode::*;
    for code in [
        Malformed,
        MissingField,
        UnknownKind,
        BadTimestamp,
        BadValue,
        UnknownCustomer,
    ] {
        assert!(
            readme.contains(&format!("`{}`", code.as_str())),
            "README does not explain the quarantine reason {}",
            code.as_str()
        );
    }
}

#[test]
fn readme_starts_with_the_two_commands() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = readme
        .split("```sh")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap();
    let commands: Vec<&str> = block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(commands, ["cargo run -- demo", "cargo test"]);
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == "cargo test"),
        ".ci/run runs the README's test command"
    );
}
