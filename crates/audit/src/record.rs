//! One audit record and its hashing.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::canonical::write_object;

/// Event-specific fields of a record (everything but the standard keys).
pub type Fields = Map<String, Value>;

/// Keys every record carries; callers may not pass them as fields.
pub const RESERVED_FIELDS: [&str; 5] = ["seq", "time", "event", "prev", "hash"];

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub seq: u64,
    /// RFC 3339 UTC, e.g. `2026-11-23T14:00:00.123Z`.
    pub time: String,
    pub event: String,
    /// `hash` of the previous record, or [`crate::ZERO_HASH`] for the first.
    pub prev: String,
    /// Lowercase hex SHA-256 of the canonical form without `hash`.
    pub hash: String,
    /// Everything except the five standard keys.
    pub fields: Fields,
}

impl Record {
    /// The full JSON object as it appears on the line, standard keys included.
    pub fn to_json(&self) -> Value {
        let mut map = self.fields.clone();
        map.insert("seq".into(), Value::from(self.seq));
        map.insert("time".into(), Value::String(self.time.clone()));
        map.insert("event".into(), Value::String(self.event.clone()));
        map.insert("prev".into(), Value::String(self.prev.clone()));
        map.insert("hash".into(), Value::String(self.hash.clone()));
        Value::Object(map)
    }

    /// A string-valued key: the standard `time`, `event`, `prev` and `hash`,
    /// or an event-specific field. `None` if absent or not a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        match key {
            "time" => Some(&self.time),
            "event" => Some(&self.event),
            "prev" => Some(&self.prev),
            "hash" => Some(&self.hash),
            _ => self.fields.get(key).and_then(Value::as_str),
        }
    }

    /// Recomputes the record's hash from its content (ignoring the stored
    /// `hash`), exactly as the writer and the verifier do, so another store
    /// of the same records (e.g. a central database) can check them without
    /// re-implementing the canonical form.
    pub fn recompute_hash(&self) -> String {
        self.compute_hash()
    }

    /// The record's line as written to the log: canonical JSON including
    /// `hash`, without the newline. A copy kept elsewhere byte for byte can be
    /// parsed back with [`Record::from_json`] and re-hashed.
    pub fn to_line(&self) -> String {
        let mut out = String::new();
        self.write_line(&mut out);
        out
    }

    /// Splits a parsed JSON object into standard keys and fields. Verifies
    /// nothing; the error says what is missing or of the wrong type.
    pub fn from_json(value: Value) -> Result<Record, String> {
        match value {
            Value::Object(map) => Record::from_map(map),
            _ => Err("not a JSON object".into()),
        }
    }

    /// SHA-256 (lowercase hex) of the canonical form without `hash`.
    pub(crate) fn compute_hash(&self) -> String {
        let mut canonical = String::new();
        self.write_canonical(false, &mut canonical);
        hex::encode(Sha256::digest(canonical.as_bytes()))
    }

    /// Appends the record's line (canonical form including `hash`, no
    /// newline) to `out`.
    pub(crate) fn write_line(&self, out: &mut String) {
        self.write_canonical(true, out);
    }

    fn write_canonical(&self, with_hash: bool, out: &mut String) {
        let seq = Value::from(self.seq);
        let time = Value::String(self.time.clone());
        let event = Value::String(self.event.clone());
        let prev = Value::String(self.prev.clone());
        let hash = Value::String(self.hash.clone());
        let mut standard = vec![
            ("seq", &seq),
            ("time", &time),
            ("event", &event),
            ("prev", &prev),
        ];
        if with_hash {
            standard.push(("hash", &hash));
        }
        // `fields` never holds a standard key (parsing removes them and
        // appending rejects them), so the keys are distinct.
        let fields = self.fields.iter().map(|(k, v)| (k.as_str(), v));
        write_object(standard.into_iter().chain(fields), out);
    }

    /// Splits a parsed line into standard keys and fields. The error says
    /// what is wrong, for `VerifyErrorKind::Malformed`.
    pub(crate) fn from_map(mut map: Fields) -> Result<Record, String> {
        let seq = match map.remove("seq") {
            Some(v) => v.as_u64().ok_or("`seq` is not an unsigned integer")?,
            None => return Err("missing `seq`".into()),
        };
        let mut take_str = |key: &str| match map.remove(key) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(format!("`{key}` is not a string")),
            None => Err(format!("missing `{key}`")),
        };
        let time = take_str("time")?;
        let event = take_str("event")?;
        let prev = take_str("prev")?;
        let hash = take_str("hash")?;
        Ok(Record {
            seq,
            time,
            event,
            prev,
            hash,
            fields: map,
        })
    }

    /// Parses one line (without its newline). Verifies nothing.
    pub(crate) fn parse_line(line: &[u8]) -> Result<Record, String> {
        match serde_json::from_slice::<Value>(line) {
            Ok(Value::Object(map)) => Record::from_map(map),
            Ok(_) => Err("not a JSON object".into()),
            Err(e) => Err(format!("invalid JSON: {e}")),
        }
    }
}
