//! The top-level windows of an X11 display, for the user's privacy choices
//! (hide a window, share only one): where each is, in stacking order, with
//! its title and application, and every place a window was configured to
//! between two looks (ConfigureNotify/CreateNotify on the root), so a mask
//! can cover every position a window held during a capture.

use std::collections::HashMap;

use x11rb::connection::Connection as _;
use x11rb::protocol::xproto::{
    Atom, AtomEnum, ChangeWindowAttributesAux, ConnectionExt as _, EventMask, MapState, Window,
    WindowClass,
};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;

use crate::CaptureError;

/// Longest title or class kept, in bytes (read from other clients' properties).
const MAX_TEXT: u32 = 512;
/// Most places remembered for one window between two looks.
const MAX_MOVES: usize = 4096;

/// A rectangle on the root window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WinRect {
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
}

impl WinRect {
    /// The smallest rectangle holding both.
    pub fn union(self, other: WinRect) -> WinRect {
        let x0 = self.x.min(other.x);
        let y0 = self.y.min(other.y);
        let x1 = (self.x + self.width as i32).max(other.x + other.width as i32);
        let y1 = (self.y + self.height as i32).max(other.y + other.height as i32);
        WinRect {
            x: x0,
            y: y0,
            width: (x1 - x0) as u32,
            height: (y1 - y0) as u32,
        }
    }
}

/// One mapped top-level window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopWindow {
    /// The root's child (a window manager's frame when there is one).
    pub id: u32,
    /// Where it is, border included.
    pub rect: WinRect,
    /// `_NET_WM_NAME` or `WM_NAME` (of the window or, under a window
    /// manager, of the client inside its frame); may be empty.
    pub title: String,
    /// The application: `WM_CLASS`'s class part; may be empty.
    pub class: String,
    /// `_NET_WM_PID`, when the client set it.
    pub pid: Option<u32>,
}

fn gone<E>(_: E) -> CaptureError {
    CaptureError::Disconnected
}

/// Watches the root window's children on a connection of its own.
pub struct WindowWatch {
    conn: RustConnection,
    root: Window,
    atoms: [Atom; 3],
    moves: HashMap<u32, Vec<WinRect>>,
    /// A window configured more often than [`MAX_MOVES`] since the last
    /// look: mask it everywhere.
    overflowed: bool,
}

impl WindowWatch {
    /// Opens `display` (or `$DISPLAY` when `None`).
    pub fn open(display: Option<&str>) -> Result<Self, CaptureError> {
        let name = display.map(str::to_owned).unwrap_or_default();
        let err = |reason: String| CaptureError::Connect {
            display: name.clone(),
            reason,
        };
        let (conn, screen) = x11rb::connect(display).map_err(|e| err(e.to_string()))?;
        let root = conn
            .setup()
            .roots
            .get(screen)
            .ok_or_else(|| CaptureError::NoScreen(name.clone()))?
            .root;
        let aux = ChangeWindowAttributesAux::new().event_mask(EventMask::SUBSTRUCTURE_NOTIFY);
        conn.change_window_attributes(root, &aux)
            .map_err(|e| err(e.to_string()))?;
        let mut atoms = [0; 3];
        for (slot, name) in atoms
            .iter_mut()
            .zip(["_NET_WM_NAME", "UTF8_STRING", "_NET_WM_PID"])
        {
            *slot = conn
                .intern_atom(false, name.as_bytes())
                .map_err(|e| err(e.to_string()))?
                .reply()
                .map_err(|e| err(e.to_string()))?
                .atom;
        }
        Ok(WindowWatch {
            conn,
            root,
            atoms,
            moves: HashMap::new(),
            overflowed: false,
        })
    }

    /// The mapped top-level windows, bottom first. A round trip: every
    /// configure the server made before answering is collected for
    /// [`WindowWatch::take_moves`].
    pub fn list(&mut self) -> Result<Vec<TopWindow>, CaptureError> {
        self.list_known(&[])
    }

    /// As [`WindowWatch::list`], taking the title, class and pid of windows
    /// in `known` from there instead of asking again (geometry is always
    /// read afresh).
    pub fn list_known(&mut self, known: &[TopWindow]) -> Result<Vec<TopWindow>, CaptureError> {
        let tree = self.conn.query_tree(self.root).map_err(gone)?;
        let children = tree.reply().map_err(gone)?.children;
        let mut cookies = Vec::with_capacity(children.len());
        for &w in &children {
            let attrs = self.conn.get_window_attributes(w).map_err(gone)?;
            let geom = self.conn.get_geometry(w).map_err(gone)?;
            cookies.push((w, attrs, geom));
        }
        let mut mapped = Vec::new();
        for (w, attrs, geom) in cookies {
            // A window that went away meanwhile answers with an error.
            let (Ok(a), Ok(g)) = (attrs.reply(), geom.reply()) else {
                continue;
            };
            if a.map_state != MapState::VIEWABLE || a.class == WindowClass::INPUT_ONLY {
                continue;
            }
            let border = u32::from(g.border_width) * 2;
            let rect = WinRect {
                x: i32::from(g.x),
                y: i32::from(g.y),
                width: u32::from(g.width) + border,
                height: u32::from(g.height) + border,
            };
            mapped.push((w, rect));
        }
        let unknown: Vec<Window> = mapped
            .iter()
            .map(|(w, _)| *w)
            .filter(|w| !known.iter().any(|k| k.id == *w))
            .collect();
        let mut described = self.describe_all(&unknown).into_iter();
        let mut out = Vec::with_capacity(mapped.len());
        for (w, rect) in mapped {
            let (title, class, pid) = match known.iter().find(|k| k.id == w) {
                Some(k) => (k.title.clone(), k.class.clone(), k.pid),
                None => described.next().unwrap_or_default(),
            };
            out.push(TopWindow {
                id: w,
                rect,
                title,
                class,
                pid,
            });
        }
        self.collect_events()?;
        Ok(out)
    }

    /// Every place each window was configured to (or created at) since the
    /// last call, and whether some window moved too often to list (then
    /// treat every window as having been anywhere).
    pub fn take_moves(&mut self) -> (HashMap<u32, Vec<WinRect>>, bool) {
        let overflowed = std::mem::take(&mut self.overflowed);
        (std::mem::take(&mut self.moves), overflowed)
    }

    fn collect_events(&mut self) -> Result<(), CaptureError> {
        while let Some(event) = self
            .conn
            .poll_for_event()
            .map_err(|_| CaptureError::Disconnected)?
        {
            let (w, rect) = match event {
                Event::ConfigureNotify(e) => {
                    (e.window, (e.x, e.y, e.width, e.height, e.border_width))
                }
                Event::CreateNotify(e) => (e.window, (e.x, e.y, e.width, e.height, e.border_width)),
                _ => continue,
            };
            let (x, y, width, height, border) = rect;
            let places = self.moves.entry(w).or_default();
            if places.len() >= MAX_MOVES {
                self.overflowed = true;
                continue;
            }
            places.push(WinRect {
                x: i32::from(x),
                y: i32::from(y),
                width: u32::from(width) + u32::from(border) * 2,
                height: u32::from(height) + u32::from(border) * 2,
            });
        }
        Ok(())
    }

    /// Title, class and pid of each window (all requests sent before the
    /// first reply is read), or of the first child with a title or class
    /// for a window that has neither (a window manager's frame).
    fn describe_all(&self, ws: &[Window]) -> Vec<(String, String, Option<u32>)> {
        let asked: Vec<_> = ws.iter().map(|&w| self.ask_props(w)).collect();
        asked
            .into_iter()
            .zip(ws)
            .map(|(cookies, &w)| {
                let own = props_from(cookies);
                if !own.0.is_empty() || !own.1.is_empty() {
                    return own;
                }
                self.children_props(w).unwrap_or(own)
            })
            .collect()
    }

    fn children_props(&self, w: Window) -> Option<(String, String, Option<u32>)> {
        let tree = self.conn.query_tree(w).ok()?.reply().ok()?;
        let children: Vec<Window> = tree.children.into_iter().take(8).collect();
        let asked: Vec<_> = children.iter().map(|&c| self.ask_props(c)).collect();
        asked
            .into_iter()
            .map(props_from)
            .find(|p| !p.0.is_empty() || !p.1.is_empty())
    }

    /// `_NET_WM_NAME`, `WM_NAME`, `WM_CLASS`, `_NET_WM_PID`, asked for.
    fn ask_props(&self, w: Window) -> [Option<PropCookie<'_>>; 4] {
        let [net_name, utf8, net_pid] = self.atoms;
        let ask = |prop: Atom, kind: Atom| {
            self.conn
                .get_property(false, w, prop, kind, 0, MAX_TEXT / 4)
                .ok()
        };
        [
            ask(net_name, utf8),
            ask(AtomEnum::WM_NAME.into(), AtomEnum::STRING.into()),
            ask(AtomEnum::WM_CLASS.into(), AtomEnum::STRING.into()),
            ask(net_pid, AtomEnum::CARDINAL.into()),
        ]
    }
}

type PropCookie<'c> =
    x11rb::cookie::Cookie<'c, RustConnection, x11rb::protocol::xproto::GetPropertyReply>;

/// Title, class and pid from the answers to [`WindowWatch::ask_props`].
fn props_from(cookies: [Option<PropCookie<'_>>; 4]) -> (String, String, Option<u32>) {
    let [net_name, wm_name, wm_class, pid] =
        cookies.map(|c| c.and_then(|c| c.reply().ok()).map(|r| r.value));
    let title = net_name
        .filter(|v| !v.is_empty())
        .or(wm_name)
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default();
    // WM_CLASS is "instance\0class\0".
    let class = wm_class
        .map(|v| {
            let mut parts = v.split(|b| *b == 0);
            let instance = parts.next().unwrap_or_default().to_vec();
            let class = parts.next().filter(|c| !c.is_empty()).map(<[u8]>::to_vec);
            String::from_utf8_lossy(&class.unwrap_or(instance)).into_owned()
        })
        .unwrap_or_default();
    let pid = pid.and_then(|v| Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?)));
    (title, class, pid)
}
