//! Window titles that X tools can find.
//!
//! winit writes the legacy `WM_NAME` property as Latin-1 `STRING` holding
//! UTF-8 bytes, so a title with "—" reads back as mojibake and
//! `xdotool search --name 'Assent — support request'` (what admins' scripts
//! and outside tests run) finds nothing. We set both `WM_NAME` and
//! `_NET_WM_NAME` as `UTF8_STRING` ourselves.

#![forbid(unsafe_code)]

use raw_window_handle::RawWindowHandle;
use x11rb::connection::Connection as _;
use x11rb::protocol::xproto::{AtomEnum, ConnectionExt as _, PropMode};
use x11rb::rust_connection::RustConnection;

/// The X window behind `handle`; `None` when not on X11.
pub fn x11_window(handle: RawWindowHandle) -> Option<u32> {
    match handle {
        RawWindowHandle::Xlib(h) => u32::try_from(h.window).ok(),
        RawWindowHandle::Xcb(h) => Some(h.window.get()),
        _ => None,
    }
}

pub struct TitleSetter {
    conn: RustConnection,
    window: u32,
    utf8: u32,
    net_wm_name: u32,
}

impl TitleSetter {
    /// For the window behind `handle`, on `$DISPLAY`; `None` when not on X11.
    pub fn new(handle: RawWindowHandle) -> Option<TitleSetter> {
        let window = x11_window(handle)?;
        let (conn, _) = x11rb::connect(None).ok()?;
        let utf8 = conn
            .intern_atom(false, b"UTF8_STRING")
            .ok()?
            .reply()
            .ok()?
            .atom;
        let net_wm_name = conn
            .intern_atom(false, b"_NET_WM_NAME")
            .ok()?
            .reply()
            .ok()?
            .atom;
        Some(TitleSetter {
            conn,
            window,
            utf8,
            net_wm_name,
        })
    }

    pub fn set(&self, title: &str) {
        for prop in [u32::from(AtomEnum::WM_NAME), self.net_wm_name] {
            let _ = self.conn.change_property(
                PropMode::REPLACE,
                self.window,
                prop,
                self.utf8,
                8,
                title.len() as u32,
                title.as_bytes(),
            );
        }
        let _ = self.conn.flush();
    }
}
