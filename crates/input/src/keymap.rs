//! Pure mapping from session input types onto enigo's, testable without X.

use assent_proto::session_msg::{Key, MouseButton};
use enigo::Key as E;

/// Most wheel steps applied per event per axis; matches the limit
/// `SessionMsg::validate` enforces on the wire, so a sink fed unvalidated
/// events still cannot be made to spin for long.
pub const MAX_WHEEL_STEPS: i32 = 100;

const FUNCTION_KEYS: [E; 24] = [
    E::F1,
    E::F2,
    E::F3,
    E::F4,
    E::F5,
    E::F6,
    E::F7,
    E::F8,
    E::F9,
    E::F10,
    E::F11,
    E::F12,
    E::F13,
    E::F14,
    E::F15,
    E::F16,
    E::F17,
    E::F18,
    E::F19,
    E::F20,
    E::F21,
    E::F22,
    E::F23,
    E::F24,
];

/// The enigo key for a session key, or `None` if it has no equivalent:
/// function keys outside F1..F24, and control characters sent as
/// `Char` (the viewer sends those as named keys such as `Return`; as
/// characters they would only produce unusable keysyms).
///
/// `Char` maps to `Key::Unicode`, so enigo types the character itself; a
/// character missing from the keymap is bound to a spare keycode.
/// `Meta` is the Windows/Command key, which X11 calls Super.
pub fn map_key(key: Key) -> Option<E> {
    Some(match key {
        Key::Char(c) if c.is_control() => return None,
        Key::Char(c) => E::Unicode(c),
        Key::Return => E::Return,
        Key::Tab => E::Tab,
        Key::Backspace => E::Backspace,
        Key::Escape => E::Escape,
        Key::Delete => E::Delete,
        Key::Insert => E::Insert,
        Key::Home => E::Home,
        Key::End => E::End,
        Key::PageUp => E::PageUp,
        Key::PageDown => E::PageDown,
        Key::Left => E::LeftArrow,
        Key::Right => E::RightArrow,
        Key::Up => E::UpArrow,
        Key::Down => E::DownArrow,
        Key::Space => E::Space,
        Key::F(n) => *FUNCTION_KEYS.get(usize::from(n).checked_sub(1)?)?,
        Key::Shift => E::Shift,
        Key::Control => E::Control,
        Key::Alt => E::Alt,
        Key::Meta => E::Meta,
        Key::CapsLock => E::CapsLock,
    })
}

/// The enigo mouse button for a session mouse button.
pub fn map_button(button: MouseButton) -> enigo::Button {
    match button {
        MouseButton::Left => enigo::Button::Left,
        MouseButton::Middle => enigo::Button::Middle,
        MouseButton::Right => enigo::Button::Right,
    }
}

/// Pins a pointer position to the screen (`size` = width, height, when
/// known) and to what X11 coordinates can hold, the way a physical pointer
/// stops at the screen edge.
pub fn clamp_point(x: u32, y: u32, size: Option<(u32, u32)>) -> (i32, i32) {
    let limit = i16::MAX as u32;
    let (max_x, max_y) = match size {
        Some((w, h)) => (
            w.saturating_sub(1).min(limit),
            h.saturating_sub(1).min(limit),
        ),
        None => (limit, limit),
    };
    (x.min(max_x) as i32, y.min(max_y) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_keys_map_to_their_enigo_keys() {
        let cases = [
            (Key::Char('a'), E::Unicode('a')),
            (Key::Char('A'), E::Unicode('A')),
            (Key::Char('é'), E::Unicode('é')),
            (Key::Char(' '), E::Unicode(' ')),
            (Key::Return, E::Return),
            (Key::Tab, E::Tab),
            (Key::Backspace, E::Backspace),
            (Key::Escape, E::Escape),
            (Key::Delete, E::Delete),
            (Key::Insert, E::Insert),
            (Key::Home, E::Home),
            (Key::End, E::End),
            (Key::PageUp, E::PageUp),
            (Key::PageDown, E::PageDown),
            (Key::Left, E::LeftArrow),
            (Key::Right, E::RightArrow),
            (Key::Up, E::UpArrow),
            (Key::Down, E::DownArrow),
            (Key::Space, E::Space),
            (Key::F(1), E::F1),
            (Key::F(12), E::F12),
            (Key::F(24), E::F24),
            (Key::Shift, E::Shift),
            (Key::Control, E::Control),
            (Key::Alt, E::Alt),
            (Key::Meta, E::Meta),
            (Key::CapsLock, E::CapsLock),
        ];
        for (key, expected) in cases {
            assert_eq!(map_key(key), Some(expected), "{key:?}");
        }
        for n in 1..=24u8 {
            assert!(map_key(Key::F(n)).is_some(), "F{n}");
        }
    }

    #[test]
    fn keys_without_equivalent_are_refused() {
        for key in [
            Key::F(0),
            Key::F(25),
            Key::F(255),
            Key::Char('\n'),
            Key::Char('\0'),
            Key::Char('\u{1b}'),
            Key::Char('\u{7f}'),
        ] {
            assert_eq!(map_key(key), None, "{key:?}");
        }
    }

    #[test]
    fn buttons_map_one_to_one() {
        assert_eq!(map_button(MouseButton::Left), enigo::Button::Left);
        assert_eq!(map_button(MouseButton::Middle), enigo::Button::Middle);
        assert_eq!(map_button(MouseButton::Right), enigo::Button::Right);
    }

    #[test]
    fn points_are_pinned_to_the_screen() {
        let screen = Some((640, 480));
        assert_eq!(clamp_point(123, 45, screen), (123, 45));
        assert_eq!(clamp_point(639, 479, screen), (639, 479));
        assert_eq!(clamp_point(640, 480, screen), (639, 479));
        assert_eq!(clamp_point(u32::MAX, 7, screen), (639, 7));
        assert_eq!(clamp_point(u32::MAX, u32::MAX, None), (32767, 32767));
        assert_eq!(clamp_point(5, 5, Some((0, 0))), (0, 0));
    }
}
