//! The terminal's side of the UI (`--tty`): the same prompt and indicator
//! as the window, as lines on stderr, and answers, commands and chat read
//! from stdin.

/// A line on the terminal. A terminal that went away (a closed pipe) must
/// not take the session down with a panic the way `eprintln!` would: the
/// user can still end it, and the relay's and viewer's records stay right.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

use std::sync::{Arc, Mutex};
use std::time::Instant;

use assent_proto::wire::{Scope, Validation};
use tokio::sync::mpsc::UnboundedSender;

use crate::ui::{UiCommand, UiEvent, UiSink, CLOSED_TITLE, ENDED_TITLE, LIVE_TITLE, PROMPT_TITLE};

/// The terminal's side of the UI (`--tty`).
pub struct TtyUi;

/// The "please test" waiting for an answer on the terminal (0: none).
static TTY_VALIDATION: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// `works …` or `broken …` while a "please test" is open.
fn validation_answer(line: &str) -> Option<UiCommand> {
    use std::sync::atomic::Ordering::SeqCst;
    let number = TTY_VALIDATION.load(SeqCst);
    if number == 0 {
        return None;
    }
    let line = line.trim();
    let (word, comment) = line.split_once(' ').unwrap_or((line, ""));
    let answer = match word.to_ascii_lowercase().as_str() {
        "works" => Validation::Works,
        "broken" => Validation::StillBroken,
        _ => return None,
    };
    TTY_VALIDATION.store(0, SeqCst);
    Some(UiCommand::Validate {
        number,
        answer,
        comment: comment.trim().to_string(),
    })
}

/// Set while "Was your problem solved?" waits for an answer.
static TTY_CONFIRM: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The answer to "Was your problem solved?" while it is asked.
fn confirm_answer(line: &str) -> Option<UiCommand> {
    use std::sync::atomic::Ordering::SeqCst;
    if !TTY_CONFIRM.load(SeqCst) {
        return None;
    }
    match crate::ui::ended::confirmation_for_key(line) {
        Some(answer) => {
            TTY_CONFIRM.store(false, SeqCst);
            Some(UiCommand::Confirm(answer))
        }
        None => {
            say!("Please type y, n or u and press Enter (or Ctrl-D to skip).");
            None
        }
    }
}

/// Set once the first question is on the terminal: a line typed before it
/// (typed ahead, or meant for something else) answers nothing.
static TTY_QUESTION_SHOWN: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

impl UiSink for TtyUi {
    fn show(&self, event: UiEvent) {
        match event {
            UiEvent::Connecting => say!("Connecting to your technician…"),
            UiEvent::Prompt { text, deadline } => tty_prompt(&text, deadline),
            UiEvent::Live(info) => tty_live(&info),
            UiEvent::Paused(true) => {
                say!("Session paused: the technician sees a placeholder and cannot type.")
            }
            UiEvent::Paused(false) => say!("Session resumed."),
            UiEvent::Interrupted(true) => say!(
                "Connection interrupted, reconnecting: your technician cannot see your screen right now."
            ),
            UiEvent::Interrupted(false) => say!("Connection back: the session goes on."),
            UiEvent::Ended(msg) => say!("{msg}"),
            UiEvent::PermissionAsked(p) => say!(
                "Your technician asks to {}. Type `{} on` to allow it (it stays off otherwise).",
                p.plain_words(),
                p.as_str()
            ),
            UiEvent::Clipboard(news) => say!("{}", news.text()),
            UiEvent::File(news) => tty_file(&news),
            UiEvent::RequestClosed(msg) => {
                say!();
                say!("== {CLOSED_TITLE} ==");
                say!("{msg}");
            }
            UiEvent::Chat(line) if !line.mine => {
                say!("[{}] {}: {}", line.at, line.from, line.text)
            }
            UiEvent::Chat(_) => {}
            UiEvent::Confirm(question) => {
                TTY_CONFIRM.store(true, std::sync::atomic::Ordering::SeqCst);
                say!();
                say!("== {ENDED_TITLE} ==");
                say!("{}", question.headline);
                say!("{}", question.why);
                say!(
                    "{} ({}, then Enter; Ctrl-D skips)",
                    crate::ui::ended::QUESTION,
                    crate::ui::ended::KEYS_HINT
                );
            }
            UiEvent::Validation(ask) => {
                TTY_VALIDATION.store(ask.number, std::sync::atomic::Ordering::SeqCst);
                say!("{} asks you to test whether it works now.", ask.technician);
                if !ask.what.is_empty() {
                    say!("What to test: {}", ask.what);
                }
                say!("Type `works` or `broken`, optionally followed by a comment, and Enter.");
            }
        }
    }
}

/// The last quarter of a transfer printed (progress prints at 25, 50, 75 %).
static TTY_FILE_QUARTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn tty_file(news: &crate::ui::FileNews) {
    use crate::ui::FileNews;
    use std::sync::atomic::Ordering::SeqCst;
    match news {
        FileNews::Progress { done, size, .. } => {
            let quarter = crate::ui::files::percent(*done, *size) / 25;
            if quarter == 0 || quarter >= 4 || TTY_FILE_QUARTER.swap(quarter, SeqCst) == quarter {
                return;
            }
        }
        FileNews::Offered { .. } => {
            TTY_FILE_QUARTER.store(0, SeqCst);
            say!("{}", news.text());
            say!("Type `accept` or `decline` and press Enter.");
            return;
        }
        _ => TTY_FILE_QUARTER.store(0, SeqCst),
    }
    say!("{}", news.text());
}

/// The consent prompt as lines.
fn tty_prompt(text: &crate::prompt::PromptText, deadline: Instant) {
    TTY_QUESTION_SHOWN.store(true, std::sync::atomic::Ordering::SeqCst);
    say!();
    say!("== {PROMPT_TITLE} ==");
    for line in text.lines() {
        say!("{line}");
    }
    let left = deadline.saturating_duration_since(Instant::now()).as_secs();
    say!(
        "{}   ({} automatically in {left} s)",
        text.keys_hint(),
        text.timeout_hint()
    );
    if let Some(p) = crate::privacy::installed() {
        say!("{}", crate::privacy::tty_list(p));
    }
    for p in &text.permissions {
        say!(
            "To allow that too, type `{} on` before your answer.",
            p.as_str()
        );
    }
    say!("Type your answer and press Enter:");
}

/// The "session live" indicator as lines (again at each change).
fn tty_live(info: &crate::ui::LiveInfo) {
    say!();
    say!("== {LIVE_TITLE} ==");
    say!(
        "{} can {} (ticket {}). Verification code: {}",
        info.technician,
        info.scope.plain_words(),
        info.ticket,
        info.verification_code
    );
    say!("p + Enter = pause, r + Enter = resume, e + Enter = end the session");
    say!("`windows` lists your windows; `hide N`, `show N`, `only N`, `only off` choose what is shared.");
    say!("{}", crate::ui::permissions::tty_state(info));
    say!("Any other line is sent to your technician as a chat message.");
}

/// Lines that work at any time (windows, permissions, files): handled
/// here, `true`; anything else is for the prompt or the session.
fn side_command(line: &str, commands: &UnboundedSender<UiCommand>) -> bool {
    if let Some(said) =
        crate::privacy::installed().and_then(|p| crate::privacy::tty_command(p, line))
    {
        say!("{said}");
        return true;
    }
    match crate::ui::permissions::tty_command(line).or_else(|| crate::ui::files::tty_command(line))
    {
        Some(cmd) => {
            let _ = commands.send(cmd);
            true
        }
        None => false,
    }
}

/// Reads the terminal: during the prompt a decision key, then p/r/e.
/// Runs on its own thread (stdin reads block).
pub fn spawn_tty_reader(
    requested: Arc<Mutex<Option<Scope>>>,
    commands: UnboundedSender<UiCommand>,
) {
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut line = String::new();
        let mut decided = false;
        loop {
            line.clear();
            match stdin.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if side_command(&line, &commands) {
                continue;
            }
            if TTY_CONFIRM.load(std::sync::atomic::Ordering::SeqCst) {
                if let Some(cmd) = confirm_answer(&line) {
                    let _ = commands.send(cmd);
                }
                continue;
            }
            let scope = *requested.lock().unwrap_or_else(|p| p.into_inner());
            let answer = if decided {
                validation_answer(&line)
            } else {
                None
            };
            let cmd = match (decided, scope) {
                _ if answer.is_some() => answer,
                (false, Some(_))
                    if !TTY_QUESTION_SHOWN.load(std::sync::atomic::Ordering::SeqCst) =>
                {
                    say!("Please wait for the request to appear, then answer.");
                    None
                }
                (false, Some(scope)) => match crate::prompt::decision_for_key(&line, scope) {
                    Some(d) => {
                        decided = true;
                        Some(UiCommand::Decide(d))
                    }
                    None => {
                        say!("Please type one of the keys shown.");
                        None
                    }
                },
                (false, None) => None,
                (true, _) if line.trim().chars().count() > 1 => {
                    Some(UiCommand::Chat(line.trim().to_string()))
                }
                (true, _) => match line.trim() {
                    "p" => Some(UiCommand::Pause),
                    "r" => Some(UiCommand::Resume),
                    "e" => Some(UiCommand::End),
                    // An answer to a mid-session request for more scope;
                    // the session ignores it when nothing was asked.
                    other => crate::prompt::decision_for_key(other, Scope::Control)
                        .map(UiCommand::Decide),
                },
            };
            if let Some(cmd) = cmd {
                if commands.send(cmd).is_err() {
                    break;
                }
            }
        }
        // Nothing more can be asked on this terminal (the question after
        // the end is then skipped rather than waited for).
        let _ = commands.send(UiCommand::InputClosed);
    });
}
