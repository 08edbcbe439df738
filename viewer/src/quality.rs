//! The technician's screen quality (auto / sharp / smooth): the status
//! bar's picker, the `--headless` line, and what the status bar says of
//! photos shown as JPEG.

use std::time::Duration;

use assent_proto::session_msg::ScreenQuality;
use eframe::egui;

use crate::session::{Command, Stats};

/// `--headless`: `quality auto`, `quality sharp` or `quality smooth`.
pub fn parse_line(line: &str) -> Option<Command> {
    let word = line.trim().strip_prefix("quality ")?;
    ScreenQuality::parse(word.trim()).map(Command::Quality)
}

/// "Quality: Auto Sharp Smooth", the technician's choice highlighted;
/// then, while photos arrive as JPEG, that they are sharpened when still.
pub fn picker(
    ui: &mut egui::Ui,
    stats: &Stats,
    commands: &tokio::sync::mpsc::UnboundedSender<Command>,
) {
    ui.label("Quality:");
    for (q, label, hint) in [
        (
            ScreenQuality::Auto,
            "Auto",
            "Photos and video follow the link; text always exact",
        ),
        (
            ScreenQuality::Sharp,
            "Sharp",
            "Everything exact, always (slower on a slow link)",
        ),
        (
            ScreenQuality::Smooth,
            "Smooth",
            "Motion first: photos and video at low quality until still",
        ),
    ] {
        if ui
            .selectable_label(stats.quality == q, label)
            .on_hover_text(hint)
            .clicked()
            && stats.quality != q
        {
            let _ = commands.send(Command::Quality(q));
        }
    }
    if stats
        .last_jpeg
        .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
    {
        ui.label("· photos softened while moving");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headless_quality_lines() {
        assert_eq!(
            parse_line("quality sharp"),
            Some(Command::Quality(ScreenQuality::Sharp))
        );
        assert_eq!(
            parse_line(" quality smooth "),
            Some(Command::Quality(ScreenQuality::Smooth))
        );
        assert_eq!(parse_line("quality best"), None);
        assert_eq!(parse_line("chat quality auto"), None);
    }
}
