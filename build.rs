//! Rebuilds the crate when a migration is added: the embedded migrations are read at
//! compile time, and a new folder is not a file the compiler knows it read.
fn main() {
    println!("cargo:rerun-if-changed=src/store/schema/migrations");
}
