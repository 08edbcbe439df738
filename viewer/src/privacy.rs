//! What the technician is told about the user's privacy choices: counts
//! only (`SessionMsg::Privacy`), never which windows. The mask itself is
//! the agent's: nothing here can change it.

/// The status bar's words for `hidden` covered windows, or `None` when
/// nothing is hidden.
pub fn status_text(hidden: u32, only_one: bool) -> Option<String> {
    match (hidden, only_one) {
        (_, true) => Some(format!(
            "The user shares only one window ({hidden} other windows hidden by the user)"
        )),
        (0, false) => None,
        (1, false) => Some("1 window hidden by the user".into()),
        (n, false) => Some(format!("{n} windows hidden by the user")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_never_titles() {
        assert_eq!(status_text(0, false), None);
        assert_eq!(
            status_text(1, false).unwrap(),
            "1 window hidden by the user"
        );
        assert_eq!(
            status_text(3, false).unwrap(),
            "3 windows hidden by the user"
        );
        assert!(status_text(2, true).unwrap().contains("only one window"));
    }
}
