//! A specialist asks to take over (escalation). The relay hands this agent
//! a one-time code over the live session; the agent joins the specialist's
//! session with it on a second connection, runs the end-to-end handshake,
//! and asks the user afresh (naming the specialist, the trigger, the scope
//! and the new verification code). A yes hands the capture over: the first
//! session ends (`escalated`) and the specialist's begins; a no, silence or
//! the specialist leaving keeps the first session as it was.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use assent_client::e2e::E2e;
use assent_client::{AgentLive, AgentPending, ClientError};
use assent_proto::escalation::trigger_words;
use assent_proto::identity::{PublicKey, SecretKey};
use assent_proto::wire::{ConsentDecision, RelayMsg, SessionOffer};
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::consent::{ConsentQuestion, Grant};
use crate::live::{Handover, LiveSession};
use crate::prompt::PromptText;
use crate::ui::UiEvent;

/// How long the specialist's viewer has to finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// What joining another session needs (the same relay, CA and device).
#[derive(Clone)]
pub struct Rejoin {
    pub relay: String,
    pub ca: PathBuf,
    pub device: String,
    pub device_key: SecretKey,
}

/// The specialist's session, joined and shaken hands with.
struct Joined {
    pending: AgentPending,
    e2e: E2e,
}

/// The question put to the user.
struct Asking {
    joined: Joined,
    /// When the question was shown; `None` while another question is.
    until: Option<Instant>,
}

/// A specialist's session the user accepted: what the next live session
/// starts from.
pub struct Accepted {
    pub live: AgentLive,
    pub e2e: E2e,
    pub offer: SessionOffer,
    pub grant: Grant,
}

/// What [`Escalation::next`] heard.
pub enum News {
    Joined(Result<(), String>),
    Relay(Result<RelayMsg, ClientError>),
}

/// The escalation in progress, if any.
#[derive(Default)]
pub struct Escalation {
    joining: Option<oneshot::Receiver<Result<Joined, String>>>,
    asking: Option<Asking>,
    pub accepted: Option<Accepted>,
}

impl Escalation {
    /// Waits for the join to finish (pending forever when none runs).
    async fn joined(&mut self) -> Result<(), String> {
        let Some(rx) = self.joining.as_mut() else {
            return std::future::pending().await;
        };
        let result = rx
            .await
            .unwrap_or_else(|_| Err("the join task failed".into()));
        self.joining = None;
        match result {
            Ok(joined) => {
                self.asking = Some(Asking {
                    joined,
                    until: None,
                });
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// When the question shown runs out.
    pub fn deadline(&self) -> Option<tokio::time::Instant> {
        self.asking.as_ref()?.until.map(Into::into)
    }

    /// Whether the user sees the question now.
    pub fn shown(&self) -> bool {
        self.asking.as_ref().is_some_and(|a| a.until.is_some())
    }

    /// A message on the specialist's connection while the user is asked
    /// (pending forever when there is none).
    async fn relay_msg(&mut self) -> Result<RelayMsg, ClientError> {
        match self.asking.as_mut() {
            Some(a) => a.joined.pending.control.recv().await,
            None => std::future::pending().await,
        }
    }

    /// The next news of the escalation: joined, or a message on the
    /// specialist's connection.
    pub async fn next(&mut self) -> News {
        if self.joining.is_some() {
            News::Joined(self.joined().await)
        } else {
            News::Relay(self.relay_msg().await)
        }
    }
}

impl LiveSession {
    /// The relay's code for the specialist's session: join it in the
    /// background (the first session goes on meanwhile).
    pub(crate) fn start_joining(&mut self, code: String) {
        if self.escalation.joining.is_some() || self.escalation.asking.is_some() {
            warn!("a second escalation code while one is in progress; ignored");
            return;
        }
        info!("a specialist asks to take over; joining their session");
        let (tx, rx) = oneshot::channel();
        let rejoin = self.rejoin.clone();
        let session = self.offer.session.clone();
        tokio::spawn(async move {
            let _ = tx.send(join(rejoin, code, session).await);
        });
        self.escalation.joining = Some(rx);
    }

    /// Puts the specialist's question to the user, unless another question
    /// is up (it follows once that one is answered).
    pub(crate) fn show_escalation(&mut self) {
        if self.scope_requests.asking() || self.escalation.shown() {
            return;
        }
        let Some(asking) = self.escalation.asking.as_mut() else {
            return;
        };
        let until = Instant::now() + self.consent_timeout;
        asking.until = Some(until);
        let offer = &asking.joined.pending.offer;
        let text = PromptText::new(offer, asking.joined.e2e.verification_code());
        self.ui.show(UiEvent::Prompt {
            text,
            deadline: until,
        });
    }

    /// The user's answer to the specialist's question. A yes that the relay
    /// recorded ends this session (`Err`): the loop hands over.
    pub(crate) async fn on_escalation_answer(
        &mut self,
        decision: ConsentDecision,
    ) -> Result<(), String> {
        let Some(asking) = self.escalation.asking.take() else {
            return Ok(());
        };
        let Joined { pending, e2e } = asking.joined;
        let offer = pending.offer.clone();
        info!(decision = decision.as_str(), "user answered the specialist");
        let Some(grant) = ConsentQuestion::for_offer(&offer).answer(decision) else {
            let _ = pending.answer(decision).await;
            self.ui.show(self.live_info());
            return Ok(());
        };
        match pending.answer(decision).await {
            Ok(live) => {
                let specialist = crate::prompt::display_name(&offer.technician);
                self.escalation.accepted = Some(Accepted {
                    live,
                    e2e,
                    offer,
                    grant,
                });
                Err(format!("{} took over the session.", specialist))
            }
            Err(e) => {
                warn!(error = %e, "the specialist's session did not start");
                self.ui.show(self.live_info());
                Ok(())
            }
        }
    }

    /// The specialist's session closed while the user was asked (withdrawn,
    /// expired, the relay gone): the question goes, this session stays.
    pub(crate) fn on_escalation_closed(&mut self, why: String) {
        info!(%why, "the specialist's request closed before the answer");
        if self.escalation.asking.take().is_some() {
            self.ui.show(self.live_info());
        }
    }
}

impl LiveSession {
    /// The specialist's connection while the user is asked: anything but a
    /// handshake message means their request closed.
    pub(crate) fn on_specialist_msg(
        &mut self,
        msg: Result<RelayMsg, ClientError>,
    ) -> Result<(), String> {
        match msg {
            Ok(RelayMsg::Handshake(_)) => {}
            Ok(other) => warn!(
                ?other,
                "unexpected message from the specialist's session; ignored"
            ),
            Err(e) => self.on_escalation_closed(e.to_string()),
        }
        Ok(())
    }

    /// The user said yes to the specialist: the last update of this
    /// session is dropped, the gate takes the new grant (held keys are
    /// released), and this session's end is heard from the relay.
    pub(crate) async fn hand_over(self, accepted: Accepted) -> Handover {
        let LiveSession {
            mut guarded,
            mut frames,
            mut control,
            capturing,
            ..
        } = self;
        if capturing {
            let _ = frames.recv().await;
        }
        guarded.regrant(accepted.grant);
        let reason = crate::ending::relay_says_ended(&mut control).await;
        info!(reason = ?reason.map(|r| r.as_str()), "first session ended; handing over");
        control.close_when_ended(Duration::from_secs(1)).await;
        Handover {
            accepted,
            guarded,
            frames,
        }
    }
}

/// Joins the specialist's session and runs the handshake. Only an offer
/// that names this live session as the one escalated is accepted.
async fn join(rejoin: Rejoin, code: String, session: String) -> Result<Joined, String> {
    let Rejoin {
        relay,
        ca,
        device,
        device_key,
    } = rejoin;
    let mut pending = AgentPending::join(&relay, &ca, device_key, &device, &code)
        .await
        .map_err(|e| format!("joining the specialist's session: {e}"))?;
    let from = pending.offer.escalated_from.clone();
    if from.as_ref().map(|f| f.session.as_str()) != Some(session.as_str()) {
        return Err("the offer does not name this session as the one escalated".into());
    }
    let technician_key = PublicKey(pending.offer.technician_key);
    let respond = assent_client::e2e::respond(&mut pending, technician_key);
    let e2e = match tokio::time::timeout(HANDSHAKE_TIMEOUT, respond).await {
        Ok(Ok(e2e)) => e2e,
        Ok(Err(e)) => return Err(format!("handshake with the specialist: {e}")),
        Err(_) => return Err("the specialist's viewer did not finish the handshake".into()),
    };
    Ok(Joined { pending, e2e })
}

/// The lines the prompt adds for an escalation.
pub fn prompt_lines(offer: &SessionOffer) -> Vec<String> {
    let Some(from) = &offer.escalated_from else {
        return Vec::new();
    };
    let first = crate::prompt::display_name(&from.technician);
    vec![
        format!(
            "{first} asks {} to take over. Why: {}.",
            crate::prompt::display_name(&offer.technician),
            assent_proto::text::sanitize(&trigger_words(&from.trigger), 120)
        ),
        format!("If you say no, {first} stays connected as now."),
    ]
}
