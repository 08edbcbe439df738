//! What the agent may do, as a pure type.
//!
//! The user's decision, the requested scope, pause and end decide whether a
//! screen frame may be taken (and whether it must be the placeholder) and
//! whether an input event may be injected. The capture and input handles
//! live inside [`Guarded`], whose only way in is a [`Grant`] that only
//! [`Grant::from_decision`] makes, so no code path reaches the screen or
//! the input device without the user's yes.

use assent_proto::wire::{ConsentDecision, Scope};

/// Proof that the user allowed the session, and with which scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    scope: Scope,
}

impl Grant {
    /// The only constructor: a `view`/`control` answer to a request. Control
    /// is granted only when it was both requested and chosen.
    pub fn from_decision(decision: ConsentDecision, requested: Scope) -> Option<Grant> {
        decision
            .granted_scope(requested)
            .map(|scope| Grant { scope })
    }

    pub fn scope(&self) -> Scope {
        self.scope
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
