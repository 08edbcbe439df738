//! Group 8: a file from the technician to the user through the relay on
//! loopback, with the real headless viewer (`send-file`) and the real
//! `--tty` agent (files allowed at the prompt, the file accepted), while
//! the office desktop keeps changing: MB/s from the user's Accept to the
//! viewer's `completed`, the SHA-256 at both ends, and the frames per
//! second the viewer decoded during the transfer beside those just before
//! it (the file must not stall the screen).

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::desktop::{Desktop, Workload};
use crate::procs;
use crate::relay::BenchRelay;
use crate::report::{Better, Figure, Target};
use crate::session::{headless_session_with, parse_stats, Extras};

const GROUP: &str = "files";

pub async fn run(megabytes: u64) -> anyhow::Result<Vec<Figure>> {
    let tmp = tempfile::tempdir()?;
    let source = tmp.path().join("payload.bin");
    write_payload(&source, megabytes << 20)?;
    let relay = BenchRelay::start(tmp.path()).await?;
    let mut desktop = Desktop::start(Workload::Office)?;
    let dl = tmp.path().join("downloads");
    let dl_arg = dl.to_str().context("temporary path")?;
    let extras = Extras {
        viewer: &["--files"],
        agent: &["--download-dir", dl_arg],
        at_prompt: &["files on"],
        window: false,
    };
    let (mut viewer, mut out, mut agent) =
        headless_session_with(&relay, desktop.display(), tmp.path(), extras).await?;
    desktop.start_driver(Workload::Office, 30)?;
    let before = frames_per_second(&mut out, 4).await?;
    let stdin = viewer.child.stdin.as_mut().context("viewer stdin")?;
    writeln!(stdin, "send-file {}", source.display())?;
    stdin.flush()?;
    agent
        .wait_for("wants to send you the file", Duration::from_secs(30))
        .await?;
    agent.answer("accept")?;
    let started = Instant::now();
    let (done, during) = until_completed(&mut out).await?;
    let secs = done.duration_since(started).as_secs_f64();
    let received = dl.join("payload.bin");
    if assent_files::sha256_of(&received)? != assent_files::sha256_of(&source)? {
        bail!("the received file's SHA-256 differs from the sent one");
    }
    desktop.stop_driver();
    drop(agent);
    drop(viewer);
    let mbps = megabytes as f64 / secs.max(1e-6);
    tracing::info!(megabytes, secs, mbps, "file transfer measured");
    Ok(vec![
        Figure::single(
            GROUP,
            format!("{megabytes} MB to the user, loopback"),
            "MB/s",
            Better::Higher,
            Some(mbps),
        )
        .target(Target::median(50.0)),
        Figure::from_samples(
            GROUP,
            "office frames/s before the transfer",
            "fps",
            Better::Higher,
            &before,
        ),
        Figure::from_samples(
            GROUP,
            "office frames/s during the transfer",
            "fps",
            Better::Higher,
            &during,
        ),
    ])
}

/// A payload that does not compress (the transfer does not compress it
/// anyway, but a file of zeros would flatter any later change that does).
fn write_payload(path: &std::path::Path, bytes: u64) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..(bytes >> 20) {
        for chunk in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        file.write_all(&block)?;
    }
    file.flush()?;
    Ok(())
}

/// Frames per second over the next `seconds` statistics lines.
async fn frames_per_second(
    out: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    seconds: usize,
) -> anyhow::Result<Vec<f64>> {
    let (mut fps, mut prev) = (Vec::new(), None);
    while fps.len() < seconds {
        let line = procs::wait_line(out, Duration::from_secs(10), "viewer stats", |l| {
            parse_stats(l).is_some()
        })
        .await?;
        if let Some(s) = parse_stats(&line) {
            // A line a second: frames since the last one.
            if let Some(p) = prev.replace(s.frames) {
                fps.push((s.frames - p) as f64);
            }
        }
    }
    Ok(fps)
}

/// Reads the viewer's lines until the transfer's `completed`; the
/// frames/s of each statistics line meanwhile.
async fn until_completed(
    out: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
) -> anyhow::Result<(Instant, Vec<f64>)> {
    let (mut during, mut prev) = (Vec::new(), None);
    loop {
        let line = procs::wait_line(out, Duration::from_secs(120), "the transfer's end", |_| {
            true
        })
        .await?;
        if let Some(s) = parse_stats(&line) {
            if let Some(p) = prev.replace(s.frames) {
                during.push((s.frames - p) as f64);
            }
        } else if line.contains("\"outcome\"") {
            if line.contains("\"outcome\":\"completed\"") {
                return Ok((Instant::now(), during));
            }
            bail!("the transfer ended otherwise: {line}");
        }
    }
}
