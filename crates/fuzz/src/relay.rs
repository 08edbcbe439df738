//! Targets for the relay's own parsers: `relay.toml`, `technicians.json`
//! and the admin socket's JSON requests (and the answers the CLI reads).

use std::cell::RefCell;

use assent_relay::admin::{AdminRequest, AdminResponse};
use assent_relay::config::RelayConfig;
use assent_relay::store::{DataDir, Technician, Technicians};
use tempfile::TempDir;

use crate::alloc::Meter;
use crate::{linear_budget, outcome, outcome_of, Outcome};

thread_local! {
    /// The loaders read files; one scratch directory per thread serves them.
    static SCRATCH: RefCell<Option<TempDir>> = const { RefCell::new(None) };
}

/// Writes `data` to `name` in this thread's scratch directory and passes
/// that directory to `f`.
fn with_file<T>(name: &str, data: &[u8], f: impl FnOnce(&DataDir) -> T) -> T {
    SCRATCH.with(|cell| {
        let mut slot = cell.borrow_mut();
        let dir = slot.get_or_insert_with(|| tempfile::tempdir().expect("temp dir"));
        std::fs::write(dir.path().join(name), data).expect("write scratch file");
        f(&DataDir::new(dir.path()))
    })
}

pub fn relay_config(data: &[u8]) -> Outcome {
    let meter = Meter::start();
    let loaded = with_file("relay.toml", data, |dir| RelayConfig::load(&dir.config()));
    meter.check("relay_config", linear_budget(data.len()));
    if let Ok(config) = &loaded {
        let l = &config.limits;
        assert!(l.max_sessions > 0 && l.max_pending_invites_per_technician > 0);
        assert!(l.invite_ttl_secs > 0 && l.invite_ttl_secs <= 24 * 3600);
        assert!(l.consent_timeout_secs > 0 && l.idle_timeout_secs > 0);
        assert!(l.max_session_secs > 0 && l.auth_timeout_secs > 0);
        assert!(l.connections_per_minute_per_address > 0 && l.code_failures_per_minute > 0);
        // `init` writes the template from the same two values; what it
        // writes must load back to them.
        let template = RelayConfig::template(config.listen, &config.public_name);
        let again = with_file("relay.toml", template.as_bytes(), |dir| {
            RelayConfig::load(&dir.config())
        })
        .expect("the template of a loaded config loads");
        assert_eq!(again.listen, config.listen);
        assert_eq!(again.public_name, config.public_name);
    }
    // The parser's message ends with what it expected; the lines before
    // quote the input, which would make every input an outcome of its own.
    match &loaded {
        Ok(_) => outcome("ok"),
        Err(e) => outcome(e.to_string().lines().last().unwrap_or_default()),
    }
}

pub fn relay_technicians(data: &[u8]) -> Outcome {
    let meter = Meter::start();
    let loaded = with_file("technicians.json", data, Technicians::load);
    meter.check("relay_technicians", linear_budget(data.len()));
    if let Ok(registry) = &loaded {
        // What `save` writes loads back to the same list.
        let text = serde_json::to_string_pretty(&registry.list).expect("serialises");
        let again: Vec<Technician> = serde_json::from_str(&text).expect("re-parses");
        assert_eq!(again, registry.list);
        // Authentication looks every key up; enrolment checks duplicates.
        let mut updated = registry.clone();
        for t in &registry.list {
            if let Some(key) = t.public_key() {
                let _ = registry.status(&key);
            }
            let _ = t.fingerprint();
            let _ = updated.add(&t.name, &t.key, "now");
            let _ = updated.revoke(&t.name, "now");
        }
    }
    outcome_of(&loaded)
}

pub fn admin_request(data: &[u8]) -> Outcome {
    // The socket reads one line as UTF-8 text.
    let Ok(line) = std::str::from_utf8(data) else {
        return outcome("not utf-8");
    };
    let meter = Meter::start();
    let request = serde_json::from_str::<AdminRequest>(line);
    let response = serde_json::from_str::<AdminResponse>(line);
    meter.check("admin_request", linear_budget(data.len()));
    if let Ok(req) = &request {
        let text = serde_json::to_string(req).expect("serialises");
        let again: AdminRequest = serde_json::from_str(&text).expect("re-parses");
        assert_eq!(serde_json::to_string(&again).expect("serialises"), text);
    }
    if let Ok(resp) = &response {
        let text = serde_json::to_string(resp).expect("serialises");
        let again: AdminResponse = serde_json::from_str(&text).expect("re-parses");
        assert_eq!(serde_json::to_string(&again).expect("serialises"), text);
    }
    let kind =
        |r: Result<(), serde_json::Error>| r.map_or_else(|e| e.to_string(), |()| "ok".into());
    outcome(&format!(
        "{} / {}",
        kind(request.map(drop)),
        kind(response.map(drop))
    ))
}
