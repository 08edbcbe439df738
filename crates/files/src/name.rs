//! A file name from the other side made safe to create in a download
//! directory: one plain component, nothing that walks out of the directory
//! (`..`, `/`, `\`), no hidden or device names, no control or bidi
//! characters, and a length every filesystem takes.

/// Longest name kept, in bytes (ext4 allows 255; room for " (999)").
pub const MAX_NAME_BYTES: usize = 200;

/// Names Windows reserves for devices: refused there whatever the
/// extension, and confusing anywhere.
const DEVICE_NAMES: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// The safe form of `raw`: its last path component, without characters
/// that mean something to a shell, a terminal or a filesystem, without
/// leading dots (no hidden files, no `..`), never empty.
pub fn safe_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .map(|c| if is_unsafe(c) { '_' } else { c })
        .collect();
    let trimmed = cleaned
        .trim_start_matches(['.', ' '])
        .trim_end_matches(['.', ' ']);
    let mut name = truncate_keeping_extension(trimmed, MAX_NAME_BYTES);
    let stem = name.split('.').next().unwrap_or("").to_ascii_uppercase();
    if DEVICE_NAMES.contains(&stem.as_str()) {
        name.insert(0, '_');
    }
    if name.is_empty() {
        "file".into()
    } else {
        name
    }
}

fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, ':' | '*' | '?' | '"' | '<' | '>' | '|')
        // Bidi overrides and isolates can make "txt.exe" read "exe.txt".
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// `name` cut to at most `max` bytes on a character boundary, keeping a
/// short extension (up to 16 bytes) at the end.
fn truncate_keeping_extension(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let ext = name
        .rfind('.')
        .map(|i| &name[i..])
        .filter(|e| e.len() <= 16 && e.len() < max)
        .unwrap_or("");
    let mut stem_end = max - ext.len();
    while !name.is_char_boundary(stem_end) {
        stem_end -= 1;
    }
    format!("{}{ext}", &name[..stem_end])
}

/// The `n`th alternative to `name` when it is taken: `report (1).pdf`.
pub fn numbered(name: &str, n: u32) -> String {
    match name.rfind('.').filter(|&i| i > 0) {
        Some(i) => format!("{} ({n}){}", &name[..i], &name[i..]),
        None => format!("{name} ({n})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_become_one_plain_component() {
        let cases = [
            ("report.pdf", "report.pdf"),
            ("../../.bashrc", "bashrc"),
            ("/etc/passwd", "passwd"),
            ("C:\\Windows\\system32\\evil.dll", "evil.dll"),
            ("..", "file"),
            ("", "file"),
            (".", "file"),
            ("NUL", "_NUL"),
            ("nul.txt", "_nul.txt"),
            ("com1", "_com1"),
            ("a\0b\nc\u{1b}[31m", "a_b_c_[31m"),
            ("invoice\u{202e}fdp.exe", "invoice_fdp.exe"),
            ("name with spaces . ", "name with spaces"),
        ];
        for (raw, want) in cases {
            assert_eq!(safe_name(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn long_names_are_cut_on_a_character_boundary_keeping_the_extension() {
        let long = format!("{}.pdf", "é".repeat(5000));
        let name = safe_name(&long);
        assert!(name.len() <= MAX_NAME_BYTES, "{}", name.len());
        assert!(name.ends_with(".pdf"));
        let no_ext = "x".repeat(10_000);
        assert_eq!(safe_name(&no_ext).len(), MAX_NAME_BYTES);
    }

    #[test]
    fn alternatives_keep_the_extension() {
        assert_eq!(numbered("report.pdf", 1), "report (1).pdf");
        assert_eq!(numbered("README", 2), "README (2)");
    }
}
