//! Content sniffing: the type of an upload is decided from its first bytes, never from the
//! name or the client's `Content-Type`. Binary formats come from the `infer` crate; markup
//! that browsers would render or execute (HTML, SVG, XML) is recognised here, because
//! `infer` does not look for it and a disguised HTML file is the classic stored-XSS vector.

/// How many leading bytes are kept for sniffing.
pub const SNIFF_BYTES: usize = 8192;

pub fn sniff(head: &[u8]) -> String {
    if let Some(markup) = markup_type(head) {
        return markup.to_owned();
    }
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_owned();
    }
    if head.is_empty() || looks_like_text(head) {
        return "text/plain".to_owned();
    }
    "application/octet-stream".to_owned()
}

fn markup_type(head: &[u8]) -> Option<&'static str> {
    let text = String::from_utf8_lossy(&head[..head.len().min(1024)]).to_ascii_lowercase();
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if !trimmed.starts_with('<') {
        return None;
    }
    if trimmed.contains("<svg") {
        return Some("image/svg+xml");
    }
    let html_markers = [
        "<!doctype html",
        "<html",
        "<script",
        "<head",
        "<body",
        "<iframe",
        "<img",
        "<a ",
        "<div",
        "<meta",
    ];
    if html_markers.iter().any(|m| trimmed.contains(m)) {
        return Some("text/html");
    }
    if trimmed.starts_with("<?xml") {
        return Some("application/xml");
    }
    None
}

/// UTF-8 (a cut multi-byte sequence at the end is fine) without control characters other
/// than tab, newline and carriage return.
fn looks_like_text(head: &[u8]) -> bool {
    let valid = match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() => match std::str::from_utf8(&head[..e.valid_up_to()]) {
            Ok(s) => s,
            Err(_) => return false,
        },
        Err(_) => return false,
    };
    valid
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
}

#[cfg(test)]
mod tests {
    use super::sniff;

    #[test]
    fn binary_formats_are_recognised_by_content() {
        assert_eq!(sniff(b"%PDF-1.7\n..."), "application/pdf");
        assert_eq!(
            sniff(&[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0]),
            "image/png"
        );
        assert_eq!(
            sniff(&[&b"\x7fELF\x02\x01\x01"[..], &[0u8; 64]].concat()),
            "application/x-executable"
        );
    }

    #[test]
    fn markup_is_recognised_whatever_the_case_or_leading_space() {
        assert_eq!(sniff(b"  \n<!DOCTYPE html><p>x"), "text/html");
        assert_eq!(sniff(b"<ScRiPt>alert(1)</script>"), "text/html");
        assert_eq!(
            sniff(b"\xef\xbb\xbf<svg xmlns='http://www.w3.org/2000/svg'/>"),
            "image/svg+xml"
        );
        assert_eq!(sniff(b"<?xml version='1.0'?><svg/>"), "image/svg+xml");
        assert_eq!(sniff(b"<?xml version='1.0'?><data/>"), "application/xml");
    }

    #[test]
    fn text_and_unknown_binary_fall_back_safely() {
        assert_eq!(sniff(b"hello, world\n"), "text/plain");
        assert_eq!(sniff("grüße".as_bytes()), "text/plain");
        assert_eq!(sniff(b""), "text/plain");
        assert_eq!(
            sniff(&[0u8, 1, 2, 3, 0xff, 0xfe]),
            "application/octet-stream"
        );
        assert_eq!(sniff(b"a <b> c"), "text/plain");
    }
}
