// Rebuild when a migration is added: `sqlx::migrate!` embeds the directory at compile
// time and stable Rust cannot tell the compiler to watch it (sqlx's own advice).
//
// The integration tests' PostgreSQL variants run when `ATTUNE_TEST_POSTGRES_URL` is set as
// they are built, and are reported as ignored otherwise (never as passed having run
// nothing). Changing the variable rebuilds this package, not its dependencies.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-env-changed=ATTUNE_TEST_POSTGRES_URL");
    println!("cargo::rustc-check-cfg=cfg(attune_test_postgres)");
    if std::env::var_os("ATTUNE_TEST_POSTGRES_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo:rustc-cfg=attune_test_postgres");
    }
}
