//! Rebuild when a migration or the offline query data changes: `sqlx::migrate!` embeds
//! `migrations/` and the query macros read `.sqlx/` at compile time, and cargo watches neither
//! directory on its own.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=.sqlx");
}
