use super::*;

fn send_all(from: &Path, dir: &Path) -> Result<PathBuf, FileError> {
    let mut out = Sending::open(from)?;
    let mut into = Receiving::start(dir, out.name(), out.size())?;
    while out.may_send() {
        let chunk = out.next_chunk()?;
        if let Some(acked) = into.write(&chunk)? {
            out.on_ack(acked);
        }
    }
    into.finish(&out.digest().expect("all read"))
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_file_arrives_whole_and_never_replaces_another() {
    let src = tempfile::tempdir().unwrap();
    let dl = tempfile::tempdir().unwrap();
    let path = src.path().join("report.pdf");
    let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i * 7) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    std::fs::write(dl.path().join("report.pdf"), b"the user's own").unwrap();
    let got = send_all(&path, dl.path()).unwrap();
    assert_eq!(got, dl.path().join("report (1).pdf"));
    assert_eq!(std::fs::read(&got).unwrap(), data);
    assert_eq!(
        std::fs::read(dl.path().join("report.pdf")).unwrap(),
        b"the user's own"
    );
    assert_eq!(files_in(dl.path()), ["report (1).pdf", "report.pdf"]);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&got).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_wrong_hash_a_short_or_long_transfer_leave_nothing() {
    let dl = tempfile::tempdir().unwrap();
    let mut r = Receiving::start(dl.path(), "a.txt", 4).unwrap();
    r.write(b"abcd").unwrap();
    assert!(matches!(r.finish(&[0; 32]), Err(FileError::HashMismatch)));
    let mut r = Receiving::start(dl.path(), "b.txt", 4).unwrap();
    r.write(b"ab").unwrap();
    assert!(matches!(r.finish(&[0; 32]), Err(FileError::Short { .. })));
    let mut r = Receiving::start(dl.path(), "c.txt", 4).unwrap();
    assert!(matches!(r.write(b"abcde"), Err(FileError::TooLong(4))));
    drop(r);
    // A transfer cut off (the sender killed): dropped, its part file goes.
    let mut r = Receiving::start(dl.path(), "d.txt", 10).unwrap();
    r.write(b"abc").unwrap();
    drop(r);
    assert!(files_in(dl.path()).is_empty(), "{:?}", files_in(dl.path()));
}

#[test]
fn hostile_names_stay_inside_the_download_folder() {
    let root = tempfile::tempdir().unwrap();
    let dl = root.path().join("Downloads/Assent");
    let long = "n".repeat(10_000);
    for raw in [
        "../../.bashrc",
        "/etc/passwd",
        "NUL",
        long.as_str(),
        "..",
        "",
    ] {
        let mut r = Receiving::start(&dl, raw, 2).unwrap();
        r.write(b"hi").unwrap();
        let digest: [u8; 32] = Sha256::digest(b"hi").into();
        let got = r.finish(&digest).unwrap();
        assert_eq!(got.parent(), Some(dl.as_path()), "{raw:?} went to {got:?}");
    }
    assert_eq!(files_in(root.path()), ["Downloads"]);
    assert_eq!(files_in(&dl).len(), 6);
}

#[test]
fn the_window_bounds_what_is_unacknowledged() {
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("big.bin");
    std::fs::write(&path, vec![1u8; (WINDOW as usize) * 2]).unwrap();
    let mut out = Sending::open(&path).unwrap();
    let mut sent = 0;
    while out.may_send() {
        sent += out.next_chunk().unwrap().len() as u64;
    }
    assert_eq!(sent, WINDOW, "stops at the window");
    out.on_ack(CHUNK as u64);
    assert!(out.may_send());
    assert!(
        Sending::open(src.path()).is_err(),
        "a directory is not a file"
    );
}

mod sessions {
    use super::*;
    use assent_proto::files::{FileMsg, FileOutcome};

    /// Delivers every message between two ends until both are quiet;
    /// returns the events each end saw.
    fn pump(a: &mut Transfers, b: &mut Transfers, first: Vec<FileMsg>) -> (Vec<Event>, Vec<Event>) {
        let (mut to_b, mut to_a) = (first, Vec::new());
        let (mut seen_a, mut seen_b) = (Vec::new(), Vec::new());
        while !to_a.is_empty() || !to_b.is_empty() || a.may_send() {
            for m in std::mem::take(&mut to_b) {
                let s = b.on_msg(m, true, false);
                to_a.extend(s.send);
                seen_b.extend(s.events);
            }
            if let Some(Event::Offered(_)) = seen_b.last() {
                let s = b.answer(true);
                to_a.extend(s.send);
                seen_b.extend(s.events);
            }
            for m in std::mem::take(&mut to_a) {
                let s = a.on_msg(m, true, false);
                to_b.extend(s.send);
                seen_a.extend(s.events);
            }
            if a.may_send() {
                let s = a.next_chunk();
                to_b.extend(s.send);
                seen_a.extend(s.events);
            }
        }
        (seen_a, seen_b)
    }

    fn last_end(events: &[Event]) -> Ended {
        events
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::Ended(e) => Some(e.clone()),
                _ => None,
            })
            .expect("an end")
    }

    #[test]
    fn an_offered_file_is_accepted_streamed_verified_and_reported_at_both_ends() {
        let (src, dl_a, dl_b) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let path = src.path().join("logs.zip");
        let data: Vec<u8> = (0..(WINDOW as usize) * 2 + 5)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let mut a = Transfers::new(dl_a.path().into(), Limits::default());
        let mut b = Transfers::new(dl_b.path().into(), Limits::default());
        let offer = a.offer(&path).unwrap();
        let (seen_a, seen_b) = pump(&mut a, &mut b, vec![offer]);
        let (got_a, got_b) = (last_end(&seen_a), last_end(&seen_b));
        assert_eq!(got_a.outcome, FileOutcome::Completed);
        assert_eq!(got_b.outcome, FileOutcome::Completed);
        assert_eq!(got_a.sha256, got_b.sha256);
        let stored = got_b.path.expect("stored");
        assert_eq!(std::fs::read(stored).unwrap(), data);
        assert!(a.offer(&path).is_ok(), "the next file may go");
    }

    #[test]
    fn nothing_is_written_before_yes_and_refusals_leave_nothing() {
        let (src, dl) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let path = src.path().join("a.txt");
        std::fs::write(&path, b"hello").unwrap();
        let limits = Limits {
            max_file: 4,
            max_session: 100,
        };
        let mut b = Transfers::new(dl.path().join("in"), limits);
        let offer = FileMsg::Offer {
            id: 1,
            name: "a.txt".into(),
            size: 3,
        };
        let s = b.on_msg(offer.clone(), true, false);
        assert!(matches!(s.events[..], [Event::Offered(_)]));
        assert!(!dl.path().join("in").exists(), "nothing before the answer");
        let s = b.answer(false);
        assert_eq!(
            s.send,
            [FileMsg::Outcome {
                id: 1,
                outcome: FileOutcome::Declined
            }]
        );
        let s = b.on_msg(offer, false, false);
        assert_eq!(
            s.send,
            [FileMsg::Outcome {
                id: 1,
                outcome: FileOutcome::NotAllowed
            }]
        );
        let big = FileMsg::Offer {
            id: 2,
            name: "big".into(),
            size: 5,
        };
        let s = b.on_msg(big, true, false);
        assert_eq!(
            s.send,
            [FileMsg::Outcome {
                id: 2,
                outcome: FileOutcome::TooLarge
            }]
        );
        let mut a = Transfers::new(dl.path().into(), limits);
        assert!(a.offer(&path).unwrap_err().contains("limit is 4 bytes"));
        // Chunks nobody accepted are not written anywhere.
        let s = b.on_msg(
            FileMsg::Chunk {
                id: 9,
                data: vec![1; 10],
            },
            true,
            false,
        );
        assert!(s.send.is_empty() && s.events.is_empty());
        assert!(!dl.path().join("in").exists());
    }

    #[test]
    fn a_cancel_mid_way_removes_the_partial_data() {
        let dl = tempfile::tempdir().unwrap();
        let mut b = Transfers::new(dl.path().into(), Limits::default());
        b.on_msg(
            FileMsg::Offer {
                id: 1,
                name: "x.bin".into(),
                size: 10,
            },
            true,
            false,
        );
        b.answer(true);
        b.on_msg(
            FileMsg::Chunk {
                id: 1,
                data: vec![1; 4],
            },
            true,
            false,
        );
        assert_eq!(
            std::fs::read_dir(dl.path()).unwrap().count(),
            1,
            "the part file"
        );
        let s = b.cancel_all();
        assert_eq!(
            s.send,
            [FileMsg::Cancel {
                id: 1,
                from_sender: false
            }]
        );
        assert_eq!(last_end(&s.events).outcome, FileOutcome::Cancelled);
        assert_eq!(std::fs::read_dir(dl.path()).unwrap().count(), 0);
    }

    /// Both sides number their own transfers: the other side cancelling its
    /// file number 1 must not touch this side's own file number 1.
    #[test]
    fn a_cancel_names_whose_transfer_it_is() {
        let (src, dl) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let path = src.path().join("mine.txt");
        std::fs::write(&path, b"mine").unwrap();
        let mut t = Transfers::new(dl.path().into(), Limits::default());
        t.offer(&path).unwrap(); // our transfer 1
        t.on_msg(
            FileMsg::Offer {
                id: 1,
                name: "theirs.txt".into(),
                size: 4,
            },
            true,
            false,
        );
        t.answer(true); // their transfer 1, accepted
        let s = t.on_msg(
            FileMsg::Cancel {
                id: 1,
                from_sender: true,
            },
            true,
            false,
        );
        assert!(matches!(&s.events[..], [Event::Ended(e)] if e.way == Way::In));
        assert!(t.offer(&path).is_err(), "ours is still going");
        let s = t.on_msg(
            FileMsg::Cancel {
                id: 1,
                from_sender: false,
            },
            true,
            false,
        );
        assert!(matches!(&s.events[..], [Event::Ended(e)] if e.way == Way::Out));
        assert!(t.offer(&path).is_ok(), "ours was cancelled");
    }
}
