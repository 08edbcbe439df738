//! The relay's PKI: a private CA that agents and viewers trust, and the
//! relay's TLS certificate signed by it. See `certs/README.md` for the trust
//! model and rotation.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("invalid name for the relay certificate: {0}")]
    BadName(String),
    #[error("cannot issue from that CA: {0}")]
    BadCa(String),
}

/// Freshly generated PEM material. Private keys are written mode 0600 by
/// the caller and never logged.
pub struct RelayPki {
    pub ca_cert_pem: String,
    /// `None` when the certificate was issued by another relay's CA.
    pub ca_key_pem: Option<String>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl RelayPki {
    /// Writes `ca.pem`, `cert.pem` and `key.pem` into `dir` and returns
    /// their paths in that order: a relay on loopback for tests. (A
    /// relay's data directory is written by `assent-relay init`, with
    /// its own file modes.)
    pub fn write_into(&self, dir: &std::path::Path) -> std::io::Result<[std::path::PathBuf; 3]> {
        let files = [
            ("ca.pem", &self.ca_cert_pem),
            ("cert.pem", &self.cert_pem),
            ("key.pem", &self.key_pem),
        ];
        let mut paths = files.map(|(name, _)| dir.join(name));
        for ((_, pem), path) in files.iter().zip(&mut paths) {
            std::fs::write(&*path, pem)?;
        }
        Ok(paths)
    }
}

impl std::fmt::Debug for RelayPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelayPki { <keys redacted> }")
    }
}

/// CA valid 10 years; relay certificate 2 years (rotation re-issues it from
/// the same CA, so agents keep working).
const CA_DAYS: i64 = 3650;
const LEAF_DAYS: i64 = 730;

/// Generates a CA and a relay certificate valid for `names` (DNS names or IP
/// addresses).
pub fn generate(names: &[String], ca_common_name: &str) -> Result<RelayPki, PkiError> {
    check_names(names)?;
    let now = OffsetDateTime::now_utc();
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, ca_common_name);
    dn.push(DnType::OrganizationName, "Assent relay");
    ca_params.distinguished_name = dn;
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = now - Duration::hours(1);
    ca_params.not_after = now + Duration::days(CA_DAYS);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_key_pem = ca_key.serialize_pem();
    let (cert_pem, key_pem) = leaf(names, &Issuer::new(ca_params, ca_key))?;
    Ok(RelayPki {
        ca_cert_pem: ca_cert.pem(),
        ca_key_pem: Some(ca_key_pem),
        cert_pem,
        key_pem,
    })
}

/// A relay certificate for `names` issued by an existing CA (another
/// relay's, so that every relay of a fleet is trusted through one
/// `ca.pem`). The CA's key is used here and not kept: `ca_key_pem` of the
/// result is `None`.
pub fn issue(names: &[String], ca_cert_pem: &str, ca_key_pem: &str) -> Result<RelayPki, PkiError> {
    check_names(names)?;
    let ca_key = KeyPair::from_pem(ca_key_pem)
        .map_err(|_| PkiError::BadCa("the CA key is not a PEM private key rcgen can use".into()))?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key)
        .map_err(|_| PkiError::BadCa("the CA certificate cannot be read".into()))?;
    if issuer.key().public_key_raw() != ca_public_key(ca_cert_pem)? {
        return Err(PkiError::BadCa(
            "the CA key does not belong to the CA certificate".into(),
        ));
    }
    let (cert_pem, key_pem) = leaf(names, &issuer)?;
    Ok(RelayPki {
        ca_cert_pem: ca_cert_pem.to_string(),
        ca_key_pem: None,
        cert_pem,
        key_pem,
    })
}

/// The subject public key (the bit string's bytes) of the certificate in `pem`.
fn ca_public_key(pem: &str) -> Result<Vec<u8>, PkiError> {
    let der = crate::certs_from_pem(pem.as_bytes(), "CA certificate")
        .ok()
        .and_then(|c| c.into_iter().next())
        .ok_or_else(|| PkiError::BadCa("no certificate in the CA file".into()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|_| PkiError::BadCa("the CA certificate cannot be read".into()))?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}

fn check_names(names: &[String]) -> Result<(), PkiError> {
    match names.iter().find(|n| !is_host_name(n)) {
        Some(bad) => Err(PkiError::BadName(format!(
            "{bad:?} is neither an IP address nor a DNS name"
        ))),
        None => Ok(()),
    }
}

/// The relay's own certificate and key (PEM), signed by `issuer`.
fn leaf(names: &[String], issuer: &Issuer<'_, KeyPair>) -> Result<(String, String), PkiError> {
    let now = OffsetDateTime::now_utc();
    let mut leaf = CertificateParams::new(names.to_vec())
        .map_err(|e| PkiError::BadName(format!("{names:?}: {e}")))?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().map(String::as_str).unwrap_or("assent-relay"),
    );
    leaf.distinguished_name = dn;
    leaf.use_authority_key_identifier_extension = true;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = now - Duration::hours(1);
    leaf.not_after = now + Duration::days(LEAF_DAYS);
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, issuer)?;
    Ok((leaf_cert.pem(), leaf_key.serialize_pem()))
}

fn is_host_name(name: &str) -> bool {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// SHA-256 over the DER of the first certificate in `pem`, as colon-separated
/// upper-case hex (the form `openssl x509 -fingerprint -sha256` prints), so an
/// admin can compare it by eye when distributing `ca.pem`.
pub fn fingerprint(pem: &str) -> Result<String, crate::NetError> {
    let certs = crate::certs_from_pem(pem.as_bytes(), "certificate")?;
    let der = certs
        .first()
        .ok_or_else(|| crate::NetError::NoCertificate("certificate".into()))?;
    Ok(Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_ca_and_leaf_with_fingerprint() {
        let pki = generate(&["relay.example".into(), "127.0.0.1".into()], "Test CA").unwrap();
        assert!(pki.ca_cert_pem.contains("BEGIN CERTIFICATE"));
        assert!(pki.key_pem.contains("PRIVATE KEY"));
        let fp = fingerprint(&pki.ca_cert_pem).unwrap();
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert_ne!(fp, fingerprint(&pki.cert_pem).unwrap());
        assert!(!format!("{pki:?}").contains("PRIVATE"));
    }

    /// Whether `leaf_pem` chains to `ca_pem` for `name`, as a client checks.
    fn verifies(ca_pem: &str, leaf_pem: &str, name: &str) -> bool {
        use rustls::client::danger::ServerCertVerifier as _;
        let mut roots = rustls::RootCertStore::empty();
        for c in crate::certs_from_pem(ca_pem.as_bytes(), "ca").unwrap() {
            roots.add(c).unwrap();
        }
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots.into(),
            crate::provider(),
        )
        .build()
        .unwrap();
        let leaf = crate::certs_from_pem(leaf_pem.as_bytes(), "leaf").unwrap();
        let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        verifier
            .verify_server_cert(
                &leaf[0],
                &[],
                &name,
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .is_ok()
    }

    #[test]
    fn a_certificate_issued_from_another_relays_ca_chains_to_that_ca_only() {
        let first = generate(&["relay-a.example".into()], "Fleet CA").unwrap();
        let ca_key = first.ca_key_pem.as_deref().unwrap();
        let second = issue(&["relay-b.example".into()], &first.ca_cert_pem, ca_key).unwrap();
        assert!(second.ca_key_pem.is_none(), "the CA key is not handed on");
        assert_eq!(second.ca_cert_pem, first.ca_cert_pem);
        assert!(verifies(
            &first.ca_cert_pem,
            &second.cert_pem,
            "relay-b.example"
        ));
        assert!(!verifies(
            &first.ca_cert_pem,
            &second.cert_pem,
            "relay-a.example"
        ));
        let stranger = generate(&["relay-b.example".into()], "Other CA").unwrap();
        assert!(!verifies(
            &stranger.ca_cert_pem,
            &second.cert_pem,
            "relay-b.example"
        ));
    }

    #[test]
    fn issuing_refuses_a_key_of_another_ca_and_garbage() {
        let first = generate(&["a.example".into()], "CA one").unwrap();
        let other = generate(&["b.example".into()], "CA two").unwrap();
        let wrong_key = other.ca_key_pem.as_deref().unwrap();
        let e = issue(&["c.example".into()], &first.ca_cert_pem, wrong_key).unwrap_err();
        assert!(e.to_string().contains("does not belong"), "{e}");
        assert!(issue(&["c.example".into()], "not a pem", wrong_key).is_err());
        assert!(issue(&["c.example".into()], &first.ca_cert_pem, "junk").is_err());
        let e = issue(&["c.example".into()], &first.ca_cert_pem, "junk").unwrap_err();
        assert!(
            !e.to_string().contains("junk"),
            "no key material in errors: {e}"
        );
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["bad name", "nul\u{0}", "", "-x.example", "a..b"] {
            assert!(generate(&[bad.into()], "CA").is_err(), "{bad:?}");
        }
        assert!(generate(&["::1".into(), "relay-1.example.com".into()], "CA").is_ok());
    }
}
