//! Canonical JSON: compact, object keys sorted by byte order at every level.
//!
//! Written by hand rather than relying on `serde_json::Map` iterating in
//! sorted order, because any crate in the build enabling serde_json's
//! `preserve_order` feature would silently switch the map to insertion order
//! and change every hash.

use serde_json::Value;

/// Serializes `value` in canonical form: no whitespace, object keys sorted
/// lexicographically by their UTF-8 bytes at every nesting level, strings
/// escaped minimally (`"`, `\`, and control characters only), numbers as
/// serde_json prints them.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_value(value, &mut out);
    out
}

pub(crate) fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(map.iter().map(|(k, v)| (k.as_str(), v)), out),
    }
}

/// Writes an object from `entries` in sorted key order. Taking entries rather
/// than a map lets a record be written from its parts without building (and
/// cloning into) a combined map first. Keys must be distinct.
pub(crate) fn write_object<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a Value)>,
    out: &mut String,
) {
    let mut entries: Vec<(&str, &Value)> = entries.into_iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push('{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(key, out);
        out.push(':');
        write_value(value, out);
    }
    out.push('}');
}

fn write_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if c < ' ' => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let b = c as u8;
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
