//! The X screen's geometry, looked at again while capturing so the capture
//! follows it: the root window's size (a resolution change, `xrandr -s`
//! or `--fb`, changes it under a running capture) and its RandR monitors
//! (outputs, and the virtual ones `xrandr --setmonitor` defines).

use std::rc::Rc;

use scrap::x11::Server;
use x11rb::protocol::xproto::ConnectionExt as _;
use x11rb::rust_connection::RustConnection;

use crate::{Area, CaptureError, Layout, MAX_MONITORS};

/// The root's size and its monitors, each clipped to the root (monitors
/// wholly outside it are left out, and any past [`MAX_MONITORS`]); what
/// frames show is left for the caller to fill in.
pub(crate) fn look(
    conn: &RustConnection,
    root: u32,
    server: &Rc<Server>,
) -> Result<Layout, CaptureError> {
    let g = conn
        .get_geometry(root)
        .map_err(|_| CaptureError::Disconnected)?
        .reply()
        .map_err(|_| CaptureError::Disconnected)?;
    let (width, height) = (u32::from(g.width), u32::from(g.height));
    let monitors = Server::displays(server.clone())
        .filter_map(|d| {
            let r = d.rect();
            clip(
                (i32::from(r.x), i32::from(r.y)),
                (u32::from(r.w), u32::from(r.h)),
                (width, height),
            )
        })
        .take(MAX_MONITORS)
        .collect();
    Ok(Layout {
        width,
        height,
        monitors,
        shown: whole(width, height),
    })
}

/// The whole of a `width`×`height` screen.
pub(crate) fn whole(width: u32, height: u32) -> Area {
    Area {
        x: 0,
        y: 0,
        width,
        height,
    }
}

/// The part of a rectangle at `at` of `size` inside a screen of `screen`.
fn clip(at: (i32, i32), size: (u32, u32), screen: (u32, u32)) -> Option<Area> {
    let x0 = at.0.max(0) as u32;
    let y0 = at.1.max(0) as u32;
    let x1 = (i64::from(at.0) + i64::from(size.0)).clamp(0, i64::from(screen.0)) as u32;
    let y1 = (i64::from(at.1) + i64::from(size.1)).clamp(0, i64::from(screen.1)) as u32;
    (x1 > x0 && y1 > y0).then(|| Area {
        x: x0,
        y: y0,
        width: x1 - x0,
        height: y1 - y0,
    })
}

/// What frames show: monitor `pick` when there is such a monitor, else
/// the whole screen.
pub(crate) fn shown(layout: &Layout, pick: Option<usize>) -> Area {
    pick.and_then(|i| layout.monitors.get(i).copied())
        .unwrap_or_else(|| whole(layout.width, layout.height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitors_are_clipped_to_the_screen_and_a_missing_pick_shows_all() {
        assert_eq!(
            clip((-10, 0), (100, 50), (64, 64)),
            Some(Area {
                x: 0,
                y: 0,
                width: 64,
                height: 50
            })
        );
        assert_eq!(clip((70, 0), (100, 50), (64, 64)), None);
        let right = Area {
            x: 640,
            y: 0,
            width: 640,
            height: 800,
        };
        let layout = Layout {
            width: 1280,
            height: 800,
            monitors: vec![whole(640, 800), right],
            shown: whole(1280, 800),
        };
        assert_eq!(shown(&layout, Some(1)), right);
        assert_eq!(shown(&layout, None), whole(1280, 800));
        assert_eq!(shown(&layout, Some(2)), whole(1280, 800), "gone: all");
    }
}
