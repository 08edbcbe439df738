//! The support procedure's completion checklist (SOP 002, "Remote Support
//! Checklist"): 13 items, the ones the software knows ticked from facts and
//! locked, the rest ticked by the technician. The note's Result is required,
//! its Next Action too unless the issue is resolved; unticked items are
//! named in the note, never dropped silently.

/// One item of the checklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// As the procedure words it.
    pub label: &'static str,
    /// Its name in the note's `checklist_incomplete` and on `--tick`.
    pub key: &'static str,
    /// Who ticks it.
    pub ticked_by: TickedBy,
}

/// Who ticks an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickedBy {
    /// The technician.
    Technician,
    /// The software, from this fact; the technician cannot change it.
    Fact(Fact),
}

/// What the viewer knows for a fact about the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    /// The invite names a ticket (always: `connect` requires one).
    TicketRecorded,
    /// The technician recorded how the requester's identity was checked.
    IdentityChecked,
    /// The user said yes in their own prompt (the session went live).
    ConsentObtained,
    /// The session ran through Assent.
    ApprovedTool,
    /// The user's last answer to "please test" was "It works".
    TestedWorks,
    /// The session has ended.
    Disconnected,
    /// The note is being filed.
    NoteDocumented,
}

const fn tech(label: &'static str, key: &'static str) -> Item {
    Item {
        label,
        key,
        ticked_by: TickedBy::Technician,
    }
}

const fn fact(label: &'static str, key: &'static str, fact: Fact) -> Item {
    Item {
        label,
        key,
        ticked_by: TickedBy::Fact(fact),
    }
}

/// The checklist, in the procedure's order.
pub const ITEMS: [Item; 13] = [
    fact("Ticket created or updated", "ticket", Fact::TicketRecorded),
    tech("Client and user confirmed", "client_user_confirmed"),
    fact(
        "User identity verified",
        "identity_verified",
        Fact::IdentityChecked,
    ),
    tech("Device confirmed", "device_confirmed"),
    tech(
        "Issue and business impact confirmed",
        "issue_impact_confirmed",
    ),
    fact(
        "User consent obtained",
        "consent_obtained",
        Fact::ConsentObtained,
    ),
    fact(
        "Approved remote support tool used",
        "approved_tool",
        Fact::ApprovedTool,
    ),
    tech(
        "Confidential items closed or avoided",
        "confidential_items_avoided",
    ),
    tech(
        "Troubleshooting completed within approved scope",
        "within_scope",
    ),
    tech("Credentials were not exposed", "credentials_not_exposed"),
    fact(
        "Resolution tested with user",
        "resolution_tested",
        Fact::TestedWorks,
    ),
    fact(
        "Remote session disconnected",
        "session_disconnected",
        Fact::Disconnected,
    ),
    fact(
        "Session notes documented",
        "notes_documented",
        Fact::NoteDocumented,
    ),
];

/// The note's Result, one of the procedure's four.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Resolved,
    Monitoring,
    Escalated,
    FollowUpRequired,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Resolved,
        Outcome::Monitoring,
        Outcome::Escalated,
        Outcome::FollowUpRequired,
    ];

    /// As the note shows it.
    pub fn words(self) -> &'static str {
        match self {
            Outcome::Resolved => "Resolved",
            Outcome::Monitoring => "Monitoring",
            Outcome::Escalated => "Escalated",
            Outcome::FollowUpRequired => "Follow-up Required",
        }
    }

    /// As flags and stdin take it.
    pub fn key(self) -> &'static str {
        match self {
            Outcome::Resolved => "resolved",
            Outcome::Monitoring => "monitoring",
            Outcome::Escalated => "escalated",
            Outcome::FollowUpRequired => "follow-up-required",
        }
    }
}

impl std::str::FromStr for Outcome {
    type Err = String;

    fn from_str(s: &str) -> Result<Outcome, String> {
        let wanted = s.trim().to_ascii_lowercase().replace(['_', ' '], "-");
        Outcome::ALL
            .into_iter()
            .find(|o| o.key() == wanted)
            .ok_or_else(|| {
                "the result is one of: resolved, monitoring, escalated, follow-up-required"
                    .to_string()
            })
    }
}

/// The facts known about a session, and the technician's ticks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checklist {
    facts: Vec<Fact>,
    /// Keys of technician items ticked.
    ticked: Vec<&'static str>,
}

impl Checklist {
    pub fn know(&mut self, fact: Fact) {
        if !self.facts.contains(&fact) {
            self.facts.push(fact);
        }
    }

    /// A fact that no longer holds (a later "Still broken").
    pub fn forget(&mut self, fact: Fact) {
        self.facts.retain(|f| *f != fact);
    }

    /// Ticks or unticks a technician item by key; facts cannot be changed.
    /// `false` when `key` names no technician item.
    pub fn set(&mut self, key: &str, on: bool) -> bool {
        let Some(item) = ITEMS
            .iter()
            .find(|i| i.key == key && i.ticked_by == TickedBy::Technician)
        else {
            return false;
        };
        self.ticked.retain(|k| *k != item.key);
        if on {
            self.ticked.push(item.key);
        }
        true
    }

    /// Ticks every technician item (`--tick all`).
    pub fn tick_all(&mut self) {
        for item in ITEMS.iter().filter(|i| i.ticked_by == TickedBy::Technician) {
            self.set(item.key, true);
        }
    }

    pub fn is_ticked(&self, item: &Item) -> bool {
        match item.ticked_by {
            TickedBy::Technician => self.ticked.contains(&item.key),
            TickedBy::Fact(f) => self.facts.contains(&f),
        }
    }

    /// Keys of the items not ticked, in the checklist's order.
    pub fn gaps(&self) -> Vec<&'static str> {
        ITEMS
            .iter()
            .filter(|i| !self.is_ticked(i))
            .map(|i| i.key)
            .collect()
    }

    /// `- [x] Ticket created or updated` lines for the note file.
    pub fn to_markdown(&self) -> String {
        ITEMS
            .iter()
            .map(|i| {
                let mark = if self.is_ticked(i) { "x" } else { " " };
                format!("- [{mark}] {}\n", i.label)
            })
            .collect()
    }
}

/// What stands between the note and filing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteProblem {
    /// The Result is required.
    NoResult,
    /// Next Action is required unless the issue is resolved.
    NoNextAction,
    /// Items not ticked: filing is allowed once the technician confirms.
    Gaps(Vec<&'static str>),
}

impl NoteProblem {
    /// Whether the technician may file anyway (after being asked once).
    pub fn may_file_anyway(&self) -> bool {
        matches!(self, NoteProblem::Gaps(_))
    }

    pub fn message(&self) -> String {
        match self {
            NoteProblem::NoResult => "Choose a Result (Resolved, Monitoring, Escalated or Follow-up Required) before closing.".into(),
            NoteProblem::NoNextAction => {
                "Write the Next Action: it is required unless the issue is Resolved.".into()
            }
            NoteProblem::Gaps(gaps) => format!(
                "{} checklist item(s) not ticked: {}. Close again to file the note anyway; it will name them.",
                gaps.len(),
                gaps.join(", ")
            ),
        }
    }
}

/// The first problem of a note about to be filed, if any.
pub fn check(
    outcome: Option<Outcome>,
    next_action: &str,
    checklist: &Checklist,
) -> Option<NoteProblem> {
    let Some(outcome) = outcome else {
        return Some(NoteProblem::NoResult);
    };
    if outcome != Outcome::Resolved && next_action.trim().is_empty() {
        return Some(NoteProblem::NoNextAction);
    }
    let gaps = checklist.gaps();
    (!gaps.is_empty()).then_some(NoteProblem::Gaps(gaps))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_facts() -> Checklist {
        let mut c = Checklist::default();
        for f in [
            Fact::TicketRecorded,
            Fact::IdentityChecked,
            Fact::ConsentObtained,
            Fact::ApprovedTool,
            Fact::TestedWorks,
            Fact::Disconnected,
            Fact::NoteDocumented,
        ] {
            c.know(f);
        }
        c
    }

    #[test]
    fn thirteen_items_with_unique_keys() {
        assert_eq!(ITEMS.len(), 13);
        let mut keys: Vec<_> = ITEMS.iter().map(|i| i.key).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 13);
    }

    #[test]
    fn facts_cannot_be_ticked_or_unticked_by_hand() {
        let mut c = Checklist::default();
        assert!(!c.set("consent_obtained", true));
        assert!(c.gaps().contains(&"consent_obtained"));
        c.know(Fact::ConsentObtained);
        assert!(!c.set("consent_obtained", false));
        assert!(!c.gaps().contains(&"consent_obtained"));
        assert!(!c.set("no_such_item", true));
    }

    #[test]
    fn result_is_required_and_next_action_unless_resolved() {
        let mut c = all_facts();
        c.tick_all();
        assert_eq!(check(None, "", &c), Some(NoteProblem::NoResult));
        assert_eq!(
            check(Some(Outcome::Monitoring), " ", &c),
            Some(NoteProblem::NoNextAction)
        );
        assert_eq!(
            check(Some(Outcome::Monitoring), "Call back Monday", &c),
            None
        );
        assert_eq!(check(Some(Outcome::Resolved), "", &c), None);
    }

    #[test]
    fn gaps_are_named_in_order() {
        let mut c = all_facts();
        c.tick_all();
        c.set("device_confirmed", false);
        c.set("within_scope", false);
        let problem = check(Some(Outcome::Resolved), "", &c).unwrap();
        assert_eq!(
            problem,
            NoteProblem::Gaps(vec!["device_confirmed", "within_scope"])
        );
        assert!(problem.may_file_anyway());
        assert!(problem.message().contains("device_confirmed, within_scope"));
        assert!(c.to_markdown().contains("- [ ] Device confirmed\n"));
        assert!(c.to_markdown().contains("- [x] User consent obtained\n"));
    }

    #[test]
    fn outcomes_parse_from_flags_and_words() {
        assert_eq!("resolved".parse(), Ok(Outcome::Resolved));
        assert_eq!("Follow-up Required".parse(), Ok(Outcome::FollowUpRequired));
        assert_eq!("follow_up_required".parse(), Ok(Outcome::FollowUpRequired));
        assert!("done".parse::<Outcome>().is_err());
    }
}
