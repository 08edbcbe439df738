//! The real sink: XTEST input through enigo's pure-Rust x11rb backend.

use assent_proto::session_msg::{InputEvent, MAX_TEXT_INPUT};
use enigo::{Axis, Coordinate, Direction, Enigo, Keyboard as _, Mouse as _, Settings};

use crate::keymap::{clamp_point, map_button, map_key, MAX_WHEEL_STEPS};
use crate::{Held, InputError, InputSink};

/// Injects input into an X11 display with enigo.
///
/// Dropping the sink releases whatever it still holds.
pub struct EnigoSink {
    enigo: Enigo,
    screen: Option<(u32, u32)>,
    held: Held,
}

impl EnigoSink {
    /// Connects to the display named by `$DISPLAY`.
    pub fn new() -> Result<Self, InputError> {
        match std::env::var("DISPLAY") {
            Ok(display) if !display.is_empty() => Self::open(&display),
            _ => Err(InputError::NoDisplay),
        }
    }

    /// Connects to the named display (e.g. `":0"`) without consulting
    /// `$DISPLAY`.
    pub fn open(display: &str) -> Result<Self, InputError> {
        let settings = Settings {
            x11_display: Some(display.to_owned()),
            // enigo's default makes the X server stall this client 12 ms
            // per button event (a 3-step wheel costs 72 ms). Remote input
            // already arrives with human timing, so add no delay.
            linux_delay: 0,
            ..Settings::default()
        };
        let enigo = Enigo::new(&settings).map_err(|e| InputError::Connect {
            display: display.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(EnigoSink {
            enigo,
            screen: None,
            held: Held::default(),
        })
    }

    /// Sets the screen size that pointer positions are pinned to (the
    /// captured frame's size), or `None` to pin only to X11's range.
    pub fn set_screen_size(&mut self, size: Option<(u32, u32)>) {
        self.screen = size;
    }

    /// Types text; newlines become Return presses, because enigo would
    /// type `'\n'` as the Linefeed keysym, which applications do not treat
    /// as Enter.
    fn type_text(&mut self, text: &str) -> Result<(), InputError> {
        for (i, line) in text.split('\n').enumerate() {
            if i > 0 {
                self.enigo.key(enigo::Key::Return, Direction::Click)?;
            }
            self.enigo.text(line.strip_suffix('\r').unwrap_or(line))?;
        }
        Ok(())
    }
}

impl InputSink for EnigoSink {
    /// Note: `Text` is typed as-is, so modifiers still held from earlier
    /// `Key` events apply to it.
    fn apply(&mut self, event: &InputEvent) -> Result<(), InputError> {
        match *event {
            InputEvent::MouseMove { x, y } => {
                let (x, y) = clamp_point(x, y, self.screen);
                self.enigo.move_mouse(x, y, Coordinate::Abs)?;
            }
            InputEvent::MouseButton {
                button,
                pressed: true,
            } => {
                self.enigo.button(map_button(button), Direction::Press)?;
                self.held.press_button(button);
            }
            InputEvent::MouseButton {
                button,
                pressed: false,
            } => {
                if self.held.buttons.contains(&button) {
                    self.enigo.button(map_button(button), Direction::Release)?;
                    self.held.release_button(button);
                }
            }
            InputEvent::Wheel { dx, dy } => {
                let steps = |n: i32| n.clamp(-MAX_WHEEL_STEPS, MAX_WHEEL_STEPS);
                if dy != 0 {
                    self.enigo.scroll(steps(dy), Axis::Vertical)?;
                }
                if dx != 0 {
                    self.enigo.scroll(steps(dx), Axis::Horizontal)?;
                }
            }
            InputEvent::Key { key, pressed: true } => {
                let mapped = map_key(key).ok_or(InputError::UnsupportedKey(key))?;
                self.enigo.key(mapped, Direction::Press)?;
                self.held.press_key(key);
            }
            InputEvent::Key {
                key,
                pressed: false,
            } => {
                if let (true, Some(mapped)) = (self.held.keys.contains(&key), map_key(key)) {
                    self.enigo.key(mapped, Direction::Release)?;
                    self.held.release_key(key);
                }
            }
            InputEvent::Text(ref text) => {
                if text.chars().count() > MAX_TEXT_INPUT {
                    return Err(InputError::TextTooLong);
                }
                self.type_text(text)?;
            }
        }
        Ok(())
    }

    /// Releases keys in reverse press order (modifiers last), then buttons.
    /// Tries every one even if some fail; those stay held for a retry, and
    /// the first error is returned.
    fn release_all(&mut self) -> Result<(), InputError> {
        let mut first_error = None;
        for key in self.held.keys.clone().into_iter().rev() {
            let result = match map_key(key) {
                Some(mapped) => self.enigo.key(mapped, Direction::Release),
                None => Ok(()), // never pressed: apply refuses unmapped keys
            };
            match result {
                Ok(()) => {
                    self.held.release_key(key);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        for button in self.held.buttons.clone().into_iter().rev() {
            match self.enigo.button(map_button(button), Direction::Release) {
                Ok(()) => {
                    self.held.release_button(button);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), |e| Err(e.into()))
    }
}

impl Drop for EnigoSink {
    fn drop(&mut self) {
        let _ = self.release_all();
    }
}
