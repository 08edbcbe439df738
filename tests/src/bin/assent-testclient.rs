//! A programmatic viewer or agent in its own process, for tests that must
//! kill one side (SIGKILL) and watch the relay notice. It speaks the real
//! protocol through `assent-client`; it has no screen and no window.

use std::path::PathBuf;

use anyhow::Context as _;
use assent_client::{AgentPending, Viewer, ViewerEvent};
use assent_proto::identity::SecretKey;
use assent_proto::wire::{ConsentDecision, Impact, InviteRequest, Scope};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Programmatic Assent viewer/agent for end-to-end tests (no screen, no window)")]
struct Cli {
    #[command(subcommand)]
    role: RoleCmd,
}

#[derive(Subcommand)]
enum RoleCmd {
    /// Authenticate, print `code: <code>`, wait for the session, print `started <id>`, hold it.
    Viewer {
        #[arg(long)]
        relay: String,
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        key_file: PathBuf,
        #[arg(long, default_value = "T-1")]
        ticket: String,
        #[arg(long, default_value = "view")]
        scope: Scope,
    },
    /// Join with a code, answer consent with `decision`, print `started <id>`, hold it.
    Agent {
        #[arg(long)]
        relay: String,
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        code: String,
        #[arg(long, default_value = "view")]
        decision: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().role {
        RoleCmd::Viewer {
            relay,
            ca,
            key_file,
            ticket,
            scope,
        } => {
            let key = SecretKey::from_file_contents(&std::fs::read_to_string(&key_file)?)
                .context("key file")?;
            let request = InviteRequest {
                ticket,
                client: "Test client".into(),
                summary: "test".into(),
                impact: Impact::Normal,
                scope,
                identity_check: String::new(),
                permissions: vec![],
            };
            let mut viewer = Viewer::connect(&relay, &ca, &key, request).await?;
            println!("code: {}", viewer.invite.code);
            loop {
                match viewer.next_event().await? {
                    ViewerEvent::Started { session, .. } => {
                        let _data = viewer.control.accept_data().await?;
                        println!("started {session}");
                        // Hold until killed or the relay ends the session.
                        println!("over {:?}", until_over(&mut viewer.control).await);
                        return Ok(());
                    }
                    ViewerEvent::Ended(r) => anyhow::bail!("ended {r:?}"),
                    _ => {}
                }
            }
        }
        RoleCmd::Agent {
            relay,
            ca,
            code,
            decision,
        } => {
            let decision = match decision.as_str() {
                "view" => ConsentDecision::View,
                "control" => ConsentDecision::Control,
                "denied" => ConsentDecision::Denied,
                _ => ConsentDecision::Timeout,
            };
            let pending =
                AgentPending::join(&relay, &ca, SecretKey::generate()?, "test-device", &code)
                    .await?;
            // Where the session lives (another relay after a fleet's redirect).
            let joined_at = pending.relay.clone();
            let mut live = pending.answer(decision).await?;
            println!("started {} at {joined_at}", live.session);
            println!("over {:?}", until_over(&mut live.control).await);
            Ok(())
        }
    }
}

/// The relay's last word: its `SessionEnded`, or why the connection failed
/// (news of the peer's path, or this side's resume credential, along the
/// way is not the end).
async fn until_over(
    control: &mut assent_client::Control,
) -> Result<assent_proto::wire::RelayMsg, assent_client::ClientError> {
    use assent_proto::wire::RelayMsg;
    loop {
        match control.recv().await {
            Ok(
                RelayMsg::PeerInterrupted { .. }
                | RelayMsg::PeerResumed { .. }
                | RelayMsg::ResumeCredential { .. },
            ) => continue,
            other => return other,
        }
    }
}
