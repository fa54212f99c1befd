// Rebuild when a migration is added: `sqlx::migrate!` embeds the directory at compile
// time and stable Rust cannot tell the compiler to watch it (sqlx's own advice).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
