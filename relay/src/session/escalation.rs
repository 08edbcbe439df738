//! The first technician's side of an escalation: the handover offered on
//! record (`escalation_requested`), news from the specialist's session,
//! and the end of the handover (`escalation_closed`) when it expires, is
//! declined, or its session ends first. The user's yes ends this session
//! with `escalated`.

use std::time::{Duration, Instant};

use assent_proto::escalation::{self, EscalatedFrom, EscalationState, MAX_SPECIALISTS};
use assent_proto::session::{Event, Phase};
use assent_proto::wire::{InviteRequest, RelayMsg, Scope};
use tracing::{info, warn};

use super::SessionTask;
use crate::fields;
use crate::handover::{secs, Control, Handover, Notice};

/// The handover this session offered.
pub(super) struct Offered {
    id: String,
    specialist: String,
    expires: Instant,
    /// Claimed: the specialist's session now decides how it ends.
    claimed: bool,
}

impl SessionTask {
    pub(super) async fn on_control(&mut self, control: Option<Control>) -> Option<Event> {
        match control? {
            Control::Machine(event) => Some(event),
            Control::Handover(notice) => self.on_notice(*notice).await,
            Control::Reconnect(r) => {
                self.on_reconnect(*r).await;
                None
            }
        }
    }

    /// The technician asks to hand this session to a specialist.
    pub(super) async fn on_escalate(&mut self, specialist: String, trigger: String, scope: Scope) {
        if let Err(message) = self.offer_handover(&specialist, &trigger, scope).await {
            info!(session = %self.id, %message, "escalation refused");
            let state = EscalationState::Refused { message };
            self.tell_escalation(String::new(), specialist, state).await;
        }
    }

    async fn offer_handover(
        &mut self,
        specialist: &str,
        trigger: &str,
        scope: Scope,
    ) -> Result<(), String> {
        if !matches!(self.machine.phase(), Phase::Live { .. }) {
            return Err("only a live session can be escalated".into());
        }
        if self.offered.is_some() {
            return Err("an escalation of this session is already pending".into());
        }
        let trigger = escalation::trigger(trigger)?;
        if specialist == self.technician {
            return Err("a session cannot be escalated to its own technician".into());
        }
        if !self
            .shared
            .technicians
            .specialists()
            .iter()
            .any(|n| n == specialist)
        {
            return Err(format!(
                "{specialist:?} is not a technician who may receive escalations (the relay admin \
                 sets that with `assent-relay technician escalations`)"
            ));
        }
        let device_key = self
            .agent
            .as_ref()
            .ok_or("the user's agent is gone")?
            .device_key;
        let id = assent_proto::random_id(8).map_err(|e| e.to_string())?;
        let fields = fields! {
            "session" => self.id, "handover" => id, "technician" => self.technician,
            "specialist" => specialist, "trigger" => escalation::trigger_kind(&trigger),
            "scope" => scope.as_str(), "ticket" => self.request.ticket,
        };
        if let Err(e) = self
            .shared
            .audit
            .record("escalation_requested", fields)
            .await
        {
            warn!(session = %self.id, error = %e, "escalation not recorded");
            return Err("the relay cannot write its audit log".into());
        }
        let ttl = Duration::from_secs(self.shared.limits().invite_ttl_secs);
        let expires = Instant::now() + ttl;
        let handover = Handover {
            from: EscalatedFrom {
                session: self.id.clone(),
                technician: self.technician.clone(),
                trigger,
            },
            specialist: specialist.to_string(),
            request: InviteRequest {
                scope,
                ..self.request.clone()
            },
            device_key,
            expires,
            from_control: self.own_control().ok_or("the session is ending")?,
        };
        self.shared.lock().handovers.offer(id.clone(), handover);
        info!(session = %self.id, handover = %id, %specialist, "escalation offered");
        self.offered = Some(Offered {
            id: id.clone(),
            specialist: specialist.to_string(),
            expires,
            claimed: false,
        });
        let state = EscalationState::Pending {
            expires_in_secs: secs(ttl),
        };
        self.tell_escalation(id, specialist.to_string(), state)
            .await;
        Ok(())
    }

    fn own_control(&self) -> Option<tokio::sync::mpsc::Sender<Control>> {
        let st = self.shared.lock();
        st.sessions.get(&self.id).map(|e| e.control.clone())
    }

    pub(super) async fn on_list_specialists(&mut self) {
        let mut names = self.shared.technicians.specialists();
        names.retain(|n| *n != self.technician);
        names.truncate(MAX_SPECIALISTS);
        self.viewer.tell(&RelayMsg::Specialists { names }).await;
    }

    /// When an unclaimed handover expires.
    pub(super) fn handover_deadline(&self) -> Option<Instant> {
        self.offered
            .as_ref()
            .filter(|o| !o.claimed)
            .map(|o| o.expires)
    }

    /// Nobody claimed the handover in time: it closes, the session goes on.
    pub(super) async fn expire_handover(&mut self) {
        let Some(offered) = self.offered.as_mut() else {
            return;
        };
        if offered.claimed || Instant::now() < offered.expires {
            return;
        }
        if !self.shared.lock().handovers.withdraw(&offered.id) {
            // Claimed at the last moment: its session says how it ends.
            offered.claimed = true;
            return;
        }
        self.close_handover("expired").await;
    }

    async fn on_notice(&mut self, notice: Notice) -> Option<Event> {
        let offered = self.offered.as_mut()?;
        let (id, specialist) = (offered.id.clone(), offered.specialist.clone());
        match notice {
            Notice::Claimed { session, code } => {
                offered.claimed = true;
                info!(session = %self.id, handover = %id, specialist_session = %session, "handover claimed; asking the user");
                if let Some(a) = self.agent.as_mut() {
                    let msg = RelayMsg::EscalationCode {
                        handover: id.clone(),
                        code,
                    };
                    a.side.tell(&msg).await;
                }
                let state = EscalationState::Claimed;
                self.tell_escalation(id, specialist, state).await;
                None
            }
            Notice::Accepted { session } => {
                info!(session = %self.id, to = %session, "the user accepted the specialist");
                self.escalated_to = Some(session);
                self.offered = None;
                let state = EscalationState::Accepted;
                self.tell_escalation(id, specialist, state).await;
                Some(Event::Escalated)
            }
            Notice::Closed { reason } => {
                self.close_handover(reason).await;
                None
            }
        }
    }

    /// On record and told: the handover is over without taking effect.
    async fn close_handover(&mut self, reason: &str) {
        let Some(offered) = self.offered.take() else {
            return;
        };
        let fields = fields! {
            "session" => self.id, "handover" => offered.id, "reason" => reason,
        };
        let _ = self.shared.audit.record("escalation_closed", fields).await;
        info!(session = %self.id, handover = %offered.id, reason, "escalation closed");
        let state = EscalationState::Closed {
            reason: reason.to_string(),
        };
        self.tell_escalation(offered.id, offered.specialist, state)
            .await;
    }

    /// The session ends: a handover nobody claimed goes with it.
    pub(super) async fn end_handover(&mut self) {
        let unclaimed = match &self.offered {
            Some(o) => !o.claimed && self.shared.lock().handovers.withdraw(&o.id),
            None => false,
        };
        if unclaimed {
            self.close_handover("session_ended").await;
        }
    }

    async fn tell_escalation(
        &mut self,
        handover: String,
        specialist: String,
        state: EscalationState,
    ) {
        let msg = RelayMsg::Escalation {
            handover,
            specialist,
            state,
        };
        self.viewer.tell(&msg).await;
    }
}
