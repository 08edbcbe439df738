//! The user's monitors (screen format 3): what the technician's viewer
//! knows of them from each keyframe's view, and the pick of one monitor or
//! all, from the window's "Show: All 1 2" row or a `--headless` line. The
//! agent crops to the pick; its privacy mask covers any part alike.

use assent_codec::View;

use crate::session::Command;

/// What the viewer knows of the user's screen (screen format 3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Screens {
    /// The user's whole screen, when the agent says.
    pub screen: Option<(u32, u32)>,
    /// Its monitors: (x, y, width, height) each.
    pub monitors: Vec<(u32, u32, u32, u32)>,
    /// The monitor shown (an index into `monitors`), `None` for all.
    pub monitor: Option<usize>,
}

/// The user's screen and monitors, and which monitor a keyframe of `size`
/// shows (none when it shows the whole screen), from its view.
pub fn shown_part(stats: &mut Screens, view: Option<&View>, size: (u32, u32)) {
    let Some(v) = view else {
        (stats.screen, stats.monitors, stats.monitor) = (None, Vec::new(), None);
        return;
    };
    stats.screen = Some((v.screen_width, v.screen_height));
    stats.monitors = v
        .monitors
        .iter()
        .map(|m| (m.x, m.y, m.width, m.height))
        .collect();
    let whole = size == (v.screen_width, v.screen_height);
    stats.monitor = stats
        .monitors
        .iter()
        .position(|m| *m == (v.x, v.y, size.0, size.1))
        .filter(|_| !whole);
}

/// A `--headless` line `monitor N` (N from 1, as the window numbers
/// them) or `monitor all`: what the technician sees; `None` for others.
pub fn monitor_line(line: &str) -> Option<Command> {
    let pick = line.trim().strip_prefix("monitor ")?.trim();
    if pick == "all" {
        return Some(Command::ShowMonitor(None));
    }
    let n: u8 = pick.parse().ok()?;
    n.checked_sub(1).map(|i| Command::ShowMonitor(Some(i)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use assent_codec::Rect;

    #[test]
    fn lines_pick_a_monitor_from_one_or_all() {
        assert_eq!(
            monitor_line("monitor 2"),
            Some(Command::ShowMonitor(Some(1)))
        );
        assert_eq!(
            monitor_line(" monitor all "),
            Some(Command::ShowMonitor(None))
        );
        for other in [
            "monitor 0",
            "monitor x",
            "monitor 300",
            "monitors 1",
            "chat monitor 1",
        ] {
            assert_eq!(monitor_line(other), None, "{other}");
        }
    }

    #[test]
    fn the_view_says_which_monitor_is_shown() {
        let monitor = |x| Rect {
            x,
            y: 0,
            width: 640,
            height: 800,
        };
        let mut view = View {
            screen_width: 1280,
            screen_height: 800,
            x: 640,
            y: 0,
            monitors: vec![monitor(0), monitor(640)],
        };
        let mut stats = Screens::default();
        shown_part(&mut stats, Some(&view), (640, 800));
        assert_eq!(stats.screen, Some((1280, 800)));
        assert_eq!((stats.monitors.len(), stats.monitor), (2, Some(1)));
        view.x = 0;
        shown_part(&mut stats, Some(&view), (1280, 800));
        assert_eq!(stats.monitor, None, "the whole screen");
        shown_part(&mut stats, None, (1280, 800));
        assert!(stats.monitors.is_empty() && stats.screen.is_none());
    }
}
