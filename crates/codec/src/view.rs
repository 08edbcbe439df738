//! Where a frame sits on the agent's screen (format 3): the whole screen's
//! size, the frame's origin on it, and the monitors. Keyframes carry it
//! (the agent sends one whenever it changes: a resolution change, a
//! monitor added, the technician's pick of one monitor or all), so the
//! viewer can offer the monitors and knows what it shows.

// A decoder of untrusted bytes: no panicking shortcuts (its tests may).
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::wire::{read_varint, write_varint};
use crate::{check_dimensions, CodecError, Rect, Result};

/// The most monitors a view lists (bounds what a hostile one allocates).
pub const MAX_MONITORS: usize = 16;

/// The screen a frame is part of.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct View {
    /// The whole screen (every monitor), in pixels.
    pub screen_width: u32,
    pub screen_height: u32,
    /// Where the frame's top-left pixel is on the screen.
    pub x: u32,
    pub y: u32,
    /// The monitors, inside the screen (may be empty: then the screen is
    /// one monitor).
    pub monitors: Vec<Rect>,
}

impl View {
    /// Appends the varints: screen width, height, x, y, monitor count,
    /// then each monitor's x, y, width, height.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        for v in [self.screen_width, self.screen_height, self.x, self.y] {
            write_varint(u64::from(v), out);
        }
        write_varint(self.monitors.len() as u64, out);
        for m in &self.monitors {
            for v in [m.x, m.y, m.width, m.height] {
                write_varint(u64::from(v), out);
            }
        }
    }

    /// Reads a view written by [`View::write`] for a `width`×`height`
    /// frame and checks it ([`View::check`]); returns the bytes after it.
    pub(crate) fn read(bytes: &[u8], width: u32, height: u32) -> Result<(View, &[u8])> {
        let mut rest = bytes;
        let mut number = || -> Result<u32> {
            let (v, after) = read_varint(rest)?;
            rest = after;
            u32::try_from(v).map_err(|_| CodecError::BadView("number out of range"))
        };
        let (screen_width, screen_height, x, y) = (number()?, number()?, number()?, number()?);
        let count = number()? as usize;
        if count > MAX_MONITORS {
            return Err(CodecError::BadView("too many monitors"));
        }
        let mut monitors = Vec::with_capacity(count);
        for _ in 0..count {
            let (mx, my, mw, mh) = (number()?, number()?, number()?, number()?);
            monitors.push(Rect {
                x: mx,
                y: my,
                width: mw,
                height: mh,
            });
        }
        let view = View {
            screen_width,
            screen_height,
            x,
            y,
            monitors,
        };
        view.check(width, height)?;
        Ok((view, rest))
    }

    /// The screen's size is one a frame may have, the `width`×`height`
    /// frame at (x, y) lies inside it, and so does every monitor.
    pub fn check(&self, width: u32, height: u32) -> Result<()> {
        check_dimensions(self.screen_width, self.screen_height)
            .map_err(|_| CodecError::BadView("bad screen size"))?;
        if self.monitors.len() > MAX_MONITORS {
            return Err(CodecError::BadView("too many monitors"));
        }
        let frame = Rect {
            x: self.x,
            y: self.y,
            width,
            height,
        };
        let inside = |r: &Rect| {
            r.width > 0
                && r.height > 0
                && u64::from(r.x) + u64::from(r.width) <= u64::from(self.screen_width)
                && u64::from(r.y) + u64::from(r.height) <= u64::from(self.screen_height)
        };
        if !inside(&frame) {
            return Err(CodecError::BadView("frame outside the screen"));
        }
        if !self.monitors.iter().all(inside) {
            return Err(CodecError::BadView("monitor outside the screen"));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn rect(x: u32, y: u32, width: u32, height: u32) -> Rect {
        Rect {
            x,
            y,
            width,
            height,
        }
    }

    #[test]
    fn views_round_trip_and_hostile_ones_are_refused() {
        let view = View {
            screen_width: 2560,
            screen_height: 1024,
            x: 1280,
            y: 0,
            monitors: vec![rect(0, 0, 1280, 1024), rect(1280, 0, 1280, 1024)],
        };
        let mut bytes = Vec::new();
        view.write(&mut bytes);
        bytes.push(0xaa);
        let (back, rest) = View::read(&bytes, 1280, 1024).unwrap();
        assert_eq!((back, rest), (view.clone(), &[0xaa][..]));
        // The frame must fit where the view puts it.
        assert!(View::read(&bytes, 1281, 1024).is_err());
        for hostile in [
            View {
                screen_width: 0,
                ..view.clone()
            },
            View {
                screen_width: 1 << 20,
                ..view.clone()
            },
            View {
                monitors: vec![rect(2000, 0, 1280, 1024)],
                ..view.clone()
            },
            View {
                monitors: vec![rect(0, 0, 0, 10)],
                ..view.clone()
            },
            View {
                monitors: vec![rect(0, 0, 10, 10); MAX_MONITORS + 1],
                ..view.clone()
            },
            View {
                x: u32::MAX,
                ..view.clone()
            },
        ] {
            let mut bytes = Vec::new();
            hostile.write(&mut bytes);
            assert!(View::read(&bytes, 1280, 1024).is_err(), "{hostile:?}");
        }
        // A count past the bytes there are, or truncated: refused, no
        // allocation of the count's size.
        let mut bytes = Vec::new();
        for v in [2560u64, 1024, 0, 0, u64::from(u32::MAX)] {
            write_varint(v, &mut bytes);
        }
        assert!(View::read(&bytes, 1280, 1024).is_err());
        assert!(View::read(&bytes[..3], 1280, 1024).is_err());
    }
}
