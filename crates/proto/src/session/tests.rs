//! The session machine's properties: nothing forwards before the records,
//! a decision never grants more than asked, exactly one end.
use super::*;

const S: Duration = Duration::from_secs(1);

fn limits() -> SessionLimits {
    SessionLimits {
        consent_timeout: 60 * S,
        idle_timeout: 300 * S,
        max_duration: 3600 * S,
        reconnect_grace: 20 * S,
    }
}

fn joined(scope: Scope, t0: Instant) -> SessionMachine {
    let mut m = SessionMachine::new(scope, t0 + 600 * S, limits());
    assert_eq!(m.handle(Event::AgentJoined, t0), vec![Action::AskConsent]);
    m
}

fn live(scope: Scope, decision: ConsentDecision, t0: Instant) -> SessionMachine {
    let mut m = joined(scope, t0);
    let granted = decision.granted_scope(scope).unwrap();
    assert_eq!(
        m.handle(Event::Consent(decision), t0 + S),
        vec![
            Action::RecordConsent(decision),
            Action::RecordStart(granted)
        ]
    );
    assert!(!m.may_forward(), "live before the records are on disk");
    assert_eq!(
        m.handle(Event::Recorded, t0 + S),
        vec![Action::Start(granted)]
    );
    assert!(m.may_forward());
    m
}

#[test]
fn nothing_forwards_before_consent() {
    let t0 = Instant::now();
    let mut m = SessionMachine::new(Scope::Control, t0 + 600 * S, limits());
    assert!(!m.may_forward());
    assert_eq!(m.handle(Event::Activity, t0), vec![Action::Ignored]);
    m.handle(Event::AgentJoined, t0);
    assert!(!m.may_forward());
    assert_eq!(m.handle(Event::Activity, t0), vec![Action::Ignored]);
    assert!(!m.may_forward());
}

#[test]
fn view_and_control_go_live_with_granted_scope() {
    let t0 = Instant::now();
    let m = live(Scope::Control, ConsentDecision::Control, t0);
    assert!(matches!(
        m.phase(),
        Phase::Live {
            scope: Scope::Control,
            ..
        }
    ));
    let m = live(Scope::Control, ConsentDecision::View, t0);
    assert!(matches!(
        m.phase(),
        Phase::Live {
            scope: Scope::View,
            ..
        }
    ));
    // Control answered to a view-only request still grants only view.
    let m = live(Scope::View, ConsentDecision::Control, t0);
    assert!(matches!(
        m.phase(),
        Phase::Live {
            scope: Scope::View,
            ..
        }
    ));
}

#[test]
fn denied_and_agent_timeout_never_start() {
    let t0 = Instant::now();
    for (decision, reason) in [
        (ConsentDecision::Denied, AbortReason::ConsentDenied),
        (ConsentDecision::Timeout, AbortReason::ConsentTimeout),
    ] {
        let mut m = joined(Scope::View, t0);
        assert_eq!(
            m.handle(Event::Consent(decision), t0 + S),
            vec![Action::RecordConsent(decision), Action::Abort(reason)]
        );
        assert!(!m.may_forward());
        assert!(m.is_over());
        assert_eq!(
            m.handle(Event::Consent(ConsentDecision::Control), t0 + S),
            vec![]
        );
    }
}

#[test]
fn relay_consent_deadline_records_timeout() {
    let t0 = Instant::now();
    let mut m = joined(Scope::View, t0);
    assert_eq!(m.next_deadline(), Some(t0 + 60 * S));
    assert_eq!(m.handle(Event::Tick, t0 + 59 * S), vec![]);
    assert_eq!(
        m.handle(Event::Tick, t0 + 60 * S),
        vec![
            Action::RecordConsent(ConsentDecision::Timeout),
            Action::Abort(AbortReason::ConsentTimeout)
        ]
    );
}

#[test]
fn late_acceptance_is_a_timeout() {
    let t0 = Instant::now();
    let mut m = joined(Scope::View, t0);
    let actions = m.handle(Event::Consent(ConsentDecision::View), t0 + 61 * S);
    assert_eq!(
        actions,
        vec![
            Action::RecordConsent(ConsentDecision::Timeout),
            Action::Abort(AbortReason::ConsentTimeout)
        ]
    );
    assert!(!m.may_forward());
}

#[test]
fn invite_expiry() {
    let t0 = Instant::now();
    let mut m = SessionMachine::new(Scope::View, t0 + 600 * S, limits());
    assert_eq!(m.handle(Event::Tick, t0 + 599 * S), vec![]);
    assert_eq!(
        m.handle(Event::Tick, t0 + 600 * S),
        vec![Action::Abort(AbortReason::InviteExpired)]
    );
    let mut m = SessionMachine::new(Scope::View, t0 + 600 * S, limits());
    assert_eq!(
        m.handle(Event::AgentJoined, t0 + 601 * S),
        vec![Action::Abort(AbortReason::InviteExpired)]
    );
}

#[test]
fn every_end_reason_from_live() {
    let t0 = Instant::now();
    for (ev, reason) in [
        (Event::ViewerClosed, EndReason::ViewerClosed),
        (Event::ViewerLost, EndReason::ViewerLost),
        (Event::AgentEnded, EndReason::AgentEnded),
        (Event::AgentLost, EndReason::AgentLost),
        (Event::AdminKill, EndReason::AdminKilled),
        (Event::TechnicianRevoked, EndReason::TechnicianRevoked),
        (Event::RelayShutdown, EndReason::RelayShutdown),
    ] {
        let mut m = live(Scope::View, ConsentDecision::View, t0);
        assert_eq!(m.handle(ev, t0 + 10 * S), vec![Action::End(reason)]);
        assert_eq!(
            m.phase(),
            Phase::Ended {
                reason,
                duration: 9 * S
            }
        );
        assert!(!m.may_forward());
        // Exactly one end, however many events follow.
        assert_eq!(m.handle(Event::AgentLost, t0 + 11 * S), vec![]);
    }
}

#[test]
fn every_abort_reason_before_live() {
    let t0 = Instant::now();
    for (ev, reason) in [
        (Event::ViewerClosed, AbortReason::Withdrawn),
        (Event::ViewerLost, AbortReason::ViewerLeft),
        (Event::AgentEnded, AbortReason::AgentLeft),
        (Event::AgentLost, AbortReason::AgentLeft),
        (Event::AdminKill, AbortReason::AdminKilled),
        (Event::TechnicianRevoked, AbortReason::TechnicianRevoked),
        (Event::RelayShutdown, AbortReason::RelayShutdown),
    ] {
        let mut m = joined(Scope::View, t0);
        assert_eq!(m.handle(ev, t0), vec![Action::Abort(reason)]);
    }
}

#[test]
fn idle_timeout_resets_on_activity() {
    let t0 = Instant::now();
    let mut m = live(Scope::View, ConsentDecision::View, t0);
    m.handle(Event::Activity, t0 + 200 * S);
    assert_eq!(m.next_deadline(), Some(t0 + 500 * S));
    assert_eq!(m.handle(Event::Tick, t0 + 400 * S), vec![]);
    assert_eq!(
        m.handle(Event::Tick, t0 + 500 * S),
        vec![Action::End(EndReason::IdleTimeout)]
    );
}

#[test]
fn max_duration_even_when_busy() {
    let t0 = Instant::now();
    let mut m = live(Scope::View, ConsentDecision::View, t0);
    let mut t = t0 + S;
    while t < t0 + 3601 * S {
        m.handle(Event::Activity, t);
        t += 100 * S;
    }
    assert_eq!(
        m.handle(Event::Tick, t0 + 3601 * S),
        vec![Action::End(EndReason::MaxDuration)]
    );
}

#[test]
fn consent_in_wrong_phase_is_ignored() {
    let t0 = Instant::now();
    let mut m = SessionMachine::new(Scope::Control, t0 + 600 * S, limits());
    assert_eq!(
        m.handle(Event::Consent(ConsentDecision::Control), t0),
        vec![Action::Ignored]
    );
    assert!(!m.may_forward());
    let mut m = live(Scope::Control, ConsentDecision::View, t0);
    assert_eq!(
        m.handle(Event::Consent(ConsentDecision::Control), t0 + 2 * S),
        vec![Action::Ignored]
    );
    assert!(matches!(
        m.phase(),
        Phase::Live {
            scope: Scope::View,
            ..
        }
    ));
    assert_eq!(
        m.handle(Event::AgentJoined, t0 + 2 * S),
        vec![Action::Ignored]
    );
}

fn recording(scope: Scope, t0: Instant) -> SessionMachine {
    let mut m = joined(scope, t0);
    m.handle(Event::Consent(ConsentDecision::View), t0 + S);
    assert!(matches!(m.phase(), Phase::Recording { .. }));
    m
}

#[test]
fn a_yes_goes_live_only_once_recorded() {
    let t0 = Instant::now();
    let mut m = recording(Scope::View, t0);
    assert!(!m.may_forward());
    // Traffic, ticks and a second answer while the records are written
    // neither start nor forward anything.
    for ev in [
        Event::Activity,
        Event::Tick,
        Event::Consent(ConsentDecision::Control),
    ] {
        let actions = m.handle(ev, t0 + 2 * S);
        assert!(
            !actions.iter().any(|a| matches!(a, Action::Start(_))),
            "{ev:?} started a session before its records: {actions:?}"
        );
        assert!(!m.may_forward());
    }
    assert_eq!(m.next_deadline(), None);
    assert_eq!(
        m.handle(Event::Recorded, t0 + 3 * S),
        vec![Action::Start(Scope::View)]
    );
    assert!(m.may_forward());
}

#[test]
fn a_failed_record_never_starts_and_ends_once() {
    let t0 = Instant::now();
    let mut m = recording(Scope::Control, t0);
    assert_eq!(
        m.handle(Event::RecordFailed, t0 + 2 * S),
        vec![Action::Abort(AbortReason::AuditFailed)]
    );
    assert!(!m.may_forward());
    assert!(m.is_over());
    // A late `Recorded` or any end event changes nothing: one end only.
    for ev in [Event::Recorded, Event::ViewerClosed, Event::RelayShutdown] {
        assert_eq!(m.handle(ev, t0 + 3 * S), vec![]);
    }
    assert_eq!(
        m.phase(),
        Phase::Aborted {
            reason: AbortReason::AuditFailed
        }
    );
}

#[test]
fn record_events_outside_recording_start_nothing() {
    let t0 = Instant::now();
    let mut m = joined(Scope::View, t0);
    assert_eq!(m.handle(Event::Recorded, t0), vec![Action::Ignored]);
    assert!(!m.may_forward());
    let mut m = live(Scope::View, ConsentDecision::View, t0);
    assert_eq!(m.handle(Event::Recorded, t0 + 2 * S), vec![Action::Ignored]);
    assert_eq!(
        m.handle(Event::RecordFailed, t0 + 2 * S),
        vec![Action::Ignored]
    );
    assert!(m.may_forward());
}

#[test]
fn ending_while_recording_is_an_abort() {
    let t0 = Instant::now();
    let mut m = recording(Scope::View, t0);
    assert_eq!(
        m.handle(Event::ViewerLost, t0 + 2 * S),
        vec![Action::Abort(AbortReason::ViewerLeft)]
    );
    assert_eq!(m.handle(Event::Recorded, t0 + 2 * S), vec![]);
    assert!(!m.may_forward());
}

#[test]
fn an_interrupted_side_resumes_within_the_grace_or_is_lost_at_its_end() {
    let t0 = Instant::now();
    let mut m = live(Scope::View, ConsentDecision::View, t0);
    let silent = t0 + 10 * S;
    assert_eq!(
        m.handle(Event::PathSilent(Role::Agent), silent),
        vec![Action::RecordInterrupted(Role::Agent)]
    );
    // One interruption at a time; the other side going quiet adds nothing.
    assert_eq!(
        m.handle(Event::PathSilent(Role::Viewer), silent + S),
        vec![]
    );
    assert_eq!(m.handle(Event::PathBack(Role::Viewer), silent + S), vec![]);
    assert!(m.may_forward(), "an interruption does not end the session");
    assert_eq!(m.next_deadline(), Some(silent + 20 * S));
    assert_eq!(m.handle(Event::Tick, silent + 19 * S), vec![]);
    assert_eq!(
        m.handle(Event::PathBack(Role::Agent), silent + 5 * S),
        vec![Action::RecordResumed(Role::Agent, 5 * S)]
    );
    assert_eq!(m.handle(Event::Tick, silent + 25 * S), vec![]);

    let silent = t0 + 100 * S;
    m.handle(Event::PathSilent(Role::Viewer), silent);
    assert_eq!(
        m.handle(Event::Tick, silent + 20 * S),
        vec![Action::End(EndReason::ViewerLost)]
    );
    assert!(m.is_over());
}

#[test]
fn an_admin_kill_during_an_outage_ends_at_once() {
    let t0 = Instant::now();
    let mut m = live(Scope::Control, ConsentDecision::Control, t0);
    m.handle(Event::PathSilent(Role::Agent), t0 + 2 * S);
    assert_eq!(
        m.handle(Event::AdminKill, t0 + 3 * S),
        vec![Action::End(EndReason::AdminKilled)]
    );
}

#[test]
fn silence_before_live_changes_nothing() {
    let t0 = Instant::now();
    let mut m = joined(Scope::View, t0);
    assert_eq!(m.handle(Event::PathSilent(Role::Agent), t0 + S), vec![]);
    assert!(matches!(m.phase(), Phase::AwaitingConsent { .. }));
}
