//! Escalation from the specialist's side: the handovers waiting for a
//! technician, and claiming one (the relay then asks the user afresh; the
//! code goes to the user's agent, never to the specialist).

use std::path::Path;

use assent_proto::escalation::HandoverInfo;
use assent_proto::identity::SecretKey;
use assent_proto::wire::{ClientMsg, InviteRequest, RelayMsg};

use crate::{authenticate, unexpected, ClientError, Invite, Viewer};

/// A handover the specialist claimed: the session it opened and what it
/// carries over from the escalated one.
#[derive(Debug)]
pub struct Claimed {
    pub viewer: Viewer,
    pub request: InviteRequest,
    pub from_technician: String,
    pub trigger: String,
}

impl Viewer {
    /// The handovers waiting for this technician.
    pub async fn handovers(
        relay: &str,
        ca: &Path,
        key: &SecretKey,
    ) -> Result<Vec<HandoverInfo>, ClientError> {
        let (mut control, _) = authenticate(relay, ca, key).await?;
        control.send(&ClientMsg::ListHandovers).await?;
        let list = match control.recv().await? {
            RelayMsg::Handovers { list } => list,
            other => return Err(unexpected("Handovers", &other)),
        };
        drop(control);
        Ok(list)
    }

    /// Claims handover `id`: the relay asks the user afresh, as for an
    /// invite whose code only the user's agent receives.
    pub async fn claim_handover(
        relay: &str,
        ca: &Path,
        key: &SecretKey,
        id: &str,
    ) -> Result<Claimed, ClientError> {
        let (mut control, technician) = authenticate(relay, ca, key).await?;
        let handover = id.to_string();
        control.send(&ClientMsg::ClaimHandover { handover }).await?;
        match control.recv().await? {
            RelayMsg::HandoverClaimed {
                invite,
                request,
                from_technician,
                trigger,
                expires_in_secs,
            } => Ok(Claimed {
                viewer: Viewer {
                    control,
                    technician,
                    invite: Invite {
                        id: invite,
                        code: String::new(),
                        expires_in_secs,
                    },
                },
                request,
                from_technician,
                trigger,
            }),
            other => Err(unexpected("HandoverClaimed", &other)),
        }
    }
}
