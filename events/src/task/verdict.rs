//! Why an upload was quarantined, in words a client can act on ([`quarantine_reason`]).
//!
//! clamd reports more than signature matches: with the hardening of
//! `deploy/clamav/clamd.conf.template` (`AlertEncrypted`, `AlertExceedsMax`, ...) it answers
//! `Heuristics.Encrypted.*` for an archive or document it cannot open and
//! `Heuristics.Limits.Exceeded.*` for one past its recursion, size or file-count limits. Such
//! a file was not shown to be clean, so it is quarantined like malware (task error
//! `malware_detected`, the list of codes is fixed) with a message saying why. No IO here.

/// The client-facing reason for a quarantine, from clamd's signature name (if any).
pub fn quarantine_reason(signature: Option<&str>) -> &'static str {
    let signature = signature.unwrap_or_default();
    if signature.starts_with("Heuristics.Encrypted.") {
        "the upload is encrypted and cannot be scanned, so it is quarantined"
    } else if signature.starts_with("Heuristics.Limits.Exceeded.") {
        "the upload exceeds the scanner's limits (nesting depth, size or number of files) and cannot be fully scanned, so it is quarantined"
    } else if signature.starts_with("Heuristics.") || signature.starts_with("Broken.") {
        "the upload was flagged by the scanner's heuristics and is quarantined"
    } else {
        "the upload was found infected and is quarantined"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unscannable_uploads_say_why_they_are_quarantined() {
        assert!(quarantine_reason(Some("Heuristics.Encrypted.Zip")).contains("encrypted"));
        assert!(quarantine_reason(Some("Heuristics.Encrypted.PDF")).contains("encrypted"));
        assert!(
            quarantine_reason(Some("Heuristics.Limits.Exceeded.MaxRecursion")).contains("limits")
        );
        assert!(quarantine_reason(Some("Broken.Executable")).contains("heuristics"));
        for infected in [Some("Eicar-Test-Signature.UNOFFICIAL"), None] {
            assert!(quarantine_reason(infected).contains("infected"));
        }
    }
}
