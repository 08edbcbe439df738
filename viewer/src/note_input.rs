//! The note as scripts fill it: `connect` flags and, with `--headless`,
//! lines on stdin (`result resolved`, `tick device_confirmed`,
//! `next-action Call back on Monday`…), so a script can file a complete note.

use crate::checklist::{Outcome, TickedBy, ITEMS};
use crate::session::ViewState;

/// Note fields a line or flag may set, by the word that names them.
const TEXT_FIELDS: [(&str, &str); 4] = [
    ("next-action", "Next Action"),
    ("actions-taken", "Actions Taken"),
    ("changes-made", "Changes Made"),
    ("result-details", "Result"),
];

/// Applies one stdin line when it is a note command: `Some(Ok(what))` to
/// acknowledge, `Some(Err(why))` for a bad one, `None` for other lines.
pub fn apply_line(s: &mut ViewState, line: &str) -> Option<Result<String, String>> {
    let line = line.trim();
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    let rest = rest.trim();
    let done = match word {
        "result" => rest.parse::<Outcome>().map(|o| {
            s.outcome = Some(o);
            format!("result: {}", o.words())
        }),
        "tick" => tick(s, rest, true),
        "untick" => tick(s, rest, false),
        _ => {
            let (_, field) = TEXT_FIELDS.iter().find(|(w, _)| *w == word)?;
            s.note.set(field, rest);
            Ok(format!("{field} set"))
        }
    };
    Some(done)
}

/// Ticks (or unticks) technician items: `all`, or keys separated by commas.
pub fn tick(s: &mut ViewState, keys: &str, on: bool) -> Result<String, String> {
    if keys.trim() == "all" {
        if !on {
            return Err("untick takes item names, not all".into());
        }
        s.checklist.tick_all();
        return Ok("every checklist item ticked".into());
    }
    for key in keys.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        if !s.checklist.set(key, on) {
            return Err(format!(
                "{key:?} is not a checklist item you tick; {}",
                tickable()
            ));
        }
    }
    Ok(format!("{} {keys}", if on { "ticked" } else { "unticked" }))
}

/// The items the technician ticks, for error messages and `--help`.
pub fn tickable() -> String {
    let keys: Vec<_> = ITEMS
        .iter()
        .filter(|i| i.ticked_by == TickedBy::Technician)
        .map(|i| i.key)
        .collect();
    format!("the items are: all, {}", keys.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checklist::check;

    fn state() -> ViewState {
        let request = assent_proto::wire::InviteRequest {
            ticket: "T-1".into(),
            client: String::new(),
            summary: String::new(),
            impact: assent_proto::wire::Impact::Normal,
            scope: assent_proto::wire::Scope::View,
            identity_check: "phone-callback".into(),
            permissions: vec![],
        };
        ViewState::new(&request)
    }

    #[test]
    fn lines_fill_the_note_and_bad_ones_say_why() {
        let mut s = state();
        assert!(apply_line(&mut s, "chat hello").is_none());
        assert!(apply_line(&mut s, "result monitoring").unwrap().is_ok());
        assert_eq!(s.outcome, Some(Outcome::Monitoring));
        assert!(apply_line(&mut s, "next-action Call back Monday")
            .unwrap()
            .is_ok());
        assert_eq!(s.note.get("Next Action"), "Call back Monday");
        let bad = apply_line(&mut s, "tick consent_obtained")
            .unwrap()
            .unwrap_err();
        assert!(bad.contains("device_confirmed"), "{bad}");
        assert!(apply_line(&mut s, "result done").unwrap().is_err());
        assert!(apply_line(&mut s, "tick all").unwrap().is_ok());
        assert!(apply_line(&mut s, "untick within_scope").unwrap().is_ok());
        assert!(!s.checklist.gaps().contains(&"device_confirmed"));
        assert!(s.checklist.gaps().contains(&"within_scope"));
        assert!(check(s.outcome, s.note.get("Next Action"), &s.checklist).is_some());
    }
}
