//! The stable fuzz run: for every target, replay the committed corpus and
//! the generated seeds, then mutate them for `ASSENT_FUZZ_SECS` seconds
//! (default 8; targets run two at a time on CI's two cores). Named tests
//! below pin the protections the corpus is there to check, so each fails
//! on its own when its protection is removed.
//!
//! A failing input is saved under the system temp directory
//! (`assent-fuzz-failures/`); put it in `crates/fuzz/corpus/<target>/` as
//! `regress-<what>` to keep it as a regression test once fixed.

#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::io::{Read as _, Write as _};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assent_fuzz::alloc::{self, Meter};
use assent_fuzz::mutate::{self, Rng};
use assent_fuzz::seeds::{seeds, zstd_bomb};
use assent_fuzz::{Outcome, Target, TARGETS};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

const DEFAULT_SECS: u64 = 8;
/// Mutants kept for further mutation because they produced a new outcome.
const MAX_POOL: usize = 512;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

/// Committed files (seeds, regressions, libFuzzer finds) and the generated
/// seeds, without duplicates.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(corpus_dir(target)) {
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        paths.sort();
        for path in paths {
            let bytes = std::fs::read(&path).expect("read corpus file");
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            out.push((name.into_owned(), bytes));
        }
    }
    for (name, bytes) in seeds(target) {
        if !out.iter().any(|(_, b)| *b == bytes) {
            out.push((format!("generated:{name}"), bytes));
        }
    }
    out
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Runs one input; on a panic saves it and fails the test, naming the file.
fn run_one(target: &Target, what: &str, data: &[u8]) -> Outcome {
    match catch_unwind(AssertUnwindSafe(|| (target.run)(data))) {
        Ok(outcome) => outcome,
        Err(_) => {
            let dir = std::env::temp_dir().join("assent-fuzz-failures");
            let _ = std::fs::create_dir_all(&dir);
            let path = dir.join(format!("{}-{:016x}", target.name, fnv(data)));
            let _ = std::fs::write(&path, data);
            panic!(
                "target {} failed on {what} ({} bytes), saved as {}",
                target.name,
                data.len(),
                path.display()
            );
        }
    }
}

fn env_secs() -> u64 {
    std::env::var("ASSENT_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SECS)
}

/// Fixed by default, so CI explores the same inputs every run; `random`
/// (or a number) explores others.
fn env_seed(target: &str) -> u64 {
    match std::env::var("ASSENT_FUZZ_SEED").ok().as_deref() {
        Some("random") => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        Some(s) => s.parse().unwrap_or(1),
        None => 0x5eed ^ fnv(target.as_bytes()),
    }
}

/// Replays the corpus, then mutates it until the time is up.
fn fuzz(name: &str) {
    let target = assent_fuzz::target(name).expect("known target");
    assert!(
        alloc::installed(),
        "the counting allocator is not installed"
    );
    let corpus = corpus(name);
    assert!(corpus.len() >= 3, "{name}: corpus too small");
    let mut seen = HashSet::new();
    for (file, data) in &corpus {
        seen.insert(run_one(target, file, data));
    }

    let secs = env_secs();
    let seed = env_seed(name);
    let mut rng = Rng::new(seed);
    let mut pool: Vec<Vec<u8>> = corpus.into_iter().map(|(_, b)| b).collect();
    let replayed = pool.len();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut execs = 0u64;
    while Instant::now() < deadline {
        let input = if rng.chance(10) {
            mutate::random(&mut rng, target.max_len)
        } else {
            let mut input = pool[rng.below(pool.len())].clone();
            mutate::mutate(&mut rng, &mut input, &pool, target.max_len);
            input
        };
        let outcome = run_one(target, "a mutated input", &input);
        execs += 1;
        if seen.insert(outcome) && pool.len() < MAX_POOL {
            pool.push(input);
        }
    }
    // Straight to stderr, past the test harness's capture, so CI logs show
    // how much fuzzing each target got.
    let _ = writeln!(
        std::io::stderr(),
        "fuzz {name}: {replayed} corpus inputs, then {execs} mutated inputs in {secs} s \
         (seed {seed}, {} outcomes)",
        seen.len()
    );
}

macro_rules! fuzz_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                fuzz(stringify!($name));
            }
        )*

        #[test]
        fn every_target_has_a_test() {
            let tested = [$(stringify!($name)),*];
            for t in TARGETS {
                assert!(tested.contains(&t.name), "no test runs target {}", t.name);
            }
        }
    };
}

fuzz_tests!(
    framing,
    wire_client_msg,
    wire_relay_msg,
    session_offer,
    session_msg,
    identity_text,
    codec_frame,
    recording,
    channel_handshake,
    channel_record,
    audit_verify,
    relay_config,
    relay_technicians,
    admin_request,
    webhook_outbox,
);

/// The committed corpus holds every generated seed, byte for byte, so a
/// libFuzzer run (which cannot call the generator) starts from the same
/// place. `ASSENT_FUZZ_WRITE_CORPUS=1` rewrites it.
#[test]
fn corpus_matches_the_seed_generator() {
    let write = std::env::var_os("ASSENT_FUZZ_WRITE_CORPUS").is_some();
    for t in TARGETS {
        let dir = corpus_dir(t.name);
        for (name, bytes) in seeds(t.name) {
            let path = dir.join(&name);
            if write {
                std::fs::create_dir_all(&dir).expect("corpus dir");
                std::fs::write(&path, &bytes).expect("write seed");
            }
            let committed = std::fs::read(&path).unwrap_or_default();
            assert!(
                committed == bytes,
                "{} is missing or stale; run ASSENT_FUZZ_WRITE_CORPUS=1 cargo test -p assent-fuzz \
                 --test fuzz corpus",
                path.display()
            );
        }
    }
}

fn seed(target: &str, name: &str) -> Vec<u8> {
    seeds(target)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no seed {target}/{name}"))
        .1
}

#[test]
fn one_gib_length_prefix_is_refused_with_bounded_memory() {
    use assent_proto::framing::{check_len, FrameDecoder, FrameError, MAX_CONTROL_FRAME};
    let prefix = (1u32 << 30).to_be_bytes();
    let meter = Meter::start();
    // The incremental decoder refuses at the prefix...
    let mut decoder = FrameDecoder::new(MAX_CONTROL_FRAME);
    assert!(matches!(
        decoder.push(&prefix),
        Err(FrameError::TooLarge { len, .. }) if len == 1 << 30
    ));
    // ...and so does the check `assent_net::recv_msg` makes before sizing
    // its body buffer.
    assert!(check_len(prefix, MAX_CONTROL_FRAME).is_err());
    meter.check("1 GiB prefix", 4096);
    // The whole target, including a prefix followed by 150 KB of body.
    for name in [
        "one-gib-prefix",
        "one-gib-prefix-with-body",
        "valid-then-one-gib",
    ] {
        let data = seed("framing", name);
        let meter = Meter::start();
        assent_fuzz::framing(&data);
        meter.check(name, 4 * data.len() + 256 * 1024);
    }
}

#[test]
fn oversized_fields_are_refused_with_bounded_memory() {
    for (target, name) in [
        ("wire_client_msg", "viewer-auth-1gib-signature"),
        ("wire_client_msg", "note-4g-fields"),
        ("wire_client_msg", "note-max-fields"),
        ("wire_client_msg", "string-past-end"),
        ("wire_relay_msg", "consent-request-1gib-offer"),
        ("session_msg", "frame-claims-1gib"),
    ] {
        let data = seed(target, name);
        let meter = Meter::start();
        (assent_fuzz::target(target).expect("target").run)(&data);
        meter.check(name, 64 * data.len() + 64 * 1024);
    }
    let claim = seed("session_msg", "frame-claims-1gib");
    assert!(assent_proto::session_msg::SessionMsg::decode(&claim).is_err());
}

/// A zstd frame of 32 KiB that inflates to 1 GiB, as the payload of a
/// 64x64 keyframe (12 KiB of pixels).
#[test]
fn zstd_bomb_is_refused_with_bounded_memory() {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len() as u64;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let bomb = zstd_bomb(8192, false);
    assert!(bomb.len() < 33 * 1024);
    // It is a real bomb: zstd's streaming decoder inflates it to 1 GiB.
    let mut inflated = Count(0);
    zstd::stream::copy_decode(&bomb[..], &mut inflated).expect("valid zstd");
    assert_eq!(inflated.0, 1 << 30);

    for name in [
        "bomb-1gib-in-64x64",
        "bomb-1gib-declared",
        "bomb-16mib-delta",
    ] {
        let data = seed("codec_frame", name);
        let meter = Meter::start();
        assent_fuzz::codec_frame(&data);
        meter.check(name, 2 * 1024 * 1024);
    }
    let update = &seed("codec_frame", "bomb-1gib-in-64x64")[3..];
    let mut decoder = assent_codec::Decoder::new();
    let meter = Meter::start();
    assert!(decoder.decode(update).is_err());
    meter.check("zstd bomb", 256 * 1024);
}

/// JPEG rectangles: a real one decodes; one whose headers claim 65535 x
/// 65535, another size than its rectangle, grey, in format 3, or with a
/// section shorter than its length is refused, allocating about its
/// rectangle at most; a real stream ends exact after its refinement.
#[test]
fn hostile_jpeg_rectangles_are_refused_within_their_rectangles_memory() {
    use assent_codec::{CodecError, Decoder};
    let decode = |name: &str| {
        let update = &seed("codec_frame", name)[3..];
        let mut decoder = Decoder::new();
        let meter = Meter::start();
        let result = decoder.decode(update);
        // The screen (4 bytes a pixel), the decoded JPEG (3) and the JPEG
        // decoder's own planes, of 96 x 64: never the 65535^2 claimed.
        meter.check(name, 256 * 1024);
        (result, decoder)
    };
    let (ok, decoder) = decode("jpeg-key");
    assert_eq!(ok.expect("a real JPEG rectangle").jpeg_rects, 1);
    assert_eq!(decoder.width(), 96);
    for (name, payload) in [
        ("jpeg-claims-65535x65535", true),
        ("jpeg-other-size", true),
        ("jpeg-grey", true),
        ("jpeg-in-format-3", false),
        ("jpeg-section-short", true),
    ] {
        let (result, decoder) = decode(name);
        let refused = match result {
            Err(CodecError::BadPayload(_) | CodecError::Jpeg(_)) => payload,
            Err(CodecError::BadRects(_)) => !payload,
            _ => false,
        };
        assert!(refused, "{name}: {result:?}");
        assert_eq!(decoder.width(), 0, "{name}: the screen changed");
    }
    let data = seed("codec_frame", "jpeg-stream-refined");
    let mut decoder = Decoder::new();
    let mut jpeg_rects = 0;
    for update in assent_fuzz::split_updates(&data) {
        jpeg_rects += decoder
            .decode(update)
            .expect("the encoder's own")
            .jpeg_rects;
    }
    assert!(jpeg_rects >= 2, "{jpeg_rects} JPEG rectangles");
}

/// A recording whose length field claims 4 GiB is refused before anything
/// is allocated for it; one cut short is reported, not read past.
#[test]
fn a_recording_that_lies_about_its_length_costs_nothing() {
    use assent_codec::recording::{RecordingError, RecordingReader};
    let data = seed("recording", "recording-length-4gib");
    let mut reader = RecordingReader::new(&data[..]).expect("the magic is right");
    let meter = Meter::start();
    assert!(matches!(
        reader.next_update(),
        Err(RecordingError::UpdateTooLarge(_))
    ));
    meter.check("4 GiB length", 64 * 1024);
    let cut = seed("recording", "recording-cut-short");
    let mut reader = RecordingReader::new(&cut[..]).expect("the magic is right");
    let mut outcome = reader.next_update();
    while let Ok(Some(_)) = outcome {
        outcome = reader.next_update();
    }
    assert!(
        matches!(outcome, Err(RecordingError::Truncated)),
        "{outcome:?}"
    );
}

#[test]
fn huge_screen_with_tiny_payload_is_refused_before_allocating() {
    let update = &seed("codec_frame", "max-size-tiny-payload")[3..];
    let mut decoder = assent_codec::Decoder::new();
    let meter = Meter::start();
    assert!(decoder.decode(update).is_err());
    // 8192 x 8192 would need 200 MB of tiles and 268 MB of screen.
    meter.check("8192x8192 header, 12-byte payload", 256 * 1024);
}

#[test]
fn hostile_views_are_refused_with_bounded_memory_and_a_real_one_is_kept() {
    for name in [
        "view-monitor-outside",
        "view-frame-outside",
        "view-count-2-32",
    ] {
        let update = &seed("codec_frame", name)[3..];
        let mut decoder = assent_codec::Decoder::new();
        let meter = Meter::start();
        let result = decoder.decode(update);
        assert!(
            matches!(result, Err(assent_codec::CodecError::BadView(_))),
            "{name}: {result:?}"
        );
        // A 2^32 monitor count allocates nothing for it.
        meter.check(name, 64 * 1024);
        assert!(decoder.view().is_none() && decoder.width() == 0, "{name}");
    }
    let data = seed("codec_frame", "view-monitors-and-resize");
    let mut decoder = assent_codec::Decoder::new();
    for update in assent_fuzz::split_updates(&data) {
        decoder.decode(update).expect("the encoder's own stream");
    }
    let view = decoder.view().expect("a view");
    assert_eq!((decoder.width(), view.x, view.monitors.len()), (128, 0, 2));
}

#[test]
fn deep_nesting_is_refused_with_bounded_memory() {
    for (target, name) in [
        ("relay_technicians", "deep-nesting"),
        ("admin_request", "deep-nesting"),
        ("audit_verify", "deep-nesting"),
        ("relay_config", "deep-nesting"),
        ("relay_config", "deep-tables"),
    ] {
        let data = seed(target, name);
        assert!(data.len() >= 30_000, "{target}/{name} is not deep");
        let meter = Meter::start();
        (assent_fuzz::target(target).expect("target").run)(&data);
        meter.check(name, 64 * data.len() + 64 * 1024);
    }
    // Refused, not merely survived.
    let deep = seed("relay_technicians", "deep-nesting");
    assert!(serde_json::from_slice::<serde_json::Value>(&deep).is_err());
    let deep = String::from_utf8(seed("relay_config", "deep-nesting")).expect("utf-8");
    assert!(toml::from_str::<toml::Value>(&deep).is_err());
}

/// Before the viewer proves its key the agent holds at most one signature's
/// worth of message, however much the viewer sends.
#[test]
fn unproven_viewer_cannot_make_the_agent_buffer() {
    let data = seed("channel_record", "flood-before-proof");
    // The target checks the agent's memory after every read against a
    // budget of 1 MiB, while the flood is 2 MiB.
    assent_fuzz::channel_record(&data);
}

/// A log line is read at most `MAX_LINE_LEN` bytes far, however long.
#[test]
fn endless_audit_line_is_refused_with_bounded_memory() {
    let endless = std::io::repeat(b'{').take(64 * 1024 * 1024);
    let meter = Meter::start();
    let result = assent_audit::verify_reader(std::io::BufReader::new(endless));
    // The line buffer doubles past the limit: 1 MiB + 2 MiB while it grows.
    meter.check("64 MiB line", 4 * assent_audit::MAX_LINE_LEN);
    assert_eq!(
        result.unwrap_err().kind,
        assent_audit::VerifyErrorKind::LineTooLong
    );
}
