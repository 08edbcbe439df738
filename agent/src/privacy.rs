//! What the user keeps private: windows they hide, or "share only this
//! window", and the organisation's policy ([`policy::Policy`]) that hides
//! some windows whatever the user says. The state lives here, on the
//! agent, and only here: the capture thread paints the mask into every
//! frame before it is encoded ([`masked::MaskedSource`]); the viewer gets
//! counts ([`report`]) and nothing it sends can change the mask.

pub mod masked;
pub mod policy;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use assent_capture::mask::Choice;
use assent_capture::windows::{TopWindow, WindowWatch};
use assent_capture::MaskReport;
use assent_client::e2e::ChannelWriter;
use assent_client::Control;
use assent_proto::privacy::PrivacyCounts;
use assent_proto::session_msg::SessionMsg;
use assent_proto::text::sanitize;
use assent_proto::wire::ClientMsg;

pub use policy::Policy;

/// How often the window list shown to the user is refreshed.
const LIST_EVERY: Duration = Duration::from_millis(300);
/// Longest title shown in a list or notice.
const SHOWN_TITLE: usize = 80;
/// Notices of new windows kept until the user acts on them.
const MAX_NEWS: usize = 5;

/// One window as the user sees it in the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Stable for the window's life: what `hide N` names.
    pub number: u32,
    pub id: u32,
    pub title: String,
    pub class: String,
    /// The policy hides it: the user cannot show it.
    pub by_policy: bool,
    /// Painted over (by policy, by the user, or by "share only").
    pub hidden: bool,
    /// The one window shared with "share only this window".
    pub only: bool,
}

#[derive(Default)]
struct State {
    user_hidden: HashSet<u32>,
    only: Option<u32>,
    numbers: HashMap<u32, u32>,
    next_number: u32,
    windows: Vec<TopWindow>,
    /// Once the session is live, windows not seen before are announced.
    live: bool,
    /// "new window shared: <title>" notices the user has not acted on:
    /// (number, title), newest last.
    news: Vec<(u32, String)>,
    /// Bumped on every change of what is hidden.
    version: u64,
}

/// The agent's privacy state, shared by the capture thread and the UI.
pub struct Privacy {
    policy: Policy,
    own_pid: u32,
    /// The agent's own X windows, as its window reported them (beside the
    /// pid: a client on another host, or one that sets no `_NET_WM_PID`).
    own_ids: Mutex<Vec<u32>>,
    state: Mutex<State>,
    /// Called (from the list thread) when a new window is shared.
    on_news: Mutex<Option<NewsHook>>,
}

/// Told the number and title of each window shared as it opens.
pub type NewsHook = Box<dyn Fn(u32, &str) + Send>;

static INSTALLED: OnceLock<Arc<Privacy>> = OnceLock::new();

/// The process's privacy state, once `install`ed (the UI reads it).
pub fn installed() -> Option<&'static Arc<Privacy>> {
    INSTALLED.get()
}

impl Privacy {
    pub fn new(policy: Policy) -> Arc<Privacy> {
        Arc::new(Privacy {
            policy,
            own_pid: std::process::id(),
            own_ids: Mutex::new(Vec::new()),
            state: Mutex::new(State::default()),
            on_news: Mutex::new(None),
        })
    }

    /// Makes this the process's state for the UI, lists the windows once
    /// (so the prompt has them) and keeps refreshing the list (on an X
    /// connection of its own) while the state lives.
    pub fn install(self: &Arc<Self>) {
        let _ = INSTALLED.set(self.clone());
        let mut watch = match WindowWatch::open(None) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list windows for the privacy choices");
                return;
            }
        };
        if let Ok(list) = watch.list() {
            self.update(list);
        }
        let weak = Arc::downgrade(self);
        let _ = std::thread::Builder::new()
            .name("windows".into())
            .spawn(move || watch_list(weak, watch));
    }

    /// What to call when a window opens during the session.
    pub fn on_news(&self, f: NewsHook) {
        *self.on_news.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn version(&self) -> u64 {
        self.lock().version
    }

    /// From now on windows that open are announced.
    pub fn set_live(&self) {
        self.lock().live = true;
    }

    /// Whether the agent itself owns this window: never listed, never
    /// counted as hidden (the user did not hide it; the technician is not
    /// told of it), and always covered in the frames.
    pub(crate) fn own(&self, w: &TopWindow) -> bool {
        w.pid == Some(self.own_pid)
            || self
                .own_ids
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&w.id)
    }

    /// The agent opened this X window (its prompt / indicator).
    pub fn add_own_window(&self, id: u32) {
        let mut ids = self.own_ids.lock().unwrap_or_else(|p| p.into_inner());
        if !ids.contains(&id) {
            ids.push(id);
        }
    }

    /// Whether the policy hides this window.
    pub fn by_policy(&self, w: &TopWindow) -> bool {
        self.policy.hides(&w.title, &w.class)
    }

    /// What the capture thread covers, and the counts it reports, for the
    /// windows it saw.
    pub(crate) fn decide(&self) -> (Choice, HashSet<u32>) {
        let s = self.lock();
        match s.only {
            Some(id) => (Choice::Only(id), HashSet::new()),
            None => (Choice::Show, s.user_hidden.clone()),
        }
    }

    /// Counts for the technician and the relay, over the windows listed.
    pub(crate) fn count(
        &self,
        windows: &[TopWindow],
        choice: &Choice,
        user: &HashSet<u32>,
    ) -> MaskReport {
        let listed = windows.iter().filter(|w| !self.own(w));
        let mut report = MaskReport::default();
        for w in listed {
            let policy = self.by_policy(w);
            let hidden = match choice {
                Choice::Only(id) => *id != w.id,
                Choice::Show => policy || user.contains(&w.id),
            };
            report.hidden += u32::from(hidden);
            report.by_policy += u32::from(hidden && policy);
        }
        report.only_one = matches!(choice, Choice::Only(_));
        report
    }

    /// Takes a fresh window list: numbers new windows, announces them once
    /// live, forgets choices about windows that are gone.
    fn update(&self, windows: Vec<TopWindow>) {
        let mut news = Vec::new();
        {
            let mut s = self.lock();
            let s = &mut *s;
            let mut gone: HashSet<u32> = s.numbers.keys().copied().collect();
            for w in windows.iter().filter(|w| !self.own(w)) {
                gone.remove(&w.id);
                if !s.numbers.contains_key(&w.id) {
                    s.next_number += 1;
                    s.numbers.insert(w.id, s.next_number);
                    if s.live && s.only.is_none() && !self.by_policy(w) {
                        news.push((s.next_number, shown_title(w)));
                    }
                }
            }
            for id in gone {
                if let Some(n) = s.numbers.remove(&id) {
                    s.news.retain(|(m, _)| *m != n);
                }
                s.user_hidden.remove(&id);
            }
            s.windows = windows;
            s.news.extend(news.iter().cloned());
            let excess = s.news.len().saturating_sub(MAX_NEWS);
            s.news.drain(..excess);
        }
        if let Some(f) = &*self.on_news.lock().unwrap_or_else(|p| p.into_inner()) {
            for (n, title) in &news {
                f(*n, title);
            }
        }
    }

    /// The list the user sees, bottom of the stack first.
    pub fn entries(&self) -> Vec<Entry> {
        let s = self.lock();
        let mut out: Vec<Entry> = s
            .windows
            .iter()
            .filter(|w| !self.own(w))
            .filter_map(|w| {
                let by_policy = self.by_policy(w);
                let only = s.only == Some(w.id);
                Some(Entry {
                    number: *s.numbers.get(&w.id)?,
                    id: w.id,
                    title: shown_title(w),
                    class: sanitize(&w.class, SHOWN_TITLE),
                    by_policy,
                    hidden: match s.only {
                        Some(id) => id != w.id,
                        None => by_policy || s.user_hidden.contains(&w.id),
                    },
                    only,
                })
            })
            .collect();
        out.sort_by_key(|e| e.number);
        out
    }

    /// Whether "share only this window" is on (also when that window has
    /// closed since: then everything stays covered until the user says).
    pub fn only_active(&self) -> bool {
        self.lock().only.is_some()
    }

    /// Notices of windows opened during the session that the user has
    /// not hidden or dismissed: (number, title).
    pub fn news(&self) -> Vec<(u32, String)> {
        self.lock().news.clone()
    }

    /// The user saw the notice about window `number` (or hid it).
    pub fn dismiss(&self, number: u32) {
        self.lock().news.retain(|(n, _)| *n != number);
    }

    /// Whether something is told of new windows already.
    pub fn has_news_hook(&self) -> bool {
        self.on_news
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    fn id_of(&self, number: u32) -> Result<u32, String> {
        let s = self.lock();
        s.numbers
            .iter()
            .find(|(_, n)| **n == number)
            .map(|(id, _)| *id)
            .ok_or_else(|| format!("there is no window {number} (type `windows` for the list)"))
    }

    /// Hides window `number`.
    pub fn hide(&self, number: u32) -> Result<(), String> {
        let id = self.id_of(number)?;
        let mut s = self.lock();
        s.user_hidden.insert(id);
        s.news.retain(|(n, _)| *n != number);
        s.version += 1;
        Ok(())
    }

    /// Shows window `number` again, unless the policy hides it.
    pub fn show(&self, number: u32) -> Result<(), String> {
        let id = self.id_of(number)?;
        let mut s = self.lock();
        if let Some(w) = s.windows.iter().find(|w| w.id == id) {
            if self.by_policy(w) {
                return Err(format!(
                    "window {number} is hidden by your organisation's policy and stays hidden"
                ));
            }
        }
        s.user_hidden.remove(&id);
        s.version += 1;
        Ok(())
    }

    /// Shares only window `number` (`None`: back to sharing all but the
    /// hidden ones). A window the policy hides cannot be the one.
    pub fn only(&self, number: Option<u32>) -> Result<(), String> {
        let id = number.map(|n| self.id_of(n)).transpose()?;
        let mut s = self.lock();
        if let Some(w) = id.and_then(|id| s.windows.iter().find(|w| w.id == id)) {
            if self.by_policy(w) {
                return Err("that window is hidden by your organisation's policy".into());
            }
        }
        s.only = id;
        s.version += 1;
        Ok(())
    }
}

/// Installs the state for the UI (when there is a display to list) and,
/// on a terminal, prints each window shared as it opens.
pub fn start(privacy: &Arc<Privacy>, tty: bool) {
    if std::env::var_os("DISPLAY").is_some() {
        privacy.install();
    }
    if tty {
        privacy.on_news(Box::new(|n, title| {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "new window shared: {title} (type `hide {n}` to hide it)"
            );
        }));
    }
}

fn shown_title(w: &TopWindow) -> String {
    let title = sanitize(&w.title, SHOWN_TITLE);
    if title.trim().is_empty() {
        "(untitled)".into()
    } else {
        title
    }
}

/// Refreshes the list while the state lives.
fn watch_list(privacy: Weak<Privacy>, mut watch: WindowWatch) {
    loop {
        std::thread::sleep(LIST_EVERY);
        let Some(p) = privacy.upgrade() else { return };
        match watch.list() {
            Ok(list) => p.update(list),
            Err(e) => {
                tracing::warn!(error = %e, "listing windows failed");
                return;
            }
        }
        let _ = watch.take_moves();
    }
}

/// Tells the viewer (counts, end to end) and the relay (counts, audited
/// as `privacy_changed`) what the user keeps private now.
pub async fn report(tx: &mut ChannelWriter, control: &mut Control, r: MaskReport) {
    let to_viewer = SessionMsg::Privacy {
        hidden: r.hidden,
        only_one: r.only_one,
    };
    if let Err(e) = tx.send(&to_viewer).await {
        tracing::warn!(error = %e, "could not tell the viewer what is hidden");
    }
    let to_relay = ClientMsg::PrivacyChanged(PrivacyCounts {
        hidden: r.hidden,
        by_policy: r.by_policy,
        only_one: r.only_one,
    });
    if let Err(e) = control.send(&to_relay).await {
        tracing::warn!(error = %e, "could not report the privacy change to the relay");
    }
}

/// A terminal line about windows (`windows`, `hide N`, `show N`, `only N`,
/// `only off`): handled here, with what to print; `None` for other lines.
pub fn tty_command(privacy: &Privacy, line: &str) -> Option<String> {
    let mut words = line.split_whitespace();
    let (verb, arg) = (words.next()?, words.next());
    if words.next().is_some() {
        return None;
    }
    let number = arg.and_then(|a| a.parse::<u32>().ok());
    let result = match (verb, arg, number) {
        ("windows", None, _) => Ok(()),
        ("hide", Some(_), Some(n)) => privacy.hide(n),
        ("show", Some(_), Some(n)) => privacy.show(n),
        ("only", Some("off" | "all"), _) => privacy.only(None),
        ("only", Some(_), Some(n)) => privacy.only(Some(n)),
        _ => return None,
    };
    Some(match result {
        Ok(()) => tty_list(privacy),
        Err(e) => e,
    })
}

/// The numbered list, as printed on the terminal.
pub fn tty_list(privacy: &Privacy) -> String {
    let mut out = String::from(
        "Windows on your screen (type `hide N`, `show N`, `only N` to share only that one, `only off`):",
    );
    if privacy.only_active() && !privacy.entries().iter().any(|e| e.only) {
        out.push_str("\n  (the one window you shared has closed: nothing is shared until `only off` or `only N`)");
    }
    for e in privacy.entries() {
        let state = match (e.by_policy, e.only, e.hidden) {
            (true, _, _) => "hidden by policy",
            (_, true, _) => "the only one shared",
            (_, _, true) => "hidden",
            _ => "shared",
        };
        let class = if e.class.is_empty() {
            String::new()
        } else {
            format!(" ({})", e.class)
        };
        out.push_str(&format!("\n  {}. [{state}] {}{class}", e.number, e.title));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use assent_capture::windows::WinRect;

    fn win(id: u32, title: &str, class: &str) -> TopWindow {
        TopWindow {
            id,
            rect: WinRect::default(),
            title: title.into(),
            class: class.into(),
            pid: None,
        }
    }

    #[test]
    fn the_user_hides_more_never_less_than_the_policy() {
        let p = Privacy::new(Policy::new(vec!["*bank*".into()]).unwrap());
        p.update(vec![win(7, "My Bank", "Firefox"), win(9, "Notes", "Notes")]);
        let e = p.entries();
        assert_eq!((e[0].number, e[0].by_policy, e[0].hidden), (1, true, true));
        assert_eq!((e[1].number, e[1].hidden), (2, false));
        assert!(p.show(1).unwrap_err().contains("policy"));
        assert!(p.only(Some(1)).is_err());
        let v = p.version();
        p.hide(2).unwrap();
        assert!(p.version() > v, "a change wakes the capture");
        let (choice, user) = p.decide();
        let counts = p.count(&p.lock().windows.clone(), &choice, &user);
        assert_eq!((counts.hidden, counts.by_policy), (2, 1));
        p.only(Some(2)).unwrap();
        let (choice, user) = p.decide();
        assert_eq!(choice, Choice::Only(9));
        let counts = p.count(&p.lock().windows.clone(), &choice, &user);
        assert_eq!((counts.hidden, counts.only_one), (1, true));
        assert!(p.hide(5).is_err(), "no such window");
    }

    #[test]
    fn new_windows_are_announced_once_live_and_tty_lines_parse() {
        let p = Privacy::new(Policy::default());
        p.update(vec![win(1, "Terminal", "XTerm")]);
        p.set_live();
        p.update(vec![
            win(1, "Terminal", "XTerm"),
            win(2, "Mail", "Thunderbird"),
        ]);
        assert_eq!(p.news(), vec![(2, "Mail".to_string())]);
        let listed = tty_command(&p, "hide 2").unwrap();
        assert!(
            listed.contains("2. [hidden] Mail (Thunderbird)"),
            "{listed}"
        );
        assert!(p.news().is_empty(), "hiding answers the notice");
        assert!(tty_command(&p, "hello there").is_none(), "chat stays chat");
        assert!(tty_command(&p, "show 9").unwrap().contains("no window 9"));
        // A closed window's choices go with it.
        p.update(vec![win(1, "Terminal", "XTerm")]);
        assert!(p.decide().1.is_empty());
        // The one shared window closes: everything stays covered.
        p.update(vec![win(1, "Terminal", "XTerm"), win(3, "Doc", "Writer")]);
        tty_command(&p, "only 3").unwrap();
        p.update(vec![win(1, "Terminal", "XTerm")]);
        assert!(p.only_active() && p.decide().0 == Choice::Only(3));
        assert!(tty_list(&p).contains("has closed"));
        tty_command(&p, "only off").unwrap();
        assert!(!p.only_active());
    }
}
