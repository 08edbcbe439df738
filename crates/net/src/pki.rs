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
}

/// Freshly generated PEM material. Private keys are written mode 0600 by
/// the caller and never logged.
pub struct RelayPki {
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
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
    if let Some(bad) = names.iter().find(|n| !is_host_name(n)) {
        return Err(PkiError::BadName(format!(
            "{bad:?} is neither an IP address nor a DNS name"
        )));
    }
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
    let issuer = Issuer::new(ca_params, ca_key);

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
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;

    Ok(RelayPki {
        ca_cert_pem: ca_cert.pem(),
        ca_key_pem,
        cert_pem: leaf_cert.pem(),
        key_pem: leaf_key.serialize_pem(),
    })
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

    #[test]
    fn bad_names_are_refused() {
        for bad in ["bad name", "nul\u{0}", "", "-x.example", "a..b"] {
            assert!(generate(&[bad.into()], "CA").is_err(), "{bad:?}");
        }
        assert!(generate(&["::1".into(), "relay-1.example.com".into()], "CA").is_ok());
    }
}
