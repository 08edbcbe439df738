//! Messages inside the end-to-end encrypted session channel between agent
//! and viewer. The relay never sees these: they travel sealed (see the
//! `assent-channel` crate) on the data stream it forwards.
//!
//! Every type here is decoded from bytes a hostile peer controls, so every
//! variable-length field has a limit checked by [`SessionMsg::validate`]
//! after decoding (and the decoder input itself is bounded by
//! [`MAX_SESSION_MSG`]).

use serde::{Deserialize, Serialize};

use crate::framing::FrameError;
use crate::wire::{Scope, Validation};

/// Largest session message (a full 4K keyframe compresses far below this).
pub const MAX_SESSION_MSG: usize = 32 * 1024 * 1024;
/// Longest text typed in one `Text` input event.
pub const MAX_TEXT_INPUT: usize = 1024;
/// Longest chat message, in characters.
pub const MAX_CHAT: usize = 2000;
/// Longest "what to test" and validation comment, in characters.
pub const MAX_VALIDATION_TEXT: usize = 500;

/// Mouse buttons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MouseButton {
    Left,
    Middle,
    Right,
}

/// Keys that are not plain characters, plus characters themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Key {
    /// A character key as the viewer's keyboard layout produced it.
    Char(char),
    Return,
    Tab,
    Backspace,
    Escape,
    Delete,
    Insert,
    Home,
    End,
    PageUp,
    PageDown,
    Left,
    Right,
    Up,
    Down,
    Space,
    /// F1..F24.
    F(u8),
    Shift,
    Control,
    Alt,
    Meta,
    CapsLock,
}

/// A platform-neutral input event, in remote screen pixel coordinates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputEvent {
    MouseMove {
        x: u32,
        y: u32,
    },
    MouseButton {
        button: MouseButton,
        pressed: bool,
    },
    /// Wheel steps; positive is down / right.
    Wheel {
        dx: i32,
        dy: i32,
    },
    Key {
        key: Key,
        pressed: bool,
    },
    /// Text to type as-is (no modifiers).
    Text(String),
}

/// Session control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// Agent → viewer: the user paused (frames frozen to a placeholder,
    /// input dropped).
    Paused,
    /// Agent → viewer: the user resumed.
    Resumed,
    /// Either way: the session is over.
    End,
    /// Viewer → agent: ask for a different scope. The agent only changes
    /// scope after asking its user again.
    ScopeRequest(Scope),
    /// Agent → viewer: the scope now in force.
    Scope(Scope),
    /// Viewer → agent: send a full frame next.
    KeyframeRequest,
    /// Viewer → agent: the technician asks for a permission; the agent
    /// puts it to the user, who alone turns it on.
    PermissionRequest(crate::permission::Permission),
    /// Viewer → agent (screen format 3): show only this monitor (an index
    /// into the monitors of the last keyframe's view, below
    /// [`MAX_MONITORS`]), or the whole screen (`None`).
    ShowMonitor(Option<u8>),
    /// Viewer → agent (screen format 4): how the technician wants the
    /// screen coded.
    Quality(ScreenQuality),
}

/// The technician's choice between detail and motion (screen format 4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScreenQuality {
    /// Photos and video as JPEG at a quality that follows the link, sent
    /// again exactly once still; text always exact.
    #[default]
    Auto,
    /// Everything exact, always (the frame rate pays on a slow link).
    Sharp,
    /// Photos and video at a low JPEG quality, for motion on a slow
    /// link; still sent again exactly once still.
    Smooth,
}

impl ScreenQuality {
    /// The word the viewer's status bar, its `--headless` command and
    /// the logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            ScreenQuality::Auto => "auto",
            ScreenQuality::Sharp => "sharp",
            ScreenQuality::Smooth => "smooth",
        }
    }

    /// The inverse of [`ScreenQuality::as_str`].
    pub fn parse(word: &str) -> Option<ScreenQuality> {
        [Self::Auto, Self::Sharp, Self::Smooth]
            .into_iter()
            .find(|q| q.as_str() == word)
    }
}

/// The most monitors a screen lists (as `assent-codec` bounds its view).
pub const MAX_MONITORS: u8 = 16;

/// One message in the session channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionMsg {
    /// An encoded frame update (format owned by `assent-codec`).
    Frame(Vec<u8>),
    /// Remote cursor position.
    Cursor {
        x: u32,
        y: u32,
    },
    Input(InputEvent),
    Control(Control),
    /// Viewer → agent: the viewer decoded the frame with this sequence
    /// number (flow control and latency measurement).
    FrameAck {
        seq: u64,
    },
    /// A line of chat between the technician and the user. End to end
    /// only: the relay counts that chat was used, never reads it.
    Chat(String),
    /// The technician asks the user to test the fix (request `number`,
    /// counting from 1 in the session), optionally saying what to test.
    ValidationRequest {
        number: u32,
        what: String,
    },
    /// Who is being helped: the agent's OS account and its real name, sent
    /// once the session is live (the note's "Affected User").
    AffectedUser {
        login: String,
        real_name: String,
    },
    /// The user's answer to request `number`, with an optional comment
    /// (the relay gets the answer, signed, but never the comment).
    ValidationAnswer {
        number: u32,
        answer: Validation,
        comment: String,
    },
    /// Screen formats (`assent-codec` format versions) the sender can use.
    /// The agent's first message once live lists those it can send; the
    /// viewer's first answers with the one it will read. No frame flows
    /// before both, so a peer without a common format gets a clear error
    /// instead of frames it cannot decode.
    ScreenFormats(Vec<u8>),
    /// Agent → viewer: what the user keeps private now, as counts only
    /// (never titles): `hidden` top-level windows are painted over in every
    /// frame, or, with `only_one`, everything but one window is. The mask
    /// itself is agent-side state; nothing the viewer sends changes it.
    Privacy {
        hidden: u32,
        only_one: bool,
    },
    /// Agent → viewer: the permissions now in force (sent at the start and
    /// at each change). The viewer only offers what is listed; the agent
    /// enforces it whatever the viewer does.
    Permissions(
        #[serde(deserialize_with = "crate::permission::bounded")]
        Vec<crate::permission::Permission>,
    ),
    /// Clipboard text, either way, only while the user allows the
    /// clipboard: the agent drops (and counts) any that arrives otherwise.
    Clipboard(String),
    /// A step of a file transfer, either way, only while the user allows
    /// files (the agent refuses offers otherwise).
    File(crate::files::FileMsg),
}

/// Largest clipboard text one message carries, in bytes.
pub const MAX_CLIPBOARD: usize = 1024 * 1024;

/// Most windows one `Privacy` may count.
pub const MAX_PRIVACY_COUNT: u32 = 100_000;

/// Most formats one `ScreenFormats` may list.
pub const MAX_SCREEN_FORMATS: usize = 16;

impl SessionMsg {
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let bytes = postcard::to_allocvec(self).map_err(|e| FrameError::Encode(e.to_string()))?;
        if bytes.len() > MAX_SESSION_MSG {
            return Err(FrameError::TooLarge {
                len: bytes.len(),
                max: MAX_SESSION_MSG,
            });
        }
        Ok(bytes)
    }

    /// Decodes and validates a message from a peer.
    pub fn decode(bytes: &[u8]) -> Result<SessionMsg, FrameError> {
        if bytes.len() > MAX_SESSION_MSG {
            return Err(FrameError::TooLarge {
                len: bytes.len(),
                max: MAX_SESSION_MSG,
            });
        }
        let msg: SessionMsg = crate::wire::decode_whole(bytes)?;
        msg.validate()?;
        Ok(msg)
    }

    /// Limits that the type system does not express.
    pub fn validate(&self) -> Result<(), FrameError> {
        match self {
            SessionMsg::Input(InputEvent::Text(t)) if t.chars().count() > MAX_TEXT_INPUT => {
                Err(FrameError::Decode("text input too long".into()))
            }
            SessionMsg::Input(InputEvent::Key { key: Key::F(n), .. }) if !(1..=24).contains(n) => {
                Err(FrameError::Decode("no such function key".into()))
            }
            SessionMsg::Chat(t) if t.chars().count() > MAX_CHAT || t.trim().is_empty() => {
                Err(FrameError::Decode("chat message empty or too long".into()))
            }
            SessionMsg::AffectedUser { login, real_name }
                if login.chars().count() > 128 || real_name.chars().count() > 128 =>
            {
                Err(FrameError::Decode("account name too long".into()))
            }
            SessionMsg::ValidationRequest { what: t, .. }
            | SessionMsg::ValidationAnswer { comment: t, .. }
                if t.chars().count() > MAX_VALIDATION_TEXT =>
            {
                Err(FrameError::Decode("validation text too long".into()))
            }
            SessionMsg::ScreenFormats(f) if f.is_empty() || f.len() > MAX_SCREEN_FORMATS => Err(
                FrameError::Decode("screen format list empty or too long".into()),
            ),
            SessionMsg::File(f) => f.validate().map_err(|e| FrameError::Decode(e.into())),
            SessionMsg::Clipboard(t) if t.len() > MAX_CLIPBOARD || t.is_empty() => Err(
                FrameError::Decode("clipboard text empty or too long".into()),
            ),
            SessionMsg::Privacy { hidden, .. } if *hidden > MAX_PRIVACY_COUNT => {
                Err(FrameError::Decode("window count too large".into()))
            }
            SessionMsg::Input(InputEvent::Wheel { dx, dy })
                if dx.unsigned_abs() > 100 || dy.unsigned_abs() > 100 =>
            {
                Err(FrameError::Decode("wheel step too large".into()))
            }
            SessionMsg::Control(Control::ShowMonitor(Some(m))) if *m >= MAX_MONITORS => {
                Err(FrameError::Decode("no such monitor".into()))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_limits() {
        let msgs = vec![
            SessionMsg::Frame(vec![1, 2, 3]),
            SessionMsg::Input(InputEvent::Key {
                key: Key::Char('é'),
                pressed: true,
            }),
            SessionMsg::Input(InputEvent::Text("hello".into())),
            SessionMsg::Control(Control::ScopeRequest(Scope::Control)),
            SessionMsg::FrameAck { seq: 7 },
            SessionMsg::ScreenFormats(vec![2]),
            SessionMsg::Chat("Please type your password now".into()),
            SessionMsg::Privacy {
                hidden: 3,
                only_one: false,
            },
            SessionMsg::Permissions(vec![crate::permission::Permission::Clipboard]),
            SessionMsg::Clipboard("copied text".into()),
            SessionMsg::File(crate::files::FileMsg::Offer {
                id: 1,
                name: "../../.bashrc".into(),
                size: 10,
            }),
            SessionMsg::Control(Control::PermissionRequest(
                crate::permission::Permission::Clipboard,
            )),
            SessionMsg::ValidationRequest {
                number: 1,
                what: "Open Outlook".into(),
            },
            SessionMsg::ValidationAnswer {
                number: 1,
                answer: Validation::Works,
                comment: String::new(),
            },
        ];
        for m in msgs {
            assert_eq!(SessionMsg::decode(&m.encode().unwrap()).unwrap(), m);
        }
        let long = SessionMsg::Input(InputEvent::Text("x".repeat(MAX_TEXT_INPUT + 1)));
        assert!(SessionMsg::decode(&long.encode().unwrap()).is_err());
        let f99 = SessionMsg::Input(InputEvent::Key {
            key: Key::F(99),
            pressed: true,
        });
        assert!(SessionMsg::decode(&f99.encode().unwrap()).is_err());
        let long = SessionMsg::ValidationRequest {
            number: 1,
            what: "x".repeat(MAX_VALIDATION_TEXT + 1),
        };
        assert!(SessionMsg::decode(&long.encode().unwrap()).is_err());
        for bad in [vec![], vec![2; MAX_SCREEN_FORMATS + 1]] {
            let formats = SessionMsg::ScreenFormats(bad);
            assert!(SessionMsg::decode(&formats.encode().unwrap()).is_err());
        }
        let many = SessionMsg::Privacy {
            hidden: MAX_PRIVACY_COUNT + 1,
            only_one: true,
        };
        assert!(SessionMsg::decode(&many.encode().unwrap()).is_err());
        for bad in [String::new(), "x".repeat(MAX_CLIPBOARD + 1)] {
            let clip = SessionMsg::Clipboard(bad);
            assert!(SessionMsg::decode(&clip.encode().unwrap()).is_err());
        }
        for bad in [
            crate::files::FileMsg::Offer {
                id: 1,
                name: "n".repeat(crate::files::MAX_OFFER_NAME + 1),
                size: 1,
            },
            crate::files::FileMsg::Chunk {
                id: 1,
                data: vec![0; crate::files::MAX_CHUNK + 1],
            },
            crate::files::FileMsg::Chunk {
                id: 1,
                data: vec![],
            },
        ] {
            let file = SessionMsg::File(bad);
            assert!(SessionMsg::decode(&file.encode().unwrap()).is_err());
        }
        let nine = SessionMsg::Permissions(vec![crate::permission::Permission::Clipboard; 9]);
        assert!(SessionMsg::decode(&nine.encode().unwrap()).is_err());
        let pick = |m| {
            SessionMsg::Control(Control::ShowMonitor(m))
                .encode()
                .unwrap()
        };
        for ok in [None, Some(0), Some(MAX_MONITORS - 1)] {
            assert!(SessionMsg::decode(&pick(ok)).is_ok());
        }
        for q in [
            ScreenQuality::Auto,
            ScreenQuality::Sharp,
            ScreenQuality::Smooth,
        ] {
            let msg = SessionMsg::Control(Control::Quality(q));
            assert_eq!(SessionMsg::decode(&msg.encode().unwrap()).unwrap(), msg);
            assert_eq!(ScreenQuality::parse(q.as_str()), Some(q));
        }
        assert_eq!(ScreenQuality::parse("best"), None);
        assert!(SessionMsg::decode(&pick(Some(MAX_MONITORS))).is_err());
        for bad in ["x".repeat(MAX_CHAT + 1), " \n ".into(), String::new()] {
            let chat = SessionMsg::Chat(bad);
            assert!(SessionMsg::decode(&chat.encode().unwrap()).is_err());
        }
    }

    /// Found by fuzzing (`assent-fuzz`): bytes after a complete message
    /// were ignored instead of refused.
    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = SessionMsg::FrameAck { seq: 1 }.encode().unwrap();
        bytes.push(0);
        assert!(SessionMsg::decode(&bytes).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = SessionMsg::decode(&bytes);
        }
    }
}
