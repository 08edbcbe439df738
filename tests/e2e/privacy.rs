//! Hide windows / share one window (issue 14 item 1), with the real agent
//! on a real (virtual) X display: windows of unique colours (plain X
//! windows whose background the server paints), the `--tty` agent's
//! `hide N` / `only N` lines, and every decoded frame at the viewer checked
//! for a single pixel of a hidden window's colour while a script moves,
//! resizes, raises and lowers it.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use assent_proto::session_msg::{Control, SessionMsg};
use assent_proto::wire::Scope;
use assent_tests::viewer::{self, LiveViewer, Pairing};
use assent_tests::{bin, lines, wait_line, Proc, TestRelay};
use assent_xvfb::Xvfb;
use x11rb::connection::Connection as _;
use x11rb::protocol::xproto::{
    ConfigureWindowAux, ConnectionExt as _, CreateWindowAux, PropMode, StackMode, WindowClass,
};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

use crate::common::WAIT;

pub(crate) const W: u32 = 800;
pub(crate) const H: u32 = 600;
pub(crate) const ROOT: u32 = 0x203040;
pub(crate) const SECRET: u32 = 0x13f7a1;
pub(crate) const NOTES: u32 = 0x3060e0;
const LATER: u32 = 0xe07010;

/// Plain X windows of one colour each, on a connection of their own.
pub(crate) struct Windows {
    conn: RustConnection,
    root: u32,
}

impl Windows {
    pub(crate) fn new(display: &str) -> Windows {
        let (conn, screen) = x11rb::connect(Some(display)).expect("connect to X");
        let root = conn.setup().roots[screen].root;
        Windows { conn, root }
    }

    pub(crate) fn open(
        &self,
        title: &str,
        class: &str,
        rgb: u32,
        (x, y, w, h): (i16, i16, u16, u16),
    ) -> u32 {
        let c = &self.conn;
        let id = c.generate_id().unwrap();
        let aux = CreateWindowAux::new().background_pixel(rgb);
        c.create_window(
            0,
            id,
            self.root,
            x,
            y,
            w,
            h,
            0,
            WindowClass::INPUT_OUTPUT,
            0,
            &aux,
        )
        .unwrap();
        c.change_property8(
            PropMode::REPLACE,
            id,
            x11rb::protocol::xproto::AtomEnum::WM_NAME,
            x11rb::protocol::xproto::AtomEnum::STRING,
            title.as_bytes(),
        )
        .unwrap();
        let class = format!("{class}\0{class}\0");
        c.change_property8(
            PropMode::REPLACE,
            id,
            x11rb::protocol::xproto::AtomEnum::WM_CLASS,
            x11rb::protocol::xproto::AtomEnum::STRING,
            class.as_bytes(),
        )
        .unwrap();
        c.map_window(id).unwrap();
        c.sync().unwrap();
        id
    }

    fn configure(&self, id: u32, aux: &ConfigureWindowAux) {
        self.conn.configure_window(id, aux).unwrap();
        self.conn.flush().unwrap();
    }
}

pub(crate) fn spawn_agent(
    xvfb: &Xvfb,
    relay: &TestRelay,
    config: &std::path::Path,
    code: &str,
    hide: &[&str],
) -> Proc {
    let mut cmd = Command::new(bin("assent-agent"));
    cmd.args(["join", "--tty", "--relay", &relay.addr, "--ca"])
        .arg(relay.ca());
    for h in hide {
        cmd.args(["--hide", h]);
    }
    cmd.arg(code)
        .env("DISPLAY", xvfb.display())
        .env("XDG_CONFIG_HOME", config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    Proc::new(cmd.spawn().expect("spawn assent-agent"))
}

/// The number the tty list gives the window titled `title`.
fn number_of(rx: &Receiver<String>, title: &str) -> u32 {
    let line = wait_line(
        rx,
        |l| l.contains(title) && l.trim_start().starts_with(char::is_numeric),
        title,
    );
    line.trim_start()
        .split('.')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number in {line:?}"))
}

/// Pixels of the decoded screen with this colour.
pub(crate) fn count(v: &LiveViewer, rgb: u32) -> usize {
    let want = [(rgb >> 16) as u8, (rgb >> 8) as u8, rgb as u8];
    v.decoder
        .pixels()
        .chunks_exact(4)
        .filter(|p| p[..3] == want)
        .count()
}

/// A live session with the `--tty` agent: the viewer, the agent, its
/// stdin and its terminal lines, after `before_yes` typed at the prompt.
pub(crate) async fn session(
    xvfb: &Xvfb,
    relay: &TestRelay,
    dir: &std::path::Path,
    hide: &[&str],
    at_prompt: impl FnOnce(&Receiver<String>) -> Vec<String>,
) -> (LiveViewer, Proc, std::process::ChildStdin, Receiver<String>) {
    let key = relay.enrol("alice");
    let v = viewer::connect(&relay.addr, &relay.ca(), &key, Scope::View)
        .await
        .unwrap();
    let code = v.invite.code.clone();
    let pairing = tokio::spawn(async move { viewer::pair(v, &key).await });
    let mut agent = spawn_agent(xvfb, relay, dir, &code, hide);
    let rx = lines(agent.child.stderr.take().unwrap());
    let mut stdin = agent.child.stdin.take().unwrap();
    wait_line(
        &rx,
        |l| l.starts_with("Windows on your screen"),
        "window list at the prompt",
    );
    let typed = at_prompt(&rx);
    // Typed once the prompt is all out, so what they print comes after it.
    wait_line(
        &rx,
        |l| l.contains("Type your answer"),
        "the prompt's last line",
    );
    for line in typed {
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    stdin.write_all(b"v\n").unwrap();
    let v = match tokio::time::timeout(WAIT, pairing)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        Pairing::Live(l) => *l,
        Pairing::Refused(r) => panic!("refused: {r}"),
    };
    (v, agent, stdin, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_window_is_hidden_from_the_first_frame_and_cannot_be_shown() {
    let xvfb = Xvfb::start_with_size(W, H);
    assent_tests::x11::paint_root(xvfb.display(), ROOT);
    let wins = Windows::new(xvfb.display());
    wins.open("My Bank — Ledger", "Ledger", SECRET, (100, 100, 200, 150));
    wins.open("Notes", "Notes", NOTES, (450, 300, 200, 150));
    let relay = TestRelay::started(&[]);
    let dir = assent_tests::tempdir();
    std::fs::create_dir_all(dir.path().join("assent")).unwrap();
    std::fs::write(
        dir.path().join("assent/agent.toml"),
        "hide = [\"*bank*\"]\n",
    )
    .unwrap();
    let (mut v, mut agent, mut stdin, rx) =
        session(&xvfb, &relay, dir.path(), &["Payroll*"], |rx| {
            let n = number_of(rx, "My Bank");
            vec![format!("show {n}")]
        })
        .await;
    wait_line(
        &rx,
        |l| l.contains("hidden by your organisation's policy"),
        "refusal to show",
    );
    // From the very first frame on: never the secret colour.
    let mut frames = 0;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        if v.next_frame(Duration::from_millis(300)).await.unwrap() {
            frames += 1;
            assert_eq!(
                count(&v, SECRET),
                0,
                "frame {frames} shows the policy window"
            );
        }
    }
    assert!(
        frames >= 1 && count(&v, NOTES) > 0,
        "the rest is shared ({frames} frames)"
    );
    assert_eq!(v.privacy, Some((1, false)));
    // A patched viewer cannot turn the mask off: it has no message for it,
    // and one that sends the agent's own counts back, or asks for a full
    // frame, changes nothing.
    let patched = SessionMsg::Privacy {
        hidden: 0,
        only_one: false,
    };
    v.tx.send(&patched).await.unwrap();
    v.tx.send(&SessionMsg::Control(Control::KeyframeRequest))
        .await
        .unwrap();
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        if v.next_frame(Duration::from_millis(300)).await.unwrap() {
            assert_eq!(count(&v, SECRET), 0, "a viewer's message unmasked it");
        }
    }
    // A window opened later whose class matches --hide is hidden too.
    wins.open("Salaries", "Payroll", LATER, (300, 50, 100, 80));
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        if v.next_frame(Duration::from_millis(300)).await.unwrap() {
            assert_eq!(count(&v, SECRET) + count(&v, LATER), 0);
        }
    }
    v.read_until(WAIT, |v| v.privacy == Some((2, false)))
        .await
        .unwrap();
    assert_eq!(v.privacy, Some((2, false)));
    let record = relay
        .wait_record(WAIT, |r| {
            r["event"] == "privacy_changed" && r["hidden_windows"] == 2
        })
        .expect("privacy_changed");
    assert_eq!(record["hidden_by_policy"], 2);
    assert_eq!(record["share_only_one"], false);
    for r in relay.records() {
        let text = r.to_string();
        assert!(
            !text.contains("Bank") && !text.contains("Salaries"),
            "{text}"
        );
    }
    assert!(!relay.log_text().contains("Bank"));
    stdin.write_all(b"e\n").unwrap();
    drop(stdin);
    agent
        .wait_timeout(Duration::from_secs(10))
        .expect("agent exits");
}

/// Reads frames until `done`, checking every decoded frame with `check`.
async fn frames_while(
    v: &mut LiveViewer,
    mut done: impl FnMut() -> bool,
    check: impl Fn(&LiveViewer, u64),
) -> u64 {
    let mut n = 0;
    loop {
        let finished = done();
        if v.next_frame(Duration::from_millis(200)).await.unwrap() {
            n += 1;
            check(v, n);
        }
        if finished {
            return n;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hidden_window_never_leaks_while_it_moves_and_share_only_shows_one() {
    let xvfb = Xvfb::start_with_size(W, H);
    assent_tests::x11::paint_root(xvfb.display(), ROOT);
    let wins = Windows::new(xvfb.display());
    let secret = wins.open("Secret ledger", "Ledger", SECRET, (100, 100, 200, 150));
    wins.open("Notes", "Notes", NOTES, (450, 300, 200, 150));
    let relay = TestRelay::started(&[]);
    let dir = assent_tests::tempdir();
    let (mut v, mut agent, mut stdin, rx) =
        session(&xvfb, &relay, dir.path(), &[], |_| vec![]).await;
    // Shared at first: the test can see the colour.
    assert!(v.wait_screen(WAIT, |_| true).await.unwrap());
    v.read_until(WAIT, |v| count(v, SECRET) > 0).await.unwrap();
    assert!(
        count(&v, SECRET) > 0,
        "the window is shared before it is hidden"
    );
    let n = number_of_now(&mut stdin, &rx, "Secret ledger");
    stdin.write_all(format!("hide {n}\n").as_bytes()).unwrap();
    v.read_until(WAIT, |v| {
        v.privacy == Some((1, false)) && count(v, SECRET) == 0
    })
    .await
    .unwrap();
    assert_eq!(count(&v, SECRET), 0, "hidden");

    // Shown again, it is back at once, not at the next full read of the
    // screen 2 s later (the cover painted into the capture's own buffer
    // is read again at the next capture); then hidden again.
    stdin.write_all(format!("show {n}\n").as_bytes()).unwrap();
    let back = v
        .read_until(Duration::from_millis(1500), |v| count(v, SECRET) > 0)
        .await
        .unwrap();
    assert!(back, "a window shown again stayed covered");
    stdin.write_all(format!("hide {n}\n").as_bytes()).unwrap();
    let hidden = v.read_until(WAIT, |v| count(v, SECRET) == 0).await.unwrap();
    assert!(hidden, "hidden again");

    // A script moves it 200 times, resizes, raises and lowers it.
    let display = xvfb.display().to_string();
    let mover = std::thread::spawn(move || {
        let wins = Windows::new(&display);
        for i in 0..200i32 {
            let aux = ConfigureWindowAux::new()
                .x((i * 3) % 600)
                .y(50 + (i * 7) % 400);
            wins.configure(secret, &aux);
            if i % 40 == 0 {
                let size = ConfigureWindowAux::new()
                    .width(150 + (i as u32 % 120))
                    .height(90 + i as u32 % 200);
                wins.configure(secret, &size);
            }
            let stack = if i % 2 == 0 {
                StackMode::ABOVE
            } else {
                StackMode::BELOW
            };
            wins.configure(secret, &ConfigureWindowAux::new().stack_mode(stack));
            std::thread::sleep(Duration::from_millis(12));
        }
        wins.configure(
            secret,
            &ConfigureWindowAux::new().stack_mode(StackMode::ABOVE),
        );
        wins.conn.sync().unwrap();
    });
    let checked = frames_while(
        &mut v,
        || mover.is_finished(),
        |v, n| {
            assert_eq!(
                count(v, SECRET),
                0,
                "frame {n} during the moves shows the hidden window"
            );
        },
    )
    .await;
    let settled = frames_while(
        &mut v,
        {
            let until = Instant::now() + Duration::from_secs(2);
            move || Instant::now() > until
        },
        |v, n| assert_eq!(count(v, SECRET), 0, "frame {n} after the moves"),
    )
    .await;
    assert!(checked >= 20, "only {checked} frames during the moves");
    eprintln!(
        "privacy: {checked} frames during 200 moves, {settled} after, none with a hidden pixel"
    );

    // Share only "Notes": nothing but its pixels (and the cover).
    let notes = number_of_now(&mut stdin, &rx, "Notes");
    stdin
        .write_all(format!("only {notes}\n").as_bytes())
        .unwrap();
    v.read_until(WAIT, |v| {
        v.privacy.is_some_and(|p| p.1) && count(v, ROOT) == 0
    })
    .await
    .unwrap();
    wins.open("Later", "Later", LATER, (600, 20, 120, 100));
    let until = Instant::now() + Duration::from_secs(2);
    let only = frames_while(
        &mut v,
        move || Instant::now() > until,
        |v, n| {
            for (c, what) in [
                (ROOT, "the desktop"),
                (SECRET, "the hidden window"),
                (LATER, "a new window"),
            ] {
                assert_eq!(count(v, c), 0, "frame {n} with share-only shows {what}");
            }
        },
    )
    .await;
    assert!(
        count(&v, NOTES) > 20_000,
        "the shared window is seen ({only} frames)"
    );

    // Back to sharing all but the hidden: a new window is announced.
    stdin.write_all(b"only off\n").unwrap();
    wins.open("Fresh window", "Fresh", 0x804020, (20, 400, 100, 100));
    let notice = wait_line(
        &rx,
        |l| l.starts_with("new window shared:"),
        "new window notice",
    );
    assert!(
        notice.contains("Fresh window") && notice.contains("hide "),
        "{notice}"
    );
    v.read_until(WAIT, |v| count(v, 0x804020) > 0)
        .await
        .unwrap();
    assert_eq!(count(&v, SECRET), 0);
    let record = relay
        .wait_record(WAIT, |r| {
            r["event"] == "privacy_changed" && r["share_only_one"] == true
        })
        .expect("privacy_changed for share-only");
    assert!(record.get("title").is_none());
    stdin.write_all(b"e\n").unwrap();
    drop(stdin);
    agent
        .wait_timeout(Duration::from_secs(10))
        .expect("agent exits");
}

/// Asks for the list again and reads `title`'s number from it.
fn number_of_now(stdin: &mut std::process::ChildStdin, rx: &Receiver<String>, title: &str) -> u32 {
    stdin.write_all(b"windows\n").unwrap();
    number_of(rx, title)
}
