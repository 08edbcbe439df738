//! `EnigoSink` against a real Xvfb, observed by an independent X client:
//! pointer moves, clicks, wheel steps and keys arrive, and `release_all`
//! leaves nothing held.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use assent_input::{EnigoSink, InputError, InputEvent, InputSink, Key, MouseButton};
use assent_xvfb::Xvfb;
use x11rb::connection::Connection as _;
use x11rb::protocol::xproto::{
    ConnectionExt as _, CreateWindowAux, EventMask, KeyButMask, Window, WindowClass,
};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

/// The observer's window: x, y, width, height.
const WIN: (i16, i16, u16, u16) = (100, 100, 200, 200);

// Keysyms the tests look up (X11 keysymdef.h).
const XK_A: u32 = 0x61;
const XK_H: u32 = 0x68;
const XK_I: u32 = 0x69;
const XK_X: u32 = 0x78;
const XK_Y: u32 = 0x79;
const XK_RETURN: u32 = 0xff0d;
const XK_LEFT: u32 = 0xff51;
const XK_SHIFT_L: u32 = 0xffe1;
const XK_CONTROL_L: u32 = 0xffe3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    KeyDown(u8),
    KeyUp(u8),
    ButtonDown(u8),
    ButtonUp(u8),
}

/// An X client with a window that records key and button events.
struct Observer {
    conn: RustConnection,
    root: Window,
    window: Window,
    min_keycode: u8,
    keysyms_per_keycode: usize,
    keysyms: Vec<u32>,
}

impl Observer {
    fn new(display: &str) -> Observer {
        let (conn, screen) = x11rb::connect(Some(display)).expect("connect to Xvfb");
        let root = conn.setup().roots[screen].root;
        let window = conn.generate_id().unwrap();
        let (x, y, w, h) = WIN;
        let mask = EventMask::KEY_PRESS
            | EventMask::KEY_RELEASE
            | EventMask::BUTTON_PRESS
            | EventMask::BUTTON_RELEASE;
        conn.create_window(
            x11rb::COPY_DEPTH_FROM_PARENT,
            window,
            root,
            x,
            y,
            w,
            h,
            0,
            WindowClass::INPUT_OUTPUT,
            x11rb::COPY_FROM_PARENT,
            &CreateWindowAux::new().event_mask(mask),
        )
        .unwrap();
        conn.map_window(window).unwrap();
        let (min, max) = (conn.setup().min_keycode, conn.setup().max_keycode);
        let mapping = conn
            .get_keyboard_mapping(min, max - min + 1)
            .unwrap()
            .reply()
            .unwrap();
        conn.sync().unwrap();
        Observer {
            conn,
            root,
            window,
            min_keycode: min,
            keysyms_per_keycode: mapping.keysyms_per_keycode.into(),
            keysyms: mapping.keysyms,
        }
    }

    /// The keycode whose unshifted keysym is `keysym`.
    fn keycode(&self, keysym: u32) -> u8 {
        let index = self
            .keysyms
            .chunks(self.keysyms_per_keycode)
            .position(|syms| syms[0] == keysym)
            .unwrap_or_else(|| panic!("keysym {keysym:#x} is not on the keymap"));
        self.min_keycode + index as u8
    }

    /// Waits (up to 5 s) for `n` key/button events on the window.
    fn collect(&self, n: usize) -> Vec<Seen> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = Vec::new();
        while seen.len() < n && Instant::now() < deadline {
            let Some(event) = self.conn.poll_for_event().unwrap() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            let (item, window) = match event {
                Event::KeyPress(e) => (Seen::KeyDown(e.detail), e.event),
                Event::KeyRelease(e) => (Seen::KeyUp(e.detail), e.event),
                Event::ButtonPress(e) => (Seen::ButtonDown(e.detail), e.event),
                Event::ButtonRelease(e) => (Seen::ButtonUp(e.detail), e.event),
                _ => continue,
            };
            assert_eq!(window, self.window, "{item:?} went to another window");
            seen.push(item);
        }
        // Anything beyond `n` is unexpected too.
        std::thread::sleep(Duration::from_millis(100));
        while let Some(event) = self.conn.poll_for_event().unwrap() {
            if let Event::KeyPress(_) | Event::KeyRelease(_) = event {
                panic!("unexpected extra event {event:?}");
            }
            if let Event::ButtonPress(_) | Event::ButtonRelease(_) = event {
                panic!("unexpected extra event {event:?}");
            }
        }
        seen
    }

    fn position(&self) -> (i16, i16) {
        let reply = self.conn.query_pointer(self.root).unwrap().reply().unwrap();
        (reply.root_x, reply.root_y)
    }

    /// Modifier and button state.
    fn mask(&self) -> KeyButMask {
        self.conn
            .query_pointer(self.root)
            .unwrap()
            .reply()
            .unwrap()
            .mask
    }

    fn key_is_down(&self, keycode: u8) -> bool {
        let keys = self.conn.query_keymap().unwrap().reply().unwrap().keys;
        keys[usize::from(keycode / 8)] & (1 << (keycode % 8)) != 0
    }
}

fn key(key: Key, pressed: bool) -> InputEvent {
    InputEvent::Key { key, pressed }
}

fn button(button: MouseButton, pressed: bool) -> InputEvent {
    InputEvent::MouseButton { button, pressed }
}

fn open_sink(xvfb: &Xvfb) -> EnigoSink {
    let mut sink = EnigoSink::open(xvfb.display()).expect("open EnigoSink");
    sink.set_screen_size(Some((640, 480)));
    sink
}

#[test]
fn pointer_buttons_wheel_and_keys_reach_an_x_client() {
    let xvfb = Xvfb::start();
    let observer = Observer::new(xvfb.display());
    let mut sink = open_sink(&xvfb);

    sink.apply(&InputEvent::MouseMove { x: 123, y: 45 })
        .unwrap();
    assert_eq!(observer.position(), (123, 45));
    // Off-screen positions are pinned to the edge.
    sink.apply(&InputEvent::MouseMove { x: 5000, y: 9000 })
        .unwrap();
    assert_eq!(observer.position(), (639, 479));
    // Over the window: with no window manager, focus follows the pointer.
    sink.apply(&InputEvent::MouseMove { x: 150, y: 160 })
        .unwrap();
    assert_eq!(observer.position(), (150, 160));

    let events = [
        button(MouseButton::Left, true),
        button(MouseButton::Left, false),
        button(MouseButton::Right, true),
        button(MouseButton::Right, false),
        InputEvent::Wheel { dx: 0, dy: 2 },
        InputEvent::Wheel { dx: 1, dy: -1 },
        InputEvent::Text("hi".into()),
        key(Key::Char('a'), true),
        key(Key::Char('a'), false),
        key(Key::Return, true),
        key(Key::Return, false),
        key(Key::Left, true),
        key(Key::Left, false),
        InputEvent::Text("x\ny".into()),
    ];
    for e in &events {
        sink.apply(e).unwrap();
    }

    use Seen::*;
    let kc = |keysym| observer.keycode(keysym);
    let click = |b| [ButtonDown(b), ButtonUp(b)];
    let tap = |keysym| [KeyDown(kc(keysym)), KeyUp(kc(keysym))];
    let expected: Vec<Seen> = [
        click(1),
        click(3),
        click(5), // wheel down twice
        click(5),
        click(4), // wheel up, then right
        click(7),
        tap(XK_H),
        tap(XK_I),
        tap(XK_A),
        tap(XK_RETURN),
        tap(XK_LEFT),
        tap(XK_X),
        tap(XK_RETURN), // a newline in text is typed as Return
        tap(XK_Y),
    ]
    .concat();
    assert_eq!(observer.collect(expected.len()), expected);
}

#[test]
fn release_all_leaves_no_key_or_button_held() {
    let xvfb = Xvfb::start();
    let observer = Observer::new(xvfb.display());
    let mut sink = open_sink(&xvfb);
    let (shift, control, a) = (
        observer.keycode(XK_SHIFT_L),
        observer.keycode(XK_CONTROL_L),
        observer.keycode(XK_A),
    );
    let held_mask = KeyButMask::SHIFT | KeyButMask::CONTROL | KeyButMask::BUTTON1;

    sink.apply(&InputEvent::MouseMove { x: 150, y: 150 })
        .unwrap();
    for e in [
        key(Key::Shift, true),
        key(Key::Control, true),
        key(Key::Char('a'), true),
        button(MouseButton::Left, true),
    ] {
        sink.apply(&e).unwrap();
    }
    assert!(observer.key_is_down(shift) && observer.key_is_down(control));
    assert!(observer.key_is_down(a));
    assert!(observer.mask().contains(held_mask));

    sink.release_all().unwrap();
    for keycode in [shift, control, a] {
        assert!(
            !observer.key_is_down(keycode),
            "keycode {keycode} still down"
        );
    }
    assert_eq!(u16::from(observer.mask() & held_mask), 0);

    // A late release from the viewer is ignored; nothing is left to undo.
    sink.apply(&key(Key::Shift, false)).unwrap();
    sink.release_all().unwrap();

    // Dropping the sink releases too (enigo itself would release only
    // keys, not buttons).
    sink.apply(&key(Key::Shift, true)).unwrap();
    sink.apply(&button(MouseButton::Left, true)).unwrap();
    assert!(observer.key_is_down(shift));
    assert!(observer.mask().contains(KeyButMask::BUTTON1));
    drop(sink);
    assert!(!observer.key_is_down(shift), "Shift stuck after drop");
    assert_eq!(
        u16::from(observer.mask() & held_mask),
        0,
        "stuck after drop"
    );

    // An unmappable key is refused before anything is pressed.
    let mut sink = open_sink(&xvfb);
    assert!(matches!(
        sink.apply(&key(Key::F(30), true)),
        Err(InputError::UnsupportedKey(Key::F(30)))
    ));
}

#[test]
fn unreachable_display_is_a_clear_error() {
    let err = EnigoSink::open(":4999").err().expect("connect must fail");
    assert!(matches!(err, InputError::Connect { .. }), "{err}");
    assert!(err.to_string().contains(":4999"), "{err}");
}
