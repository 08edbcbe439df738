//! Ed25519 identities (technician keys, device keys, the relay's signing key),
//! their printable forms and the exact byte strings each signature covers.
//!
//! Every signed payload starts with a distinct domain label so a signature made
//! for one purpose can never be presented as another.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::wire::{Confirmation, ConsentDecision, Role, Scope, Validation};

/// Length of the TLS exporter value that binds an authentication signature to
/// one QUIC connection.
pub const EXPORTER_LEN: usize = 32;
/// Label for the TLS exporter (RFC 5705 / RFC 8446 §7.5).
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-assent/1 client auth";

const AUTH_DOMAIN: &[u8] = b"assent/1 auth\0";
const OFFER_DOMAIN: &[u8] = b"assent/1 session offer\0";
const CONSENT_DOMAIN: &[u8] = b"assent/1 consent receipt\0";
const SCOPE_CHANGE_DOMAIN: &[u8] = b"assent/1 scope change receipt\0";
const VALIDATION_DOMAIN: &[u8] = b"assent/1 user validation receipt\0";
const CONFIRMATION_DOMAIN: &[u8] = b"assent/1 user confirmation receipt\0";
const PERMISSION_DOMAIN: &[u8] = b"assent/1 permission receipt\0";
const CLIPBOARD_DOMAIN: &[u8] = b"assent/1 clipboard transfer receipt\0";
const FILE_DOMAIN: &[u8] = b"assent/1 file transfer receipt\0";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("not an Assent public key line (expected `ed25519:<base64> [name]`)")]
    BadPublicKeyLine,
    #[error("the public key is not a valid ed25519 point")]
    InvalidPublicKey,
    #[error("signature has the wrong length")]
    BadSignatureLength,
    #[error("signature does not verify")]
    BadSignature,
    #[error("key file is not an Assent private key")]
    BadKeyFile,
}

/// An ed25519 public key as it travels and is stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

impl PublicKey {
    /// `SHA256:<base64>` of the raw key, the form admins compare by eye
    /// (the same shape OpenSSH prints).
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0);
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest);
        format!("SHA256:{b64}")
    }

    /// The enrolment form: `ed25519:<base64>`.
    pub fn to_line(&self) -> String {
        format!("ed25519:{}", B64.encode(self.0))
    }

    /// Parses `ed25519:<base64>` optionally followed by whitespace and a name
    /// hint, which is returned separately.
    pub fn parse_line(line: &str) -> Result<(PublicKey, Option<String>), IdentityError> {
        let line = line.trim();
        let (key_part, hint) = match line.split_once(char::is_whitespace) {
            Some((k, h)) => (k, Some(h.trim().to_string()).filter(|h| !h.is_empty())),
            None => (line, None),
        };
        let b64 = key_part
            .strip_prefix("ed25519:")
            .ok_or(IdentityError::BadPublicKeyLine)?;
        let raw = B64
            .decode(b64)
            .map_err(|_| IdentityError::BadPublicKeyLine)?;
        let bytes: [u8; 32] = raw
            .try_into()
            .map_err(|_| IdentityError::BadPublicKeyLine)?;
        VerifyingKey::from_bytes(&bytes).map_err(|_| IdentityError::InvalidPublicKey)?;
        Ok((PublicKey(bytes), hint))
    }

    /// Verifies `signature` over `message` (strict verification: rejects
    /// malleable and small-order forms).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), IdentityError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| IdentityError::InvalidPublicKey)?;
        let sig = ed25519_dalek::Signature::from_slice(signature)
            .map_err(|_| IdentityError::BadSignatureLength)?;
        key.verify_strict(message, &sig)
            .map_err(|_| IdentityError::BadSignature)
    }
}

/// A private ed25519 key. Debug never prints the secret; the inner key
/// zeroizes itself on drop, clones included.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(public {})", self.public().fingerprint())
    }
}

const KEY_FILE_HEADER: &str = "assent-ed25519-secret-v1";

impl SecretKey {
    /// A new key from the operating system's CSPRNG.
    pub fn generate() -> Result<SecretKey, crate::RandomError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        crate::random_bytes(seed.as_mut())?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    pub fn from_seed(seed: &[u8; 32]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(seed))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.0.sign(message).to_bytes().to_vec()
    }

    /// The on-disk form: a header line and the base64 seed. Callers write it
    /// with mode 0600; the returned string is zeroized on drop.
    pub fn to_file_contents(&self) -> Zeroizing<String> {
        let seed = Zeroizing::new(self.0.to_bytes());
        Zeroizing::new(format!(
            "{KEY_FILE_HEADER}\n{}\n",
            B64.encode(seed.as_ref())
        ))
    }

    pub fn from_file_contents(contents: &str) -> Result<SecretKey, IdentityError> {
        let mut lines = contents.lines();
        if lines.next().map(str::trim) != Some(KEY_FILE_HEADER) {
            return Err(IdentityError::BadKeyFile);
        }
        let raw = Zeroizing::new(
            B64.decode(lines.next().unwrap_or("").trim())
                .map_err(|_| IdentityError::BadKeyFile)?,
        );
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
            raw.as_slice()
                .try_into()
                .map_err(|_| IdentityError::BadKeyFile)?,
        );
        Ok(SecretKey::from_seed(&seed))
    }
}

/// What a client signs to prove it holds its key on *this* connection: the
/// relay's fresh nonce plus the TLS exporter value, so the signature is
/// useless on any other connection (channel binding).
pub fn auth_payload(role: Role, nonce: &[u8; 32], exporter: &[u8; EXPORTER_LEN]) -> Vec<u8> {
    let mut out = Vec::with_capacity(AUTH_DOMAIN.len() + 1 + 32 + EXPORTER_LEN);
    out.extend_from_slice(AUTH_DOMAIN);
    out.push(role as u8);
    out.extend_from_slice(nonce);
    out.extend_from_slice(exporter);
    out
}

/// What the relay signs when it tells an agent who is asking.
pub fn offer_payload(offer_bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(OFFER_DOMAIN.len() + offer_bytes.len());
    out.extend_from_slice(OFFER_DOMAIN);
    out.extend_from_slice(offer_bytes);
    out
}

/// What the agent signs as its consent receipt: the decision bound to the
/// exact offer it was shown (hashed), so a receipt cannot be moved to another
/// session or technician.
pub fn consent_payload(offer_bytes: &[u8], decision: ConsentDecision) -> Vec<u8> {
    let mut out = Vec::with_capacity(CONSENT_DOMAIN.len() + 32 + 1);
    out.extend_from_slice(CONSENT_DOMAIN);
    out.extend_from_slice(&Sha256::digest(offer_bytes));
    out.push(decision as u8);
    out
}

/// What the agent signs when its user changed the scope of a live session:
/// bound to the offer of that session, the change's number and the scope
/// now in force.
pub fn scope_change_payload(offer_bytes: &[u8], change: u32, scope: Scope) -> Vec<u8> {
    let mut out = Vec::with_capacity(SCOPE_CHANGE_DOMAIN.len() + 32 + 5);
    out.extend_from_slice(SCOPE_CHANGE_DOMAIN);
    out.extend_from_slice(&Sha256::digest(offer_bytes));
    out.extend_from_slice(&change.to_be_bytes());
    out.push(scope as u8);
    out
}

/// What the agent signs when its user answers "please test": bound to the
/// offer of that session, the request's number and the answer.
pub fn validation_payload(offer_bytes: &[u8], number: u32, answer: Validation) -> Vec<u8> {
    let mut out = Vec::with_capacity(VALIDATION_DOMAIN.len() + 32 + 5);
    out.extend_from_slice(VALIDATION_DOMAIN);
    out.extend_from_slice(&Sha256::digest(offer_bytes));
    out.extend_from_slice(&number.to_be_bytes());
    out.push(answer as u8);
    out
}

/// What the agent signs when its user answers "Was your problem solved?"
/// after the end: bound to the offer of that session and the answer.
pub fn confirmation_payload(offer_bytes: &[u8], answer: Confirmation) -> Vec<u8> {
    let mut out = Vec::with_capacity(CONFIRMATION_DOMAIN.len() + 32 + 1);
    out.extend_from_slice(CONFIRMATION_DOMAIN);
    out.extend_from_slice(&Sha256::digest(offer_bytes));
    out.push(answer as u8);
    out
}

/// What the agent signs when its user turns a permission on or off: bound
/// to the offer of that session, the change's number and the new state.
pub fn permission_payload(
    offer_bytes: &[u8],
    change: u32,
    permission: crate::permission::Permission,
    allowed: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(PERMISSION_DOMAIN.len() + 32 + 6);
    out.extend_from_slice(PERMISSION_DOMAIN);
    out.extend_from_slice(&Sha256::digest(offer_bytes));
    out.extend_from_slice(&change.to_be_bytes());
    out.push(permission as u8);
    out.push(u8::from(allowed));
    out
}

/// What the agent signs for one clipboard transfer: bound to the offer of
/// that session, the transfer's number, its direction, size and SHA-256
/// (never the text).
pub fn clipboard_payload(
    offer_bytes: &[u8],
    number: u32,
    direction: crate::permission::Direction,
    bytes: u64,
    sha256: &[u8; 32],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(CLIPBOARD_DOMAIN.len() + 32 + 13 + 32);
    out.extend_from_slice(CLIPBOARD_DOMAIN);
    out.extend_from_slice(&Sha256::digest(offer_bytes));
    out.extend_from_slice(&number.to_be_bytes());
    out.push(direction as u8);
    out.extend_from_slice(&bytes.to_be_bytes());
    out.extend_from_slice(sha256);
    out
}

/// What the agent signs for one file transfer: bound to the offer of that
/// session, the report's number, direction, safe name (hashed), size,
/// SHA-256 and outcome.
pub fn file_payload(offer_bytes: &[u8], report: &crate::files::FileReport) -> Vec<u8> {
    let mut out = Vec::with_capacity(FILE_DOMAIN.len() + 32 * 3 + 14);
    out.extend_from_slice(FILE_DOMAIN);
    out.extend_from_slice(&Sha256::digest(offer_bytes));
    out.extend_from_slice(&report.number.to_be_bytes());
    out.push(report.direction as u8);
    out.extend_from_slice(&Sha256::digest(report.name.as_bytes()));
    out.extend_from_slice(&report.bytes.to_be_bytes());
    out.extend_from_slice(&report.sha256);
    out.push(report.outcome as u8);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipboard_and_permission_receipts_are_bound_to_what_they_say() {
        use crate::permission::{Direction, Permission};
        let key = SecretKey::from_seed(&[9; 32]);
        let sha = [5; 32];
        let sig = key.sign(&clipboard_payload(b"o", 1, Direction::ToUser, 10, &sha));
        let ok = |o: &[u8], n, d, b, h: &[u8; 32]| {
            let payload = clipboard_payload(o, n, d, b, h);
            key.public().verify(&payload, &sig).is_ok()
        };
        assert!(ok(b"o", 1, Direction::ToUser, 10, &sha));
        assert!(!ok(b"p", 1, Direction::ToUser, 10, &sha), "another session");
        assert!(!ok(b"o", 2, Direction::ToUser, 10, &sha), "another number");
        assert!(!ok(b"o", 1, Direction::FromUser, 10, &sha), "other way");
        assert!(!ok(b"o", 1, Direction::ToUser, 11, &sha), "other size");
        assert!(!ok(b"o", 1, Direction::ToUser, 10, &[6; 32]), "other text");
        let on = key.sign(&permission_payload(b"o", 1, Permission::Clipboard, true));
        let off = permission_payload(b"o", 1, Permission::Clipboard, false);
        assert!(key.public().verify(&off, &on).is_err(), "on is not off");
    }

    #[test]
    fn confirmation_receipts_are_bound_to_session_and_answer() {
        let key = SecretKey::from_seed(&[7; 32]);
        let sig = key.sign(&confirmation_payload(b"offer-a", Confirmation::Yes));
        let ok = |offer: &[u8], a| {
            key.public()
                .verify(&confirmation_payload(offer, a), &sig)
                .is_ok()
        };
        assert!(ok(b"offer-a", Confirmation::Yes));
        assert!(!ok(b"offer-b", Confirmation::Yes), "another session");
        assert!(!ok(b"offer-a", Confirmation::No), "another answer");
        assert_ne!(
            confirmation_payload(b"o", Confirmation::Yes),
            consent_payload(b"o", ConsentDecision::View)
        );
    }

    #[test]
    fn validation_receipts_are_bound_to_session_number_and_answer() {
        let key = SecretKey::from_seed(&[9; 32]);
        let sig = key.sign(&validation_payload(b"offer-a", 1, Validation::Works));
        let ok = |offer: &[u8], n, a| {
            key.public()
                .verify(&validation_payload(offer, n, a), &sig)
                .is_ok()
        };
        assert!(ok(b"offer-a", 1, Validation::Works));
        assert!(!ok(b"offer-b", 1, Validation::Works), "another session");
        assert!(!ok(b"offer-a", 2, Validation::Works), "another request");
        assert!(
            !ok(b"offer-a", 1, Validation::StillBroken),
            "another answer"
        );
        // Domain-separated from a scope change with the same numbers.
        assert_ne!(
            validation_payload(b"o", 1, Validation::Works),
            scope_change_payload(b"o", 1, Scope::Control)
        );
    }

    #[test]
    fn public_key_line_round_trips_with_hint() {
        let key = SecretKey::from_seed(&[7; 32]);
        let line = format!("{} alice@laptop", key.public().to_line());
        let (parsed, hint) = PublicKey::parse_line(&line).unwrap();
        assert_eq!(parsed, key.public());
        assert_eq!(hint.as_deref(), Some("alice@laptop"));
    }

    #[test]
    fn bad_key_lines_are_refused() {
        for line in ["", "ed25519:", "rsa:AAAA", "ed25519:!!!!", "ed25519:AAAA"] {
            assert!(PublicKey::parse_line(line).is_err(), "{line}");
        }
    }

    #[test]
    fn signature_is_bound_to_nonce_and_exporter() {
        let key = SecretKey::from_seed(&[1; 32]);
        let payload = auth_payload(Role::Viewer, &[2; 32], &[3; 32]);
        let sig = key.sign(&payload);
        assert!(key.public().verify(&payload, &sig).is_ok());
        let other_conn = auth_payload(Role::Viewer, &[2; 32], &[4; 32]);
        assert_eq!(
            key.public().verify(&other_conn, &sig),
            Err(IdentityError::BadSignature)
        );
        let other_role = auth_payload(Role::Agent, &[2; 32], &[3; 32]);
        assert!(key.public().verify(&other_role, &sig).is_err());
        assert_eq!(
            key.public().verify(&payload, &sig[..10]),
            Err(IdentityError::BadSignatureLength)
        );
    }

    #[test]
    fn key_file_round_trips_and_rejects_garbage() {
        let key = SecretKey::generate().unwrap();
        let contents = key.to_file_contents();
        let back = SecretKey::from_file_contents(&contents).unwrap();
        assert_eq!(back.public(), key.public());
        assert!(SecretKey::from_file_contents("nope").is_err());
        assert!(SecretKey::from_file_contents("assent-ed25519-secret-v1\nAAAA\n").is_err());
        assert!(!format!("{key:?}").contains(&contents[KEY_FILE_HEADER.len()..].trim()[..8]));
    }

    #[test]
    fn consent_receipt_covers_offer_and_decision() {
        let key = SecretKey::from_seed(&[9; 32]);
        let sig = key.sign(&consent_payload(b"offer-1", ConsentDecision::View));
        let pk = key.public();
        assert!(pk
            .verify(&consent_payload(b"offer-1", ConsentDecision::View), &sig)
            .is_ok());
        assert!(pk
            .verify(&consent_payload(b"offer-2", ConsentDecision::View), &sig)
            .is_err());
        assert!(pk
            .verify(&consent_payload(b"offer-1", ConsentDecision::Control), &sig)
            .is_err());
    }

    #[test]
    fn scope_change_receipt_covers_offer_number_and_scope() {
        let key = SecretKey::from_seed(&[9; 32]);
        let sig = key.sign(&scope_change_payload(b"offer-1", 1, Scope::Control));
        let pk = key.public();
        let ok = |offer: &[u8], n, scope| {
            pk.verify(&scope_change_payload(offer, n, scope), &sig)
                .is_ok()
        };
        assert!(ok(b"offer-1", 1, Scope::Control));
        assert!(!ok(b"offer-2", 1, Scope::Control));
        assert!(!ok(b"offer-1", 2, Scope::Control));
        assert!(!ok(b"offer-1", 1, Scope::View));
        // Not interchangeable with a consent receipt.
        assert!(pk
            .verify(&consent_payload(b"offer-1", ConsentDecision::Control), &sig)
            .is_err());
    }

    #[test]
    fn fingerprint_is_stable_and_distinct() {
        let a = SecretKey::from_seed(&[1; 32]).public();
        let b = SecretKey::from_seed(&[2; 32]).public();
        assert!(a.fingerprint().starts_with("SHA256:"));
        assert_eq!(a.fingerprint(), a.fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
    }
}
