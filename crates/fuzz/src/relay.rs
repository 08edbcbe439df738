//! Targets for the relay's own parsers: `relay.toml`, `technicians.json`,
//! the admin socket's JSON requests (and the answers the CLI reads), and
//! the webhook outbox journal.

use assent_relay_formats::admin::{self, AdminRequest, AdminResponse};
use assent_relay_formats::config::RelayConfig;
use assent_relay_formats::outbox::{Journal, MAX_PENDING};
use assent_relay_formats::technicians::Technicians;

use crate::alloc::Meter;
use crate::{linear_budget, outcome, outcome_of, Outcome};

/// The relay reads both files with `read_to_string`, which refuses bytes
/// that are not UTF-8 before any parser sees them.
fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

pub fn relay_config(data: &[u8]) -> Outcome {
    let Some(text) = text(data) else {
        return outcome("not utf-8");
    };
    let meter = Meter::start();
    let loaded = RelayConfig::parse(text);
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
        let again = RelayConfig::parse(&template).expect("the template of a loaded config loads");
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
    let Some(text) = text(data) else {
        return outcome("not utf-8");
    };
    let meter = Meter::start();
    let loaded = Technicians::parse(text);
    meter.check("relay_technicians", linear_budget(data.len()));
    if let Ok(registry) = &loaded {
        // What the relay writes loads back to the same list.
        let text = registry.to_text().expect("serialises");
        let again = Technicians::parse(&text).expect("re-parses");
        assert_eq!(again, *registry);
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
    let request = admin::parse_request(line);
    let response = admin::parse_response(line);
    meter.check("admin_request", linear_budget(data.len()));
    if let Ok(req) = &request {
        let line = admin::to_line(req).expect("serialises");
        let text = std::str::from_utf8(&line).expect("JSON is UTF-8");
        let again: AdminRequest = admin::parse_request(text).expect("re-parses");
        assert_eq!(&again, req);
    }
    if let Ok(resp) = &response {
        let line = admin::to_line(resp).expect("serialises");
        let text = std::str::from_utf8(&line).expect("JSON is UTF-8");
        let again: AdminResponse = admin::parse_response(text).expect("re-parses");
        assert_eq!(&again, resp);
    }
    let kind =
        |r: Result<(), serde_json::Error>| r.map_or_else(|e| e.to_string(), |()| "ok".into());
    outcome(&format!(
        "{} / {}",
        kind(request.map(drop)),
        kind(response.map(drop))
    ))
}

/// The webhook outbox (`webhooks/outbox.jsonl`), which a crash can leave
/// with a torn last line: whatever the bytes, the replay keeps a bounded
/// queue, and what the relay rewrites from it (on every start) replays to
/// the same queue and cursor.
pub fn webhook_outbox(data: &[u8]) -> Outcome {
    // The relay reads the file as bytes and decodes it lossily.
    let text = String::from_utf8_lossy(data);
    let meter = Meter::start();
    let journal = Journal::parse(&text);
    meter.check("webhook_outbox", linear_budget(data.len()));
    assert!(journal.pending.len() <= MAX_PENDING);
    for p in &journal.pending {
        assert_eq!(p.queued.key.len(), 32);
    }
    let again = Journal::parse(&journal.compacted());
    assert_eq!(again.pending, journal.pending);
    assert_eq!(again.fed_seq, journal.fed_seq);
    assert_eq!(again.skipped, 0);
    // Digits do not count in an outcome: words for how many.
    let word = |n: usize| ["none", "one"].get(n).copied().unwrap_or("several");
    outcome(&format!(
        "{} pending, {} skipped, {} attempted",
        word(journal.pending.len()),
        word(journal.skipped),
        word(journal.pending.iter().filter(|p| p.attempts > 0).count())
    ))
}
