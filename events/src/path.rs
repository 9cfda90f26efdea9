//! Tenant-relative file paths: [`FilePath`] and the rules that make one valid.
//!
//! Owns parsing (from a JSON body string or from a raw percent-encoded URL tail),
//! normalisation to Unicode NFC, the length limits, and the pure tree arithmetic on paths
//! (parent, ancestors, containment, rebasing). A `FilePath` can only be built through these
//! functions, so holding one proves the path is valid. No IO here: a `FilePath` never
//! touches a file system; mapping it onto storage is the storage layer's job.

use std::fmt;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

/// Longest allowed segment, in bytes after NFC.
pub const MAX_SEGMENT_BYTES: usize = 255;
/// Longest allowed path (including the leading and separating `/`), in bytes after NFC.
pub const MAX_PATH_BYTES: usize = 1024;
/// Raw inputs longer than this are rejected before normalising. NFC shrinks text by at most a
/// factor of 3 (Hangul jamo L+V+T compose into one syllable, 9 bytes -> 3), so nothing this
/// long can normalise to a valid path; the bound keeps the work per request small.
const MAX_RAW_BYTES: usize = 4 * MAX_PATH_BYTES;

/// Why a path was rejected. Messages describe the rule, never echo the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum PathError {
    #[error("path is empty")]
    Empty,
    #[error("path must start with '/'")]
    NotAbsolute,
    #[error("path contains a '.' or '..' segment")]
    DotSegment,
    #[error("path contains an empty segment ('//')")]
    EmptySegment,
    #[error("path contains a control character")]
    ControlChar,
    #[error("path contains a backslash")]
    Backslash,
    #[error("a path segment is longer than {MAX_SEGMENT_BYTES} bytes")]
    SegmentTooLong,
    #[error("path is longer than {MAX_PATH_BYTES} bytes")]
    PathTooLong,
    /// A move or copy would put some entry of the subtree at a path over the limit.
    #[error("an entry below the source would get a path longer than {MAX_PATH_BYTES} bytes at the target")]
    SubtreeTooLong,
    #[error("path is not valid UTF-8")]
    InvalidUtf8,
    #[error("a path segment contains a slash (an encoded '%2F')")]
    EncodedSlash,
    #[error("path contains a malformed percent-encoding")]
    BadPercentEncoding,
}

/// A valid, NFC-normalised, absolute, tenant-relative path. `/` is the root; no other path
/// ends with `/`. Serialised as its string; deserialising validates like [`FilePath::parse`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FilePath(String);

impl FilePath {
    /// Parses the JSON-body form, e.g. `/reports/2026/q1.pdf`. One trailing `/` is ignored.
    /// No percent-decoding happens here: `%2e` is a literal three-character name.
    pub fn parse(s: &str) -> Result<Self, PathError> {
        if s.is_empty() {
            return Err(PathError::Empty);
        }
        let Some(body) = s.strip_prefix('/') else {
            return Err(PathError::NotAbsolute);
        };
        if body.is_empty() {
            return Ok(Self::root());
        }
        if s.len() > MAX_RAW_BYTES {
            return Err(PathError::PathTooLong);
        }
        let body = body.strip_suffix('/').unwrap_or(body);
        let mut builder = PathBuilder::default();
        for segment in body.split('/') {
            builder.push(segment)?;
        }
        builder.finish()
    }

    /// Parses the raw, still percent-encoded URL tail that follows a route prefix such as
    /// `/v1/files/`, without its leading slash; `""` is the root. The tail is split on `/`
    /// first and each segment is then percent-decoded exactly once, so `%2F` cannot smuggle a
    /// separator (it is [`PathError::EncodedSlash`]) and `%252e` is the literal name `%2e`.
    pub fn from_url_tail(raw: &str) -> Result<Self, PathError> {
        if raw.is_empty() {
            return Ok(Self::root());
        }
        // Percent-encoding triples the size of every byte it encodes.
        if raw.len() > 3 * MAX_RAW_BYTES {
            return Err(PathError::PathTooLong);
        }
        let body = raw.strip_suffix('/').unwrap_or(raw);
        let mut builder = PathBuilder::default();
        for encoded in body.split('/') {
            let decoded = percent_decode_segment(encoded)?;
            builder.push(&decoded)?;
        }
        builder.finish()
    }

    /// The root directory `/`.
    pub fn root() -> Self {
        Self("/".to_owned())
    }

    /// The normalised path string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is `/`.
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The segments from the root down; none for the root.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        // Valid paths have no empty segments, so filtering only drops the root's "".
        self.0.split('/').filter(|s| !s.is_empty())
    }

    /// Number of segments; the root has depth 0.
    pub fn depth(&self) -> usize {
        self.segments().count()
    }

    /// The containing directory; `None` for the root.
    pub fn parent(&self) -> Option<FilePath> {
        if self.is_root() {
            return None;
        }
        match self.0.rfind('/') {
            Some(0) | None => Some(Self::root()),
            Some(i) => Some(Self(self.0[..i].to_owned())),
        }
    }

    /// The last segment; `None` for the root.
    pub fn name(&self) -> Option<&str> {
        if self.is_root() {
            return None;
        }
        self.0.rsplit('/').next()
    }

    /// This path with one more segment, validated like any other segment (a `/` inside
    /// `segment` is [`PathError::EncodedSlash`]).
    pub fn join(&self, segment: &str) -> Result<FilePath, PathError> {
        if segment.contains('/') {
            return Err(PathError::EncodedSlash);
        }
        let mut builder = PathBuilder::default();
        for existing in self.segments() {
            builder.push(existing)?;
        }
        builder.push(segment)?;
        builder.finish()
    }

    /// Whether `other` is this path or lies below it, by whole segments (`/a` does not
    /// contain `/ab`).
    pub fn contains(&self, other: &FilePath) -> bool {
        prefix_contains(&self.0, &other.0)
    }

    /// Whether one of the two paths contains the other.
    pub fn overlaps(&self, other: &FilePath) -> bool {
        self.contains(other) || other.contains(self)
    }

    /// Every ancestor and then the path itself, root first.
    pub fn ancestors_and_self(&self) -> impl Iterator<Item = FilePath> + '_ {
        self.ancestor_strs().map(|s| Self(s.to_owned()))
    }

    /// Like [`FilePath::ancestors_and_self`] but borrowing, so hot paths (ACL evaluation)
    /// do not allocate: `/`, `/a`, `/a/b` for `/a/b`.
    pub fn ancestor_strs(&self) -> impl Iterator<Item = &str> + '_ {
        let inner = self
            .0
            .match_indices('/')
            .skip(1)
            .map(|(i, _)| &self.0[..i])
            .chain((!self.is_root()).then_some(self.0.as_str()));
        std::iter::once("/").chain(inner)
    }

    /// Moves this path from under `from` to the same relative position under `to`
    /// (`/a/x/y` rebased from `/a` to `/b` is `/b/x/y`). `None` when this path is not under
    /// `from`, or when the result would exceed [`MAX_PATH_BYTES`].
    pub fn rebase(&self, from: &FilePath, to: &FilePath) -> Option<FilePath> {
        if !from.contains(self) {
            return None;
        }
        // `rest` is "" (self == from) or starts with '/'.
        let rest = if from.is_root() {
            if self.is_root() {
                ""
            } else {
                self.0.as_str()
            }
        } else {
            &self.0[from.0.len()..]
        };
        let rebased = match (to.is_root(), rest.is_empty()) {
            (_, true) => to.0.clone(),
            (true, false) => rest.to_owned(),
            (false, false) => format!("{}{}", to.0, rest),
        };
        (rebased.len() <= MAX_PATH_BYTES).then_some(Self(rebased))
    }

    /// Length in bytes that a path of `path_len` bytes inside `from`'s subtree gets when the
    /// subtree is rebased onto `to` (the arithmetic of [`FilePath::rebase`], without building
    /// the string). `path_len` must be the length of `from` or of a path below it.
    pub fn rebased_len(from: &FilePath, to: &FilePath, path_len: usize) -> usize {
        let rest = if from.is_root() {
            // Below the root every path is its own rest; the root itself has none.
            if path_len <= 1 {
                0
            } else {
                path_len
            }
        } else {
            path_len.saturating_sub(from.0.len())
        };
        match (to.is_root(), rest) {
            (_, 0) => to.0.len(),
            (true, rest) => rest,
            (false, rest) => to.0.len() + rest,
        }
    }

    /// Whether moving or copying the whole subtree at `from` onto `to` keeps every path in it
    /// within [`MAX_PATH_BYTES`], given `longest` = the byte length of the longest path in the
    /// subtree (`from` included). Segments keep their names under a rebase, so the per-segment
    /// limit and the depth cannot change; only the total length can, and it grows the most for
    /// the longest path. This is the rule the API applies at request time and the worker at
    /// execution time, so that no committed move or copy leaves the read models a path they
    /// cannot hold.
    pub fn check_subtree_rebase(
        from: &FilePath,
        to: &FilePath,
        longest: usize,
    ) -> Result<(), PathError> {
        let longest = longest.max(from.0.len());
        if Self::rebased_len(from, to, longest) > MAX_PATH_BYTES {
            return Err(PathError::SubtreeTooLong);
        }
        Ok(())
    }
}

/// Whether `other` equals `base` or lies below it, by whole segments; both are valid path
/// strings.
pub(crate) fn prefix_contains(base: &str, other: &str) -> bool {
    if base == "/" {
        return true;
    }
    match other.strip_prefix(base) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Accumulates validated, normalised segments into a path string.
#[derive(Default)]
struct PathBuilder {
    path: String,
}

impl PathBuilder {
    fn push(&mut self, segment: &str) -> Result<(), PathError> {
        if segment.is_empty() {
            return Err(PathError::EmptySegment);
        }
        if segment == "." || segment == ".." {
            return Err(PathError::DotSegment);
        }
        let start = self.path.len();
        self.path.push('/');
        for c in segment.nfc() {
            check_char(c)?;
            self.path.push(c);
            if self.path.len() - start - 1 > MAX_SEGMENT_BYTES {
                return Err(PathError::SegmentTooLong);
            }
            if self.path.len() > MAX_PATH_BYTES {
                return Err(PathError::PathTooLong);
            }
        }
        // NFC could in principle turn a segment into "." or ".."; check the result too.
        let normalised = &self.path[start + 1..];
        if normalised == "." || normalised == ".." {
            return Err(PathError::DotSegment);
        }
        Ok(())
    }

    fn finish(self) -> Result<FilePath, PathError> {
        if self.path.is_empty() {
            return Ok(FilePath::root());
        }
        Ok(FilePath(self.path))
    }
}

fn check_char(c: char) -> Result<(), PathError> {
    // `is_control` is Unicode category Cc: C0 (U+0000..=U+001F), DEL and C1 (U+0080..=U+009F).
    if c.is_control() {
        return Err(PathError::ControlChar);
    }
    if c == '\\' {
        return Err(PathError::Backslash);
    }
    Ok(())
}

/// Strict percent-decoding of one URL segment: every `%` must start a two-hex-digit escape.
fn percent_decode_segment(encoded: &str) -> Result<String, PathError> {
    if !encoded.contains('%') {
        return Ok(encoded.to_owned());
    }
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|b| hex_value(*b));
            let lo = bytes.get(i + 2).and_then(|b| hex_value(*b));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::BadPercentEncoding);
            };
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    if out.contains(&b'/') {
        return Err(PathError::EncodedSlash);
    }
    String::from_utf8(out).map_err(|_| PathError::InvalidUtf8)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for FilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for FilePath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for FilePath {
    type Error = PathError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<FilePath> for String {
    fn from(p: FilePath) -> Self {
        p.0
    }
}

impl std::str::FromStr for FilePath {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
