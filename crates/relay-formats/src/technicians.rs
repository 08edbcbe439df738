//! `technicians.json`: the registry of enrolled technicians, what a key
//! presented at authentication is, and the checks an enrolment or a
//! revocation makes. The relay reads and writes the file (and records each
//! change in the audit log first); this module only turns text into a
//! registry and back.

use assent_proto::identity::PublicKey;
use serde::{Deserialize, Serialize};

/// One enrolled technician.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Technician {
    pub name: String,
    /// `ed25519:<base64>`.
    pub key: String,
    pub added: String,
    #[serde(default)]
    pub revoked: Option<String>,
    /// Set by the admin: other technicians may escalate sessions to this
    /// one (support procedure 002, "Escalate if required").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub can_receive_escalations: bool,
}

impl Technician {
    pub fn public_key(&self) -> Option<PublicKey> {
        PublicKey::parse_line(&self.key).ok().map(|(k, _)| k)
    }
    pub fn fingerprint(&self) -> String {
        self.public_key()
            .map(|k| k.fingerprint())
            .unwrap_or_else(|| "invalid".into())
    }
}

/// The registry in `technicians.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Technicians {
    pub list: Vec<Technician>,
}

/// What the registry says of a key presented at authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStatus {
    Enrolled(String),
    Revoked(String),
    Unknown,
}

/// Why an enrolment or a revocation was refused (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("a technician named {0:?} is already enrolled")]
    DuplicateName(String),
    #[error("this key is already enrolled as technician {0:?}")]
    DuplicateKey(String),
    #[error("no technician named {0:?}")]
    UnknownTechnician(String),
    #[error("technician {0:?} is already revoked")]
    AlreadyRevoked(String),
    #[error("{0}")]
    BadInput(String),
}

impl Technicians {
    /// Parses the text of `technicians.json` (a JSON array of technicians).
    pub fn parse(text: &str) -> Result<Technicians, serde_json::Error> {
        Ok(Technicians {
            list: serde_json::from_str(text)?,
        })
    }

    /// The text of `technicians.json`: what [`Technicians::parse`] reads back.
    pub fn to_text(&self) -> Result<String, serde_json::Error> {
        let mut text = serde_json::to_string_pretty(&self.list)?;
        text.push('\n');
        Ok(text)
    }

    pub fn status(&self, key: &PublicKey) -> KeyStatus {
        for t in &self.list {
            if t.public_key().as_ref() == Some(key) {
                return if t.revoked.is_some() {
                    KeyStatus::Revoked(t.name.clone())
                } else {
                    KeyStatus::Enrolled(t.name.clone())
                };
            }
        }
        KeyStatus::Unknown
    }

    /// Enrols a technician from the line `assent-viewer keygen` printed.
    pub fn add(
        &mut self,
        name: &str,
        key_line: &str,
        now: &str,
    ) -> Result<Technician, RegistryError> {
        let name =
            assent_proto::text::single_line("technician name", name, assent_proto::text::MAX_NAME)
                .map_err(|e| RegistryError::BadInput(e.to_string()))?;
        let (key, _hint) =
            PublicKey::parse_line(key_line).map_err(|e| RegistryError::BadInput(e.to_string()))?;
        if self.list.iter().any(|t| t.name == name) {
            return Err(RegistryError::DuplicateName(name));
        }
        if let Some(t) = self.list.iter().find(|t| t.public_key() == Some(key)) {
            return Err(RegistryError::DuplicateKey(t.name.clone()));
        }
        let t = Technician {
            name,
            key: key.to_line(),
            added: now.to_string(),
            revoked: None,
            can_receive_escalations: false,
        };
        self.list.push(t.clone());
        Ok(t)
    }

    /// Whether `name` may receive escalations from now on.
    pub fn set_escalations(
        &mut self,
        name: &str,
        allowed: bool,
    ) -> Result<Technician, RegistryError> {
        let t = self
            .list
            .iter_mut()
            .find(|t| t.name == name)
            .ok_or_else(|| RegistryError::UnknownTechnician(name.to_string()))?;
        if t.revoked.is_some() {
            return Err(RegistryError::AlreadyRevoked(name.to_string()));
        }
        t.can_receive_escalations = allowed;
        Ok(t.clone())
    }

    /// Active technicians who may receive escalations, by name.
    pub fn specialists(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .list
            .iter()
            .filter(|t| t.revoked.is_none() && t.can_receive_escalations)
            .map(|t| t.name.clone())
            .collect();
        names.sort();
        names
    }

    pub fn revoke(&mut self, name: &str, now: &str) -> Result<Technician, RegistryError> {
        let t = self
            .list
            .iter_mut()
            .find(|t| t.name == name)
            .ok_or_else(|| RegistryError::UnknownTechnician(name.to_string()))?;
        if t.revoked.is_some() {
            return Err(RegistryError::AlreadyRevoked(name.to_string()));
        }
        t.revoked = Some(now.to_string());
        Ok(t.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assent_proto::identity::SecretKey;

    #[test]
    fn technician_registry() {
        let mut t = Technicians::default();
        let key = SecretKey::from_seed(&[3; 32]).public();
        let line = format!("{} alice@laptop", key.to_line());
        t.add("alice", &line, "now").unwrap();
        assert_eq!(t.status(&key), KeyStatus::Enrolled("alice".into()));
        assert!(matches!(
            t.add("alice", &line, "now"),
            Err(RegistryError::DuplicateName(_))
        ));
        assert!(matches!(
            t.add("bob", &line, "now"),
            Err(RegistryError::DuplicateKey(_))
        ));
        assert!(matches!(
            t.add("bob", "ed25519:zz", "now"),
            Err(RegistryError::BadInput(_))
        ));
        assert!(matches!(
            t.add("bad\x1bname", &line, "now"),
            Err(RegistryError::BadInput(_))
        ));
        assert!(t.specialists().is_empty());
        assert!(
            t.set_escalations("alice", true)
                .unwrap()
                .can_receive_escalations
        );
        assert_eq!(t.specialists(), vec!["alice".to_string()]);
        assert!(matches!(
            t.set_escalations("carol", true),
            Err(RegistryError::UnknownTechnician(_))
        ));
        t.revoke("alice", "later").unwrap();
        assert!(
            t.specialists().is_empty(),
            "a revoked technician receives nothing"
        );
        assert_eq!(t.status(&key), KeyStatus::Revoked("alice".into()));
        assert!(matches!(
            t.revoke("alice", "x"),
            Err(RegistryError::AlreadyRevoked(_))
        ));
        assert!(matches!(
            t.revoke("carol", "x"),
            Err(RegistryError::UnknownTechnician(_))
        ));
        let other = SecretKey::from_seed(&[4; 32]).public();
        assert_eq!(t.status(&other), KeyStatus::Unknown);
    }

    #[test]
    fn text_round_trips() {
        let mut t = Technicians::default();
        let key = SecretKey::from_seed(&[5; 32]).public();
        t.add("alice", &key.to_line(), "then").unwrap();
        let text = t.to_text().unwrap();
        assert!(text.ends_with("]\n"), "{text}");
        assert_eq!(Technicians::parse(&text).unwrap(), t);
        assert_eq!(Technicians::parse("[]\n").unwrap(), Technicians::default());
        assert!(Technicians::parse("{}").is_err());
    }
}
