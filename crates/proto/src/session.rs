//! The relay's pairing and session state machine, without I/O.
//!
//! One machine per invite: it waits for the agent, then for the user's
//! consent, then lives until one of the INTERFACE.md end reasons. The relay's
//! async shell feeds it [`Event`]s with the current time and carries out the
//! returned [`Action`]s in order (audit first, then the effect). A yes does
//! not make the session live: it yields `RecordConsent` and `RecordStart`,
//! and only the shell's `Recorded` event (both records on disk) enters
//! `Live` and yields `Start`; `RecordFailed` ends it before anything flows.
//! The shell forwards session bytes only while
//! [`SessionMachine::may_forward`] holds, which is only in `Live`.

use std::time::{Duration, Instant};

use crate::wire::{ConsentDecision, EndReason, Scope};

/// Time limits of one session (from `relay.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// How long the relay waits for the user's answer before recording `timeout`.
    pub consent_timeout: Duration,
    /// A live session with no bytes either way for this long ends `idle_timeout`.
    pub idle_timeout: Duration,
    /// A live session ends `max_duration` after this long, busy or not.
    pub max_duration: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            consent_timeout: Duration::from_secs(90),
            idle_timeout: Duration::from_secs(15 * 60),
            max_duration: Duration::from_secs(4 * 3600),
        }
    }
}

/// Why a session that never went live was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortReason {
    InviteExpired,
    ConsentDenied,
    ConsentTimeout,
    ViewerLeft,
    AgentLeft,
    AdminKilled,
    TechnicianRevoked,
    RelayShutdown,
    /// The technician closed the request on purpose before the user answered.
    Withdrawn,
    /// The relay could not write the `consent` or `session_start` record.
    AuditFailed,
}

impl AbortReason {
    pub fn as_str(self) -> &'static str {
        match self {
            AbortReason::InviteExpired => "invite_expired",
            AbortReason::ConsentDenied => "consent_denied",
            AbortReason::ConsentTimeout => "consent_timeout",
            AbortReason::ViewerLeft => "viewer_left",
            AbortReason::AgentLeft => "agent_left",
            AbortReason::AdminKilled => "admin_killed",
            AbortReason::TechnicianRevoked => "technician_revoked",
            AbortReason::RelayShutdown => "relay_shutdown",
            AbortReason::Withdrawn => "withdrawn",
            AbortReason::AuditFailed => "audit_failed",
        }
    }
}

/// Where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    AwaitingAgent {
        invite_expires: Instant,
    },
    AwaitingConsent {
        deadline: Instant,
    },
    /// The user said yes; the `consent` and `session_start` records are
    /// being written. Nothing flows yet.
    Recording {
        scope: Scope,
    },
    Live {
        scope: Scope,
        started: Instant,
        last_activity: Instant,
    },
    Ended {
        reason: EndReason,
        duration: Duration,
    },
    Aborted {
        reason: AbortReason,
    },
}

/// Something that happened to the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The invite's code was redeemed by an authenticated agent.
    AgentJoined,
    /// The agent's signed answer (signature already verified by the shell).
    Consent(ConsentDecision),
    /// Bytes moved in either direction.
    Activity,
    /// The technician closed the viewer (a deliberate `End`).
    ViewerClosed,
    /// The viewer's connection died without `End`.
    ViewerLost,
    /// The user ended the session (a deliberate `End`).
    AgentEnded,
    /// The agent's connection died without `End`.
    AgentLost,
    AdminKill,
    TechnicianRevoked,
    RelayShutdown,
    /// The shell wrote every record the last actions asked for.
    Recorded,
    /// The shell could not write a record the last actions asked for.
    RecordFailed,
    /// Time passed; deadlines are checked.
    Tick,
}

/// What the shell must do, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send the signed offer to the agent and tell the viewer who joined.
    AskConsent,
    /// Write the `consent` audit record. If it fails, skip the remaining
    /// actions and feed `RecordFailed`.
    RecordConsent(ConsentDecision),
    /// Write `session_start` (fsynced). Success of every record so far is
    /// fed back as `Recorded`, a failure as `RecordFailed`.
    RecordStart(Scope),
    /// Both records are on disk: tell both sides and start forwarding.
    Start(Scope),
    /// Stop forwarding, write `session_end`, tell both sides.
    End(EndReason),
    /// Tell both sides the session will not happen, and close.
    Abort(AbortReason),
    /// The event made no sense in this phase (e.g. a second consent): ignored,
    /// and the shell logs it as a protocol violation by the sender.
    Ignored,
}

/// The state machine.
#[derive(Debug, Clone)]
pub struct SessionMachine {
    phase: Phase,
    requested: Scope,
    limits: SessionLimits,
}

impl SessionMachine {
    /// A machine for a freshly created invite.
    pub fn new(requested: Scope, invite_expires: Instant, limits: SessionLimits) -> SessionMachine {
        SessionMachine {
            phase: Phase::AwaitingAgent { invite_expires },
            requested,
            limits,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Forwarding is allowed only in a live session.
    pub fn may_forward(&self) -> bool {
        matches!(self.phase, Phase::Live { .. })
    }

    pub fn is_over(&self) -> bool {
        matches!(self.phase, Phase::Ended { .. } | Phase::Aborted { .. })
    }

    /// The next instant at which `Tick` can change something.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::AwaitingAgent { invite_expires } => Some(invite_expires),
            Phase::AwaitingConsent { deadline } => Some(deadline),
            Phase::Recording { .. } => None,
            Phase::Live {
                started,
                last_activity,
                ..
            } => Some(
                (started + self.limits.max_duration).min(last_activity + self.limits.idle_timeout),
            ),
            Phase::Ended { .. } | Phase::Aborted { .. } => None,
        }
    }

    /// Feeds one event; returns the actions to carry out, in order.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        use Phase::*;
        match (self.phase, event) {
            (Ended { .. } | Aborted { .. }, _) => vec![],

            (_, Event::Tick) => self.check_deadlines(now),

            (AwaitingAgent { invite_expires }, Event::AgentJoined) => {
                if now >= invite_expires {
                    return self.abort(AbortReason::InviteExpired);
                }
                self.phase = AwaitingConsent {
                    deadline: now + self.limits.consent_timeout,
                };
                vec![Action::AskConsent]
            }

            (AwaitingConsent { deadline }, Event::Consent(decision)) => {
                // An answer after the deadline is a timeout, whatever it says.
                if now >= deadline {
                    return self.check_deadlines(now);
                }
                match decision.granted_scope(self.requested) {
                    Some(scope) => {
                        self.phase = Recording { scope };
                        vec![Action::RecordConsent(decision), Action::RecordStart(scope)]
                    }
                    None => {
                        let reason = if decision == ConsentDecision::Timeout {
                            AbortReason::ConsentTimeout
                        } else {
                            AbortReason::ConsentDenied
                        };
                        let mut actions = vec![Action::RecordConsent(decision)];
                        actions.extend(self.abort(reason));
                        actions
                    }
                }
            }

            (Recording { scope }, Event::Recorded) => {
                self.phase = Live {
                    scope,
                    started: now,
                    last_activity: now,
                };
                vec![Action::Start(scope)]
            }

            // No record, no session: not a start, not an end.
            (Recording { .. }, Event::RecordFailed) => self.abort(AbortReason::AuditFailed),

            (Live { scope, started, .. }, Event::Activity) => {
                self.phase = Live {
                    scope,
                    started,
                    last_activity: now,
                };
                vec![]
            }

            (Live { started, .. }, ev) => match end_reason(ev) {
                Some(reason) => self.end(reason, started, now),
                None => vec![Action::Ignored],
            },

            (AwaitingAgent { .. } | AwaitingConsent { .. } | Recording { .. }, ev) => {
                match abort_reason(ev) {
                    Some(reason) => self.abort(reason),
                    None => vec![Action::Ignored],
                }
            }
        }
    }

    fn check_deadlines(&mut self, now: Instant) -> Vec<Action> {
        match self.phase {
            Phase::AwaitingAgent { invite_expires } if now >= invite_expires => {
                self.abort(AbortReason::InviteExpired)
            }
            Phase::AwaitingConsent { deadline } if now >= deadline => {
                let mut actions = vec![Action::RecordConsent(ConsentDecision::Timeout)];
                actions.extend(self.abort(AbortReason::ConsentTimeout));
                actions
            }
            Phase::Live {
                started,
                last_activity,
                ..
            } => {
                if now >= started + self.limits.max_duration {
                    self.end(EndReason::MaxDuration, started, now)
                } else if now >= last_activity + self.limits.idle_timeout {
                    self.end(EndReason::IdleTimeout, started, now)
                } else {
                    vec![]
                }
            }
            _ => vec![],
        }
    }

    fn end(&mut self, reason: EndReason, started: Instant, now: Instant) -> Vec<Action> {
        self.phase = Phase::Ended {
            reason,
            duration: now.saturating_duration_since(started),
        };
        vec![Action::End(reason)]
    }

    fn abort(&mut self, reason: AbortReason) -> Vec<Action> {
        self.phase = Phase::Aborted { reason };
        vec![Action::Abort(reason)]
    }
}

fn end_reason(ev: Event) -> Option<EndReason> {
    Some(match ev {
        Event::ViewerClosed => EndReason::ViewerClosed,
        Event::ViewerLost => EndReason::ViewerLost,
        Event::AgentEnded => EndReason::AgentEnded,
        Event::AgentLost => EndReason::AgentLost,
        Event::AdminKill => EndReason::AdminKilled,
        Event::TechnicianRevoked => EndReason::TechnicianRevoked,
        Event::RelayShutdown => EndReason::RelayShutdown,
        Event::AgentJoined
        | Event::Consent(_)
        | Event::Activity
        | Event::Recorded
        | Event::RecordFailed
        | Event::Tick => return None,
    })
}

fn abort_reason(ev: Event) -> Option<AbortReason> {
    Some(match ev {
        // Closing before the user answered is the technician taking the
        // request back; a lost connection is not a decision.
        Event::ViewerClosed => AbortReason::Withdrawn,
        Event::ViewerLost => AbortReason::ViewerLeft,
        Event::AgentEnded | Event::AgentLost => AbortReason::AgentLeft,
        Event::AdminKill => AbortReason::AdminKilled,
        Event::TechnicianRevoked => AbortReason::TechnicianRevoked,
        Event::RelayShutdown => AbortReason::RelayShutdown,
        Event::RecordFailed => AbortReason::AuditFailed,
        Event::AgentJoined
        | Event::Consent(_)
        | Event::Activity
        | Event::Recorded
        | Event::Tick => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn limits() -> SessionLimits {
        SessionLimits {
            consent_timeout: 60 * S,
            idle_timeout: 300 * S,
            max_duration: 3600 * S,
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
}
