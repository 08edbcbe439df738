//! Validation of the free text peers send (ticket ids, names, summaries).
//!
//! These strings end up in consent prompts, admin tables and audit records,
//! so anything that could rewrite a terminal (control characters, ANSI
//! escapes, bidi overrides) or bloat a record is refused at the door rather
//! than escaped at every place it is shown.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("{field} is empty")]
    Empty { field: &'static str },
    #[error("{field} is longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("{field} contains a control or formatting character")]
    ForbiddenChar { field: &'static str },
}

/// Limits for each kind of field.
pub const MAX_TICKET: usize = 64;
pub const MAX_NAME: usize = 64;
pub const MAX_CLIENT: usize = 128;
pub const MAX_SUMMARY: usize = 500;
pub const MAX_NOTE_FIELD: usize = 4000;

/// Characters that can change how surrounding text is displayed.
fn is_forbidden(c: char, allow_newlines: bool) -> bool {
    if allow_newlines && c == '\n' {
        return false;
    }
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}'   // zero-width and directional marks
            | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{FEFF}')
}

/// Checks a single-line field. Surrounding whitespace is trimmed.
pub fn single_line(field: &'static str, value: &str, max: usize) -> Result<String, TextError> {
    check(field, value, max, false)
}

/// Like [`single_line`] but an empty value is allowed.
pub fn optional_line(field: &'static str, value: &str, max: usize) -> Result<String, TextError> {
    if value.trim().is_empty() {
        return Ok(String::new());
    }
    check(field, value, max, false)
}

/// How a technician can have verified who asked for help (the support
/// procedure's "confirm user identity"), as `connect --identity-check` takes
/// it; `other:TEXT` says how in their words.
pub const IDENTITY_CHECKS: &[&str] = &[
    "phone-callback",
    "ticket-history",
    "email",
    "in-person",
    "manager",
];

/// Longest `other:TEXT` identity check.
pub const MAX_IDENTITY_CHECK: usize = 100;

/// A valid identity check (one of [`IDENTITY_CHECKS`] or `other:TEXT`), or
/// empty when none was given; the error says what is accepted.
pub fn identity_check(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() || IDENTITY_CHECKS.contains(&value) {
        return Ok(value.to_string());
    }
    match value.strip_prefix("other:") {
        Some(how) => single_line("identity check", how, MAX_IDENTITY_CHECK)
            .map(|how| format!("other:{how}"))
            .map_err(|e| e.to_string()),
        None => Err(format!(
            "unknown identity check {value:?}: expected {} or other:TEXT",
            IDENTITY_CHECKS.join(", ")
        )),
    }
}

/// Multi-line text (session note fields): newlines allowed, nothing else.
pub fn multi_line(field: &'static str, value: &str, max: usize) -> Result<String, TextError> {
    if value.trim().is_empty() {
        return Ok(String::new());
    }
    check(field, value, max, true)
}

fn check(
    field: &'static str,
    value: &str,
    max: usize,
    newlines: bool,
) -> Result<String, TextError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(TextError::Empty { field });
    }
    if value.chars().count() > max {
        return Err(TextError::TooLong { field, max });
    }
    if value.chars().any(|c| is_forbidden(c, newlines)) {
        return Err(TextError::ForbiddenChar { field });
    }
    Ok(value.to_string())
}

/// For text that came from somewhere we cannot refuse (e.g. a hostname):
/// replaces forbidden characters and truncates instead of failing.
pub fn sanitize(value: &str, max: usize) -> String {
    let cleaned: String = value
        .trim()
        .chars()
        .map(|c| if is_forbidden(c, false) { '?' } else { c })
        .take(max)
        .collect();
    if cleaned.is_empty() {
        "unnamed".to_string()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_checks_are_known_words_or_other_text() {
        assert_eq!(identity_check("").unwrap(), "");
        assert_eq!(identity_check("phone-callback").unwrap(), "phone-callback");
        assert_eq!(
            identity_check("other:badge shown on video").unwrap(),
            "other:badge shown on video"
        );
        assert!(identity_check("trust me").is_err());
        assert!(identity_check("other:").is_err());
        assert!(identity_check("other:a\u{1b}[2Jb").is_err());
        assert!(identity_check(&format!("other:{}", "x".repeat(101))).is_err());
    }

    #[test]
    fn accepts_ordinary_text() {
        assert_eq!(
            single_line("ticket", " T-1042 ", MAX_TICKET).unwrap(),
            "T-1042"
        );
        assert_eq!(
            single_line("client", "Müller & Söhne GmbH", MAX_CLIENT).unwrap(),
            "Müller & Söhne GmbH"
        );
    }

    #[test]
    fn refuses_escapes_controls_and_bidi() {
        for bad in ["a\x1b[2Jb", "a\rb", "a\nb", "a\u{202E}b", "x\u{0}"] {
            assert_eq!(
                single_line("ticket", bad, MAX_TICKET),
                Err(TextError::ForbiddenChar { field: "ticket" }),
                "{bad:?}"
            );
        }
        assert!(multi_line("note", "line1\nline2", 100).is_ok());
        assert!(multi_line("note", "line1\x1b[0m", 100).is_err());
    }

    #[test]
    fn refuses_long_and_empty() {
        assert!(single_line("ticket", &"x".repeat(10_000), MAX_TICKET).is_err());
        assert!(single_line("ticket", "   ", MAX_TICKET).is_err());
        assert_eq!(optional_line("summary", "", MAX_SUMMARY).unwrap(), "");
    }

    #[test]
    fn sanitize_never_fails() {
        assert_eq!(sanitize("pc\x1b[31m", 64), "pc?[31m");
        assert_eq!(sanitize(&"h".repeat(100), 10).len(), 10);
        assert_eq!(sanitize("\u{0}", 10), "?");
        assert_eq!(sanitize("", 10), "unnamed");
    }
}
