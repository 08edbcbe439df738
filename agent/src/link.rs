//! Where `join` gets the relay, the CA and the code: the command line, or a
//! join link (`assent://join?relay=…&code=…`, opened from a browser or the
//! desktop) plus the CA this computer already trusts. A link never brings
//! its own trust: the relay it names must have a certificate signed by that
//! CA, or the agent stops before anything is asked or shared.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use assent_proto::link::JoinLink;

/// The system-wide CA an administrator installs for every user.
pub const SYSTEM_CA: &str = "/etc/assent/ca.pem";

/// What `join` connects with.
#[derive(Debug)]
pub struct Target {
    pub relay: String,
    pub ca: PathBuf,
    /// The code as typed or as the link carried it.
    pub code: String,
    pub from_link: bool,
}

/// The relay, CA and code from `join`'s arguments: `--relay`/`--ca` and the
/// code, or a link as the only code argument (`--ca` optional then too).
pub fn resolve(
    relay: Option<String>,
    ca: Option<PathBuf>,
    code: &[String],
) -> anyhow::Result<Target> {
    let (relay, code, from_link) = match code {
        [one] if JoinLink::looks_like_link(one) => {
            let link = JoinLink::parse(one.trim())
                .with_context(|| "this is not a valid Assent join link".to_string())?;
            if let Some(given) = relay.filter(|r| *r != link.relay) {
                bail!(
                    "the link names the relay {} but --relay says {given}; nothing was done",
                    link.relay
                );
            }
            (link.relay, link.code.grouped(), true)
        }
        _ => {
            let Some(relay) = relay else {
                bail!("--relay HOST:PORT is required with a typed code (or give the join link instead)");
            };
            (relay, code.join(" "), false)
        }
    };
    let ca = match ca {
        Some(ca) => ca,
        None => default_ca()?,
    };
    Ok(Target {
        relay,
        ca,
        code,
        from_link,
    })
}

/// `$XDG_CONFIG_HOME/assent/ca.pem`, else [`SYSTEM_CA`].
fn default_ca() -> anyhow::Result<PathBuf> {
    let user = crate::device::config_dir()?.join("ca.pem");
    for candidate in [user.clone(), PathBuf::from(SYSTEM_CA)] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "no CA certificate to check the relay against (a link cannot bring its own trust): \
         put the ca.pem your IT team gave you at {} or {SYSTEM_CA}, or pass --ca",
        user.display()
    )
}

/// A link's relay whose certificate the trusted CA did not sign gets a
/// message that says so, instead of the TLS library's words.
pub fn explain(error: anyhow::Error, target: &Target) -> anyhow::Error {
    let text = format!("{error:#}");
    let untrusted = ["UnknownIssuer", "invalid peer certificate", "BadSignature"]
        .iter()
        .any(|needle| text.contains(needle));
    if target.from_link && untrusted {
        return anyhow::anyhow!(
            "the relay in this link ({}) is not signed by the CA this computer trusts ({}), \
             so the link was refused before anything was asked or shared; ask your IT team",
            target.relay,
            target.ca.display()
        );
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_link_names_the_relay_and_the_code() {
        let ca = Some(PathBuf::from("ca.pem"));
        let link = "assent://join?relay=r.example:4433&code=123-456-789-012-345";
        let t = resolve(None, ca.clone(), &codes(&[link])).unwrap();
        assert_eq!(
            (t.relay.as_str(), t.code.as_str()),
            ("r.example:4433", "123-456-789-012-345")
        );
        assert!(t.from_link);
        let err = resolve(Some("other:1".into()), ca.clone(), &codes(&[link])).unwrap_err();
        assert!(err.to_string().contains("--relay says other:1"), "{err}");
        let err = resolve(None, ca.clone(), &codes(&["assent://join?relay=r:1"])).unwrap_err();
        assert!(
            format!("{err:#}").contains("not a valid Assent join link"),
            "{err:#}"
        );
        let t = resolve(Some("r:1".into()), ca.clone(), &codes(&["123", "456"])).unwrap();
        assert_eq!((t.code.as_str(), t.from_link), ("123 456", false));
        assert!(
            resolve(None, ca, &codes(&["123"])).is_err(),
            "a typed code needs --relay"
        );
    }
}
