//! Input injection for the Assent agent (X11).
//!
//! An [`InputSink`] applies the technician's platform-neutral
//! [`InputEvent`]s to the end user's desktop. Sinks remember which keys and
//! buttons they pressed, so that [`InputSink::release_all`] — called
//! whenever control stops (pause, end, disconnect) — never leaves a key or
//! button stuck down on the user's machine.

#![forbid(unsafe_code)]

mod enigo_sink;
mod keymap;

pub use assent_proto::session_msg::{InputEvent, Key, MouseButton};
pub use enigo_sink::EnigoSink;
pub use keymap::{clamp_point, map_button, map_key, MAX_WHEEL_STEPS};

use assent_proto::session_msg::MAX_TEXT_INPUT;

/// Applies input events to a desktop.
pub trait InputSink {
    /// Applies one event. Releases of keys or buttons this sink did not
    /// press are ignored (they arrive late after [`InputSink::release_all`]).
    fn apply(&mut self, event: &InputEvent) -> Result<(), InputError>;

    /// Releases every key and button this sink still holds down.
    fn release_all(&mut self) -> Result<(), InputError>;
}

/// Why input could not be injected.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("no X display for input injection: the DISPLAY environment variable is not set")]
    NoDisplay,
    #[error("cannot connect to X display {display:?} for input injection: {reason}")]
    Connect { display: String, reason: String },
    #[error("key {0:?} has no X11 equivalent")]
    UnsupportedKey(Key),
    #[error("text input is longer than {MAX_TEXT_INPUT} characters")]
    TextTooLong,
    #[error("injecting input failed: {0}")]
    Inject(#[from] enigo::InputError),
}

/// Keys and buttons a sink pressed and has not released, in press order.
#[derive(Debug, Default, Clone)]
struct Held {
    keys: Vec<Key>,
    buttons: Vec<MouseButton>,
}

impl Held {
    fn press_key(&mut self, key: Key) {
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
    }

    fn press_button(&mut self, button: MouseButton) {
        if !self.buttons.contains(&button) {
            self.buttons.push(button);
        }
    }

    /// Forgets the key; returns whether it was held.
    fn release_key(&mut self, key: Key) -> bool {
        let held = self.keys.contains(&key);
        self.keys.retain(|&k| k != key);
        held
    }

    /// Forgets the button; returns whether it was held.
    fn release_button(&mut self, button: MouseButton) -> bool {
        let held = self.buttons.contains(&button);
        self.buttons.retain(|&b| b != button);
        held
    }
}

/// One call a [`RecordingSink`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Event(InputEvent),
    ReleaseAll,
}

/// Test double: records every call instead of touching a desktop, and
/// tracks held keys and buttons the way [`EnigoSink`] does, so tests can
/// assert that nothing is left held after control stops.
#[derive(Debug, Default, Clone)]
pub struct RecordingSink {
    log: Vec<Recorded>,
    held: Held,
}

impl RecordingSink {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call, in order.
    pub fn log(&self) -> &[Recorded] {
        &self.log
    }

    /// The applied events, in order, without the `release_all` calls.
    pub fn events(&self) -> Vec<InputEvent> {
        self.log
            .iter()
            .filter_map(|r| match r {
                Recorded::Event(e) => Some(e.clone()),
                Recorded::ReleaseAll => None,
            })
            .collect()
    }

    /// How many times `release_all` was called.
    pub fn release_all_calls(&self) -> usize {
        self.log
            .iter()
            .filter(|r| **r == Recorded::ReleaseAll)
            .count()
    }

    /// Keys pressed and not yet released, in press order.
    pub fn held_keys(&self) -> &[Key] {
        &self.held.keys
    }

    /// Mouse buttons pressed and not yet released, in press order.
    pub fn held_buttons(&self) -> &[MouseButton] {
        &self.held.buttons
    }
}

impl InputSink for RecordingSink {
    fn apply(&mut self, event: &InputEvent) -> Result<(), InputError> {
        self.log.push(Recorded::Event(event.clone()));
        match *event {
            InputEvent::Key { key, pressed: true } => self.held.press_key(key),
            InputEvent::Key {
                key,
                pressed: false,
            } => {
                self.held.release_key(key);
            }
            InputEvent::MouseButton {
                button,
                pressed: true,
            } => self.held.press_button(button),
            InputEvent::MouseButton {
                button,
                pressed: false,
            } => {
                self.held.release_button(button);
            }
            InputEvent::MouseMove { .. } | InputEvent::Wheel { .. } | InputEvent::Text(_) => {}
        }
        Ok(())
    }

    fn release_all(&mut self) -> Result<(), InputError> {
        self.log.push(Recorded::ReleaseAll);
        self.held = Held::default();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(key: Key, pressed: bool) -> InputEvent {
        InputEvent::Key { key, pressed }
    }

    fn button(button: MouseButton, pressed: bool) -> InputEvent {
        InputEvent::MouseButton { button, pressed }
    }

    #[test]
    fn recording_sink_records_calls_and_tracks_held_input() {
        let mut sink = RecordingSink::new();
        let events = [
            InputEvent::MouseMove { x: 3, y: 4 },
            key(Key::Control, true),
            key(Key::Char('c'), true),
            key(Key::Char('c'), true), // auto-repeat: still held once
            key(Key::Char('c'), false),
            button(MouseButton::Left, true),
            InputEvent::Wheel { dx: 0, dy: -2 },
            InputEvent::Text("hi".into()),
        ];
        for e in &events {
            sink.apply(e).unwrap();
        }
        assert_eq!(sink.events(), events);
        assert_eq!(sink.held_keys(), [Key::Control]);
        assert_eq!(sink.held_buttons(), [MouseButton::Left]);

        sink.release_all().unwrap();
        assert!(sink.held_keys().is_empty() && sink.held_buttons().is_empty());
        assert_eq!(sink.release_all_calls(), 1);
        assert_eq!(sink.log().last(), Some(&Recorded::ReleaseAll));

        // A late release after release_all is recorded and harmless.
        sink.apply(&key(Key::Control, false)).unwrap();
        assert!(sink.held_keys().is_empty());
        assert_eq!(sink.log().len(), events.len() + 2);
    }

    #[test]
    fn sinks_can_move_to_an_input_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<EnigoSink>();
        assert_send::<RecordingSink>();
    }

    #[test]
    fn held_keeps_press_order_and_reports_releases() {
        let mut held = Held::default();
        held.press_key(Key::Shift);
        held.press_key(Key::Alt);
        held.press_key(Key::Shift);
        assert_eq!(held.keys, [Key::Shift, Key::Alt]);
        assert!(held.release_key(Key::Shift));
        assert!(!held.release_key(Key::Shift));
        held.press_button(MouseButton::Right);
        assert!(held.release_button(MouseButton::Right));
        assert!(!held.release_button(MouseButton::Middle));
    }
}
