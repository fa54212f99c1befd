// The uplift test's PostgreSQL variant runs when `ATTUNE_TEST_POSTGRES_URL` is set as it
// is built, and is reported as ignored otherwise (as in the `attune` package).
fn main() {
    println!("cargo:rerun-if-env-changed=ATTUNE_TEST_POSTGRES_URL");
    println!("cargo::rustc-check-cfg=cfg(attune_test_postgres)");
    if std::env::var_os("ATTUNE_TEST_POSTGRES_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo:rustc-cfg=attune_test_postgres");
    }
}
