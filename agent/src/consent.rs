//! What the agent may do, as a pure type.
//!
//! The user's decision, the requested scope, pause and end decide whether a
//! screen frame may be taken (and whether it must be the placeholder) and
//! whether an input event may be injected. The capture and input handles
//! live inside [`Guarded`], whose only way in is a [`Grant`]. A `Grant` is
//! made only in this module, from the user's answer to a question
//! ([`ConsentQuestion::answer`] at the start, [`ScopeRequests::on_answer`]
//! mid-session), so no code path reaches the screen or the input device
//! without the user's yes. Code elsewhere cannot build one:
//!
//! ```compile_fail
//! use assent_agent::consent::Grant;
//! use assent_proto::wire::Scope;
//! let forged = Grant { scope: Scope::Control }; // private field
//! ```
//!
//! ```compile_fail
//! use assent_agent::consent::Grant;
//! use assent_proto::wire::{ConsentDecision, Scope};
//! let forged = Grant::from_decision(ConsentDecision::Control, Scope::Control); // private
//! ```
//!
//! [`Guarded`]: crate::guarded::Guarded

use std::time::{Duration, Instant};

use assent_proto::wire::{ConsentDecision, Scope, SessionOffer};

/// Proof that the user allowed the session, and with which scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    scope: Scope,
}

/// The question the user is asked when a session is requested, for the
/// scope the relay-signed offer names.
#[derive(Debug)]
pub struct ConsentQuestion {
    requested: Scope,
}

impl ConsentQuestion {
    pub fn for_offer(offer: &SessionOffer) -> ConsentQuestion {
        ConsentQuestion {
            requested: offer.scope,
        }
    }

    /// The user's answer: a [`Grant`] for `view` or `control` (never more
    /// than was requested), nothing for `denied` or `timeout`. Consumed:
    /// one question, one answer.
    pub fn answer(self, decision: ConsentDecision) -> Option<Grant> {
        Grant::from_decision(decision, self.requested)
    }
}

impl Grant {
    /// A `view`/`control` answer to a request. Control is granted only when
    /// it was both requested and chosen. Private: see the module docs.
    fn from_decision(decision: ConsentDecision, requested: Scope) -> Option<Grant> {
        decision
            .granted_scope(requested)
            .map(|scope| Grant { scope })
    }

    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// Less is always allowed: the technician gave up control.
    pub fn narrowed_to_view(self) -> Grant {
        Grant { scope: Scope::View }
    }
}

/// How long a refused request for more scope keeps further ones from
/// reaching the user: a technician (or a patched viewer) must not be able to
/// nag until the user clicks yes.
pub const SCOPE_REASK_AFTER: Duration = Duration::from_secs(60);

/// What to do with a technician's request for another scope mid-session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeRequestAction {
    /// Tell the viewer the scope in force; nothing changes.
    Reply,
    /// Less than in force: apply at once, no question needed.
    Narrow(Grant),
    /// More than in force: ask the user again in the prompt.
    Ask,
}

/// Mid-session scope requests: only the user's new answer widens the scope,
/// one question at a time, and not again soon after a no.
#[derive(Debug, Default)]
pub struct ScopeRequests {
    asking: bool,
    refused_at: Option<Instant>,
}

impl ScopeRequests {
    pub fn on_request(
        &mut self,
        in_force: Grant,
        requested: Scope,
        now: Instant,
    ) -> ScopeRequestAction {
        match (in_force.scope, requested) {
            (Scope::Control, Scope::View) => {
                ScopeRequestAction::Narrow(in_force.narrowed_to_view())
            }
            (a, b) if a == b => ScopeRequestAction::Reply,
            _ if self.asking => ScopeRequestAction::Reply,
            _ if self
                .refused_at
                .is_some_and(|t| now.saturating_duration_since(t) < SCOPE_REASK_AFTER) =>
            {
                ScopeRequestAction::Reply
            }
            _ => {
                self.asking = true;
                ScopeRequestAction::Ask
            }
        }
    }

    pub fn asking(&self) -> bool {
        self.asking
    }

    /// The user's answer to the question; the new grant when they allowed
    /// more, `None` when the scope in force stays.
    pub fn on_answer(&mut self, decision: ConsentDecision, now: Instant) -> Option<Grant> {
        if !std::mem::take(&mut self.asking) {
            return None;
        }
        match decision {
            ConsentDecision::Control => Some(Grant {
                scope: Scope::Control,
            }),
            ConsentDecision::View | ConsentDecision::Denied | ConsentDecision::Timeout => {
                self.refused_at = Some(now);
                None
            }
        }
    }
}

/// What the capture loop must send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramePolicy {
    /// Capture and send the real screen.
    Screen,
    /// Send the "paused" placeholder, never the screen.
    Placeholder,
    /// Send nothing (session over).
    Nothing,
}

/// The consent state of a live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    grant: Grant,
    paused: bool,
    ended: bool,
    dropped_inputs: u64,
}

impl Gate {
    pub fn new(grant: Grant) -> Gate {
        Gate {
            grant,
            paused: false,
            ended: false,
            dropped_inputs: 0,
        }
    }

    pub fn scope(&self) -> Scope {
        self.grant.scope
    }

    pub fn grant(&self) -> Grant {
        self.grant
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    pub fn ended(&self) -> bool {
        self.ended
    }

    pub fn frame_policy(&self) -> FramePolicy {
        if self.ended {
            FramePolicy::Nothing
        } else if self.paused {
            FramePolicy::Placeholder
        } else {
            FramePolicy::Screen
        }
    }

    /// Whether an input event from the technician may be injected now.
    /// Counts the ones that may not.
    pub fn admit_input(&mut self) -> bool {
        let ok = !self.ended && !self.paused && self.grant.scope == Scope::Control;
        if !ok {
            self.dropped_inputs += 1;
        }
        ok
    }

    pub fn dropped_inputs(&self) -> u64 {
        self.dropped_inputs
    }

    /// Returns true when this changed the state (the caller then releases
    /// held keys and tells the viewer).
    pub fn pause(&mut self) -> bool {
        let changed = !self.paused && !self.ended;
        self.paused |= !self.ended;
        changed
    }

    pub fn resume(&mut self) -> bool {
        let changed = self.paused && !self.ended;
        self.paused = false;
        changed
    }

    pub fn end(&mut self) {
        self.ended = true;
    }

    /// A new grant after the user answered a scope-change request again.
    pub fn regrant(&mut self, grant: Grant) {
        if !self.ended {
            self.grant = grant;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(decision: ConsentDecision, requested: Scope) -> Gate {
        Gate::new(Grant::from_decision(decision, requested).expect("granted"))
    }

    #[test]
    fn denied_and_timeout_grant_nothing() {
        for requested in [Scope::View, Scope::Control] {
            assert!(Grant::from_decision(ConsentDecision::Denied, requested).is_none());
            assert!(Grant::from_decision(ConsentDecision::Timeout, requested).is_none());
        }
    }

    #[test]
    fn view_never_injects() {
        for (d, r) in [
            (ConsentDecision::View, Scope::View),
            (ConsentDecision::View, Scope::Control),
            (ConsentDecision::Control, Scope::View),
        ] {
            let mut g = gate(d, r);
            assert_eq!(g.scope(), Scope::View);
            assert!(!g.admit_input());
            assert_eq!(g.frame_policy(), FramePolicy::Screen);
        }
    }

    #[test]
    fn control_injects_until_paused_or_ended() {
        let mut g = gate(ConsentDecision::Control, Scope::Control);
        assert!(g.admit_input());
        assert!(g.pause());
        assert!(!g.pause(), "second pause changes nothing");
        assert!(!g.admit_input());
        assert_eq!(g.frame_policy(), FramePolicy::Placeholder);
        assert!(g.resume());
        assert!(g.admit_input());
        assert_eq!(g.frame_policy(), FramePolicy::Screen);
        g.end();
        assert!(!g.admit_input());
        assert_eq!(g.frame_policy(), FramePolicy::Nothing);
        assert!(!g.resume(), "an ended session stays ended");
        assert!(!g.pause());
        assert_eq!(g.frame_policy(), FramePolicy::Nothing);
        assert_eq!(g.dropped_inputs(), 2, "one while paused, one after the end");
    }

    #[test]
    fn more_scope_only_after_the_users_yes_one_question_at_a_time() {
        let t0 = Instant::now();
        let view = Grant::from_decision(ConsentDecision::View, Scope::Control).unwrap();
        let mut r = ScopeRequests::default();
        assert_eq!(
            r.on_request(view, Scope::View, t0),
            ScopeRequestAction::Reply
        );
        assert_eq!(
            r.on_request(view, Scope::Control, t0),
            ScopeRequestAction::Ask
        );
        // A second request while the user is being asked asks nothing more.
        assert_eq!(
            r.on_request(view, Scope::Control, t0),
            ScopeRequestAction::Reply
        );
        assert!(r.asking());
        let granted = r.on_answer(ConsentDecision::Control, t0).unwrap();
        assert_eq!(granted.scope(), Scope::Control);
        assert!(!r.asking());
        // An answer nobody asked for grants nothing.
        assert_eq!(r.on_answer(ConsentDecision::Control, t0), None);
    }

    #[test]
    fn a_no_keeps_the_scope_and_silences_requests_for_a_while() {
        let t0 = Instant::now();
        let view = Grant::from_decision(ConsentDecision::View, Scope::View).unwrap();
        for no in [
            ConsentDecision::View,
            ConsentDecision::Denied,
            ConsentDecision::Timeout,
        ] {
            let mut r = ScopeRequests::default();
            assert_eq!(
                r.on_request(view, Scope::Control, t0),
                ScopeRequestAction::Ask
            );
            assert_eq!(r.on_answer(no, t0), None);
            let soon = t0 + SCOPE_REASK_AFTER - Duration::from_secs(1);
            assert_eq!(
                r.on_request(view, Scope::Control, soon),
                ScopeRequestAction::Reply
            );
            let later = t0 + SCOPE_REASK_AFTER;
            assert_eq!(
                r.on_request(view, Scope::Control, later),
                ScopeRequestAction::Ask
            );
        }
    }

    #[test]
    fn less_scope_needs_no_question() {
        let control = Grant::from_decision(ConsentDecision::Control, Scope::Control).unwrap();
        let mut r = ScopeRequests::default();
        match r.on_request(control, Scope::View, Instant::now()) {
            ScopeRequestAction::Narrow(g) => assert_eq!(g.scope(), Scope::View),
            other => panic!("{other:?}"),
        }
        assert!(!r.asking());
    }

    #[test]
    fn regrant_can_narrow_and_widen_but_not_revive() {
        let mut g = gate(ConsentDecision::Control, Scope::Control);
        g.regrant(Grant::from_decision(ConsentDecision::View, Scope::Control).unwrap());
        assert!(!g.admit_input());
        g.regrant(Grant::from_decision(ConsentDecision::Control, Scope::Control).unwrap());
        assert!(g.admit_input());
        g.end();
        g.regrant(Grant::from_decision(ConsentDecision::Control, Scope::Control).unwrap());
        assert!(!g.admit_input());
    }
}
