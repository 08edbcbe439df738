//! `assent-relay check-config`: everything `serve` will need from a data
//! directory, checked without serving (the systemd unit runs it before
//! `serve`), each problem named with what to do about it.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::store::{self, DataDir};

/// One line of the report: a passed check, or a problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub ok: bool,
    pub what: String,
}

fn ok(what: impl Into<String>) -> Finding {
    Finding {
        ok: true,
        what: what.into(),
    }
}

fn problem(what: impl Into<String>) -> Finding {
    Finding {
        ok: false,
        what: what.into(),
    }
}

/// Checks `relay.toml`, the keys and certificates, the technician registry
/// and the audit log of `dir`. Stops early only when `dir` is no relay.
pub fn check(dir: &DataDir) -> Vec<Finding> {
    if let Err(e) = dir.require_relay() {
        return vec![problem(e.to_string())];
    }
    let mut out = vec![private_dir(&dir.root, "data directory")];
    let config = crate::config::load(&dir.config());
    if let Ok(c) = &config {
        out.extend(c.webhooks.iter().map(webhook));
    }
    out.push(match &config {
        Ok(c) => ok(format!(
            "relay.toml: listen {} (UDP), public name {}, metrics {}",
            c.listen,
            c.public_name,
            c.metrics
                .listen
                .map_or("off".to_string(), |a| format!("on {a} (TCP)"))
        )),
        Err(e) => problem(e.to_string()),
    });
    out.push(certificate(&dir.ca_cert(), "CA certificate"));
    out.push(certificate(&dir.cert(), "relay certificate"));
    for key in [dir.key(), dir.signing_key()] {
        out.push(private_file(&key));
    }
    // A relay whose certificate came from a fleet's CA holds no CA key; a
    // fleet key matters in fleet mode only.
    let fleet_mode = matches!(&config, Ok(c) if c.fleet.is_some());
    for (key, needed) in [(dir.ca_key(), false), (dir.fleet_key(), fleet_mode)] {
        if needed || key.exists() {
            out.push(private_file(&key));
        }
    }
    if fleet_mode {
        if let Err(e) = store::load_fleet_key(dir) {
            out.push(problem(e.to_string()));
        }
    }
    out.push(match store::load_signing_key(dir) {
        Ok(_) => ok("signing.key: loads"),
        Err(e) => problem(e.to_string()),
    });
    out.push(match crate::registry::load(dir) {
        Ok(t) => {
            let active = t.list.iter().filter(|t| t.revoked.is_none()).count();
            ok(format!(
                "technicians.json: {active} active technician(s), {} revoked",
                t.list.len() - active
            ))
        }
        Err(e) => problem(e.to_string()),
    });
    out.extend(audit(dir));
    out
}

/// A `[[webhooks]]` table: its name, scheme and events (never the URL,
/// which may carry a token, nor the secret), and its CA file loads.
fn webhook(hook: &assent_relay_formats::webhooks::Webhook) -> Finding {
    if let Err(e) = crate::webhook::client(hook) {
        return problem(format!("{e:#}"));
    }
    let scheme = if hook.url.starts_with("https://") {
        "https"
    } else {
        "http (not encrypted: keep it on the same host or a trusted network)"
    };
    let events: Vec<&str> = hook.events.iter().map(|e| e.as_str()).collect();
    ok(format!(
        "webhook {}: {scheme}, events {}{}",
        hook.name,
        events.join(", "),
        hook.ca
            .as_ref()
            .map_or(String::new(), |ca| format!(", CA {ca}"))
    ))
}

/// The audit directory takes a new file, and the log verifies.
fn audit(dir: &DataDir) -> Vec<Finding> {
    let log = dir.audit();
    let audit_dir = log.parent().unwrap_or(&dir.root).to_path_buf();
    let mut out = vec![match crate::metrics::write_probe(&audit_dir) {
        Ok(()) => ok(format!("{}: writable", audit_dir.display())),
        Err(e) => problem(format!(
            "{}: cannot write there ({e}); the relay must own it",
            audit_dir.display()
        )),
    }];
    if log.exists() {
        out.push(match assent_audit::verify(&log) {
            Ok(n) => ok(format!("{}: {n} records, chain intact", log.display())),
            Err(e) => problem(format!(
                "{}: does not verify ({e}); `serve` will refuse it",
                log.display()
            )),
        });
    }
    out
}

fn certificate(path: &Path, what: &str) -> Finding {
    match std::fs::read(path) {
        Ok(pem) => match assent_net::certs_from_pem(&pem, &path.display().to_string()) {
            Ok(_) => ok(format!("{}: {what} parses", path.display())),
            Err(e) => problem(format!("{what}: {e}")),
        },
        Err(e) => problem(format!("{}: cannot read the {what}: {e}", path.display())),
    }
}

/// A private key: present, and readable by its owner only.
fn private_file(path: &Path) -> Finding {
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => problem(format!(
            "{}: mode {:o} lets others read a private key; run `chmod 600 {}`",
            path.display(),
            m.permissions().mode() & 0o777,
            path.display()
        )),
        Ok(_) => ok(format!("{}: private (owner only)", path.display())),
        Err(e) => problem(format!("{}: {e}", path.display())),
    }
}

fn private_dir(path: &Path, what: &str) -> Finding {
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => problem(format!(
            "{}: {what} mode {:o} lets others in; run `chmod 700 {}`",
            path.display(),
            m.permissions().mode() & 0o777,
            path.display()
        )),
        Ok(_) => ok(format!("{}: private (owner only)", path.display())),
        Err(e) => problem(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(dir: &DataDir) -> Vec<String> {
        check(dir)
            .into_iter()
            .filter(|f| !f.ok)
            .map(|f| f.what)
            .collect()
    }

    #[test]
    fn a_fresh_relay_passes_and_damage_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(&tmp.path().join("relay"));
        assert_eq!(problems(&dir).len(), 1, "not a relay yet");
        store::init(&dir, "127.0.0.1:4433".parse().unwrap(), "relay.test").unwrap();
        assert_eq!(problems(&dir), Vec::<String>::new());

        std::fs::set_permissions(dir.key(), std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(dir.config(), "[limits]\nmax_sessions = 0\n").unwrap();
        std::fs::write(dir.cert(), "not a certificate").unwrap();
        let found = problems(&dir).join("\n");
        assert!(found.contains("chmod 600"), "{found}");
        assert!(found.contains("limits.max_sessions"), "{found}");
        assert!(found.contains("relay certificate"), "{found}");
    }

    #[test]
    fn webhooks_are_checked_without_showing_url_or_secret() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(&tmp.path().join("relay"));
        store::init(&dir, "127.0.0.1:4433".parse().unwrap(), "relay.test").unwrap();
        let hook = "[[webhooks]]\nname = \"hd\"\nurl = \"https://hd.example/x?token=t0k\"\nsecret = \"s3cret-s3cret-s3cret\"\n";
        std::fs::write(dir.config(), hook).unwrap();
        let all: Vec<String> = check(&dir).into_iter().map(|f| f.what).collect();
        let all = all.join("\n");
        assert!(
            all.contains("webhook hd: https, events note_filed"),
            "{all}"
        );
        assert!(!all.contains("t0k") && !all.contains("s3cret"), "{all}");
        std::fs::write(dir.config(), format!("{hook}ca = \"/nonexistent.pem\"\n")).unwrap();
        let found = problems(&dir).join("\n");
        assert!(
            found.contains("webhook hd") && found.contains("/nonexistent.pem"),
            "{found}"
        );
        std::fs::write(dir.config(), hook.replace("https", "ftp")).unwrap();
        let found = problems(&dir).join("\n");
        assert!(found.contains("webhooks[0] (hd).url"), "{found}");
        assert!(!found.contains("s3cret"), "{found}");
    }
}
