//! Tests of `FilePath`: one test per rejected form, normalisation, URL-tail decoding, and
//! property tests of parsing and of the tree arithmetic (contains, rebase, ancestors).

use events::path::{MAX_PATH_BYTES, MAX_SEGMENT_BYTES};
use events::{FilePath, PathError};
use proptest::prelude::*;

fn p(s: &str) -> FilePath {
    FilePath::parse(s).unwrap()
}

// ---- rejected forms -------------------------------------------------------------------

#[test]
fn rejects_empty() {
    assert_eq!(FilePath::parse(""), Err(PathError::Empty));
}

#[test]
fn rejects_relative() {
    assert_eq!(FilePath::parse("a/b"), Err(PathError::NotAbsolute));
}

#[test]
fn rejects_dot_and_dotdot_segments() {
    for bad in ["/.", "/..", "/a/./b", "/a/../b", "/a/.."] {
        assert_eq!(FilePath::parse(bad), Err(PathError::DotSegment), "{bad}");
    }
}

#[test]
fn rejects_empty_segment() {
    for bad in ["//", "/a//b", "//a", "/a//"] {
        assert_eq!(FilePath::parse(bad), Err(PathError::EmptySegment), "{bad}");
    }
}

#[test]
fn rejects_backslash() {
    assert_eq!(FilePath::parse("/a\\b"), Err(PathError::Backslash));
}

#[test]
fn rejects_nul_and_c0_controls() {
    for bad in ["/a\0b", "/a\nb", "/\t", "/a\u{1f}"] {
        assert_eq!(FilePath::parse(bad), Err(PathError::ControlChar), "{bad:?}");
    }
}

#[test]
fn rejects_del() {
    assert_eq!(FilePath::parse("/a\u{7f}"), Err(PathError::ControlChar));
}

#[test]
fn rejects_c1_control_next_line() {
    assert_eq!(FilePath::parse("/a\u{85}b"), Err(PathError::ControlChar));
}

#[test]
fn rejects_256_byte_segment_and_accepts_255() {
    let ok = format!("/{}", "a".repeat(MAX_SEGMENT_BYTES));
    assert_eq!(p(&ok).as_str(), ok);
    let bad = format!("/{}", "a".repeat(MAX_SEGMENT_BYTES + 1));
    assert_eq!(FilePath::parse(&bad), Err(PathError::SegmentTooLong));
}

#[test]
fn rejects_1025_byte_path_and_accepts_1024() {
    // Four 255-byte segments plus separators: 4 * 256 = 1024 bytes.
    let seg = "a".repeat(255);
    let ok = format!("/{seg}/{seg}/{seg}/{seg}");
    assert_eq!(ok.len(), MAX_PATH_BYTES);
    assert_eq!(p(&ok).as_str(), ok);
    let seg = "a".repeat(200);
    let bad = format!("/{seg}/{seg}/{seg}/{seg}/{seg}/{}", "b".repeat(19));
    assert_eq!(bad.len(), MAX_PATH_BYTES + 1);
    assert_eq!(FilePath::parse(&bad), Err(PathError::PathTooLong));
}

#[test]
fn rejects_huge_input_early() {
    let bad = format!("/{}", "a/".repeat(100_000));
    assert_eq!(FilePath::parse(&bad), Err(PathError::PathTooLong));
}

#[test]
fn limits_count_bytes_after_nfc() {
    // 128 decomposed "é" (3 bytes each, 384 bytes) compose to 256 bytes: too long.
    let bad = format!("/{}", "e\u{301}".repeat(128));
    assert_eq!(FilePath::parse(&bad), Err(PathError::SegmentTooLong));
    // 127 of them compose to 254 bytes, within the limit although the input is 381 bytes.
    let ok = format!("/{}", "e\u{301}".repeat(127));
    assert_eq!(p(&ok).as_str(), format!("/{}", "\u{e9}".repeat(127)));
}

// ---- URL tails --------------------------------------------------------------------------

#[test]
fn url_rejects_encoded_slash() {
    for bad in ["a%2Fb", "a%2fb"] {
        assert_eq!(FilePath::from_url_tail(bad), Err(PathError::EncodedSlash));
    }
}

#[test]
fn url_rejects_encoded_nul() {
    assert_eq!(FilePath::from_url_tail("a%00"), Err(PathError::ControlChar));
}

#[test]
fn url_rejects_encoded_dot_segments() {
    for bad in ["%2e%2e", "a/%2E%2e/b", "%2e", ".."] {
        assert_eq!(
            FilePath::from_url_tail(bad),
            Err(PathError::DotSegment),
            "{bad}"
        );
    }
}

#[test]
fn url_rejects_invalid_utf8() {
    assert_eq!(FilePath::from_url_tail("a%ff"), Err(PathError::InvalidUtf8));
}

#[test]
fn url_rejects_bad_percent_encoding() {
    for bad in ["a%", "a%4", "a%zz", "%g0"] {
        assert_eq!(
            FilePath::from_url_tail(bad),
            Err(PathError::BadPercentEncoding),
            "{bad}"
        );
    }
}

#[test]
fn url_rejects_double_slash_and_leading_slash() {
    for bad in ["a//b", "/a", "/", "a//"] {
        assert_eq!(
            FilePath::from_url_tail(bad),
            Err(PathError::EmptySegment),
            "{bad}"
        );
    }
}

#[test]
fn url_rejects_encoded_backslash_and_c1() {
    assert_eq!(FilePath::from_url_tail("a%5Cb"), Err(PathError::Backslash));
    assert_eq!(
        FilePath::from_url_tail("a%C2%85"),
        Err(PathError::ControlChar)
    );
    assert_eq!(FilePath::from_url_tail("a%7F"), Err(PathError::ControlChar));
}

#[test]
fn url_decodes_each_segment_once() {
    assert_eq!(FilePath::from_url_tail("%252e").unwrap().as_str(), "/%2e");
    assert_eq!(
        FilePath::from_url_tail("a%20b/%C3%A9").unwrap().as_str(),
        "/a b/\u{e9}"
    );
}

#[test]
fn url_root_and_trailing_slash() {
    assert!(FilePath::from_url_tail("").unwrap().is_root());
    assert_eq!(FilePath::from_url_tail("a/b/").unwrap(), p("/a/b"));
}

#[test]
fn url_limits_count_decoded_bytes() {
    let ok = "%61".repeat(255);
    assert_eq!(FilePath::from_url_tail(&ok).unwrap().depth(), 1);
    let bad = "%61".repeat(256);
    assert_eq!(
        FilePath::from_url_tail(&bad),
        Err(PathError::SegmentTooLong)
    );
}

// ---- accepted forms ---------------------------------------------------------------------

#[test]
fn normalises_to_nfc() {
    let decomposed = p("/caf\u{65}\u{301}");
    let composed = p("/caf\u{e9}");
    assert_eq!(decomposed, composed);
    assert_eq!(decomposed.as_str(), "/caf\u{e9}");
    assert_eq!(FilePath::from_url_tail("cafe%CC%81").unwrap(), composed);
}

#[test]
fn json_form_keeps_percent_literally() {
    assert_eq!(p("/%2e").name(), Some("%2e"));
    assert_eq!(p("/a%2Fb").depth(), 1);
}

#[test]
fn one_trailing_slash_is_ignored() {
    assert_eq!(p("/a/b/"), p("/a/b"));
}

#[test]
fn root_forms() {
    let root = p("/");
    assert!(root.is_root());
    assert_eq!(root, FilePath::root());
    assert_eq!(root.depth(), 0);
    assert_eq!(root.parent(), None);
    assert_eq!(root.name(), None);
    assert_eq!(root.segments().count(), 0);
    assert_eq!(
        root.ancestors_and_self().collect::<Vec<_>>(),
        vec![root.clone()]
    );
}

#[test]
fn tree_accessors() {
    let x = p("/a/b/c");
    assert_eq!(x.depth(), 3);
    assert_eq!(x.name(), Some("c"));
    assert_eq!(x.parent(), Some(p("/a/b")));
    assert_eq!(p("/a").parent(), Some(FilePath::root()));
    assert_eq!(x.segments().collect::<Vec<_>>(), ["a", "b", "c"]);
    let chain: Vec<String> = x.ancestors_and_self().map(|a| a.to_string()).collect();
    assert_eq!(chain, ["/", "/a", "/a/b", "/a/b/c"]);
}

#[test]
fn join_validates_the_segment() {
    assert_eq!(p("/a").join("b").unwrap(), p("/a/b"));
    assert_eq!(FilePath::root().join("b").unwrap(), p("/b"));
    assert_eq!(p("/a").join("b/c"), Err(PathError::EncodedSlash));
    assert_eq!(p("/a").join(".."), Err(PathError::DotSegment));
    assert_eq!(p("/a").join(""), Err(PathError::EmptySegment));
}

#[test]
fn contains_by_whole_segments() {
    assert!(p("/a").contains(&p("/a")));
    assert!(p("/a").contains(&p("/a/b")));
    assert!(!p("/a").contains(&p("/ab")));
    assert!(!p("/a/b").contains(&p("/a")));
    assert!(FilePath::root().contains(&p("/x")));
    assert!(p("/a").overlaps(&p("/a/b")) && p("/a/b").overlaps(&p("/a")));
    assert!(!p("/a").overlaps(&p("/b")));
}

#[test]
fn rebase_examples() {
    let (from, to) = (p("/a"), p("/b/c"));
    assert_eq!(p("/a/x/y").rebase(&from, &to), Some(p("/b/c/x/y")));
    assert_eq!(p("/a").rebase(&from, &to), Some(to.clone()));
    assert_eq!(p("/ab").rebase(&from, &to), None);
    assert_eq!(p("/a/x").rebase(&from, &FilePath::root()), Some(p("/x")));
    assert_eq!(p("/x").rebase(&FilePath::root(), &p("/a")), Some(p("/a/x")));
}

#[test]
fn rebase_refuses_results_over_the_limit() {
    let seg = "a".repeat(255);
    let to = p(&format!("/{seg}/{seg}/{seg}/long"));
    let from = p("/x");
    assert_eq!(p(&format!("/x/{seg}")).rebase(&from, &to), None);
}

#[test]
fn the_nested_move_of_the_issue_is_refused_before_it_happens() {
    // Directories with 200-byte names, moved into each other: every single path stays valid,
    // but the deepest descendant at the target would pass 1024 bytes.
    let seg = "d".repeat(200);
    let from = p(&format!("/{seg}1"));
    let deepest = p(&format!("/{seg}1/{seg}2/{seg}3/{seg}6"));
    let to = p(&format!("/{seg}4/{seg}5/{seg}1"));
    assert_eq!(deepest.rebase(&from, &to), None);
    assert_eq!(
        FilePath::check_subtree_rebase(&from, &to, deepest.as_str().len()),
        Err(PathError::SubtreeTooLong)
    );
    // The same move with a shallow subtree fits.
    assert_eq!(
        FilePath::check_subtree_rebase(&from, &to, from.as_str().len()),
        Ok(())
    );
    assert!(!PathError::SubtreeTooLong.to_string().contains(&seg));
}

#[test]
fn rebased_len_handles_the_root() {
    let root = FilePath::root();
    assert_eq!(FilePath::rebased_len(&p("/a"), &root, 4), 2); // /a/x -> /x
    assert_eq!(FilePath::rebased_len(&root, &p("/a"), 2), 4); // /x -> /a/x
    assert_eq!(FilePath::rebased_len(&root, &p("/a"), 1), 2); // / -> /a
}

#[test]
fn serde_is_a_validated_string() {
    let x: FilePath = serde_json::from_str("\"/a/b/\"").unwrap();
    assert_eq!(serde_json::to_string(&x).unwrap(), "\"/a/b\"");
    assert!(serde_json::from_str::<FilePath>("\"/a/../b\"").is_err());
}

#[test]
fn error_messages_do_not_echo_input() {
    let secret = "/top-secret\u{0}";
    let message = FilePath::parse(secret).unwrap_err().to_string();
    assert!(!message.contains("top-secret"), "{message}");
}

// ---- properties -------------------------------------------------------------------------

/// A valid segment: visible characters incl. some non-ASCII, never `.`/`..`.
fn segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _%.~é中-]{1,12}".prop_filter("dot segments", |s| s != "." && s != "..")
}

fn path() -> impl Strategy<Value = FilePath> {
    prop::collection::vec(segment(), 0..6).prop_map(|segs| {
        let s = format!("/{}", segs.join("/"));
        FilePath::parse(&s).unwrap()
    })
}

/// Paths over a tiny alphabet, so containment actually happens.
fn small_path() -> impl Strategy<Value = FilePath> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "ab"]), 0..4)
        .prop_map(|segs| FilePath::parse(&format!("/{}", segs.join("/"))).unwrap())
}

fn encode_segment(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

proptest! {
    #[test]
    fn valid_paths_parse_and_round_trip(segs in prop::collection::vec(segment(), 0..6)) {
        let s = format!("/{}", segs.join("/"));
        let parsed = FilePath::parse(&s).unwrap();
        prop_assert_eq!(FilePath::parse(parsed.as_str()).unwrap(), parsed.clone());
        prop_assert_eq!(parsed.depth(), segs.len());
        let tail: Vec<String> = segs.iter().map(|s| encode_segment(s)).collect();
        prop_assert_eq!(FilePath::from_url_tail(&tail.join("/")).unwrap(), parsed);
    }

    #[test]
    fn parse_never_panics_and_accepted_paths_are_canonical(s in "\\PC{0,40}") {
        if let Ok(x) = FilePath::parse(&s) {
            prop_assert_eq!(FilePath::parse(x.as_str()).unwrap(), x.clone());
            prop_assert!(x.as_str().len() <= MAX_PATH_BYTES);
        }
    }

    #[test]
    fn ancestors_contain_self(x in path()) {
        let chain: Vec<FilePath> = x.ancestors_and_self().collect();
        prop_assert_eq!(chain.len(), x.depth() + 1);
        prop_assert_eq!(chain.last(), Some(&x));
        for a in &chain {
            prop_assert!(a.contains(&x));
        }
        for pair in chain.windows(2) {
            prop_assert_eq!(pair[1].parent(), Some(pair[0].clone()));
        }
    }

    #[test]
    fn contains_matches_segment_prefix(a in small_path(), b in small_path()) {
        let sa: Vec<&str> = a.segments().collect();
        let sb: Vec<&str> = b.segments().collect();
        prop_assert_eq!(a.contains(&b), sb.starts_with(&sa));
        prop_assert_eq!(a.contains(&b) && b.contains(&a), a == b);
        prop_assert_eq!(a.overlaps(&b), b.overlaps(&a));
    }

    #[test]
    fn rebase_laws(x in small_path(), from in small_path(), to in small_path()) {
        match x.rebase(&from, &to) {
            None => prop_assert!(!from.contains(&x)),
            Some(y) => {
                prop_assert!(from.contains(&x));
                prop_assert!(to.contains(&y));
                prop_assert_eq!(y.depth() - to.depth(), x.depth() - from.depth());
                prop_assert_eq!(y.rebase(&to, &from), Some(x.clone()));
                prop_assert_eq!(FilePath::parse(y.as_str()).unwrap(), y);
            }
        }
        prop_assert_eq!(x.rebase(&from, &from), from.contains(&x).then(|| x.clone()));
    }

    /// The length-only check agrees with rebasing every path of the subtree: it accepts
    /// exactly when the longest path (and so every path) still fits at the target.
    #[test]
    fn subtree_check_agrees_with_rebase(
        from in path(),
        to in path(),
        below in prop::collection::vec(prop::collection::vec(segment(), 0..4), 1..5),
        pad in 0usize..1024,
    ) {
        // Long target prefixes make the limit reachable.
        let pad_seg = "p".repeat(pad.clamp(1, 255));
        let to = to.join(&pad_seg).unwrap();
        let subtree: Vec<FilePath> = below
            .iter()
            .filter_map(|segs| {
                segs.iter().try_fold(from.clone(), |acc, s| acc.join(s).ok())
            })
            .collect();
        prop_assume!(!subtree.is_empty());
        let longest = subtree.iter().map(|x| x.as_str().len()).max().unwrap_or(0);
        let all_fit = subtree.iter().all(|x| x.rebase(&from, &to).is_some())
            && from.rebase(&from, &to).is_some();
        prop_assert_eq!(FilePath::check_subtree_rebase(&from, &to, longest).is_ok(), all_fit);
        for x in &subtree {
            if let Some(y) = x.rebase(&from, &to) {
                prop_assert_eq!(FilePath::rebased_len(&from, &to, x.as_str().len()), y.as_str().len());
            }
        }
    }
}
