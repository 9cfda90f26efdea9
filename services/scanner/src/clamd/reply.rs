//! Parsing clamd's one-line answers to `zINSTREAM` and `zPING`.
//!
//! Owns the mapping from clamd's text to [`Verdict`] or [`ClamdError`]; no IO happens here.
//! clamd's replies (with the `z` prefix they end in a NUL byte):
//!
//! ```text
//! stream: OK                                      clean
//! stream: Eicar-Test-Signature.UNOFFICIAL FOUND   infected (the name varies by database)
//! INSTREAM size limit exceeded. ERROR             over clamd's StreamMaxLength
//! stream: <reason> ERROR                          clamd could not scan (temp dir, memory, ...)
//! ```
//!
//! Only the `OK` / `FOUND` / `ERROR` markers are relied on, never exact signature names: custom
//! databases append `.UNOFFICIAL`, official ones do not (INFRA.md).

use super::{ClamdError, Verdict};

/// Longest reply accepted; clamd's answers are one short line. A longer one is not clamd.
pub(super) const MAX_REPLY_BYTES: usize = 4096;

/// Marker clamd uses when the stream exceeds `StreamMaxLength`.
const SIZE_LIMIT_MARKER: &str = "size limit exceeded";

/// Interprets the reply to `zINSTREAM`.
pub(super) fn parse_scan_reply(raw: &[u8]) -> Result<Verdict, ClamdError> {
    let text = reply_text(raw)?;
    let body = text.strip_prefix("stream:").map_or(text, str::trim);
    if let Some(reason) = body.strip_suffix("ERROR") {
        let reason = reason.trim().trim_end_matches('.').trim();
        if reason.contains(SIZE_LIMIT_MARKER) {
            return Err(ClamdError::TooLarge);
        }
        return Err(ClamdError::Protocol(format!("clamd error: {reason}")));
    }
    if body == "OK" {
        return Ok(Verdict::Clean);
    }
    if let Some(name) = body.strip_suffix(" FOUND") {
        let signature = name.trim();
        if signature.is_empty() {
            return Err(ClamdError::Protocol(
                "FOUND without a signature name".into(),
            ));
        }
        return Ok(Verdict::Infected {
            signature: signature.to_string(),
        });
    }
    Err(ClamdError::Protocol(format!(
        "unexpected reply: {}",
        printable(text)
    )))
}

/// Interprets the reply to `zPING`.
pub(super) fn parse_ping_reply(raw: &[u8]) -> Result<(), ClamdError> {
    match reply_text(raw)? {
        "PONG" => Ok(()),
        other => Err(ClamdError::Protocol(format!(
            "PING answered with {}",
            printable(other)
        ))),
    }
}

/// The reply without its NUL terminator and surrounding whitespace.
fn reply_text(raw: &[u8]) -> Result<&str, ClamdError> {
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    let text = std::str::from_utf8(&raw[..end])
        .map_err(|_| ClamdError::Protocol("reply is not UTF-8".into()))?
        .trim();
    if text.is_empty() {
        return Err(ClamdError::Protocol(
            "clamd closed the connection without a reply".into(),
        ));
    }
    Ok(text)
}

/// At most 200 characters of `text` with control characters escaped, for error messages.
fn printable(text: &str) -> String {
    text.chars()
        .take(200)
        .flat_map(char::escape_debug)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_is_clean() {
        assert_eq!(parse_scan_reply(b"stream: OK\0").unwrap(), Verdict::Clean);
        assert_eq!(parse_scan_reply(b"stream: OK\n").unwrap(), Verdict::Clean);
    }

    #[test]
    fn found_carries_the_signature_name() {
        let verdict = parse_scan_reply(b"stream: Eicar-Test-Signature.UNOFFICIAL FOUND\0").unwrap();
        assert_eq!(
            verdict,
            Verdict::Infected {
                signature: "Eicar-Test-Signature.UNOFFICIAL".into()
            }
        );
        let official = parse_scan_reply(b"stream: Win.Test.EICAR_HDB-1 FOUND\0").unwrap();
        assert!(
            matches!(official, Verdict::Infected { signature } if signature == "Win.Test.EICAR_HDB-1")
        );
    }

    #[test]
    fn size_limit_error_is_too_large() {
        let err = parse_scan_reply(b"INSTREAM size limit exceeded. ERROR\0").unwrap_err();
        assert!(matches!(err, ClamdError::TooLarge), "{err:?}");
    }

    #[test]
    fn other_errors_are_protocol_errors_with_the_reason() {
        let err = parse_scan_reply(b"stream: Can't create temporary file ERROR\0").unwrap_err();
        match err {
            ClamdError::Protocol(reason) => assert!(reason.contains("temporary file"), "{reason}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn empty_garbled_and_nameless_replies_are_refused() {
        for raw in [
            &b""[..],
            b"\0",
            b"stream: FOUND\0",
            b"stream: maybe\0",
            b"\xff\xfe\0",
            b"PONG\0",
        ] {
            assert!(
                matches!(parse_scan_reply(raw), Err(ClamdError::Protocol(_))),
                "{raw:?} accepted"
            );
        }
    }

    #[test]
    fn ping_expects_pong() {
        parse_ping_reply(b"PONG\0").unwrap();
        parse_ping_reply(b"PONG\n").unwrap();
        assert!(matches!(
            parse_ping_reply(b"stream: OK\0"),
            Err(ClamdError::Protocol(_))
        ));
        assert!(matches!(
            parse_ping_reply(b""),
            Err(ClamdError::Protocol(_))
        ));
    }

    #[test]
    fn unexpected_text_is_escaped_and_shortened_in_errors() {
        let mut raw = b"weird\r\nX-Injected: 1 ".to_vec();
        raw.extend(std::iter::repeat_n(b'a', 1000));
        let Err(ClamdError::Protocol(message)) = parse_scan_reply(&raw) else {
            panic!("accepted");
        };
        assert!(!message.contains('\n') && message.len() < 300, "{message}");
    }
}
