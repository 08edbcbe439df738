//! What a ticket system is told, made from the audit records alone: each
//! committed record updates what is known of its session, and the records a
//! webhook reports (the note, the end, an escalation) become a JSON body
//! with everything known of that session so far. Pure: no I/O, so the
//! relay's live path and its catch-up after a crash make the same bodies.

use std::collections::{HashMap, VecDeque};

use assent_audit::Fields;
use assent_relay_formats::webhooks::HookEvent;
use serde_json::{json, Map, Value};

/// Sessions remembered at most (the oldest are forgotten first): their
/// facts are needed until the note and the user's answer, minutes after
/// the end.
const MAX_SESSIONS: usize = 10_000;

/// One committed audit record, as the writer or the log on disk gives it.
pub struct Committed<'a> {
    pub seq: u64,
    pub time: &'a str,
    pub event: &'a str,
    pub fields: &'a Fields,
}

/// A record a webhook reports: its `type` and which subscription it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub kind: &'static str,
    pub subscription: HookEvent,
}

/// What the audit records said of one session.
#[derive(Debug, Default, Clone)]
struct Facts {
    session: Map<String, Value>,
    note: Option<Map<String, Value>>,
    validation: Option<Value>,
    confirmation: Option<Value>,
    escalation: Option<Value>,
}

/// Follows the audit log and says which records to report.
#[derive(Default)]
pub struct Feeder {
    relay: String,
    sessions: HashMap<String, Facts>,
    order: VecDeque<String>,
}

/// Fields copied from each record into the session's summary, under the
/// name they take there.
const SESSION_FIELDS: &[(&str, &[(&str, &str)])] = &[
    (
        "invite_created",
        &[
            ("ticket", "ticket"),
            ("client", "client"),
            ("technician", "technician"),
            ("technician_key", "technician_key"),
            ("scope", "scope_requested"),
            ("identity_check", "identity_check"),
        ],
    ),
    (
        "consent",
        &[
            ("device", "device"),
            ("device_key", "device_key"),
            ("technician", "technician"),
            ("ticket", "ticket"),
        ],
    ),
    (
        "session_start",
        &[
            ("technician", "technician"),
            ("technician_key", "technician_key"),
            ("ticket", "ticket"),
            ("device", "device"),
            ("device_key", "device_key"),
            ("scope", "scope"),
            ("escalated_from", "escalated_from"),
        ],
    ),
    ("scope_changed", &[("scope", "scope")]),
    (
        "session_end",
        &[
            ("reason", "end_reason"),
            ("duration_ms", "duration_ms"),
            ("recovered_after_crash", "recovered_after_crash"),
        ],
    ),
    ("invite_closed", &[("reason", "end_reason")]),
];

/// When each record happened, under the summary's name.
const SESSION_TIMES: &[(&str, &str)] = &[
    ("invite_created", "requested_at"),
    ("session_start", "started_at"),
    ("session_end", "ended_at"),
    ("invite_closed", "ended_at"),
];

impl Feeder {
    /// `relay` is the relay's public name, carried in every body.
    pub fn new(relay: &str) -> Feeder {
        Feeder {
            relay: relay.to_string(),
            ..Feeder::default()
        }
    }

    /// Takes in one committed record; what to report of it, if anything.
    pub fn feed(&mut self, r: &Committed<'_>) -> Option<Report> {
        let session = r.fields.get("session").and_then(Value::as_str)?;
        if session.is_empty() || !relevant(r) {
            return None;
        }
        let facts = self.facts(session);
        learn(facts, r);
        let report = report_of(facts, r);
        if r.event == "invite_closed" && facts.session.get("consent").is_none() {
            // Nobody joined: nothing more will come for this session.
            self.forget(session);
        }
        report
    }

    /// The body for a record [`Feeder::feed`] reported, as the receiver
    /// gets it on every attempt.
    pub fn body(&self, r: &Committed<'_>, report: Report, key: &str) -> String {
        let session = r.fields.get("session").and_then(Value::as_str);
        let facts = session.and_then(|s| self.sessions.get(s));
        let facts = facts.cloned().unwrap_or_default();
        let mut summary = facts.session.clone();
        summary.insert("id".into(), json!(session));
        let mut body = json!({
            "type": report.kind,
            "idempotency_key": key,
            "relay": self.relay,
            "audit_seq": r.seq,
            "occurred_at": r.time,
            "session": summary,
            "user_validation": facts.validation,
            "user_confirmation": facts.confirmation,
        });
        if report.subscription == HookEvent::NoteFiled {
            let note = facts.note.unwrap_or_default();
            let gaps: Vec<&str> = note
                .get("checklist_incomplete")
                .and_then(Value::as_str)
                .map(|s| {
                    s.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            body["checklist_gaps"] = json!(gaps);
            body["note"] = Value::Object(note);
        }
        if report.subscription == HookEvent::Escalation {
            body["escalation"] = facts.escalation.unwrap_or(Value::Null);
        }
        body.to_string()
    }

    fn facts(&mut self, session: &str) -> &mut Facts {
        if !self.sessions.contains_key(session) {
            if self.order.len() >= MAX_SESSIONS {
                if let Some(old) = self.order.pop_front() {
                    self.sessions.remove(&old);
                }
            }
            self.order.push_back(session.to_string());
        }
        self.sessions.entry(session.to_string()).or_default()
    }

    fn forget(&mut self, session: &str) {
        self.sessions.remove(session);
        self.order.retain(|s| s != session);
    }
}

/// Updates what is known of the record's session.
fn learn(facts: &mut Facts, r: &Committed<'_>) {
    let copy = SESSION_FIELDS.iter().find(|(e, _)| *e == r.event);
    for (from, to) in copy.map(|(_, f)| *f).unwrap_or_default() {
        if let Some(v) = r.fields.get(*from) {
            facts.session.insert((*to).into(), v.clone());
        }
    }
    if let Some((_, name)) = SESSION_TIMES.iter().find(|(e, _)| *e == r.event) {
        facts.session.insert((*name).into(), json!(r.time));
    }
    let field = |k: &str| r.fields.get(k).cloned().unwrap_or(Value::Null);
    match r.event {
        "consent" => {
            let consent = json!({"decision": field("decision"), "at": r.time});
            facts.session.insert("consent".into(), consent);
        }
        "user_validation" => {
            let v = json!({"number": field("number"), "answer": field("answer"), "at": r.time});
            facts.validation = Some(v);
        }
        "user_confirmation" => {
            facts.confirmation = Some(json!({"answer": field("answer"), "at": r.time}));
        }
        "session_note" => {
            let mut note = r.fields.clone();
            for k in ["session", "user_validation", "user_confirmation"] {
                note.remove(k);
            }
            facts.note = Some(note);
        }
        e if is_escalation(e, r.fields) => {
            let mut esc = r.fields.clone();
            esc.insert("record".into(), json!(e));
            esc.insert("at".into(), json!(r.time));
            facts.escalation = Some(Value::Object(esc));
        }
        _ => {}
    }
}

/// Records that tell something of a session a webhook reports.
fn relevant(r: &Committed<'_>) -> bool {
    const OTHERS: [&str; 5] = [
        "consent",
        "user_validation",
        "user_confirmation",
        "session_note",
        "session_note_update",
    ];
    SESSION_FIELDS.iter().any(|(e, _)| *e == r.event)
        || OTHERS.contains(&r.event)
        || is_escalation(r.event, r.fields)
}

/// An escalation's records (`escalation_*`), and the start of the session
/// a session was handed over to.
fn is_escalation(event: &str, fields: &Fields) -> bool {
    event.starts_with("escalation_")
        || (event == "session_start"
            && fields
                .get("escalated_from")
                .is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty())))
}

fn report_of(facts: &Facts, r: &Committed<'_>) -> Option<Report> {
    let (kind, subscription) = match r.event {
        "session_note" => ("note_filed", HookEvent::NoteFiled),
        "session_note_update" if facts.note.is_some() => ("note_updated", HookEvent::NoteFiled),
        "session_end" => ("session_summary", HookEvent::SessionSummary),
        // The user refused or did not answer: the request's summary.
        "invite_closed" if facts.session.contains_key("consent") => {
            ("session_summary", HookEvent::SessionSummary)
        }
        e if is_escalation(e, r.fields) => ("escalation", HookEvent::Escalation),
        _ => return None,
    };
    Some(Report { kind, subscription })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(feeder: &mut Feeder, seq: u64, event: &str, fields: Value) -> Option<(Report, Value)> {
        let Value::Object(fields) = fields else {
            panic!()
        };
        let c = Committed {
            seq,
            time: "2026-12-02T14:00:00.000Z",
            event,
            fields: &fields,
        };
        let report = feeder.feed(&c)?;
        let body = feeder.body(&c, report, "k");
        Some((report, serde_json::from_str(&body).unwrap()))
    }

    #[test]
    fn a_session_becomes_a_summary_and_a_note() {
        let mut f = Feeder::new("relay.example");
        let s = json!("s1");
        let invite = json!({"session": s, "ticket": "T-1", "technician": "alice", "client": "Acme", "scope": "control", "invite": "i"});
        assert!(rec(&mut f, 1, "invite_created", invite).is_none());
        let consent = json!({"session": s, "decision": "view", "device": "pc", "receipt": "ff"});
        assert!(rec(&mut f, 2, "consent", consent).is_none());
        rec(
            &mut f,
            3,
            "session_start",
            json!({"session": s, "scope": "view"}),
        );
        rec(
            &mut f,
            4,
            "user_validation",
            json!({"session": s, "number": 1, "answer": "works", "receipt": "ab"}),
        );
        let (r, end) = rec(
            &mut f,
            5,
            "session_end",
            json!({"session": s, "reason": "viewer_closed", "duration_ms": 5}),
        )
        .unwrap();
        assert_eq!(r.subscription, HookEvent::SessionSummary);
        assert_eq!(end["session"]["ticket"], "T-1");
        assert_eq!(end["session"]["consent"]["decision"], "view");
        assert_eq!(end["session"]["end_reason"], "viewer_closed");
        assert_eq!(end["session"]["scope_requested"], "control");
        assert_eq!(end["user_validation"]["answer"], "works");
        assert!(end.get("note").is_none());
        let note = json!({"session": s, "result": "Resolved. ok", "checklist_incomplete": "within_scope, device_confirmed", "user_validation": "works"});
        let (r, note) = rec(&mut f, 6, "session_note", note).unwrap();
        assert_eq!(r.kind, "note_filed");
        assert_eq!(note["note"]["result"], "Resolved. ok");
        assert!(note["note"].get("user_validation").is_none());
        assert_eq!(
            note["checklist_gaps"],
            json!(["within_scope", "device_confirmed"])
        );
        assert_eq!(note["audit_seq"], 6);
        assert_eq!(note["relay"], "relay.example");
        rec(
            &mut f,
            7,
            "user_confirmation",
            json!({"session": s, "answer": "yes"}),
        );
        let (r, upd) = rec(
            &mut f,
            8,
            "session_note_update",
            json!({"session": s, "user_confirmation": "yes"}),
        )
        .unwrap();
        assert_eq!(r.kind, "note_updated");
        assert_eq!(upd["user_confirmation"]["answer"], "yes");
        assert_eq!(upd["note"]["result"], "Resolved. ok");
    }

    #[test]
    fn refusals_escalations_and_forgetting() {
        let mut f = Feeder::new("r");
        rec(&mut f, 1, "invite_created", json!({"session": "a"}));
        assert!(rec(
            &mut f,
            2,
            "invite_closed",
            json!({"session": "a", "reason": "invite_expired"})
        )
        .is_none());
        assert!(f.sessions.is_empty());
        rec(
            &mut f,
            3,
            "consent",
            json!({"session": "b", "decision": "deny"}),
        );
        let (_, b) = rec(
            &mut f,
            4,
            "invite_closed",
            json!({"session": "b", "reason": "consent_denied"}),
        )
        .unwrap();
        assert_eq!(b["session"]["end_reason"], "consent_denied");
        let (r, e) = rec(
            &mut f,
            5,
            "session_start",
            json!({"session": "c", "escalated_from": "b"}),
        )
        .unwrap();
        assert_eq!(r.subscription, HookEvent::Escalation);
        assert_eq!(e["escalation"]["escalated_from"], "b");
        // The records an escalation writes (relay/src/session/escalation.rs).
        let requested = json!({"session": "b", "handover": "h1", "technician": "alice",
            "specialist": "bob", "trigger": "admin-access", "scope": "control", "ticket": "T-1"});
        let (r, e) = rec(&mut f, 6, "escalation_requested", requested).unwrap();
        assert_eq!(
            (r.kind, r.subscription),
            ("escalation", HookEvent::Escalation)
        );
        assert_eq!(e["escalation"]["record"], "escalation_requested");
        assert_eq!(e["escalation"]["specialist"], "bob");
        let closed = json!({"session": "b", "handover": "h1", "reason": "consent_denied"});
        let (_, e) = rec(&mut f, 7, "escalation_closed", closed).unwrap();
        assert_eq!(e["escalation"]["reason"], "consent_denied");
        let (r, _) = rec(
            &mut f,
            8,
            "session_end",
            json!({"session": "b", "reason": "escalated"}),
        )
        .unwrap();
        assert_eq!(r.subscription, HookEvent::SessionSummary);
        assert!(rec(&mut f, 6, "relay_started", json!({})).is_none());
        for i in 0..(MAX_SESSIONS + 5) {
            rec(
                &mut f,
                7,
                "invite_created",
                json!({"session": format!("s{i}")}),
            );
        }
        assert_eq!(f.sessions.len(), MAX_SESSIONS);
        assert_eq!(f.order.len(), MAX_SESSIONS);
    }
}
