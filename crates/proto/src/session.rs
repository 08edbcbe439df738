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

use crate::wire::{ConsentDecision, EndReason, Role, Scope};

/// Time limits of one session (from `relay.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// How long the relay waits for the user's answer before recording `timeout`.
    pub consent_timeout: Duration,
    /// A live session with no bytes either way for this long ends `idle_timeout`.
    pub idle_timeout: Duration,
    /// A live session ends `max_duration` after this long, busy or not.
    pub max_duration: Duration,
    /// A live session whose side went silent ends (`agent_lost` /
    /// `viewer_lost`) when it stays silent this long.
    pub reconnect_grace: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            consent_timeout: Duration::from_secs(90),
            idle_timeout: Duration::from_secs(15 * 60),
            max_duration: Duration::from_secs(4 * 3600),
            reconnect_grace: Duration::from_secs(20),
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
        /// The side whose path went silent, and since when.
        interrupted: Option<(Role, Instant)>,
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
    /// The user accepted a specialist's session in this one's place.
    Escalated,
    /// This side's path went silent (no packet for about a second).
    PathSilent(Role),
    /// This side's path carries packets again.
    PathBack(Role),
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
    /// A side's path went silent: write `session_interrupted`, tell the
    /// other side (the agent stops capturing until it is back).
    RecordInterrupted(Role),
    /// The silent side is back after this long: write `session_resumed`,
    /// tell the other side.
    RecordResumed(Role, Duration),
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
                interrupted,
                ..
            } => {
                let limit = (started + self.limits.max_duration)
                    .min(last_activity + self.limits.idle_timeout);
                Some(match interrupted {
                    Some((_, since)) => limit.min(since + self.limits.reconnect_grace),
                    None => limit,
                })
            }
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
                    interrupted: None,
                };
                vec![Action::Start(scope)]
            }

            // No record, no session: not a start, not an end.
            (Recording { .. }, Event::RecordFailed) => self.abort(AbortReason::AuditFailed),

            (Live { .. }, ev) => self.handle_live(ev, now),

            // Only a live session is interrupted; before it, the shell ends
            // a silent side as lost.
            (_, Event::PathSilent(_) | Event::PathBack(_)) => vec![],

            (AwaitingAgent { .. } | AwaitingConsent { .. } | Recording { .. }, ev) => {
                match abort_reason(ev) {
                    Some(reason) => self.abort(reason),
                    None => vec![Action::Ignored],
                }
            }
        }
    }

    /// An event in a live session: traffic, a path going silent or coming
    /// back, or an end.
    fn handle_live(&mut self, event: Event, now: Instant) -> Vec<Action> {
        use Phase::*;
        match (self.phase, event) {
            (Live { .. }, Event::Activity) => {
                if let Live { last_activity, .. } = &mut self.phase {
                    *last_activity = now;
                }
                vec![]
            }

            (Live { interrupted, .. }, Event::PathSilent(side)) => match interrupted {
                Some(_) => vec![],
                None => {
                    self.set_interrupted(Some((side, now)));
                    vec![Action::RecordInterrupted(side)]
                }
            },

            (Live { interrupted, .. }, Event::PathBack(side)) => match interrupted {
                Some((silent, since)) if silent == side => {
                    self.set_interrupted(None);
                    vec![Action::RecordResumed(
                        side,
                        now.saturating_duration_since(since),
                    )]
                }
                _ => vec![],
            },

            (Live { started, .. }, ev) => match end_reason(ev) {
                Some(reason) => self.end(reason, started, now),
                None => vec![Action::Ignored],
            },
            _ => vec![Action::Ignored],
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
                interrupted,
                ..
            } => {
                if now >= started + self.limits.max_duration {
                    self.end(EndReason::MaxDuration, started, now)
                } else if now >= last_activity + self.limits.idle_timeout {
                    self.end(EndReason::IdleTimeout, started, now)
                } else if let Some((side, since)) = interrupted {
                    if now >= since + self.limits.reconnect_grace {
                        let reason = match side {
                            Role::Agent => EndReason::AgentLost,
                            Role::Viewer => EndReason::ViewerLost,
                        };
                        self.end(reason, started, now)
                    } else {
                        vec![]
                    }
                } else {
                    vec![]
                }
            }
            _ => vec![],
        }
    }

    fn set_interrupted(&mut self, value: Option<(Role, Instant)>) {
        if let Phase::Live { interrupted, .. } = &mut self.phase {
            *interrupted = value;
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
        Event::Escalated => EndReason::Escalated,
        Event::PathSilent(_) | Event::PathBack(_) => return None,
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
        // Only a live session is handed over, or interrupted.
        Event::Escalated
        | Event::PathSilent(_)
        | Event::PathBack(_)
        | Event::AgentJoined
        | Event::Consent(_)
        | Event::Activity
        | Event::Recorded
        | Event::Tick => return None,
    })
}

#[cfg(test)]
mod tests;
