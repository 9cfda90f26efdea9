//! Fuzzes the two path parsers, `FilePath::parse` (JSON body form) and
//! `FilePath::from_url_tail` (raw URL tail): neither may panic, and every accepted path must
//! be canonical (re-parse to itself in both forms) and obey every rule of API.md "Paths".
#![no_main]

use events::path::{MAX_PATH_BYTES, MAX_SEGMENT_BYTES};
use events::FilePath;
use libfuzzer_sys::fuzz_target;
use unicode_normalization::is_nfc;

fuzz_target!(|data: &[u8]| {
    // Arbitrary bytes reach `from_url_tail` only as UTF-8 (an HTTP path is a &str);
    // invalid UTF-8 is reached through percent-escapes, which the fuzzer finds easily.
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(path) = FilePath::parse(s) {
        check_invariants(&path);
    }
    if let Ok(path) = FilePath::from_url_tail(s) {
        check_invariants(&path);
    }
});

fn check_invariants(path: &FilePath) {
    let s = path.as_str();
    assert_eq!(
        FilePath::parse(s).as_ref(),
        Ok(path),
        "not canonical: {s:?}"
    );
    assert_eq!(FilePath::from_url_tail(&url_tail(path)).as_ref(), Ok(path));
    assert!(s.starts_with('/'));
    assert!(s.len() <= MAX_PATH_BYTES);
    assert!(is_nfc(s));
    assert!(!s.chars().any(|c| c.is_control() || c == '\\'));
    assert!(path.is_root() || !s.ends_with('/'));
    for segment in path.segments() {
        assert!(!segment.is_empty() && segment != "." && segment != "..");
        assert!(segment.len() <= MAX_SEGMENT_BYTES);
    }
}

/// The URL tail a client would send for `path`: every byte of every segment percent-encoded.
fn url_tail(path: &FilePath) -> String {
    let segments: Vec<String> = path
        .segments()
        .map(|seg| seg.bytes().map(|b| format!("%{b:02X}")).collect())
        .collect();
    segments.join("/")
}
