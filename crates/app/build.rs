//! Embeds the workspace's `migrations/*.sql` into the binary, so `outbox-app migrate` works
//! from any directory (and in the container) without the source tree.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let dir = manifest.join("../../migrations");
    // A directory's mtime changes when files are added or removed; include_str! tracks contents.
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "sql"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut out = String::from("&[\n");
    for path in &files {
        let name = path.file_name().expect("a file").to_string_lossy();
        let abs = path.canonicalize().expect("an existing file");
        writeln!(out, "    ({name:?}, include_str!({:?})),", abs.display()).expect("string");
    }
    out.push_str("]\n");
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    std::fs::write(dest.join("embedded_migrations.rs"), out).expect("writing OUT_DIR file");
}
