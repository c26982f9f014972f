//! Rebuilds this crate when a migration is added, changed or removed: `refinery`'s
//! `embed_migrations!` reads `migrations/` at compile time, but cargo does not know that, so
//! without this an incremental build (CI reuses its target directory) would keep embedding
//! the old set and tests would run against a schema missing the new migration.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
