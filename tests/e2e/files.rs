//! Files (issue 14 item 3), with the real headless viewer and the real
//! `--tty` agent: a file the technician sends is written only after the
//! user accepts it, lands whole (same SHA-256) under a name that replaces
//! nothing, and a declined one leaves nothing; the user sends one they
//! pick; hostile names from a patched viewer land inside the download
//! folder; killing the sender mid-way leaves nothing under the final
//! name; the relay audits every outcome by metadata only.

use std::path::Path;
use std::time::Duration;

use assent_proto::files::{FileMsg, FileOutcome};
use assent_proto::permission::Permission;
use assent_proto::session_msg::SessionMsg;
use assent_proto::wire::Scope;
use assent_tests::viewer::{self, LiveViewer, Pairing};
use assent_tests::TestRelay;
use assent_xvfb::Xvfb;

use crate::agent_window::{self, shot, window, xdotool};
use crate::common::WAIT;
use crate::people::{technician, user_with};

fn sha(path: &Path) -> String {
    hex::encode(assent_files::sha256_of(path).unwrap())
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// Some bytes that are not all alike.
fn write_sample(path: &Path, len: usize) {
    let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(path, data).unwrap();
}

fn file_transfers(relay: &TestRelay) -> Vec<serde_json::Value> {
    relay
        .records()
        .into_iter()
        .filter(|r| r["event"] == "file_transfer")
        .collect()
}

#[test]
fn files_land_only_when_accepted_and_arrive_whole_both_ways() {
    let desk = Xvfb::start_with_size(320, 200);
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let key = home.path().join("tech.key");
    relay.enrol_keyfile("alice", &key);
    let dl = home.path().join("user/Downloads/Assent");
    let (mut viewer, code) =
        technician(&relay, (home.path(), &key), "T-7101", &["--files"], "info");
    let dl_arg = dl.to_str().unwrap();
    let args = ["--download-dir", dl_arg];
    let mut agent = user_with(&relay, home.path(), (desk.display(), &code, "info"), &args);
    agent.hear("To allow that too, type `files on` before your answer");
    agent.say("files on");
    std::thread::sleep(Duration::from_millis(1200));
    agent.say("v");
    viewer.hear("\"allowed\":true");
    let report = home.path().join("report.bin");
    write_sample(&report, 3 * 1024 * 1024 + 11);

    viewer.say(&format!("send-file {}", report.display()));
    agent.hear("alice wants to send you the file report.bin (3.0 MB)");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        names_in(&dl).is_empty(),
        "written before the user accepted: {:?}",
        names_in(&dl)
    );
    agent.say("accept");
    agent.hear("Receiving report.bin: complete, checked. Saved as");
    viewer.hear("\"outcome\":\"completed\"");
    assert_eq!(sha(&dl.join("report.bin")), sha(&report));

    // The same name again replaces nothing; a declined one leaves nothing.
    viewer.say(&format!("send-file {}", report.display()));
    agent.hear("wants to send you the file report.bin");
    agent.say("accept");
    agent.hear("Saved as");
    viewer.hear("\"outcome\":\"completed\"");
    assert_eq!(names_in(&dl), ["report (1).bin", "report.bin"]);
    viewer.say(&format!("send-file {}", report.display()));
    agent.hear("wants to send you the file report.bin");
    agent.say("decline");
    viewer.hear("\"outcome\":\"declined\"");
    assert_eq!(names_in(&dl).len(), 2);

    // The user sends a file they picked.
    let mine = home.path().join("user/error-log.txt");
    write_sample(&mine, 200_000);
    agent.say(&format!("send {}", mine.display()));
    agent.hear("Sending error-log.txt: complete, checked.");
    let line = viewer.hear("\"direction\":\"from_user\",\"name\":\"error-log.txt\",\"outcome\"");
    assert!(line.contains("completed"), "{line}");
    let got = home.path().join("data/assent/files/error-log.txt");
    assert_eq!(sha(&got), sha(&mine));

    agent.say("e");
    relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .expect("session_end");
    let outcomes: Vec<(String, String, String)> = file_transfers(&relay)
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_string();
            (s("direction"), s("outcome"), s("sha256"))
        })
        .collect();
    let (sent, picked) = (sha(&report), sha(&mine));
    let zero = "0".repeat(64);
    let want = [
        ("to_user", "completed", &sent),
        ("to_user", "completed", &sent),
        ("to_user", "declined", &zero),
        ("from_user", "completed", &picked),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(d, o, h)| (d.to_string(), o.to_string(), h.to_string()))
        .collect();
    assert_eq!(outcomes, want);
    let viewer_audit =
        std::fs::read_to_string(home.path().join("data/assent/audit.jsonl")).unwrap();
    assert_eq!(
        viewer_audit.matches("\"event\":\"file_transfer\"").count(),
        4,
        "{viewer_audit}"
    );
}

async fn patched_session(
    relay: &TestRelay,
    home: &Path,
    desk: &Xvfb,
    dl: &Path,
) -> (LiveViewer, crate::people::Person) {
    let key = relay.enrol("alice");
    let v = viewer::connect(&relay.addr, &relay.ca(), &key, Scope::View)
        .await
        .unwrap();
    let code = v.invite.code.clone();
    let pairing = tokio::spawn(async move { viewer::pair(v, &key).await });
    let args = ["--download-dir", dl.to_str().unwrap()];
    let mut agent = user_with(relay, home, (desk.display(), &code, "info"), &args);
    std::thread::sleep(Duration::from_millis(1200));
    agent.say("v");
    let Pairing::Live(v) = tokio::time::timeout(WAIT, pairing)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    else {
        panic!("refused")
    };
    (*v, agent)
}

/// Sends one file as a patched viewer would, with any name; returns how
/// the agent said it ended.
async fn send_named(
    v: &mut LiveViewer,
    agent: &mut crate::people::Person,
    id: u32,
    name: &str,
) -> FileOutcome {
    let data = b"hi".to_vec();
    let offer = FileMsg::Offer {
        id,
        name: name.into(),
        size: data.len() as u64,
    };
    v.tx.send(&SessionMsg::File(offer)).await.unwrap();
    agent.hear("wants to send you the file");
    agent.say("accept");
    let answered = |v: &LiveViewer| {
        v.files.iter().any(|m| matches!(m, FileMsg::Answer { id: i, .. } | FileMsg::Outcome { id: i, .. } if *i == id))
    };
    v.read_until(WAIT, answered).await.unwrap();
    let sha256: [u8; 32] = {
        use sha2::Digest as _;
        sha2::Sha256::digest(&data).into()
    };
    v.tx.send(&SessionMsg::File(FileMsg::Chunk { id, data }))
        .await
        .unwrap();
    v.tx.send(&SessionMsg::File(FileMsg::End { id, sha256 }))
        .await
        .unwrap();
    let outcome = |v: &LiveViewer| {
        v.files.iter().find_map(|m| match m {
            FileMsg::Outcome { id: i, outcome } if *i == id => Some(*outcome),
            _ => None,
        })
    };
    v.read_until(WAIT, |v| outcome(v).is_some()).await.unwrap();
    outcome(v).expect("an outcome")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_from_a_patched_viewer_land_inside_the_download_folder() {
    let desk = Xvfb::start_with_size(320, 200);
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let user_home = home.path().join("u");
    let dl = user_home.join("Downloads/Assent");
    std::fs::create_dir_all(&dl).unwrap();
    std::fs::write(dl.join("existing.txt"), b"the user's own").unwrap();
    let (mut v, mut agent) = patched_session(&relay, home.path(), &desk, &dl).await;

    // Before the user allows files, an offer is refused and counted.
    let offer = FileMsg::Offer {
        id: 1,
        name: "early.txt".into(),
        size: 2,
    };
    v.tx.send(&SessionMsg::File(offer)).await.unwrap();
    let refused = |v: &LiveViewer| {
        v.files.contains(&FileMsg::Outcome {
            id: 1,
            outcome: FileOutcome::NotAllowed,
        })
    };
    v.read_until(WAIT, refused).await.unwrap();
    assert!(refused(&v), "{:?}", v.files);
    agent.hear("file offer from the technician refused");

    agent.say("files on");
    v.read_until(WAIT, |v| {
        v.permissions
            .as_deref()
            .is_some_and(|p| p.contains(&Permission::Files))
    })
    .await
    .unwrap();
    let long = "n".repeat(10_000);
    let hostile = [
        "../../.bashrc",
        "/etc/passwd",
        "NUL",
        long.as_str(),
        "existing.txt",
        "..\\..\\win.ini",
    ];
    for (i, name) in hostile.iter().enumerate() {
        let outcome = send_named(&mut v, &mut agent, i as u32 + 2, name).await;
        assert_eq!(outcome, FileOutcome::Completed, "{name:.40}");
    }
    assert_eq!(
        names_in(&user_home),
        ["Downloads"],
        "nothing outside the download folder"
    );
    assert_eq!(names_in(&user_home.join("Downloads")), ["Assent"]);
    let stored = names_in(&dl);
    assert_eq!(stored.len(), 7, "{stored:?}");
    for want in ["bashrc", "passwd", "_NUL", "existing (1).txt", "win.ini"] {
        assert!(stored.iter().any(|n| n == want), "{want} not in {stored:?}");
    }
    assert!(stored
        .iter()
        .all(|n| n.len() <= assent_files::MAX_NAME_BYTES));
    assert_eq!(
        std::fs::read(dl.join("existing.txt")).unwrap(),
        b"the user's own"
    );
    agent.say("e");
    relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .expect("session_end");
}

#[test]
fn killing_the_sender_mid_way_leaves_nothing_under_the_final_name() {
    let desk = Xvfb::start_with_size(320, 200);
    let relay = TestRelay::started(&[]);
    let home = assent_tests::tempdir();
    let key = home.path().join("tech.key");
    relay.enrol_keyfile("alice", &key);
    let dl = home.path().join("dl");
    let (mut viewer, code) =
        technician(&relay, (home.path(), &key), "T-7103", &["--files"], "info");
    let args = ["--download-dir", dl.to_str().unwrap()];
    let mut agent = user_with(&relay, home.path(), (desk.display(), &code, "info"), &args);
    agent.say("files on");
    std::thread::sleep(Duration::from_millis(1200));
    agent.say("v");
    viewer.hear("\"allowed\":true");
    let big = home.path().join("big.iso");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(400 << 20)
        .unwrap();
    viewer.say(&format!("send-file {}", big.display()));
    agent.hear("wants to send you the file big.iso");
    agent.say("accept");
    agent.hear("Receiving big.iso: 25%");
    viewer.proc.signal(libc::SIGKILL);
    let end = relay
        .wait_record(WAIT * 2, |r| r["event"] == "session_end")
        .expect("session_end");
    assert_eq!(end["reason"], "viewer_lost", "{end}");
    let recorded = assent_tests::eventually(WAIT, || {
        file_transfers(&relay)
            .into_iter()
            .find(|r| r["outcome"] == "cancelled")
    })
    .expect("the cut-short transfer is audited");
    assert_eq!(recorded["direction"], "to_user");
    assert!(
        recorded["bytes"].as_u64().unwrap() < 400 << 20,
        "{recorded}"
    );
    assert!(names_in(&dl).is_empty(), "left behind: {:?}", names_in(&dl));
    agent.hang_up();
}

/// The agent's window: "Allow files" turns files on, an offered file shows
/// with Accept / Decline and lands once accepted. Screenshots:
/// target/test-artifacts/files-offer.png and files-saved.png.
#[test]
fn the_agent_window_allows_files_and_accepts_one() {
    let (desk, relay) = (Xvfb::start_with_size(640, 520), TestRelay::started(&[]));
    let home = assent_tests::tempdir();
    let key = home.path().join("tech.key");
    relay.enrol_keyfile("alice", &key);
    let dl = home.path().join("dl");
    let (mut viewer, code) =
        technician(&relay, (home.path(), &key), "T-7104", &["--files"], "info");
    let dl_arg = dl.to_str().unwrap();
    let _agent = agent_window::spawn(
        &relay,
        home.path(),
        &desk,
        &code,
        &["--download-dir", dl_arg],
    );
    let prompt = window(&desk, "Assent — support request");
    agent_window::answer_view(&desk, &prompt);
    let live = window(&desk, "Assent — session live");
    std::thread::sleep(Duration::from_millis(700));
    shot(&desk, "files-live.png");
    // "Allow files" (see files-live.png).
    xdotool(&desk, &["mousemove", "--window", &live, "150", "292"]);
    xdotool(&desk, &["click", "1"]);
    viewer.hear("{\"file\":{\"allowed\":true}}");
    let report = home.path().join("report.txt");
    write_sample(&report, 5000);
    viewer.say(&format!("send-file {}", report.display()));
    std::thread::sleep(Duration::from_millis(1000));
    shot(&desk, "files-offer.png");
    assert!(names_in(&dl).is_empty(), "nothing before Accept");
    // "Accept" beside the offer (see files-offer.png).
    xdotool(&desk, &["mousemove", "--window", &live, "400", "315"]);
    xdotool(&desk, &["click", "1"]);
    viewer.hear("\"outcome\":\"completed\"");
    std::thread::sleep(Duration::from_millis(500));
    shot(&desk, "files-saved.png");
    assert_eq!(sha(&dl.join("report.txt")), sha(&report));
    viewer.hang_up();
    relay
        .wait_record(WAIT, |r| r["event"] == "session_end")
        .expect("session_end");
}
