//! `--headless`: the session driven by stdin lines and reported as JSON
//! lines on stdout (the window's equivalent for scripts).

/// `--headless`: stdin EOF ends the session like closing the window; a line
/// `control` or `view` asks the user for that scope; `chat TEXT` sends TEXT
/// to the user; `quality auto|sharp|smooth` sets the screen quality.
pub fn spawn_stdin_reader(
    commands: tokio::sync::mpsc::UnboundedSender<crate::session::Command>,
    state: crate::session::SharedState,
) {
    use crate::session::Command as SessionCommand;
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::stdin().lock()) {
            let Ok(line) = line else { break };
            let noted = {
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                crate::note_input::apply_line(&mut s, &line)
            };
            if let Some(done) = noted {
                match done {
                    Ok(what) => eprintln!("note: {what}"),
                    Err(why) => eprintln!("note: {why}"),
                }
            } else if let Some(asked) = escalation_line(&state, &line) {
                match asked {
                    Ok(cmd) => {
                        let _ = commands.send(cmd);
                    }
                    Err(why) => eprintln!("escalate: {why}"),
                }
            } else if let Some(cmd) =
                crate::files::parse_line(&line).or_else(|| crate::recording::parse_line(&line))
            {
                let _ = commands.send(cmd);
            } else if let Some(p) = crate::clipboard::parse_line(&line) {
                let _ = commands.send(SessionCommand::AskPermission(p));
            } else if let Some(q) = crate::quality::parse_line(&line) {
                let _ = commands.send(q);
            } else if let Some(pick) = crate::monitors::monitor_line(&line) {
                let _ = commands.send(pick);
            } else if let Some(text) = line.strip_prefix("chat ") {
                let _ = commands.send(SessionCommand::Chat(text.to_string()));
            } else if line.trim() == "validate" || line.starts_with("validate ") {
                let what = line.trim().trim_start_matches("validate").trim();
                let _ = commands.send(SessionCommand::AskValidation(what.to_string()));
            } else if let Ok(scope) = line.trim().parse() {
                let _ = commands.send(SessionCommand::RequestScope(scope));
            }
        }
        let _ = commands.send(SessionCommand::End);
    });
}

fn escalation_line(
    state: &crate::session::SharedState,
    line: &str,
) -> Option<Result<crate::session::Command, String>> {
    let scope = state.lock().unwrap_or_else(|p| p.into_inner()).scope;
    crate::escalate::parse_line(line, scope)
}

/// `--headless`: each change of the escalation or of the connection
/// (`{"connection": {"interrupted": true, "why": ...}}`), one JSON line on stdout.
pub async fn print_escalation(state: crate::session::SharedState) {
    let (mut shown, mut connection) = (0, 0);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        tick.tick().await;
        let (view, interrupted, version) = {
            let s = state.lock().unwrap_or_else(|p| p.into_inner());
            (
                s.escalation.clone(),
                s.interrupted.clone(),
                s.interrupted_version,
            )
        };
        if view.version != shown {
            shown = view.version;
            println!("{}", view.json());
        }
        if version != connection {
            connection = version;
            let json = serde_json::json!({"connection": {
                "interrupted": interrupted.is_some(), "why": interrupted,
            }});
            println!("{json}");
        }
    }
}

/// `--headless`: one JSON statistics line a second while live.
pub async fn print_stats(state: crate::session::SharedState) {
    use crate::session;
    let mut before = session::Stats::default();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let (now, live) = {
            let s = state.lock().unwrap_or_else(|p| p.into_inner());
            (s.stats.clone(), s.phase == session::Phase::Live)
        };
        if live {
            println!(
                "{}",
                session::stats_line(&now, &before, std::time::Duration::from_secs(1))
            );
        }
        before = now;
    }
}

/// `--headless`: what the user says, one JSON object a line on stdout:
/// `{"chat": {"from": "user", "at": "HH:MM:SS", "text": "..."}}` and
/// `{"validation": {"number": N, "answer": "works", "comment": "...", "at": ...}}`.
pub async fn print_chat(state: crate::session::SharedState) {
    let (mut chat_shown, mut validations_shown) = (0, 0);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        tick.tick().await;
        let (chat, validations): (Vec<_>, Vec<_>) = {
            let s = state.lock().unwrap_or_else(|p| p.into_inner());
            let new = (
                s.chat.iter().skip(chat_shown).cloned().collect(),
                s.validations
                    .iter()
                    .skip(validations_shown)
                    .cloned()
                    .collect(),
            );
            (chat_shown, validations_shown) = (s.chat.len(), s.validations.len());
            new
        };
        for line in chat.into_iter().filter(|l| l.from == "user") {
            let json =
                serde_json::json!({"chat": {"from": line.from, "at": line.at, "text": line.text}});
            println!("{json}");
        }
        for v in validations {
            let json = serde_json::json!({"validation": {
                "number": v.number, "answer": v.answer.as_str(), "comment": v.comment, "at": v.at,
            }});
            println!("{json}");
        }
    }
}
