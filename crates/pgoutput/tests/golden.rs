//! Golden bytes captured from real PostgreSQL servers, one set per major (see
//! `tests/golden/pg<major>/*.txt` and the workspace's `tests/golden_capture.rs`, which
//! re-captures them): each scenario decodes to the expected messages on every major, and
//! re-encoding every decoded message gives back that server's exact bytes.

mod support;

use std::path::Path;

use pgoutput::encode::encode;
use support::{golden_file, golden_shape};

/// The majors whose captures are kept: 14 to 18.
const MAJORS: [u32; 5] = [14, 15, 16, 17, 18];

fn golden_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn load(major: u32, scenario: &str) -> Vec<golden_file::Captured> {
    let path = golden_dir()
        .join(format!("pg{major}"))
        .join(format!("{scenario}.txt"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    golden_file::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn check(scenario: &str) {
    for major in MAJORS {
        if !golden_shape::scenarios_of(major).contains(&scenario) {
            continue;
        }
        let captured = load(major, scenario);
        let rendered = golden_file::render(&[], &captured);
        assert_eq!(golden_file::parse(&rendered).as_ref(), Ok(&captured));
        golden_shape::check(scenario, major, &captured);
        for (m, decoded) in captured.iter().zip(golden_shape::decode_all(&captured)) {
            assert_eq!(
                encode(&decoded),
                m.data,
                "PostgreSQL {major}, {scenario}: re-encoding {}",
                m.lsn
            );
        }
    }
}

#[test]
fn golden_types_nulls_unicode_bytea_toast_multi_row() {
    check("types");
}

#[test]
fn golden_replica_identity_default_full_index_nothing() {
    check("replica_identity");
}

#[test]
fn golden_truncate() {
    check("truncate");
}

#[test]
fn golden_logical_decoding_messages() {
    check("messages");
}

#[test]
fn golden_origin() {
    check("origin");
}

#[test]
fn golden_two_phase() {
    check("two_phase");
}

#[test]
fn golden_streaming() {
    check("streaming");
}

#[test]
fn every_golden_file_is_checked() {
    let mut majors: Vec<String> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    majors.sort();
    assert_eq!(majors, MAJORS.map(|m| format!("pg{m}")));
    for major in MAJORS {
        let dir = golden_dir().join(format!("pg{major}"));
        let mut found: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "txt"))
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        found.sort();
        let mut expected: Vec<String> = golden_shape::scenarios_of(major)
            .into_iter()
            .map(String::from)
            .collect();
        expected.sort();
        assert_eq!(found, expected, "PostgreSQL {major}");
    }
}
