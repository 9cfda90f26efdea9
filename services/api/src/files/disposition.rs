//! A `Content-Disposition: attachment` header that is safe whatever the file name holds:
//! an ASCII fallback with quotes, backslashes, control and bidi characters replaced, plus the
//! exact name RFC 5987-encoded in `filename*`.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// RFC 5987 attr-char: ALPHA / DIGIT / "!#$&+-.^_`|~" are left as they are.
const ATTR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

pub fn attachment(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let fallback = if fallback.trim().is_empty() {
        "download".to_owned()
    } else {
        fallback
    };
    format!(
        "attachment; filename=\"{fallback}\"; filename*=UTF-8''{}",
        utf8_percent_encode(name, ATTR)
    )
}

#[cfg(test)]
mod tests {
    use super::attachment;

    #[test]
    fn plain_names_pass_through() {
        assert_eq!(
            attachment("report.pdf"),
            "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
        );
    }

    #[test]
    fn quotes_newlines_and_bidi_marks_cannot_break_the_header() {
        for name in [
            "a\"b.pdf",
            "a\r\nSet-Cookie: x=1",
            "evil\u{202e}fdp.exe",
            "back\\slash",
            "x;y=z",
        ] {
            let h = attachment(name);
            let fallback = h.split("; filename*=").next().unwrap();
            assert_eq!(fallback.matches('"').count(), 2, "{h}");
            assert!(
                !h.contains('\r') && !h.contains('\n') && !h.contains('\u{202e}'),
                "{h}"
            );
            assert!(h.is_ascii(), "{h}");
        }
        assert!(attachment("evil\u{202e}fdp.exe").contains("%E2%80%AE"));
    }
}
